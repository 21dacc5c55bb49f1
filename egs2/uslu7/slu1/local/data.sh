#!/usr/bin/env bash
# Data of the real corpora (paths in db.sh) for multi-task UniverSLU, into data/:
#   data/{train,valid,test}_<task>    per task (espnet_pruning.corpora.<corpus>)
#   data/train, data/valid            all tasks combined; IEMOCAP listed 10 times in train
#                                     (paper §4: "IEMOCAP was upsampled by 10 times")
#   data/train_cl_asr, valid_cl_asr   LibriSpeech train-clean-360, continual learning (§4.1)
#   data/train_cl_ic_mix, valid_cl_ic SLURP real + synthetic, continual learning (§4.1)
# Shared by egs2/uslu3 (--tasks of Table 1) and egs2/uslu7 (all seven, Table 2).
# A corpus whose preparation finished with the same command (data/.done_<corpus>) is
# skipped; its data dirs are replaced atomically, so a failed or killed run reruns cleanly.
#
# Options:
#   --tasks "t1 t2 …"          tasks to prepare (default: the seven of §4.2)
#   --dry_run true             check db.sh paths, annotation files and the Whisper
#                              checkpoint, print what would run, write nothing
#                              (local/check_corpora.sh)
#   --skip_audio_check true    only check that audio files exist (no header check)
#   --continual false          no continual-learning sets
#   --iemocap_upsample N       repeats of IEMOCAP in data/train (default 10)
#   --<corpus>_opts "..."      more options of one corpus module, e.g.
#                              --iemocap_opts --merge_excited, --snips_opts "--n_valid 100"
set -euo pipefail
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*"; }

tasks="er_iemocap ic_slurp asr_librispeech ic_fsc ic_snips ner_slurp scr_speechcommands"
dry_run=false
skip_audio_check=false
continual=true
iemocap_upsample=10
silence_dir=dump/speechcommands_silence   # Speech Commands _silence_ clips (written once)
train_config=conf/train_uslu.yaml         # its whisper_checkpoint is checked by --dry_run
iemocap_opts=""; slurp_opts=""; librispeech_opts=""; fsc_opts=""; snips_opts=""
speechcommands_opts=""

. ./db.sh
. ./path.sh
. utils/parse_options.sh

has() { [[ " ${tasks} " == *" $1 "* ]]; }
mode=check   # check: every corpus's paths and files (fast, --dry_run of the module); run
failed=""
declare -A sets_of   # corpus -> the data dirs its module writes (from its --dry_run)

# One corpus module: $1 module, $2 its db.sh variable, the rest its options.
prepare() {
    local corpus=$1 var=$2; shift 2
    local root=${!var:-} extra_var="${corpus}_opts"
    if [ -z "${root}" ]; then
        log "ERROR: set ${var} in db.sh (the ${corpus} corpus root)"
        failed+=" ${corpus}"; return 0
    fi
    local cmd=(python3 -m "espnet_pruning.corpora.${corpus}" --root "${root}" --out_dir data
               "$@" ${!extra_var})
    [ "${skip_audio_check}" = true ] && cmd+=(--skip_audio_check)
    if [ "${mode}" = check ]; then
        local plan
        if plan=$("${cmd[@]}" --dry_run); then
            echo "${plan}"
            sets_of[${corpus}]=${plan#*would write }
            [ "${dry_run}" = true ] && echo "  command: ${cmd[*]}"
        else
            failed+=" ${corpus}"
        fi
        return 0
    fi
    local marker="data/.done_${corpus}" line d done=false
    line=$(printf '%q ' "${cmd[@]}")
    if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "${line}" ]; then
        done=true
        for d in ${sets_of[${corpus}]}; do [ -d "${d}" ] || done=false; done
    fi
    if [ "${done}" = true ]; then
        log "${corpus}: prepared with the same command, skipped (rm ${marker} to redo)"
        return 0
    fi
    rm -f "${marker}"
    log "${corpus}: ${cmd[*]}"
    "${cmd[@]}"
    echo "${line}" > "${marker}"
}

# A multi-task set: $1 output set, the rest its sources (DIR or DIR:repeats).
combine() {
    local cmd=(python3 -m espnet_pruning.corpora.combine --out_dir "data/$1" "${@:2}")
    if [ "${mode}" = check ]; then
        [ "${dry_run}" = true ] && echo "  command: ${cmd[*]}"
        return 0
    fi
    log "data/$1: ${cmd[*]}"
    "${cmd[@]}"
}

all_steps() {
    has er_iemocap && prepare iemocap IEMOCAP
    local slurp_tasks="" t opts
    for t in ic_slurp ner_slurp; do has "${t}" && slurp_tasks+=" ${t}"; done
    if [ -n "${slurp_tasks}" ]; then
        opts=(--tasks ${slurp_tasks})
        # The synthetic subset is only the continual-learning data of IC (§4).
        { [ "${continual}" = true ] && has ic_slurp; } || opts+=(--skip_synthetic)
        prepare slurp SLURP "${opts[@]}"
    fi
    if has asr_librispeech; then
        opts=(); [ "${continual}" = true ] || opts+=(--cl_subsets)
        prepare librispeech LIBRISPEECH "${opts[@]}"
    fi
    has ic_fsc && prepare fsc FSC
    has ic_snips && prepare snips SNIPS
    if has scr_speechcommands; then
        opts=(--wav_dir "${silence_dir}")
        [ -n "${SPEECHCOMMANDS_TEST:-}" ] && opts+=(--test_root "${SPEECHCOMMANDS_TEST}")
        prepare speechcommands SPEECHCOMMANDS "${opts[@]}"
    fi
    # The multi-task sets: every task's train (IEMOCAP repeated) and valid sets.
    local train=() valid=() factor
    for t in ${tasks}; do
        factor=1; [ "${t}" = er_iemocap ] && factor=${iemocap_upsample}
        train+=("data/train_${t}:${factor}"); valid+=("data/valid_${t}")
    done
    combine train "${train[@]}"
    combine valid "${valid[@]}"
}

# First every corpus is checked (seconds), so that a wrong path fails before hours of work.
all_steps
ckpt=$(python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); \
print(c.get('encoder_conf', {}).get('whisper_checkpoint') or '')" "${train_config}")
if [ -n "${ckpt}" ] && [ ! -f "${ckpt}" ]; then
    # Needed from stage 5 on: an error for the check, a warning for data preparation.
    if [ "${dry_run}" = true ]; then
        log "ERROR: ${ckpt}: Whisper checkpoint of ${train_config} not found"
        failed+=" whisper_checkpoint"
    else
        log "WARNING: ${ckpt}: Whisper checkpoint of ${train_config} not found (needed for training)"
    fi
    # Whisper weights come in four forms; each becomes this openai-whisper checkpoint.
    _import="python -m espnet_pruning.bin.whisper_import"
    log "  Put an openai-whisper checkpoint there (mkdir -p $(dirname "${ckpt}")), or import one:"
    log "    CTranslate2 / faster-whisper folder:  ${_import} --from ct2 DIR --output ${ckpt}"
    log "    Hugging Face folder (openai/whisper-*): ${_import} --from hf DIR --output ${ckpt}"
    log "    ESPnet experiment (e.g. UniverSLU):    ${_import} --from espnet EXP/config.yaml" \
        "--model_file EXP/valid.acc.ave.pth --output ${ckpt} --token_list ${ckpt%.pt}_tokens.txt;" \
        "then ./run.sh --token_list ${ckpt%.pt}_tokens.txt (the model's own token order)"
fi
if [ -n "${failed}" ]; then
    log "ERROR: not ready:${failed} (see the messages above)"
    exit 1
fi
if [ "${dry_run}" = true ]; then
    log "dry run: every corpus is in place; nothing written"
    exit 0
fi
mode=run
all_steps
log "data/ ready"
