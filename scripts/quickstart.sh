#!/usr/bin/env bash
# Set up .venv, train Kim's CNN-rand on the bundled sample data, and predict two sentences.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/textcnn train recipes/quickstart.yaml --out runs/quickstart
.venv/bin/textcnn predict runs/quickstart/model --top-k 2 \
  "the plot is clever and the cast is wonderful ." \
  "a tedious , lifeless film ; skip it ."
