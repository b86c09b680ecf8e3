"""Write data/sample/: a small labelled sentiment dataset composed from our own templates.

No sentence is copied from any corpus: each is drawn from the word lists below with a fixed seed,
so the files are reproducible. Some sentences carry a negated opposite ("not boring") or a
contrast ("... but ..."), so the task needs word order and is not solved by single words alone.

    python scripts/make_sample_data.py            # rewrites data/sample/{train,test}.csv
"""

from __future__ import annotations

import csv
import io
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


def to_csv(rows: list[tuple[str, str]]) -> str:
    """Rows as CSV text with a `text,label` header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buf.getvalue()


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


def main(out: Path = SAMPLE_DIR) -> None:
    rng = random.Random(2014)
    rows = make(500, rng)
    rng.shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_text(to_csv(rows[:400]), encoding="utf-8")
    (out / "test.csv").write_text(to_csv(rows[400:]), encoding="utf-8")
    print(f"wrote {out}/train.csv (400) and test.csv (100)")


if __name__ == "__main__":
    main()
