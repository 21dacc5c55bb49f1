#!/usr/bin/env bash
# Generate the embedded 7-task spoken corpus (espeak-ng) into data/ (Kaldi dirs) and
# ${MINI_USLU}/wav/. Resumes after a kill; a finished corpus with the same options is skipped.
# Options (utterances per task): --n_train 120 --n_valid 16 --n_test 30 --n_cl 120
set -euo pipefail
. ./db.sh
. ./path.sh
seed=0
n_train=120
n_valid=16
n_test=30
n_cl=120
. utils/parse_options.sh
python3 -m espnet_pruning.corpora.synthetic --out_dir data --wav_dir "${MINI_USLU}/wav" \
    --seed "${seed}" --n_train "${n_train}" --n_valid "${n_valid}" --n_test "${n_test}" \
    --n_cl "${n_cl}" --no_progress
