#!/usr/bin/env bash
# espnet_pruning stage script: multi-task UniverSLU (Whisper + task prompts) with ESPnet.
#
# Stages (run with --stage N --stop_stage M; each skips work that is already done):
#   1  data preparation           local/data.sh → data/<set>/ (wav.scp text prompt utt2category …)
#   2  data validation            utils/validate_data_dir.sh + audio checks
#   3  format / dump              scripts/audio/format_wav_scp.sh → dump/raw/<set>/
#   4  token list                 Whisper vocabulary + task/label tokens → token_list/tokens.txt
#   5  statistics                 shape files for batching (uslu_train --collect_stats true)
#   6  dense training             ESPnet Trainer, resumes after a kill
#   7  decoding                   every test set with its task's prompt
#   8  scoring                    per task: accuracy / macro-F1 / SLU-F1 / WER (sclite)
#   9  results                    RESULTS.md + exp/<name>/results.json
set -euo pipefail

log() { local fname=${BASH_SOURCE[1]##*/}; echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"; }
min() { local a b; a=$1; for b in "$@"; do [ "${b}" -le "${a}" ] && a="${b}"; done; echo "${a}"; }
SECONDS=0

# General
stage=1
stop_stage=9
nj=4                  # parallel jobs of data formatting
inference_nj=4        # parallel decoding jobs per test set
ngpu=0                # GPUs for training (0: CPU)
train_threads=1       # CPU threads of a training job (path.sh sets 1 for every other job)
num_nodes=1
gpu_inference=false
python=python3
dumpdir=dump
expdir=exp
# Data
train_set=train
valid_set=valid
test_sets=""          # one task per test set (its utt2category decides the task)
local_data_opts=""
task_specifiers=""    # YAML extending the built-in tasks (optional)
audio_format=wav
fs=16k
# Training
train_config=conf/train_uslu.yaml
train_args=""
tag=""
# Decoding
decode_config=conf/decode.yaml   # conf/decode_<task>.yaml overrides it for that task
inference_model=valid.acc.best.pth
inference_args=""

help_message="Usage: $0 --train_set <set> --valid_set <set> --test_sets '<set> …' [options]
  --stage/--stop_stage  stages to run (default ${stage}..${stop_stage})
  --ngpu N              GPUs for training; --num_nodes M for several machines
  --train_config FILE   training YAML (default ${train_config})
  --decode_config FILE  decoding YAML (conf/decode_<task>.yaml overrides per task)
  --inference_model F   checkpoint of the experiment to decode (default ${inference_model})"

log "$0 $*"
. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

[ -n "${test_sets}" ] || { log "${help_message}"; log "ERROR: --test_sets is required"; exit 1; }
spec_opt=""; [ -n "${task_specifiers}" ] && spec_opt="--task_specifiers ${task_specifiers}"
token_list="${dumpdir}/token_list/tokens.txt"
stats_dir="${expdir}/uslu_stats"
if [ -z "${tag}" ]; then tag=$(basename "${train_config}" .yaml); fi
uslu_exp="${expdir}/uslu_${tag}"
data_sets="${train_set} ${valid_set} ${test_sets}"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
    local/data.sh ${local_data_opts}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: validating data/{${data_sets// /,}}"
    _opts=""
    for dset in ${data_sets}; do
        utils/validate_data_dir.sh --no-feats --non-print data/"${dset}"
        _opts+=" --data_dir data/${dset}"
    done
    ${python} -m espnet_pruning.bin.check_data ${_opts} ${spec_opt}
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: format audio into ${dumpdir}/raw/"
    for dset in ${data_sets}; do
        out="${dumpdir}/raw/${dset}"
        if [ -f "${out}/.done" ]; then log "  ${out} done, skipped"; continue; fi
        rm -rf "${out}"
        utils/copy_data_dir.sh --validate_opts --non-print data/"${dset}" "${out}"
        # copy_data_dir.sh keeps Kaldi files only; prompts and tasks are ours.
        cp data/"${dset}"/{prompt,utt2category} "${out}/"
        rm -f "${out}"/{wav.scp,reco2file_and_channel,utt2num_samples}
        scripts/audio/format_wav_scp.sh --nj "${nj}" --cmd "${train_cmd}" \
            --audio-format "${audio_format}" --fs "${fs}" \
            data/"${dset}"/wav.scp "${out}"
        echo raw > "${out}/feats_type"
        utils/fix_data_dir.sh --utt_extra_files "prompt utt2category" "${out}"
        touch "${out}/.done"
    done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    if [ -f "${token_list}" ]; then
        log "Stage 4: ${token_list} exists, skipped"
    else
        # Labels of every set: the label inventory is the task's, and a valid/test label
        # missing from the token list would be split into BPE pieces.
        log "Stage 4: token list from the labels of ${dumpdir}/raw/{${data_sets// /,}}"
        _opts=""
        for dset in ${data_sets}; do _opts+=" --data_dir ${dumpdir}/raw/${dset}"; done
        ${python} -m espnet_pruning.bin.uslu_token_list ${spec_opt} ${_opts} --output "${token_list}"
    fi
fi

# Options common to statistics and training.
data_opts() {  # $1: train|valid, $2: data set
    local d="${dumpdir}/raw/$2"
    echo "--$1_data_path_and_name_and_type ${d}/wav.scp,speech,sound" \
         "--$1_data_path_and_name_and_type ${d}/text,text,text" \
         "--$1_data_path_and_name_and_type ${d}/prompt,prompt,text"
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    if [ -f "${stats_dir}/.done" ]; then
        log "Stage 5: ${stats_dir} done, skipped"
    else
        log "Stage 5: collect statistics into ${stats_dir}"
        mkdir -p "${stats_dir}"
        ${train_cmd} "${stats_dir}/stats.log" \
            ${python} -m espnet_pruning.bin.uslu_train --collect_stats true \
                --config "${train_config}" --token_list "${token_list}" ${spec_opt} \
                --use_preprocessor true --ngpu 0 --num_workers 0 \
                $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
                --train_shape_file "${dumpdir}/raw/${train_set}/utt2category" \
                --valid_shape_file "${dumpdir}/raw/${valid_set}/utt2category" \
                --batch_type unsorted --output_dir "${stats_dir}"
        touch "${stats_dir}/.done"
    fi
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    if [ -f "${uslu_exp}/.done" ]; then
        log "Stage 6: ${uslu_exp} done, skipped"
    else
        log "Stage 6: training ${uslu_exp} (log: ${uslu_exp}/train.log; resumes after a kill)"
        mkdir -p "${uslu_exp}"
        OMP_NUM_THREADS=${train_threads} ${python} -m espnet2.bin.launch \
            --cmd "${cuda_cmd} --name uslu_${tag}" \
            --log "${uslu_exp}/train.log" \
            --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
            --init_file_prefix "${uslu_exp}/.dist_init_" \
            --multiprocessing_distributed true -- \
            ${python} -m espnet_pruning.bin.uslu_train \
                --config "${train_config}" --token_list "${token_list}" ${spec_opt} \
                --use_preprocessor true --resume true \
                $(data_opts train "${train_set}") $(data_opts valid "${valid_set}") \
                --train_shape_file "${stats_dir}/train/speech_shape" \
                --valid_shape_file "${stats_dir}/valid/speech_shape" \
                --output_dir "${uslu_exp}" ${train_args}
        touch "${uslu_exp}/.done"
    fi
fi

task_of_set() { cut -d' ' -f2 "${dumpdir}/raw/$1/utt2category" | sort -u; }

check_single_task() {  # a test set must hold one task
    local tasks; tasks=$(task_of_set "$1")
    [ "$(echo "${tasks}" | wc -l)" -eq 1 ] || { log "ERROR: ${dumpdir}/raw/$1/utt2category has several tasks: ${tasks//$'\n'/ }"; exit 1; }
    echo "${tasks}"
}

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: decoding ${test_sets} with ${uslu_exp}/${inference_model}"
    _ngpu=0; _cmd="${decode_cmd}"
    if ${gpu_inference}; then _ngpu=1; _cmd="${cuda_cmd}"; fi
    for dset in ${test_sets}; do
        task=$(check_single_task "${dset}")
        dir="${uslu_exp}/decode_${dset}"
        if [ -f "${dir}/.done" ]; then log "  ${dir} done, skipped"; continue; fi
        conf="${decode_config}"; [ -f "conf/decode_${task}.yaml" ] && conf="conf/decode_${task}.yaml"
        _nj=$(min "${inference_nj}" "$(wc -l < "${dumpdir}/raw/${dset}/wav.scp")")
        mkdir -p "${dir}/logdir"
        key_files=""
        for n in $(seq "${_nj}"); do key_files+=" ${dir}/logdir/keys.${n}.scp"; done
        utils/split_scp.pl "${dumpdir}/raw/${dset}/wav.scp" ${key_files}
        log "  ${dset} (task ${task}, ${conf}, ${_nj} jobs)"
        ${_cmd} JOB=1:"${_nj}" "${dir}/logdir/decode.JOB.log" \
            ${python} -m espnet_pruning.bin.uslu_inference \
                --config "${conf}" --task "${task}" --ngpu "${_ngpu}" \
                --train_config "${uslu_exp}/config.yaml" \
                --model_file "${uslu_exp}/${inference_model}" \
                --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
                --key_file "${dir}/logdir/keys.JOB.scp" \
                --output_dir "${dir}/logdir/output.JOB" ${inference_args}
        mkdir -p "${dir}/1best_recog"
        for f in text token token_int score; do
            for n in $(seq "${_nj}"); do cat "${dir}/logdir/output.${n}/1best_recog/${f}"; done \
                | LC_ALL=C sort -k1,1 > "${dir}/1best_recog/${f}"
        done
        touch "${dir}/.done"
    done
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: scoring"
    for dset in ${test_sets}; do
        task=$(check_single_task "${dset}")
        dir="${uslu_exp}/decode_${dset}"
        metric=$(${python} -m espnet_pruning.bin.task_info ${spec_opt} --task "${task}" --field metric)
        ${python} -m espnet_pruning.bin.uslu_score --metric "${metric}" \
            --ref "${dumpdir}/raw/${dset}/text" --hyp "${dir}/1best_recog/text" \
            --out_dir "${dir}/score"
    done
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: results of ${uslu_exp}"
    sets_opt=""
    for dset in ${test_sets}; do sets_opt+=" --test_set ${dset}:$(check_single_task "${dset}")"; done
    ${python} -m espnet_pruning.bin.uslu_results --exp "${uslu_exp}" ${sets_opt} \
        --json "${uslu_exp}/results.json" --markdown RESULTS.md
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
