#!/usr/bin/env bash
# Mini UniverSLU: the seven tasks of the paper on a generated spoken corpus, end to end on
# a CPU. Stages: see ../../TEMPLATE/slu1/slu.sh (./run.sh --stage N --stop_stage M).
#
#   ./run.sh                     a tiny randomly initialised Whisper (minutes; README's main job):
#                                results in exp/RESULTS.md and exp/figures/
#   ./run.sh --pretrained base   OpenAI's Whisper base (make -C ../../../tools whisper-base first):
#                                everything in exp/pretrained_base/ (RESULTS.md, figures/)
# Every other option goes to slu.sh. A run writes only downloads/ (the generated corpus), data/,
# dump/ and exp/, all git-ignored: the committed RESULTS.md and figures/ here are copies of the
# tiny run's exp/RESULTS.md and exp/figures/, made by hand when its results change.
set -euo pipefail

run_command="cd egs2/mini_uslu/slu1 && ./run.sh $*"   # recorded in RESULTS
pretrained=none
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --pretrained) pretrained="${2:-}"; shift 2 || { echo "ERROR: --pretrained needs a value" >&2; exit 1; } ;;
        *) args+=("$1"); shift ;;
    esac
done

train_set=train
valid_set=valid
# Continual learning (§4.1): new ASR data, and new IC data mixed with the old.
cl_runs="asr:asr_librispeech:train_cl_asr:valid_cl_asr ic:ic_slurp:train_cl_ic_mix:valid_cl_ic_mix"
test_sets="test_er_iemocap test_ic_slurp test_asr_librispeech test_ic_fsc test_ic_snips test_ner_slurp test_scr_speechcommands"
prune_levels="2 5"
prune_baselines="single_task task_agnostic"
cl_systems="masked dense dense_enc_linear"

case "${pretrained}" in
    none)
        # Pruning: Q = 2 and 5 rounds of p = 0.2 as in the paper, but layer-wise: on this
        # randomly initialised tiny model the N(0, 1) token embedding dwarfs every other
        # weight, so a global threshold would prune the encoder away in the first rounds.
        model_opts=(--prune_strategy layerwise_magnitude --train_config conf/train_uslu.yaml)
        ;;
    base)
        # Pretrained Whisper base, pruned globally over encoder and decoder as in the paper.
        # Same corpus and token list as the tiny run; its own exp dir (results and figures in it).
        ckpt=../../../tools/downloads/whisper/base.pt
        if [ ! -s "${ckpt}" ]; then
            echo "ERROR: ${ckpt} not found; run: make -C ../../../tools whisper-base" >&2
            exit 1
        fi
        # Sized for the 2-core CPU (goal: all stages <= 90 min). A training step of base on
        # a batch of 16 unpadded utterances costs about 3.6 s there; the run keeps what its
        # goals need: Q = 2 multi-task pruning against dense, its overlap, and continual
        # learning of the new ASR data, masked vs dense (53 min in all, RESULTS_pretrained_base.md).
        prune_levels="2"
        prune_baselines=""
        cl_runs="asr:asr_librispeech:train_cl_asr:valid_cl_asr"
        cl_systems="masked dense"
        c=conf/pretrained_base
        model_opts=(--prune_strategy global_magnitude --train_config "${c}/train_uslu.yaml"
            --find_masks_config "${c}/find_masks.yaml" --masked_config "${c}/train_masked.yaml"
            --cl_config "${c}/train_continual.yaml" --expdir exp/pretrained_base
            --results_notes local/RESULTS_notes_pretrained_base.md)
        ;;
    *) echo "ERROR: --pretrained ${pretrained}: use none or base" >&2; exit 1 ;;
esac

export USLU_RUN_COMMAND="${run_command% }"
./slu.sh \
    --nj 2 --inference_nj 2 --ngpu 0 --train_threads 2 \
    --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
    --cl_runs "${cl_runs}" --cl_systems "${cl_systems}" --prune_levels "${prune_levels}" \
    --prune_baselines "${prune_baselines}" "${model_opts[@]}" \
    --decode_config conf/decode.yaml --inference_model valid.acc.best.pth "${args[@]}"
