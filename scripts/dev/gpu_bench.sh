#!/usr/bin/env bash
# Runs the GPU measurements of docs/speed.md and docs/kim2014.md on a device machine.
# The default mode, about 9 minutes on one H100:
#   1. all folds as one batched model against one fold after another (scripts/bench_fold_batched.py);
#   2. the Kim (2014) batch on one GPU: every CV recipe's CNN folds as one batched model
#      (--fold-batched), the other runs in parallel workers; finished runs are kept in
#      results.jsonl, so the batch resumes from them elsewhere;
#   3. one epoch of SST-1 CNN-rand trained on phrases, to time the phrase-level runs.
# The MiniLM rows need their vectors, which cannot travel in the same call as gensim's wheel
# (the device tool carries at most 64 MiB): `python scripts/dev/trim_minilm.py $DATA/pkgs` makes a
# 47 MB copy of the embedding table, and a second call with MINILM=1 runs those rows alone
# (carrying only the datasets, dill and multiprocess wheels). Every stage has its own time cap.
#   DATA=<dir with kim2014/ and sst/> OUT=<results dir> bash scripts/dev/gpu_bench.sh
#   DATA=<same, with pkgs/> OUT=<results dir> MINILM=1 bash scripts/dev/gpu_bench.sh
# CUDA graphs (train.cuda_graphs; textcnn/core/cuda_graphs.py):
#   GRAPHS_CHECK=1  the CUDA graph tests, one SST-1 phrase epoch without and with graphs, and
#                   scripts/bench_text.py on CUDA without and with graphs (about 4 minutes);
#   FULL=1          the graph tests, then the whole Kim batch but the MiniLM rows (SST phrase runs
#                   included) as one `textcnn batch` with graphs on; its wall time plus the
#                   FULL=1 MINILM=1 call's is the whole Table 2 on one GPU (that call runs the
#                   MiniLM rows, SST phrases included; GRAPHS=false if the graph tests failed).
#                   Each part stops at 290 s (under 5 minutes for one device call, and the
#                   10-minute goal for both); a stopped batch keeps its finished runs.
# A CPU smoke run of the same script (seconds per stage, tiny models):
#   DATA=../shared/data OUT=/tmp/gpu-smoke DEVICE=cpu SMOKE=1 bash scripts/dev/gpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
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
  # with FULL=1 also the SST phrase rows, trained with CUDA graphs (GRAPHS=false turns them off)
  RECIPES=(recipes/kim2014/{mr,subj,trec}.yaml)
  LIMIT=270 GRAPHS_ON=false
  if [ -n "${FULL:-}" ]; then RECIPES+=(recipes/kim2014/{sst1,sst2}.yaml) LIMIT=290 GRAPHS_ON=${GRAPHS:-true}; fi
  rm -rf /tmp/kim-minilm
  timeout --signal=INT "${BATCH_SECONDS:-$LIMIT}" $PY -m textcnn.cli batch \
    "${RECIPES[@]}" --out /tmp/kim-minilm --jobs "${JOBS:-9}" --fold-batched \
    --only '*minilm*' --set train.device="$DEVICE" --set train.progress=false \
    --set train.cuda_graphs="$GRAPHS_ON" "${TINY[@]}" 2>&1 \
    | tr '\r' '\n' | grep -v '^batch:'
  echo "minilm batch wall $(( $(now) - start )) s"
  cp /tmp/kim-minilm/results.jsonl "$OUT/minilm_results.jsonl"
  exit 0
fi
[ "$DEVICE" = cuda ] && nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

# pytest travels as wheels with the others (pytest, pluggy, iniconfig, pygments)
graph_tests() {  # fails when a test fails: graph and eager training must agree before graphs are used
  $PY -m pytest -q -p no:cacheprovider tests/core/test_cuda_graphs.py tests/core/test_engine.py \
    > /tmp/graph-tests.log 2>&1
  local rc=$?
  tail -4 /tmp/graph-tests.log
  return $rc
}
if [ -n "${GRAPHS_CHECK:-}" ]; then
  graph_tests
  for graphs in false true; do
    t0=$(now)
    timeout --signal=INT "${SST_SECONDS:-80}" $PY -m textcnn.cli batch recipes/kim2014/sst1.yaml \
      --out "/tmp/sst1-epoch-graphs-$graphs" --only sst1/rand --set train.epochs=1 \
      --set train.device="$DEVICE" --set train.progress=false --set train.cuda_graphs=$graphs \
      "${TINY[@]}" 2>&1 | tr '\r' '\n' | grep -E 'done|failed|Warning'
    cp "/tmp/sst1-epoch-graphs-$graphs/results.jsonl" "$OUT/sst1_phrase_epoch_graphs_$graphs.jsonl" 2>/dev/null
    echo "one SST-1 phrase epoch, cuda_graphs=$graphs: wall $(( $(now) - t0 )) s"
  done
  EPOCHS=25; [ -n "${SMOKE:-}" ] && EPOCHS=1
  for flag in "" --cuda-graphs; do
    timeout "${BENCH_SECONDS:-100}" $PY scripts/bench_text.py --device "$DEVICE" --threads 4 \
      --epochs $EPOCHS $flag --out "$OUT/bench_text_cuda${flag:+_graphs}" | tail -11 \
      || echo "BENCH STOPPED (rc $?)"
  done
  echo "total $(( $(now) - start )) s"
  exit 0
fi
if [ -n "${FULL:-}" ]; then
  GRAPHS=true
  graph_tests || { GRAPHS=false; echo "graph tests failed: the batch runs without CUDA graphs"; }
  rm -rf /tmp/kim-full /tmp/kim-seeds  # a timed run starts empty (the batch would resume)
  batch_start=$(now)
  R=recipes/kim2014
  FULL_ARGS=(--fold-batched --set train.device="$DEVICE" --set train.progress=false
             --set train.cuda_graphs=$GRAPHS "${TINY[@]}")
  # the protocol of scripts/run_kim2014.sh: every run of seed 0, and CNN-rand on SST-1 and TREC
  # with seeds 1 and 2 beside it (a second batch at the same time, into its own folder)
  timeout --signal=INT "${BATCH_SECONDS:-290}" $PY -m textcnn.cli batch \
    $R/{sst1,sst2,trec,mr,subj,sst1-sentences,sst2-sentences}.yaml --out /tmp/kim-full \
    --jobs "${JOBS:-10}" --only '*/rand*' --only '*word2vec*' --only '*/tfidf*' --only '*/nbsvm*' \
    "${FULL_ARGS[@]}" > /tmp/kim-full.log 2>&1 &
  timeout --signal=INT "${BATCH_SECONDS:-290}" $PY -m textcnn.cli batch $R/sst1.yaml $R/trec.yaml \
    --out /tmp/kim-seeds --jobs 4 --only 'sst1/rand*' --only 'trec/rand*' --seeds 1,2 \
    "${FULL_ARGS[@]}" > /tmp/kim-seeds.log 2>&1 &
  wait
  cat /tmp/kim-full.log /tmp/kim-seeds.log | tr '\r' '\n' | grep -v '^batch:'
  echo "whole Kim batch but MiniLM, cuda_graphs=$GRAPHS: wall $(( $(now) - batch_start )) s"
  cat /tmp/kim-full/results.jsonl /tmp/kim-seeds/results.jsonl > "$OUT/full_results.jsonl" 2>/dev/null
  exit 0
fi

timeout "${BENCH_SECONDS:-150}" $PY scripts/bench_fold_batched.py --device "$DEVICE" --threads 4 \
  "${BENCH[@]}" --out "$OUT/bench_fold_batched_cuda" || echo "BENCH STOPPED (rc $?)"
echo "stage 1 (fold-batched benchmark): $(( $(now) - start )) s"

batch_start=$(now)
timeout --signal=INT "${BATCH_SECONDS:-300}" $PY -m textcnn.cli batch \
  recipes/kim2014/{mr,subj,trec,sst1-sentences,sst2-sentences}.yaml --out /tmp/kim-gpu \
  --jobs "${JOBS:-8}" --fold-batched --only '*/rand*' --only '*word2vec*' --only '*/tfidf*' \
  --only '*/nbsvm*' --set train.device="$DEVICE" --set train.progress=false "${TINY[@]}" 2>&1 \
  | tr '\r' '\n' | grep -v '^batch:'
echo "stage 2 (Kim batch without MiniLM and SST phrases): wall $(( $(now) - batch_start )) s"
$PY -c "
from pathlib import Path
from textcnn.batch_runner import read_results, write_tables
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
