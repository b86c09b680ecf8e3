"""The ablation table of docs/text.md from the batch's results: test accuracy on MR folds 0-2
(mean ± std over the folds) per activation and pooling, with each fold's dev-selected epoch.

    textcnn batch recipes/kim2014/ablation.yaml --out runs/ablation --folds 3
    python scripts/ablation_table.py runs/ablation/results.jsonl --out docs/results/ablation \
        --doc docs/text.md

prints the table; with --out it also copies results.jsonl there and writes the batch's table.md,
table.csv and table.png beside it, and with --doc it replaces the table between the doc's
`<!-- ablation table -->` markers.
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from textcnn.batch_runner import read_results, write_tables
from textcnn.core.errors import TextCNNError
from textcnn.core.io import atomic_write_text

RUN = re.compile(r"ablation/(?P<activation>[^/]+)/(?P<pooling>[^/]+)/fold=(?P<fold>\d+)")
MARKER = "<!-- ablation table -->"


def table(rows: list[dict]) -> str:
    """Rows: activations; columns: poolings; a cell: 'mean ± std (n=folds; epochs e0/e1/e2)'."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        match = RUN.fullmatch(row["run"])
        if match and row.get("accuracy") is not None:
            cells.setdefault((match["activation"], match["pooling"]), []).append({**row, "fold": int(match["fold"])})
    activations = list(dict.fromkeys(a for a, _ in cells))
    poolings = list(dict.fromkeys(p for _, p in cells))
    lines = ["| activation \\ pooling | " + " | ".join(poolings) + " |", "|---" * (len(poolings) + 1) + "|"]
    for activation in activations:
        shown = []
        for pooling in poolings:
            runs = sorted(cells.get((activation, pooling), []), key=lambda r: r["fold"])
            if not runs:
                shown.append("–")
                continue
            accuracy = [100 * r["accuracy"] for r in runs]
            spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
            epochs = "/".join(str(r["best_epoch"]) for r in runs)
            shown.append(f"{statistics.fmean(accuracy):.1f} ± {spread:.1f} (n={len(runs)}; epochs {epochs})")
        lines.append(f"| {activation} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def splice(doc: str, text: str, *, name: str) -> str:
    """`doc` with the part between its two MARKER lines replaced by `text`."""
    parts = doc.split(MARKER)
    if len(parts) != 3:
        raise TextCNNError(f"{name}: expected two '{MARKER}' lines around the table, got {len(parts) - 1}")
    return f"{parts[0]}{MARKER}\n{text}\n{MARKER}{parts[2]}"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the ablation batch's results.jsonl")
    parser.add_argument("--out", type=Path, help="folder for results.jsonl, table.md/csv/png")
    parser.add_argument("--doc", type=Path, help="a Markdown file whose marked table to replace")
    args = parser.parse_args(argv)
    rows = read_results(args.results)
    text = table(rows)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        if args.results.resolve() != (args.out / "results.jsonl").resolve():
            atomic_write_text(args.out / "results.jsonl", args.results.read_text(encoding="utf-8"))
        write_tables(rows, args.out)
    if args.doc is not None:
        atomic_write_text(args.doc, splice(args.doc.read_text(encoding="utf-8"), text, name=str(args.doc)))
    print(text)
    return text


if __name__ == "__main__":
    main()
