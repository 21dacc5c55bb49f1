#!/usr/bin/env bash
# UniverSLU with task-specific subnetworks, seven tasks (paper §4.2: Table 2, Figure 3):
# ER (IEMOCAP), IC (SLURP), ASR (LibriSpeech), IC (Fluent Speech Commands), IC (SNIPS
# SmartLights), NER (SLURP), SCR (Speech Commands v0.02). Stages: ../../TEMPLATE/slu1/slu.sh
# (./run.sh --stage N --stop_stage M). Before a first run: set db.sh, put Whisper medium at
# downloads/whisper/medium.pt (conf/train_uslu.yaml) and run local/check_corpora.sh.
# Results: exp/RESULTS.md with its figures in exp/figures/ (stage 21); a run writes only the
# git-ignored data/, dump/ and exp/.
set -euo pipefail

train_set=train     # all seven tasks, IEMOCAP ×10 (local/data.sh)
valid_set=valid
test_sets="test_er_iemocap test_ic_slurp test_asr_librispeech test_ic_fsc test_ic_snips test_ner_slurp test_scr_speechcommands"
# Continual learning (§4.1, Figure 2; the paper runs it on the 3-task model, egs2/uslu3):
# LibriSpeech 360 h for ASR, SLURP real + synthetic for IC; here every one of the seven tasks
# is evaluated along the curves. --cl_runs "" skips continual learning (stages 17-20), and
# --local_data_opts "--continual false" then skips the continual-learning data.
cl_runs="asr:asr_librispeech:train_cl_asr:valid_cl_asr ic:ic_slurp:train_cl_ic_mix:valid_cl_ic"

# Pruning settings are slu.sh's defaults (the paper's: p = 0.2, Q = 2 and 5, global
# magnitude) and conf/find_masks.yaml, conf/train_masked.yaml. Figure 3 (mask overlap) is
# drawn by the pruning stages.
./slu.sh \
    --nj 16 --inference_nj 8 --ngpu 1 --gpu_inference true \
    --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
    --cl_runs "${cl_runs}" \
    --train_config conf/train_uslu.yaml --decode_config conf/decode.yaml "$@"
