#!/usr/bin/env bash
# The Kim (2014) Table 2 batch as committed under docs/results/kim2014/ (resumable: finished runs
# in results.jsonl are skipped, so the table can be completed over several runs).
#   TEXTCNN_DATA_DIR=../shared/data/kim2014 bash scripts/run_kim2014.sh [--jobs 2]
# CR and MPQA are left out here because their files are not in ../shared; with them in
# $TEXTCNN_DATA_DIR (textcnn data fetch kim2014), add recipes/kim2014/{cr,mpqa}.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
B=(.venv/bin/textcnn batch --out docs/results/kim2014 --set train.progress=false --set train.threads=1 "$@")
R=recipes/kim2014
# every fold of CNN-rand and both baselines
"${B[@]}" $R/mr.yaml $R/subj.yaml $R/trec.yaml $R/sst1.yaml $R/sst2.yaml \
  --only '*/rand*' --only '*/nbsvm*' --only '*/tfidf-logreg*'
# the pretrained-vector variants: the first three folds of the CV datasets, the given splits
# (folds 3-9 came from one GPU: scripts/dev/gpu_bench.sh, --fold-batched; without a GPU, drop
# --folds 3 here to run them on the CPU)
"${B[@]}" $R/mr.yaml $R/subj.yaml $R/trec.yaml --folds 3 --only '*word2vec*' --only '*minilm*'
# SST trained on phrases with every pretrained variant; the sentence-only rows beside them
"${B[@]}" $R/sst2.yaml $R/sst1.yaml --only '*word2vec' --only '*minilm'
"${B[@]}" $R/sst1-sentences.yaml $R/sst2-sentences.yaml
# CNN-rand on the given splits with two more training seeds: their rows show mean +- std too
"${B[@]}" $R/sst1.yaml $R/trec.yaml --only 'sst1/rand*' --only 'trec/rand*' --seeds 0,1,2
