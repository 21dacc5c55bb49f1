#!/usr/bin/env bash
# Generate the embedded 7-task spoken corpus (espeak-ng) into data/ (Kaldi dirs) and
# ${MINI_USLU}/wav/. Resumes after a kill; a finished corpus with the same options is skipped.
set -euo pipefail
. ./db.sh
. ./path.sh
seed=0
opts=""
. utils/parse_options.sh
python3 -m espnet_pruning.corpora.synthetic --out_dir data --wav_dir "${MINI_USLU}/wav" \
    --seed "${seed}" ${opts}
