"""Write data/sample/: a small labelled sentiment dataset composed from our own templates, and a
small multi-label one (which aspects of a film a review talks about).

No sentence is copied from any corpus: each is drawn from the word lists below with a fixed seed,
so the files are reproducible. Some sentences carry a negated opposite ("not boring") or a
contrast ("... but ..."), so the task needs word order and is not solved by single words alone.
A multi-label review joins one to three aspect clauses; a few words ("the film", "great") occur
with every aspect, and a clause may name an aspect only through its own words ("the score"
is music, "the jokes" humour).

    python scripts/make_sample_data.py   # rewrites data/sample/{train,test}.csv and
                                         # data/sample/multilabel-{train.jsonl,test.csv}
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

SUBJECTS = ["the film", "this movie", "the story", "the cast", "the script", "the soundtrack",
            "the director's new picture", "the sequel", "the ending", "the lead performance",
            "the dialogue", "the camera work", "this documentary", "the animation", "the plot"]
POSITIVE = ["wonderful", "gripping", "moving", "funny", "beautifully made", "clever", "charming",
            "delightful", "smart", "powerful", "warm", "thrilling", "superb", "touching", "fresh"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "lifeless", "predictable", "shallow", "messy",
            "painful", "forgettable", "flat", "overlong", "silly", "confused", "stale"]
INTENSIFIERS = ["", "", "really ", "truly ", "quite ", "surprisingly ", "utterly "]
VERBS = ["is", "feels", "seems", "turns out to be", "remains"]
CLOSERS = {"positive": ["i would watch it again", "worth every minute", "a real treat",
                        "go and see it", "it stays with you"],
           "negative": ["i wanted my money back", "a waste of an evening", "skip it",
                        "i nearly fell asleep", "it never comes together"]}


def sentence(label: str, rng: random.Random) -> str:
    """One sentence whose sentiment is `label`."""
    good, bad = (POSITIVE, NEGATIVE) if label == "positive" else (NEGATIVE, POSITIVE)
    subject = rng.choice(SUBJECTS)
    form = rng.random()
    if form < 0.45:
        text = f"{subject} {rng.choice(VERBS)} {rng.choice(INTENSIFIERS)}{rng.choice(good)}"
    elif form < 0.65:
        text = f"{subject} is not {rng.choice(bad)} at all , it is {rng.choice(good)}"
    elif form < 0.85:
        text = (f"{subject} {rng.choice(VERBS)} {rng.choice(bad)} at first , but overall it is "
                f"{rng.choice(INTENSIFIERS)}{rng.choice(good)}")
    else:
        text = f"{rng.choice(good)} and {rng.choice(good)}"
    if rng.random() < 0.5:
        text += f" ; {rng.choice(CLOSERS[label])}"
    return text + rng.choice([" .", " !", " ."])


def make(n: int, rng: random.Random) -> list[tuple[str, str]]:
    """`n` distinct (text, label) rows, balanced between the two labels."""
    rows: dict[str, str] = {}
    while len(rows) < n:
        label = "positive" if len(rows) % 2 == 0 else "negative"
        rows.setdefault(sentence(label, rng), label)
    return list(rows.items())


def to_csv(rows: list[tuple[str, str]], *, label_column: str = "label") -> str:
    """Rows as CSV text with a `text,<label_column>` header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", label_column])
    writer.writerows(rows)
    return buf.getvalue()


# -- multi-label: the aspects a review talks about -------------------------------------------------
ASPECTS = {
    "acting": (["the lead actor", "the cast", "her performance", "the supporting actors", "the acting"],
               ["is convincing", "overacts badly", "brings real warmth", "feels wooden", "steals every scene"]),
    "music": (["the score", "the soundtrack", "the songs", "the music", "the theme tune"],
              ["is haunting", "is far too loud", "stays in your head", "drowns the dialogue", "swells nicely"]),
    "plot": (["the plot", "the story", "the twist", "the script", "the final act"],
             ["makes no sense", "keeps you guessing", "drags in the middle", "is cleverly built",
              "falls apart"]),
    "visuals": (["the camera work", "the colours", "the special effects", "the cinematography", "each shot"],
                ["looks stunning", "is murky and cheap", "is gorgeous", "looks dated", "is beautifully framed"]),
    "humour": (["the jokes", "the comedy", "the banter", "the gags", "the humour"],
               ["lands every time", "falls flat", "made me laugh out loud", "is painfully forced",
                "is genuinely witty"]),
}
OPENERS = ["", "", "honestly , ", "all in all , ", "as for the film , ", "great , "]
JOINERS = [" and ", " ; ", " , while ", " , but "]


def aspect_review(rng: random.Random) -> tuple[str, list[str]]:
    """One review mentioning one to three aspects, and those aspects (sorted)."""
    aspects = rng.sample(sorted(ASPECTS), rng.choice([1, 1, 2, 2, 3]))
    clauses = []
    for aspect in aspects:
        subjects, predicates = ASPECTS[aspect]
        clauses.append(f"{rng.choice(subjects)} {rng.choice(predicates)}")
    text = rng.choice(OPENERS) + clauses[0]
    for clause in clauses[1:]:
        text += rng.choice(JOINERS) + clause
    return text + " .", sorted(aspects)


def make_aspects(n: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """`n` distinct (review, aspects) rows."""
    rows: dict[str, list[str]] = {}
    while len(rows) < n:
        text, aspects = aspect_review(rng)
        rows.setdefault(text, aspects)
    return list(rows.items())


def to_jsonl(rows: list[tuple[str, list[str]]]) -> str:
    """Rows as JSON lines {"text": ..., "labels": [...]}."""
    return "".join(json.dumps({"text": text, "labels": labels}) + "\n" for text, labels in rows)


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


def main(out: Path = SAMPLE_DIR) -> None:
    rng = random.Random(2014)
    rows = make(500, rng)
    rng.shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_text(to_csv(rows[:400]), encoding="utf-8")
    (out / "test.csv").write_text(to_csv(rows[400:]), encoding="utf-8")
    print(f"wrote {out}/train.csv (400) and test.csv (100)")
    # the training reviews as JSON lines (label lists), the test reviews as CSV ('|'-joined labels)
    aspects = make_aspects(800, random.Random(2015))
    (out / "multilabel-train.jsonl").write_text(to_jsonl(aspects[:600]), encoding="utf-8")
    (out / "multilabel-test.csv").write_text(to_csv([(t, "|".join(a)) for t, a in aspects[600:]],
                                                                    label_column="labels"),
                                             encoding="utf-8")
    print(f"wrote {out}/multilabel-train.jsonl (600) and multilabel-test.csv (200)")


if __name__ == "__main__":
    main()
