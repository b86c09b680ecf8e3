#!/usr/bin/env bash
# One prepared GPU measurement (issue 4): the text benchmark on CUDA with bf16 autocast, then the
# Kim (2014) batch on the available datasets with parallel workers, capped in time; finished runs
# are kept (results.jsonl) and the batch resumes from them elsewhere.
#   DATA=<dir with kim2014/ and sst/> OUT=<results dir> BATCH_SECONDS=330 bash scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TEXTCNN_DATA_DIR="$DATA/kim2014" TEXTCNN_SST_DIR="$DATA/sst" TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
start=$(date +%s)
$PY -m textcnn.cli train recipes/quickstart.yaml --device cuda --out /tmp/qs-cuda || echo "SMOKE FAILED"
$PY scripts/bench_text.py --device cuda --threads 4 --out "$OUT/bench_text_cuda"
echo "bench done after $(( $(date +%s) - start )) s"
batch_start=$(date +%s)
timeout --signal=INT "${BATCH_SECONDS:-330}" $PY -m textcnn.cli batch recipes/kim2014/mr.yaml \
  recipes/kim2014/subj.yaml recipes/kim2014/trec.yaml recipes/kim2014/sst1.yaml recipes/kim2014/sst2.yaml \
  recipes/kim2014/sst1-sentences.yaml recipes/kim2014/sst2-sentences.yaml \
  --out /tmp/kim-gpu --jobs "${JOBS:-12}" --only '*/rand*' --only '*/nbsvm*' --only '*/tfidf-logreg*' \
  --only '*word2vec*' --set train.device=cuda --set train.progress=false 2>&1 | tr '\r' '\n' | grep -v '^batch:'
echo "batch wall $(( $(date +%s) - batch_start )) s"
$PY -c "
from pathlib import Path
from textcnn.batch import read_results, write_tables
rows = read_results(Path('/tmp/kim-gpu/results.jsonl')); write_tables(rows, Path('/tmp/kim-gpu'))
print(len(rows), 'runs finished')"
cp /tmp/kim-gpu/results.jsonl /tmp/kim-gpu/table.md /tmp/kim-gpu/table.csv "$OUT/" 2>/dev/null
cat /tmp/kim-gpu/table.md
echo "total $(( $(date +%s) - start )) s"
