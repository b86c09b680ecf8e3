"""Draw a batch's results as the chart `textcnn batch` writes beside table.md (a panel per
dataset, mean ± std per model, the paper's figure as a red diamond), from any results.jsonl.

    python scripts/plot_table.py docs/results/kim2014/results.jsonl docs/img/kim2014-table2.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from textcnn.batch_runner import read_results
from textcnn.core.errors import TextCNNError
from textcnn.tasks import TASKS
from textcnn.tasks.base import plot_chart


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a batch's results.jsonl")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--task", default="text", choices=sorted(TASKS), help="whose rows to draw [text]")
    parser.add_argument("--title", help="the chart's title [the task's]")
    args = parser.parse_args(argv)
    rows = [row for row in read_results(args.results) if row.get("task", "text") == args.task]
    table = TASKS[args.task].table(rows)
    if not table.chart:
        raise TextCNNError(f"{args.results}: expected finished {args.task} runs with test figures, got none")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = plot_chart(table, args.out, title=args.title or TASKS[args.task].title)
    print(path)
    return path


if __name__ == "__main__":
    main()
