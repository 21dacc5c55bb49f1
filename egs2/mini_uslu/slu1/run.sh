#!/usr/bin/env bash
# Mini UniverSLU: the seven tasks of the paper on a generated spoken corpus, end to end on
# a CPU in minutes. Stages: see ../../TEMPLATE/slu1/slu.sh (./run.sh --stage N --stop_stage M).
set -euo pipefail

train_set=train
valid_set=valid
# Continual learning (§4.1): new ASR data, and new IC data mixed with the old.
cl_runs="asr:asr_librispeech:train_cl_asr:valid_cl_asr ic:ic_slurp:train_cl_ic_mix:valid_cl_ic_mix"
test_sets="test_er_iemocap test_ic_slurp test_asr_librispeech test_ic_fsc test_ic_snips test_ner_slurp test_scr_speechcommands"

# Pruning: Q = 2 and 5 rounds of p = 0.2 as in the paper, but layer-wise: on this randomly
# initialised tiny model the N(0, 1) token embedding dwarfs every other weight, so a global
# threshold would prune the encoder away in the first rounds (real recipes: global).
export USLU_RUN_COMMAND="cd egs2/mini_uslu/slu1 && ./run.sh $*"
./slu.sh \
    --nj 2 --inference_nj 2 --ngpu 0 --train_threads 2 \
    --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
    --cl_runs "${cl_runs}" --prune_levels "2 5" --prune_strategy layerwise_magnitude \
    --train_config conf/train_uslu.yaml --decode_config conf/decode.yaml \
    --inference_model valid.acc.best.pth "$@"
