#!/usr/bin/env bash
# One prepared GPU measurement (issues 4 and 5), about 9 minutes on one H100:
#   1. the fold-batched moonshot against one fold after another (scripts/bench_fold_batched.py);
#   2. the Kim (2014) batch on one GPU: every CV recipe's CNN folds as one batched model
#      (--fold-batched), the other runs in parallel workers; finished runs are kept in
#      results.jsonl, so the batch resumes from them elsewhere;
#   3. one epoch of SST-1 CNN-rand trained on phrases, to time the phrase-level runs.
# The MiniLM rows need their vectors, which cannot travel in the same call as gensim's wheel
# (the device tool carries at most 64 MiB): `python scripts/trim_minilm.py $DATA/pkgs` makes a
# 47 MB copy of the embedding table, and a second call with MINILM=1 runs those rows alone
# (carrying only the datasets, dill and multiprocess wheels). Every stage has its own time cap.
#   DATA=<dir with kim2014/ and sst/> OUT=<results dir> bash scripts/gpu_bench.sh
#   DATA=<same, with pkgs/> OUT=<results dir> MINILM=1 bash scripts/gpu_bench.sh
# A CPU smoke run of the same script (seconds per stage, tiny models):
#   DATA=../shared/data OUT=/tmp/gpu-smoke DEVICE=cpu SMOKE=1 bash scripts/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TEXTCNN_DATA_DIR="$DATA/kim2014" TEXTCNN_SST_DIR="$DATA/sst" TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
BENCH=(--folds 10 --epochs 2)
TINY=()
if [ -n "${SMOKE:-}" ]; then
  BENCH=(--folds 2 --epochs 1 --max-sentences 300)
  TINY=(--folds 2 --set train.epochs=1 --set model.maps=4 --set model.embedding_dim=8
        --set embeddings.word2vec_epochs=1)
fi
now() { date +%s; }
start=$(now)
if [ -n "${MINILM:-}" ]; then
  export PYTHONPATH="$PYTHONPATH:$DATA/pkgs"
  timeout --signal=INT "${BATCH_SECONDS:-270}" $PY -m textcnn.cli batch \
    recipes/kim2014/{mr,subj,trec}.yaml --out /tmp/kim-minilm --jobs "${JOBS:-9}" --fold-batched \
    --only '*minilm*' --set train.device="$DEVICE" --set train.progress=false "${TINY[@]}" 2>&1 \
    | tr '\r' '\n' | grep -v '^batch:'
  echo "minilm batch wall $(( $(now) - start )) s"
  cp /tmp/kim-minilm/results.jsonl "$OUT/minilm_results.jsonl"
  exit 0
fi
[ "$DEVICE" = cuda ] && nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

timeout "${BENCH_SECONDS:-150}" $PY scripts/bench_fold_batched.py --device "$DEVICE" --threads 4 \
  "${BENCH[@]}" --out "$OUT/bench_fold_batched_cuda" || echo "BENCH STOPPED (rc $?)"
echo "stage 1 (moonshot benchmark): $(( $(now) - start )) s"

batch_start=$(now)
timeout --signal=INT "${BATCH_SECONDS:-300}" $PY -m textcnn.cli batch \
  recipes/kim2014/{mr,subj,trec,sst1-sentences,sst2-sentences}.yaml --out /tmp/kim-gpu \
  --jobs "${JOBS:-8}" --fold-batched --only '*/rand*' --only '*word2vec*' --only '*/tfidf*' \
  --only '*/nbsvm*' --set train.device="$DEVICE" --set train.progress=false "${TINY[@]}" 2>&1 \
  | tr '\r' '\n' | grep -v '^batch:'
echo "stage 2 (Kim batch without MiniLM and SST phrases): wall $(( $(now) - batch_start )) s"
$PY -c "
from pathlib import Path
from textcnn.batch import read_results, write_tables
rows = read_results(Path('/tmp/kim-gpu/results.jsonl')); write_tables(rows, Path('/tmp/kim-gpu'))
print(len(rows), 'runs finished')"
cp /tmp/kim-gpu/results.jsonl /tmp/kim-gpu/table.md /tmp/kim-gpu/table.csv "$OUT/" 2>/dev/null

sst_start=$(now)
timeout --signal=INT "${SST_SECONDS:-80}" $PY -m textcnn.cli batch recipes/kim2014/sst1.yaml \
  --out /tmp/sst1-epoch --only sst1/rand --set train.epochs=1 --set train.device="$DEVICE" \
  --set train.progress=false "${TINY[@]}" 2>&1 | tr '\r' '\n' | grep -E 'done|failed'
cp /tmp/sst1-epoch/results.jsonl "$OUT/sst1_phrases_one_epoch.jsonl" 2>/dev/null
echo "stage 3 (one SST-1 phrase epoch): wall $(( $(now) - sst_start )) s"
echo "total $(( $(now) - start )) s"
