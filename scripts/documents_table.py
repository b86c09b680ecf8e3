"""Copy a 20 Newsgroups batch's results into docs/results/20ng/ and its table into docs/documents.md.

    textcnn batch recipes/docs --out runs/docs          # resumable: rerun it to continue
    python scripts/documents_table.py --batch runs/docs

Writes docs/results/20ng/results.jsonl (the batch's 20NG rows), table.md and table.csv (the batch
table: mean ± std over seeds), each run's per-epoch metrics (epochs/<run>/metrics.jsonl), and the
section of docs/documents.md between its `20ng-table` markers: the table, each run's figures
(dev accuracy, selected epoch, seconds to it) and the recipe's runs that have no row yet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

START, END = "<!-- 20ng-table start -->", "<!-- 20ng-table end -->"



def setup_seconds(row: dict) -> str:
    """The run's wall time less its training (reading, tokenizing, vocabulary, test); a resumed
    run's wall time counts its last process only, so it has no such figure."""
    if not row.get("wall_seconds") or row.get("train_seconds") is None:
        return "–"
    setup = row["wall_seconds"] - row["train_seconds"]
    return f"{setup:.0f}" if setup >= 0 else "– (resumed)"

def epochs(folder: Path) -> list[dict]:
    path = folder / "train" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", required=True, action="append",
                        help="the --out folder of `textcnn batch recipes/docs`; repeat it to take the runs "
                             "missing from the first from the next (a run's row comes from the first batch "
                             "that has it)")
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "docs" / "20ng.yaml"))
    args = parser.parse_args()

    from textcnn.batch_runner import write_tables
    from textcnn.core.io import atomic_write_text

    batches, dest = [Path(b) for b in args.batch], REPO / "docs" / "results" / "20ng"
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    name = recipe["name"]
    rows, source = [], {}  # source: the batch folder of each run's row
    for batch in batches:
        for line in (batch / "results.jsonl").read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("dataset") == "20ng" and row["run"] not in source:
                rows.append(row)
                source[row["run"]] = batch
    batch = batches[0]  # where runs without a row yet are looked for
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "results.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    write_tables(rows, dest)

    lines = [(dest / "table.md").read_text().rstrip("\n"), "",
             "| run | test acc. | dev acc. | selected epoch / run | seconds to the selected epoch | "
             "seconds per epoch (median) | set-up and evaluation (s) |", "|---|---|---|---|---|---|---|"]
    done = set()
    for row in rows:
        run = row["run"]
        done.add(run)
        history = epochs(source[run] / "runs" / run)
        if history:
            # epochs/, not runs/: docs/results/**/runs/ holds whole batch runs and is not committed
            (dest / "epochs" / run).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source[run] / "runs" / run / "train" / "metrics.jsonl",
                            dest / "epochs" / run / "metrics.jsonl")
        best = row.get("best_epoch")
        to_best = sum(e["seconds"] for e in history if best is not None and e["epoch"] <= best)
        per_epoch = sorted(e["seconds"] for e in history)
        cells = [run, f"{100 * row['accuracy']:.2f}" if row.get("accuracy") is not None else "–",
                 f"{100 * row['dev_accuracy']:.2f}" if row.get("dev_accuracy") is not None else "–",
                 f"{best} / {row.get('epochs_run')}" if best is not None else "–",
                 f"{to_best:.0f}" if history else f"{row.get('train_seconds') or 0:.0f} (fit)",
                 f"{per_epoch[len(per_epoch) // 2]:.0f}" if per_epoch else "–",
                 setup_seconds(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if len(batches) > 1:
        lines += ["", "Rows by batch folder: " + "; ".join(
            f"`{b.name}`: " + ", ".join(run for run in source if source[run] == b) for b in batches
            if b in source.values()) + "."]
    missing = [f"{name}/{key}" for key in recipe["expand"]["model"] if f"{name}/{key}" not in done]
    if missing:
        lines += ["", "No row yet (`textcnn batch recipes/docs` with the same `--out` runs or resumes "
                  "them): " + ", ".join(f"`{m}`" for m in missing) + "."]
        partial = [(m, epochs(batch / "runs" / m)) for m in missing]
        partial = [(m, h) for m, h in partial if h]
        if partial:  # interrupted runs: their dev curves so far (no test figure until they finish)
            lines += ["", "| unfinished run | epochs done | dev accuracy by epoch | seconds per epoch |",
                      "|---|---|---|---|"]
            lines += [f"| {m} | {len(h)} | " + ", ".join(f"{100 * e['dev_accuracy']:.1f}" for e in h)
                      + " | " + ", ".join(f"{e['seconds']:.0f}" for e in h) + " |" for m, h in partial]

    doc = REPO / "docs" / "documents.md"
    text = doc.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(doc, head + START + "\n" + "\n".join(lines) + "\n" + END + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
