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
# Task-specific subnetworks (the paper's Algorithms 1 and 2, Table 1), from the dense model θ0:
#  10  find masks (Algorithm 1)   per pruning round, one job per task (the tasks are
#                                 independent): trained from θ0 under its mask, then pruned
#                                 by p; one job merges the round → exp/find_masks/<kind>/round<q>/
#  11  masked training (Alg. 2)   per level Q: multi-task under the masks, and the baselines
#                                 (single-task: one θ_t per task; task-agnostic: one mask),
#                                 each system and each single-task model its own job
#  12  decoding                   every system, each task with its own subnetwork
#  13  scoring                    as stage 8
#  14  Table 1                    RESULTS.md section + exp/pruning_table.{md,json}
# Continual learning (the paper's §4.1, Figure 2), for each --cl_runs entry (new data of one task):
#  15  continual training         one job per system; masked: only the task's subnetwork of each multi-task pruned
#                                 model; dense: all weights of θ0; dense_enc_linear: θ0's
#                                 encoder linear layers only → exp/continual_<run>/<system>/
#  16  forgetting curves          every checkpoint (each K steps) decoded on every test set
#  17  report                     before/after table, curves (CSV/JSON/PNG) in RESULTS.md
# Shipping:
#  18  pack                       each multi-task pruned system as one ESPnet zip (config, model,
#                                 mask set, task specifiers, RESULTS.md, figures; checksummed) →
#                                 exp/packed/uslu_multitask_q<Q>.zip; decode it with
#                                 Speech2Text.from_pretrained(zip, task=...)
set -euo pipefail
# Cluster: cmd_backend=slurm in cmd.sh sends every job below through ESPnet's utils/slurm.pl
# (conf/slurm.conf; --ngpu N becomes --gpu N there). Independent trainings (stages 10, 11,
# 15) are separate jobs, --task_nj of them at a time.

log() { local fname=${BASH_SOURCE[1]##*/}; echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"; }
min() { local a b; a=$1; for b in "$@"; do [ "${b}" -le "${a}" ] && a="${b}"; done; echo "${a}"; }
SECONDS=0

# General
stage=1
stop_stage=18
nj=4                  # parallel jobs of data formatting
inference_nj=4        # parallel decoding jobs per test set
inference_batch_size=8   # utterances per beam search when decoding (results equal batch 1)
ngpu=0                # GPUs for training (0: CPU)
train_threads=1       # CPU threads of a training job (path.sh sets 1 for every other job)
task_nj=""            # independent training jobs at once (stages 10, 11, 15); default: 1
                      # with run.pl (one after another), all with a cluster backend
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
score_missing=skip    # test utterances without a hypothesis: skip (SLURP's scorer) or empty
# Pruning (stages 10-14)
prune_levels="2 5"    # Q of each pruned model (paper: 2 and 5 rounds → 36 % and 67.2 % sparsity)
prune_fraction=0.2    # p, fraction of a mask's remaining weights pruned per round (paper: 0.2)
prune_strategy=global_magnitude   # paper: global magnitude over encoder and decoder
prune_seed=0          # task order of Algorithm 1
prune_baselines="single_task task_agnostic"   # Table 1 baselines to run besides multi-task
find_masks_config=conf/find_masks.yaml        # Algorithm 1 schedule (overlay on --train_config)
masked_config=conf/train_masked.yaml          # Algorithm 2 schedule (overlay on --train_config)
scope_config=""       # PruningScope YAML (default: all weights but positional embeddings)
masked_inference_model=valid.acc.best.pth
figures_dir=figures   # PNGs linked from RESULTS.md (beside it, outside exp/)
results_file=RESULTS.md   # the run's results page (stages 9, 14, 17)
results_notes=local/RESULTS_notes.md   # the recipe's description under its title (optional)
token_list=""         # a token list to use as is (an imported ESPnet experiment's); default: stage 4 writes one
# Continual learning (stages 15-17)
cl_runs=""            # "NAME:TASK:TRAIN_SET:VALID_SET …", e.g. "asr:asr_librispeech:train_cl_asr:valid_cl_asr"
cl_systems="masked dense dense_enc_linear"   # masked: one system per --prune_levels entry
cl_config=conf/train_continual.yaml          # overlay: lr, max_epoch, num_iters_per_epoch (= K)
cl_unmasked_update=freeze                    # biases/LayerNorm during masked continual training
cl_enc_linear_config=conf/continual_enc_linear.yaml  # overlay with update_only: the encoder's linear layers

help_message="Usage: $0 --train_set <set> --valid_set <set> --test_sets '<set> …' [options]
  --stage/--stop_stage  stages to run (default ${stage}..${stop_stage})
  --ngpu N              GPUs for training; --num_nodes M for several machines
  --task_nj N           independent training jobs at once (default: 1 local, all on a cluster)
  --train_config FILE   training YAML (default ${train_config})
  --decode_config FILE  decoding YAML (conf/decode_<task>.yaml overrides per task)
  --inference_model F   checkpoint of the experiment to decode (default ${inference_model})
  --score_missing P     test utterances without a hypothesis: skip (SLURP's scorer) or empty
                        (default ${score_missing})
  --prune_levels 'Q …'  pruning rounds of each pruned model (default '${prune_levels}')
  --prune_baselines …   of 'single_task task_agnostic' (default '${prune_baselines}')
  --token_list FILE     use this token list (e.g. whisper_import --from espnet); stage 4 checks it
  --results_file FILE   results page of the run (default ${results_file})"

log "$0 $*"
. utils/parse_options.sh
. ./path.sh
. ./cmd.sh

[ -n "${test_sets}" ] || { log "${help_message}"; log "ERROR: --test_sets is required"; exit 1; }
spec_opt=""; [ -n "${task_specifiers}" ] && spec_opt="--task_specifiers ${task_specifiers}"
if [ -z "${task_nj}" ]; then
    case "${cuda_cmd}" in run.pl*|*/run.pl*) task_nj=1 ;; *) task_nj=0 ;; esac  # 0: no limit
fi
# A training job: --num_threads CPUs (slurm.pl: --cpus-per-task) and the same thread count
# inside the job, where path.sh would set 1 (run.pl inherits, slurm.pl's job does not).
train_job_env="env OMP_NUM_THREADS=${train_threads}"

# Independent jobs side by side, ${task_nj} at a time (0: all): job_start LOG COMMAND…
# starts one in the background, jobs_wait waits for all and fails naming the failed jobs' logs.
declare -A job_logs=()
job_failed=()
job_reap() {
    local pid="" rc=0
    wait -n -p pid || rc=$?
    [ -n "${pid}" ] || return 0
    [ "${rc}" -eq 0 ] || job_failed+=("${job_logs[${pid}]}")
    unset "job_logs[${pid}]"
}
job_start() {  # $1: log file of the job; the rest: the command
    local logf=$1; shift
    while [ "${task_nj}" -gt 0 ] && [ "${#job_logs[@]}" -ge "${task_nj}" ]; do job_reap; done
    "$@" < /dev/null &
    job_logs[$!]=${logf}
}
jobs_wait() {
    while [ "${#job_logs[@]}" -gt 0 ]; do job_reap; done
    if [ ${#job_failed[@]} -gt 0 ]; then
        log "ERROR: ${#job_failed[@]} job(s) failed; log: ${job_failed[*]}"
        exit 1
    fi
}
given_token_list="${token_list}"
[ -n "${token_list}" ] || token_list="${dumpdir}/token_list/tokens.txt"
stats_dir="${expdir}/uslu_stats"
if [ -z "${tag}" ]; then tag=$(basename "${train_config}" .yaml); fi
uslu_exp="${expdir}/uslu_${tag}"
cl_sets=""
for _run in ${cl_runs}; do IFS=: read -r _ _ _tr _va <<< "${_run}"; cl_sets+=" ${_tr} ${_va}"; done
data_sets="${train_set} ${valid_set} ${test_sets}${cl_sets}"

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
    if [ -n "${given_token_list}" ]; then
        log "Stage 4: checking ${token_list} (given) against the prompts and labels of the data"
        _opts=""
        for dset in ${data_sets}; do _opts+=" --data_dir ${dumpdir}/raw/${dset}"; done
        ${python} -m espnet_pruning.bin.uslu_token_list ${spec_opt} ${_opts} --check "${token_list}"
    elif [ -f "${token_list}" ]; then
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

collect_stats() {  # $1: train set, $2: valid set, $3: output dir
    if [ -f "$3/.done" ]; then log "  $3 done, skipped"; return; fi
    log "  statistics of $1 / $2 into $3"
    mkdir -p "$3"
    ${train_cmd} "$3/stats.log" \
        ${python} -m espnet_pruning.bin.uslu_train --collect_stats true \
            --config "${train_config}" --token_list "${token_list}" ${spec_opt} \
            --use_preprocessor true --ngpu 0 --num_workers 0 \
            $(data_opts train "$1") $(data_opts valid "$2") \
            --train_shape_file "${dumpdir}/raw/$1/utt2category" \
            --valid_shape_file "${dumpdir}/raw/$2/utt2category" \
            --batch_type unsorted --output_dir "$3"
    touch "$3/.done"
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: statistics for batching"
    collect_stats "${train_set}" "${valid_set}" "${stats_dir}"
fi

# Train with ESPnet's launcher (one node or several, --ngpu GPUs each); resumes after a kill.
# ${train_data_override} ("TRAIN_SET VALID_SET STATS_DIR") replaces the main data sets.
train_data_override=""
train_uslu() {  # $1: experiment dir, $2: config; the rest: more uslu_train options
    local exp=$1 config=$2; shift 2
    if [ -f "${exp}/.done" ]; then log "  ${exp} done, skipped"; return; fi
    log "  training ${exp} (log: ${exp}/train.log)"
    mkdir -p "${exp}"
    ${python} -m espnet2.bin.launch \
        --cmd "${cuda_cmd} --name $(basename "${exp}") --num_threads ${train_threads}" \
        --log "${exp}/train.log" \
        --ngpu "${ngpu}" --num_nodes "${num_nodes}" \
        --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${train_job_env} ${python} -m espnet_pruning.bin.uslu_train \
            --config "${config}" $(common_train_opts ${train_data_override}) \
            --output_dir "${exp}" --resume true "$@"
    touch "${exp}/.done"
}

common_train_opts() {  # [$1: train set, $2: valid set, $3: stats dir] (default: the main ones)
    local tr=${1:-${train_set}} va=${2:-${valid_set}} st=${3:-${stats_dir}}
    echo "--token_list ${token_list} ${spec_opt} --use_preprocessor true" \
         "$(data_opts train "${tr}") $(data_opts valid "${va}")" \
         "--train_shape_file ${st}/train/speech_shape" \
         "--valid_shape_file ${st}/valid/speech_shape"
}

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: dense training ${uslu_exp}"
    train_uslu "${uslu_exp}" "${train_config}" ${train_args}
fi

task_of_set() { cut -d' ' -f2 "${dumpdir}/raw/$1/utt2category" | sort -u; }

check_single_task() {  # a test set must hold one task
    local tasks; tasks=$(task_of_set "$1")
    [ "$(echo "${tasks}" | wc -l)" -eq 1 ] || { log "ERROR: ${dumpdir}/raw/$1/utt2category has several tasks: ${tasks//$'\n'/ }"; exit 1; }
    echo "${tasks}"
}

# Decoding: items are added per (system, test set), then one job array decodes its share
# (keys split ${inference_nj} ways) of every item in one process per job.
decode_items=()
decode_dirs=()
add_decode() {  # $1: decode dir, $2: train config, $3: model file, $4: test set, $5: mask dir or ""
    local dir=$1 dset=$4 task conf n _mask=""
    task=$(check_single_task "${dset}")
    if [ -f "${dir}/.done" ]; then log "  ${dir} done, skipped"; return; fi
    conf="${decode_config}"; [ -f "conf/decode_${task}.yaml" ] && conf="conf/decode_${task}.yaml"
    mkdir -p "${dir}/logdir"
    local key_files=""
    for n in $(seq "${inference_nj}"); do key_files+=" ${dir}/logdir/keys.${n}.scp"; done
    # split_scp.pl needs at least as many lines as parts: pad with empty files.
    if [ "$(wc -l < "${dumpdir}/raw/${dset}/wav.scp")" -ge "${inference_nj}" ]; then
        utils/split_scp.pl "${dumpdir}/raw/${dset}/wav.scp" ${key_files}
    else
        cp "${dumpdir}/raw/${dset}/wav.scp" "${dir}/logdir/keys.1.scp"
        for n in $(seq 2 "${inference_nj}"); do : > "${dir}/logdir/keys.${n}.scp"; done
    fi
    [ -n "$5" ] && _mask=",mask_dir=$5"
    decode_items+=("--decode_set" "task=${task},data=${dumpdir}/raw/${dset}/wav.scp,key_file=${dir}/logdir/keys.JOB.scp,output_dir=${dir}/logdir/output.JOB,train_config=$2,model_file=$3,config=${conf}${_mask}")
    decode_dirs+=("${dir}")
}

run_decode() {  # $1: log dir; decodes the items added since the last call
    local logdir=$1 dir f n _ngpu=0 _cmd="${decode_cmd}"
    if [ ${#decode_items[@]} -eq 0 ]; then return; fi
    if ${gpu_inference}; then _ngpu=1; _cmd="${cuda_cmd} --gpu 1"; fi
    mkdir -p "${logdir}"
    log "  ${#decode_dirs[@]} set(s) in ${inference_nj} job(s) (log: ${logdir}/decode.*.log)"
    ${_cmd} JOB=1:"${inference_nj}" "${logdir}/decode.JOB.log" \
        ${python} -m espnet_pruning.bin.uslu_inference --ngpu "${_ngpu}" \
            --batch_size "${inference_batch_size}" "${decode_items[@]}" ${inference_args}
    for dir in "${decode_dirs[@]}"; do
        mkdir -p "${dir}/1best_recog"
        for f in text token token_int score; do
            for n in $(seq "${inference_nj}"); do
                g="${dir}/logdir/output.${n}/1best_recog/${f}"
                if [ -f "${g}" ]; then cat "${g}"; fi
            done | LC_ALL=C sort -k1,1 > "${dir}/1best_recog/${f}"
        done
        touch "${dir}/.done"
    done
    decode_items=(); decode_dirs=()
}

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: decoding ${test_sets} with ${uslu_exp}/${inference_model}"
    for dset in ${test_sets}; do
        add_decode "${uslu_exp}/decode_${dset}" "${uslu_exp}/config.yaml" \
            "${uslu_exp}/${inference_model}" "${dset}" ""
    done
    run_decode "${uslu_exp}/decode_logs"
fi

# Scoring: items are added per decode dir, then scored in one process.
declare -A metric_of_set=()
score_items=()
score_dir() {  # $1: decode dir, $2: test set
    local task
    if [ -z "${metric_of_set[$2]:-}" ]; then
        task=$(check_single_task "$2")
        # METRIC[+FIGURE...]: the task's metric and the figures scored beside it
        metric_of_set[$2]=$(${python} -m espnet_pruning.bin.task_info ${spec_opt} --task "${task}" --field score)
    fi
    score_items+=(--item "${metric_of_set[$2]}:${dumpdir}/raw/$2/text:$1/1best_recog/text:$1/score")
}
run_score() {
    if [ ${#score_items[@]} -eq 0 ]; then return; fi
    ${python} -m espnet_pruning.bin.uslu_score --missing "${score_missing}" "${score_items[@]}"
    score_items=()
}

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: scoring"
    for dset in ${test_sets}; do score_dir "${uslu_exp}/decode_${dset}" "${dset}"; done
    run_score
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: results of ${uslu_exp}"
    _opts=""
    for dset in ${test_sets}; do _opts+=" --test_set ${dset}:$(check_single_task "${dset}")"; done
    [ -f "${results_notes}" ] && _opts+=" --notes ${results_notes}"
    ${python} -m espnet_pruning.bin.uslu_results --exp "${uslu_exp}" ${_opts} \
        --json "${uslu_exp}/results.json" --markdown "${uslu_exp}/RESULTS.md"
    cp "${uslu_exp}/RESULTS.md" "${results_file}"
fi

# ------------------------------------------------------------------ pruning (10-14)
theta0="${uslu_exp}/${inference_model}"
find_dir="${expdir}/find_masks"
test_tasks() { local d; for d in ${test_sets}; do check_single_task "${d}"; done | tr '\n' ' '; }
max_level=$(echo ${prune_levels} | tr ' ' '\n' | sort -n | tail -1)
mask_kinds="task_specific"
[[ " ${prune_baselines} " == *" task_agnostic "* ]] && mask_kinds+=" task_agnostic"
masks_of() { echo "${find_dir}/$1/round$2/masks"; }  # $1: kind, $2: Q

# A config per schedule: the dense config with the schedule's keys replaced.
schedule_config() {  # $1: overlay, $2: output
    mkdir -p "$(dirname "$2")"
    ${python} -m espnet_pruning.bin.uslu_config --base "${train_config}" --overlay "$1" --output "$2"
}

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: Algorithm 1 (find masks) from θ0 = ${theta0}: ${max_level} rounds of p = ${prune_fraction}"
    [ -f "${theta0}" ] || { log "ERROR: ${theta0}: θ0 not found (run stages 6-7 first)"; exit 1; }
    schedule_config "${find_masks_config}" "${find_dir}/train.yaml"
    for kind in ${mask_kinds}; do
        _scope=""; [ -n "${scope_config}" ] && _scope="--scope_config ${scope_config}"
        ${python} -m espnet_pruning.bin.uslu_masks init --train_config "${uslu_exp}/config.yaml" \
            --tasks $(test_tasks) ${_scope} --output "$(masks_of "${kind}" 0)"
        _agnostic=""; [ "${kind}" = task_agnostic ] && _agnostic="--task_agnostic"
        for q in $(seq "${max_level}"); do
            out="${find_dir}/${kind}/round${q}"
            if [ -f "${out}/masks/manifest.json" ]; then log "  ${out} done, skipped"; continue; fi
            mkdir -p "${out}"
            round_job() {  # $1: log, $2: job command; the rest: more uslu_find_masks options
                local logf=$1 job_cmd=$2; shift 2
                ${job_cmd} --num_threads "${train_threads}" --name "find_masks_${kind}_${q}" "${logf}" \
                    ${train_job_env} ${python} -m espnet_pruning.bin.uslu_find_masks \
                    --round "${q}" --init_param "${theta0}" \
                    --mask_dir "$(masks_of "${kind}" $((q - 1)))" \
                    --output_dir "${out}" --fraction "${prune_fraction}" \
                    --strategy "${prune_strategy}" --seed "${prune_seed}" ${_agnostic} "$@" -- \
                    --config "${find_dir}/train.yaml" $(common_train_opts) \
                    --ngpu "${ngpu}" --multiprocessing_distributed true ${train_args}
            }
            if [ "${kind}" = task_specific ]; then
                log "  ${kind} round ${q}: one job per task (log: ${out}/find_masks.<task>.log)"
                for task in $(test_tasks); do
                    [ -f "${out}/${task}/masks/manifest.json" ] && continue
                    job_start "${out}/find_masks.${task}.log" \
                        round_job "${out}/find_masks.${task}.log" "${cuda_cmd} --gpu ${ngpu}" \
                        --tasks "${task}"
                done
                jobs_wait
            fi
            log "  ${kind} round ${q} (log: ${out}/find_masks.log)"
            if [ "${kind}" = task_specific ]; then  # every task done: the merge only, on CPU
                round_job "${out}/find_masks.log" "${train_cmd}"
            else
                round_job "${out}/find_masks.log" "${cuda_cmd} --gpu ${ngpu}"
            fi
            head -n 12 "${out}/report.txt"
        done
    done
fi

masked_exp() { echo "${expdir}/uslu_$1_q$2"; }  # $1: system, $2: Q

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: Algorithm 2 (masked training from θ0) at Q = ${prune_levels}; baselines: ${prune_baselines:-none}"
    schedule_config "${masked_config}" "${expdir}/masked_train.yaml"
    # Every system of every level is its own job, and so is each single-task model.
    for q in ${prune_levels}; do
        exp=$(masked_exp multitask "${q}")
        job_start "${exp}/train.log" train_uslu "${exp}" "${expdir}/masked_train.yaml" \
            --init_param "${theta0}" --mask_dir "$(masks_of task_specific "${q}")" ${train_args}
        if [[ " ${prune_baselines} " == *" task_agnostic "* ]]; then
            exp=$(masked_exp agnostic "${q}")
            job_start "${exp}/train.log" train_uslu "${exp}" "${expdir}/masked_train.yaml" \
                --init_param "${theta0}" --mask_dir "$(masks_of task_agnostic "${q}")" ${train_args}
        fi
        if [[ " ${prune_baselines} " == *" single_task "* ]]; then
            out=$(masked_exp single "${q}")
            if [ -f "${out}/.done" ]; then log "  ${out} done, skipped"; continue; fi
            log "  training ${out}/<task>, one job per task (log: ${out}/train.<task>.log)"
            mkdir -p "${out}"
            for task in $(test_tasks); do
                [ -f "${out}/${task}/.done" ] && continue
                job_start "${out}/train.${task}.log" \
                    ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_threads}" \
                    --name "single_${q}_${task}" "${out}/train.${task}.log" \
                    ${train_job_env} ${python} -m espnet_pruning.bin.uslu_train_tasks \
                    --tasks "${task}" --output_dir "${out}" -- \
                    --config "${expdir}/masked_train.yaml" $(common_train_opts) \
                    --init_param "${theta0}" --mask_dir "$(masks_of task_specific "${q}")" \
                    --ngpu "${ngpu}" --multiprocessing_distributed true ${train_args}
            done
        fi
    done
    jobs_wait
    for q in ${prune_levels}; do
        [[ " ${prune_baselines} " == *" single_task "* ]] && touch "$(masked_exp single "${q}")/.done"
    done
fi

# "system kind Q exp mask_dir" lines of the pruned systems
pruned_systems() {
    local q
    for q in ${prune_levels}; do
        echo "multitask multi_task ${q} $(masked_exp multitask "${q}") $(masks_of task_specific "${q}")"
        [[ " ${prune_baselines} " == *" single_task "* ]] && \
            echo "single single_task ${q} $(masked_exp single "${q}") $(masks_of task_specific "${q}")"
        [[ " ${prune_baselines} " == *" task_agnostic "* ]] && \
            echo "agnostic task_agnostic ${q} $(masked_exp agnostic "${q}") $(masks_of task_agnostic "${q}")"
    done
    return 0
}

decode_dir_of() {  # $1: system kind, $2: exp, $3: test set → "decode dir|exp of the model"
    if [ "$1" = single_task ]; then
        echo "$2/$(check_single_task "$3")/decode_$3|$2/$(check_single_task "$3")"
    else
        echo "$2/decode_$3|$2"
    fi
}

if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
    log "Stage 12: decoding the pruned systems, each task with its subnetwork"
    while read -r name kind q exp masks; do
        for dset in ${test_sets}; do
            IFS='|' read -r dir model_exp <<< "$(decode_dir_of "${kind}" "${exp}" "${dset}")"
            add_decode "${dir}" "${model_exp}/config.yaml" \
                "${model_exp}/${masked_inference_model}" "${dset}" "${masks}"
        done
    done < <(pruned_systems)
    run_decode "${expdir}/pruned_decode_logs"
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
    log "Stage 13: scoring the pruned systems"
    while read -r name kind q exp masks; do
        for dset in ${test_sets}; do
            IFS='|' read -r dir model_exp <<< "$(decode_dir_of "${kind}" "${exp}" "${dset}")"
            score_dir "${dir}" "${dset}"
        done
    done < <(pruned_systems)
    run_score
fi

if [ ${stage} -le 14 ] && [ ${stop_stage} -ge 14 ]; then
    log "Stage 14: Table 1 (Param% One / All and every task's metric)"
    _opts=""
    for dset in ${test_sets}; do _opts+=" --test_set ${dset}:$(check_single_task "${dset}")"; done
    while read -r name kind q exp masks; do
        _opts+=" --system ${kind}:${q}:${exp}:${masks}"
    done < <(pruned_systems)
    ${python} -m espnet_pruning.bin.uslu_pruning_table --dense "${uslu_exp}" ${_opts} \
        --json "${expdir}/pruning_table.json" --markdown "${expdir}/pruning_table.md" \
        --table2_level "${max_level}" --table2_markdown "${expdir}/pruning_table2.md"
    # Matched-pairs test (MAPSSWE), multi-task vs task-agnostic pruning, as the paper's §4.
    if [[ " ${prune_baselines} " == *" task_agnostic "* ]]; then
        _pairs=()
        for q in ${prune_levels}; do
            for dset in ${test_sets}; do
                task=$(check_single_task "${dset}")
                metric=$(${python} -m espnet_pruning.bin.task_info ${spec_opt} --task "${task}" --field metric)
                case "${metric}" in wer|accuracy) ;; *) continue ;; esac
                _pairs+=(--pair "Q=${q} ${task}:${metric}:${dumpdir}/raw/${dset}/text:$(masked_exp multitask "${q}")/decode_${dset}/1best_recog/text:$(masked_exp agnostic "${q}")/decode_${dset}/1best_recog/text")
            done
        done
        { echo "## Matched-pairs test: multi-task vs task-agnostic pruning"; echo
          ${python} -m espnet_pruning.bin.uslu_significance "${_pairs[@]}" \
              --name_a multi-task --name_b task-agnostic --json "${expdir}/significance.json"
        } > "${expdir}/significance.md"
        { echo; cat "${expdir}/significance.md"; } >> "${expdir}/pruning_table2.md"
    fi
    # Figures of the task-specific masks at the highest level (Figure 3, per-layer sparsity).
    _masks=$(masks_of task_specific "${max_level}")
    for fig in overlap layers; do
        ${python} -m espnet_pruning.bin.uslu_plots "${fig}" --mask_dir "${_masks}" \
            --output "${figures_dir}/${fig}_q${max_level}.png"
    done
    { echo; echo "![task overlap, Q = ${max_level} (Figure 3)](${figures_dir}/overlap_q${max_level}.png)"
      echo; echo "![sparsity per layer, Q = ${max_level}](${figures_dir}/layers_q${max_level}.png)"
    } >> "${expdir}/pruning_table2.md"
    { cat "${uslu_exp}/RESULTS.md"; echo; cat "${expdir}/pruning_table.md"
      echo; cat "${expdir}/pruning_table2.md"; } > "${results_file}.tmp"
    mv "${results_file}.tmp" "${results_file}"
fi

# ------------------------------------------------------- continual learning (15-17)
# "system init_model mask_dir extra-options" lines of the continual-learning systems
cl_system_lines() {
    local sys q
    for sys in ${cl_systems}; do
        case "${sys}" in
            masked)
                for q in ${prune_levels}; do
                    echo "masked_q${q} $(masked_exp multitask "${q}")/${masked_inference_model} $(masks_of task_specific "${q}") masked"
                done ;;
            dense) echo "dense ${theta0} - dense" ;;
            dense_enc_linear) echo "dense_enc_linear ${theta0} - enc_linear" ;;
            *) log "ERROR: --cl_systems: unknown system ${sys}"; exit 1 ;;
        esac
    done
}
# Where a system's start (step 0) was decoded: θ0's or the pruned model's decodes.
cl_start_exp() {  # $1: system
    case "$1" in masked_q*) masked_exp multitask "${1#masked_q}" ;; *) echo "${uslu_exp}" ;; esac
}

if [ ${stage} -le 15 ] && [ ${stop_stage} -ge 15 ] && [ -n "${cl_runs}" ]; then
    log "Stage 15: continual learning: ${cl_runs} (systems: ${cl_systems})"
    schedule_config "${cl_config}" "${expdir}/continual_train.yaml"
    ${python} -m espnet_pruning.bin.uslu_config --base "${train_config}" --overlay "${cl_config}" \
        --overlay "${cl_enc_linear_config}" --output "${expdir}/continual_train_enc_linear.yaml"
    for run in ${cl_runs}; do
        IFS=: read -r name task tr va <<< "${run}"
        collect_stats "${tr}" "${va}" "${expdir}/uslu_stats_${tr}"
    done
    # One job per run and system: they all start from models of stages 6/11.
    for run in ${cl_runs}; do
        IFS=: read -r name task tr va <<< "${run}"
        train_data_override="${tr} ${va} ${expdir}/uslu_stats_${tr}"
        while read -r sys init masks kind; do
            [ -f "${init}" ] || { log "ERROR: ${init}: start model of ${sys} not found (stages 6/11)"; exit 1; }
            opts=(--init_param "${init}" --train_tasks "${task}")
            config="${expdir}/continual_train.yaml"
            case "${kind}" in
                masked) opts+=(--mask_dir "${masks}" --update_outside_mask freeze
                               --unmasked_update "${cl_unmasked_update}") ;;
                enc_linear) config="${expdir}/continual_train_enc_linear.yaml" ;;
            esac
            job_start "${expdir}/continual_${name}/${sys}/train.log" \
                train_uslu "${expdir}/continual_${name}/${sys}" "${config}" "${opts[@]}" ${train_args}
        done < <(cl_system_lines)
        train_data_override=""
    done
    jobs_wait
fi

cl_epochs() {  # $1: experiment dir → epochs with a checkpoint
    local f
    for f in "$1"/[0-9]*epoch.pth; do [ -f "${f}" ] && basename "${f}" epoch.pth; done | sort -n
}

if [ ${stage} -le 16 ] && [ ${stop_stage} -ge 16 ] && [ -n "${cl_runs}" ]; then
    log "Stage 16: forgetting curves: every checkpoint on every test set"
    for run in ${cl_runs}; do
        IFS=: read -r name task tr va <<< "${run}"
        while read -r sys init masks kind; do
            exp="${expdir}/continual_${name}/${sys}"
            _mask=""; [ "${masks}" != - ] && _mask="${masks}"
            for e in $(cl_epochs "${exp}"); do
                for dset in ${test_sets}; do
                    add_decode "${exp}/curve/ep${e}/decode_${dset}" "${exp}/config.yaml" \
                        "${exp}/${e}epoch.pth" "${dset}" "${_mask}"
                done
            done
        done < <(cl_system_lines)
    done
    run_decode "${expdir}/continual_decode_logs"
    for run in ${cl_runs}; do
        IFS=: read -r name task tr va <<< "${run}"
        while read -r sys init masks kind; do
            exp="${expdir}/continual_${name}/${sys}"
            for e in $(cl_epochs "${exp}"); do
                for dset in ${test_sets}; do
                    d="${exp}/curve/ep${e}/decode_${dset}"
                    [ -f "${d}/score/result.json" ] || score_dir "${d}" "${dset}"
                done
            done
        done < <(cl_system_lines)
    done
    run_score
fi

if [ ${stage} -le 17 ] && [ ${stop_stage} -ge 17 ] && [ -n "${cl_runs}" ]; then
    log "Stage 17: continual-learning report"
    _sets=""
    for dset in ${test_sets}; do _sets+=" --test_set ${dset}:$(check_single_task "${dset}")"; done
    : > "${expdir}/continual.md.tmp"
    for run in ${cl_runs}; do
        IFS=: read -r name task tr va <<< "${run}"
        _sys=""
        while read -r sys init masks kind; do
            _sys+=" --system ${sys}:$(cl_start_exp "${sys}"):${expdir}/continual_${name}/${sys}"
        done < <(cl_system_lines)
        ${python} -m espnet_pruning.bin.uslu_continual_report --name "${name}" --task "${task}" \
            --new_data "${tr}" ${_sets} ${_sys} --out_dir "${expdir}/continual_${name}" \
            --figure "${figures_dir}/continual_${name}.png"
        cat "${expdir}/continual_${name}/report.md" >> "${expdir}/continual.md.tmp"
    done
    mv "${expdir}/continual.md.tmp" "${expdir}/continual.md"
    { cat "${uslu_exp}/RESULTS.md"
      [ -f "${expdir}/pruning_table.md" ] && { echo; cat "${expdir}/pruning_table.md"; }
      [ -f "${expdir}/pruning_table2.md" ] && { echo; cat "${expdir}/pruning_table2.md"; }
      echo; cat "${expdir}/continual.md"; } > "${results_file}.tmp"
    mv "${results_file}.tmp" "${results_file}"
fi

if [ ${stage} -le 18 ] && [ ${stop_stage} -ge 18 ]; then
    log "Stage 18: packing the multi-task pruned systems"
    _opts=""
    [ -f "${results_file}" ] && _opts+=" --option ${results_file}"
    [ -d "${figures_dir}" ] && _opts+=" --option ${figures_dir}"
    for q in ${prune_levels}; do
        _zip="${expdir}/packed/uslu_multitask_q${q}.zip"
        if [ -f "${_zip}" ]; then log "  ${_zip} done, skipped"; continue; fi
        ${python} -m espnet_pruning.bin.uslu_pack \
            --train_config "$(masked_exp multitask "${q}")/config.yaml" \
            --model_file "$(masked_exp multitask "${q}")/${masked_inference_model}" \
            --mask_dir "$(masks_of task_specific "${q}")" ${_opts} --outpath "${_zip}"
    done
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
