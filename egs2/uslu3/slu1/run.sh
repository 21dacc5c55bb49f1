#!/usr/bin/env bash
# UniverSLU with task-specific subnetworks, three tasks (paper §4: Table 1, Figure 2):
# ER (IEMOCAP), IC (SLURP), ASR (LibriSpeech). Stages: ../../TEMPLATE/slu1/slu.sh
# (./run.sh --stage N --stop_stage M). Before a first run: set db.sh, put Whisper medium at
# downloads/whisper/medium.pt (conf/train_uslu.yaml) and run local/check_corpora.sh.
# Results: exp/RESULTS.md with its figures in exp/figures/ (stage 21); a run writes only the
# git-ignored data/, dump/ and exp/.
set -euo pipefail

train_set=train     # the three tasks, IEMOCAP ×10 (local/data.sh)
valid_set=valid
test_sets="test_er_iemocap test_ic_slurp test_asr_librispeech"
# Continual learning (§4.1, Figure 2): LibriSpeech 360 h for ASR, SLURP real + synthetic for IC.
cl_runs="asr:asr_librispeech:train_cl_asr:valid_cl_asr ic:ic_slurp:train_cl_ic_mix:valid_cl_ic"

# Pruning and continual-learning settings are slu.sh's defaults (the paper's: p = 0.2,
# Q = 2 and 5, global magnitude) and conf/find_masks.yaml, conf/train_masked.yaml,
# conf/train_continual.yaml.
./slu.sh \
    --nj 16 --inference_nj 8 --ngpu 1 --gpu_inference true \
    --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
    --cl_runs "${cl_runs}" \
    --train_config conf/train_uslu.yaml --decode_config conf/decode.yaml "$@"
