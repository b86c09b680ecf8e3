#!/usr/bin/env bash
# Build the folders a GPU check carries to the device machine (all git-ignored, none committed):
#   .whl/       wheels the device's Python 3.12 lacks: gensim (+ smart_open), datasets (+ dill,
#               multiprocess), and pytest (+ pluggy, iniconfig, pygments) for the CUDA tests
#   .whl-lite/  the same without gensim, for the MiniLM call (the device tool carries 64 MiB)
#   .gpu-data/  kim2014/ and sst/ copied from ../shared/data, and pkgs/ with the trimmed MiniLM
#               embedding table (scripts/dev/trim_minilm.py)
#   bash scripts/dev/prepare_gpu_carry.sh
# On the device, before scripts/dev/gpu_bench.sh:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/data}
PY=${PY:-.venv/bin/python}
download() {
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 -d "$1" "${@:2}"
}
rm -rf .whl .whl-lite
download .whl gensim==4.4.0 smart_open datasets dill multiprocess pytest pluggy iniconfig pygments
mkdir -p .whl-lite
cp .whl/*.whl .whl-lite/ && rm .whl-lite/gensim-*.whl .whl-lite/smart_open-*.whl
mkdir -p .gpu-data
rm -rf .gpu-data/kim2014 .gpu-data/sst
cp -r "$SHARED/kim2014" "$SHARED/sst" .gpu-data/
[ -d .gpu-data/pkgs ] || $PY scripts/dev/trim_minilm.py .gpu-data/pkgs
du -sh .whl .whl-lite .gpu-data/*
