#!/usr/bin/env bash
# espnet_pruning stage script: multi-task UniverSLU (Whisper + task prompts) with ESPnet.
#
# Stages (run with --stage N --stop_stage M; each skips work that is already done):
#   1  data preparation           local/data.sh → data/<set>/ (wav.scp text prompt utt2category …)
#   2  data validation            utils/validate_data_dir.sh + audio checks
#   3  format / dump              scripts/audio/format_wav_scp.sh → dump/raw/<set>/
#   4  token list                 Whisper vocabulary + task/label tokens → token_list/tokens.txt
#   5  statistics                 shape files for batching (uslu_train --collect_stats true), of
#                                 the main sets and of each --cl_runs entry's sets
#   6  dense training             ESPnet Trainer, resumes after a kill
#   7  decoding                   every test set with its task's prompt
#   8  scoring                    per task: accuracy / macro-F1 / SLU-F1 / WER (sclite)
#   9  dense results              exp/<name>/RESULTS.md + exp/<name>/results.json
# Task-specific subnetworks (the paper's Algorithms 1 and 2, Table 1), from the dense model θ0
# (--skip_pruning true skips stages 10-16):
#  10  find masks (Algorithm 1)   per round, one job per task (the tasks are independent):
#                                 trained from θ0 under its mask, then pruned by p; one job
#                                 merges the round → exp/find_masks/<kind>/round<r>/
#                                 (--mask_method parp|parp_p: one PARP run per task and level
#                                 instead; s3_router|s3_router_p: one S3-Router run of all
#                                 tasks' scores over frozen θ0 per level; dynamic_pathways: one
#                                 multi-task run per level in which the masks adapt and shrink;
#                                 hard_concrete: HJ-Pruning, Hard-Concrete gates remove whole
#                                 heads and FFN units, one run per task and level;
#                                 random: Algorithm 1 with random masks)
#  11  masked training (Alg. 2)   per level Q: multi_task under the masks, and the baselines
#                                 (single_task: one θ_t per task; task_agnostic: one mask),
#                                 each system and each single_task model its own job
#                                 → exp/uslu_<kind>_q<Q>/
#  12  decoding                   every pruned system, each task with its own subnetwork
#  13  scoring                    as stage 8
#  14  Table 1 and Table 2        exp/pruning_table.{md,json}, exp/pruning_table2.md
#  15  matched-pairs test         multi_task vs task_agnostic (MAPSSWE) → exp/significance.{md,json}
#  16  mask figures               task overlap (Figure 3) and per-layer sparsity at the highest
#                                 level → exp/figures/*.png, exp/mask_figures.md
# Continual learning (the paper's §4.1, Figure 2), for each --cl_runs entry (new data of one
# task; --skip_continual true skips stages 17-20):
#  17  continual training         one job per system; masked: only the task's subnetwork of each
#                                 multi_task pruned model; dense: all weights of θ0;
#                                 dense_enc_linear: θ0's encoder linear layers only
#                                 → exp/continual_<run>/<system>/
#  18  forgetting-curve decoding  every checkpoint (each K steps) on every test set
#  19  forgetting-curve scoring   as stage 8
#  20  continual report           before/after table, curves (CSV/JSON/PNG)
#                                 → exp/continual_<run>/report.md, exp/figures/continual_<run>.png
# Results and shipping:
#  21  RESULTS.md                 the sections of stages 9, 14-16 and 20 → exp/RESULTS.md (the
#                                 recipe's committed RESULTS.md and figures/ are copies of
#                                 exp/RESULTS.md and exp/figures/ that a person makes)
#  22  pack                       each multi_task pruned system as one ESPnet zip (config, model,
#                                 mask set, task specifiers, RESULTS.md, figures; checksummed) →
#                                 exp/packed/uslu_multi_task_q<Q>.zip; decode it with
#                                 Speech2Text.from_pretrained(zip, task=...) (--skip_packing true
#                                 skips it)
#  23  methods compared           --compare_methods "imp_lth parp ...": one table of every method's
#                                 multi_task systems (Param%, metrics, overlap, forgetting) and the
#                                 matched-pairs test of each against imp_lth → exp/methods_table.md,
#                                 exp/methods_significance.md (run each method first)
# With --mask_method other than imp_lth, stages 10-22 write into exp/<method>/ (its own
# RESULTS.md and figures/); the dense stages 1-9 are shared.
# Option strings (${train_args}, $(common_train_opts), ...) are split into words on purpose.
# shellcheck disable=SC2086,SC2046
set -euo pipefail
# Cluster: cmd_backend=slurm in cmd.sh sends every job below through ESPnet's utils/slurm.pl
# (conf/slurm.conf; --ngpu N becomes --gpu N there). Independent trainings (stages 10, 11,
# 17) are separate jobs, --task_nj of them at a time; with --task_nj 1 (run.pl's default) the
# tasks of a pruning round or of the single_task baseline share one job.

log() { local fname=${BASH_SOURCE[1]##*/}; echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"; }
SECONDS=0

# General configuration
stage=1                  # First stage to run.
stop_stage=23            # Last stage to run.
skip_stages=""           # Stages not to run, e.g. "15 16".
skip_pruning=false       # Skip the pruning stages (10-16).
skip_continual=false     # Skip continual learning (its statistics and stages 17-20).
skip_packing=false       # Skip the packing stage (22).
nj=4                     # Parallel jobs of data formatting.
inference_nj=4           # Parallel decoding jobs per decoding stage.
inference_batch_size=8   # Utterances per beam search when decoding (results equal batch 1).
ngpu=0                   # GPUs of a training job (0: CPU).
num_nodes=1              # Machines of a training job.
train_threads=1          # CPU threads of a training job (path.sh sets 1 for every other job).
task_nj=""               # Independent training jobs at once (stages 10, 11, 17); default: 1
                         # with run.pl (one after another), all of them with a cluster backend.
gpu_inference=false      # Decode on a GPU.
python=python3           # Python that runs espnet_pruning's commands.
dumpdir=dump             # Formatted data sets and the token list.
expdir=exp               # Experiments, their results (RESULTS.md) and figures.

# Data related
train_set=train          # Training set (data/<set>/).
valid_set=valid          # Validation set.
test_sets=""             # Test sets, one task each (its utt2category decides the task; required).
local_data_opts=""       # Options of local/data.sh (stage 1).
task_specifiers=""       # YAML extending the built-in tasks (optional).
audio_format=wav         # Audio format of dump/raw/ (format_wav_scp.sh).
fs=16k                   # Sampling rate of dump/raw/.
token_list=""            # A token list to use as is (e.g. an imported ESPnet experiment's;
                         # stage 4 checks it); default: stage 4 writes dump/token_list/tokens.txt.

# Training related
train_config=conf/train_uslu.yaml   # Training YAML of the dense model (and base of every overlay).
train_args=""            # More uslu_train options of every training, e.g. "--max_epoch 2".
tag=""                   # Name of the dense experiment exp/uslu_<tag> (default: the config's name).

# Decoding and scoring related
decode_config=conf/decode.yaml      # Decoding YAML (conf/decode_<task>.yaml overrides it for that task).
inference_model=valid.acc.best.pth  # Checkpoint of the dense experiment to decode (θ0).
inference_args=""        # More uslu_inference options.
score_missing=skip       # Test utterances without a hypothesis: skip (SLURP's scorer) or empty.
results_notes=local/RESULTS_notes.md   # The recipe's description under RESULTS.md's title (optional).

# Pruning related (stages 10-16)
prune_levels="2 5"       # Level Q of each pruned model: rounds of Algorithm 1 (paper: 2 and 5).
prune_fraction=0.2       # p, fraction of a mask's remaining weights pruned per round (paper: 0.2).
prune_strategy=global_magnitude     # Weights to prune: global_magnitude (paper), layerwise_magnitude, random.
prune_seed=0             # Seed of Algorithm 1's task order.
mask_method=imp_lth      # How stage 10 finds masks: imp_lth (Algorithm 1), imp, omp, random, parp, parp_p, s3_router, s3_router_p, dynamic_pathways, hard_concrete.
method_config=""         # YAML of the method's own options (default: conf/mask_methods/<method>.yaml if present).
compare_methods=""       # Stage 23: mask methods whose finished runs are compared, e.g. "imp_lth parp".
prune_baselines="single_task task_agnostic"   # Table 1 baselines run besides multi_task.
find_masks_config=conf/find_masks.yaml        # Algorithm 1's schedule (overlay on --train_config).
masked_config=conf/train_masked.yaml          # Algorithm 2's schedule (overlay on --train_config).
scope_config=""          # PruningScope YAML (default: all weights but positional embeddings).
masked_inference_model=valid.acc.best.pth     # Checkpoint of a pruned system to decode.

# Continual learning related (stages 17-20)
cl_runs=""               # Runs "NAME:TASK:TRAIN_SET:VALID_SET ...", e.g. "asr:asr_librispeech:train_cl_asr:valid_cl_asr".
cl_systems="masked dense dense_enc_linear"   # Systems of each run (masked: one per --prune_levels entry).
cl_config=conf/train_continual.yaml          # Overlay: lr, max_epoch, num_iters_per_epoch (= K).
cl_unmasked_update=freeze                    # Parameters no mask covers in masked training: allow or freeze.
cl_enc_linear_config=conf/continual_enc_linear.yaml  # Overlay of dense_enc_linear (update_only: encoder linear layers).

help_message=$(cat << EOF
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." [options]

Results go to \${expdir}/RESULTS.md and \${expdir}/figures/ (stage 21); a recipe's committed
RESULTS.md and figures/ are copies of them that a person makes.

Options:
    # General configuration
    --stage                  # First stage to run (default="${stage}").
    --stop_stage             # Last stage to run (default="${stop_stage}").
    --skip_stages            # Stages not to run, e.g. "15 16" (default="${skip_stages}").
    --skip_pruning           # Skip the pruning stages 10-16 (default="${skip_pruning}").
    --skip_continual         # Skip continual learning: its statistics and stages 17-20
                             # (default="${skip_continual}"; true when --cl_runs is empty).
    --skip_packing           # Skip the packing stage 22 (default="${skip_packing}").
    --nj                     # Parallel jobs of data formatting (default="${nj}").
    --inference_nj           # Parallel decoding jobs per decoding stage (default="${inference_nj}").
    --inference_batch_size   # Utterances per beam search when decoding (default="${inference_batch_size}").
    --ngpu                   # GPUs of a training job, 0: CPU (default="${ngpu}").
    --num_nodes              # Machines of a training job (default="${num_nodes}").
    --train_threads          # CPU threads of a training job (default="${train_threads}").
    --task_nj                # Independent training jobs at once, stages 10, 11, 17
                             # (default: 1 with run.pl, all of them with a cluster backend).
    --gpu_inference          # Decode on a GPU (default="${gpu_inference}").
    --python                 # Python that runs espnet_pruning's commands (default="${python}").
    --dumpdir                # Formatted data sets and the token list (default="${dumpdir}").
    --expdir                 # Experiments, their results (RESULTS.md) and figures (default="${expdir}").

    # Data related
    --train_set              # Training set (default="${train_set}").
    --valid_set              # Validation set (default="${valid_set}").
    --test_sets              # Test sets, one task each (required).
    --local_data_opts        # Options of local/data.sh (default="${local_data_opts}").
    --task_specifiers        # YAML extending the built-in tasks (default="${task_specifiers}").
    --audio_format           # Audio format of dump/raw/ (default="${audio_format}").
    --fs                     # Sampling rate of dump/raw/ (default="${fs}").
    --token_list             # A token list to use as is, checked by stage 4
                             # (default: stage 4 writes \${dumpdir}/token_list/tokens.txt).

    # Training related
    --train_config           # Training YAML of the dense model (default="${train_config}").
    --train_args             # More uslu_train options of every training, e.g. "--max_epoch 2"
                             # (default="${train_args}").
    --tag                    # Dense experiment exp/uslu_<tag> (default: the config's name).

    # Decoding and scoring related
    --decode_config          # Decoding YAML; conf/decode_<task>.yaml overrides it for that task
                             # (default="${decode_config}").
    --inference_model        # Checkpoint of the dense experiment to decode (default="${inference_model}").
    --inference_args         # More uslu_inference options (default="${inference_args}").
    --score_missing          # Test utterances without a hypothesis: skip (SLURP's scorer) or empty
                             # (default="${score_missing}").
    --results_notes          # The recipe's description under RESULTS.md's title (default="${results_notes}").

    # Pruning related (stages 10-16)
    --prune_levels           # Level Q of each pruned model: rounds of Algorithm 1 (default="${prune_levels}").
    --prune_fraction         # p, fraction of a mask's remaining weights pruned per round (default="${prune_fraction}").
    --prune_strategy         # global_magnitude, layerwise_magnitude or random (default="${prune_strategy}").
    --prune_seed             # Seed of Algorithm 1's task order (default="${prune_seed}").
    --mask_method            # How stage 10 finds the masks of each level Q (default="${mask_method}"):
                             # imp_lth: Algorithm 1 (Q rounds of train-prune-rewind);
                             # imp: the same without rewinding (each round continues the last);
                             # omp: one round from θ0 straight to sparsity 1-(1-p)^Q;
                             # random: the same schedule with random masks;
                             # parp: one PARP run per task from θ0 at sparsity 1-(1-p)^Q;
                             # parp_p: PARP-P rising through the sparsities of levels 1..Q;
                             # s3_router: S3-Router, per-task scores over frozen θ0 (ORI, FFN),
                             # masks keep 1-(1-p)^Q of the routed weights out;
                             # s3_router_p: S3-Router-P (WMI, FFN and attention);
                             # dynamic_pathways: Dynamic ASR Pathways, one multi-task run from
                             # a shared magnitude mask of θ0, masks adapting and pruned to 1-(1-p)^Q;
                             # hard_concrete: HJ-Pruning, structured masks (whole heads and FFN units)
                             # from Hard-Concrete gates at expected sparsity 1-(1-p)^Q.
                             # Other than imp_lth, stages 10-22 write into \${expdir}/<method>/.
    --method_config          # YAML of the method's own options, e.g. PARP's reprune_interval
                             # (default: conf/mask_methods/<method>.yaml if present).
    --compare_methods        # Stage 23: methods whose finished runs are compared, e.g. "imp_lth parp"
                             # (default="${compare_methods}": stage 23 skipped).
    --prune_baselines        # Of "single_task task_agnostic": Table 1 baselines run besides multi_task
                             # (default="${prune_baselines}").
    --find_masks_config      # Algorithm 1's schedule, overlay on --train_config (default="${find_masks_config}").
    --masked_config          # Algorithm 2's schedule, overlay on --train_config (default="${masked_config}").
    --scope_config           # PruningScope YAML (default: all weights but positional embeddings).
    --masked_inference_model # Checkpoint of a pruned system to decode (default="${masked_inference_model}").

    # Continual learning related (stages 17-20)
    --cl_runs                # Runs "NAME:TASK:TRAIN_SET:VALID_SET ..." (default="${cl_runs}").
    --cl_systems             # Of "masked dense dense_enc_linear", masked: one per --prune_levels entry
                             # (default="${cl_systems}").
    --cl_config              # Overlay: lr, max_epoch, num_iters_per_epoch = K (default="${cl_config}").
    --cl_unmasked_update     # Parameters no mask covers in masked training: allow or freeze
                             # (default="${cl_unmasked_update}").
    --cl_enc_linear_config   # Overlay of dense_enc_linear (default="${cl_enc_linear_config}").
EOF
)

log "$0 $*"
# shellcheck source=/dev/null
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "${help_message}"
    log "ERROR: no positional arguments: $*"
    exit 2
fi

# shellcheck source=/dev/null
. ./path.sh
# train_cmd (CPU jobs), cuda_cmd (training), decode_cmd (decoding): run.pl or slurm.pl.
# shellcheck source=/dev/null
. ./cmd.sh

# ------------------------------------------------------------------------------ helpers
in_list() { [[ " $2 " == *" $1 "* ]]; }           # $1: word, $2: space-separated words
has_baseline() { in_list "$1" "${prune_baselines}"; }   # $1: single_task|task_agnostic
# A stage runs when it lies in --stage..--stop_stage and no gate skips it.
run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && ! in_list "$1" "${skip_stages}"; }

# ------------------------------------------------------------------- checks and gates
[ -n "${test_sets}" ] || { log "${help_message}"; log "ERROR: --test_sets is required"; exit 2; }
for _kind in ${prune_baselines}; do
    in_list "${_kind}" "single_task task_agnostic" || \
        { log "ERROR: --prune_baselines: unknown baseline ${_kind} (single_task or task_agnostic)"; exit 2; }
done
for _sys in ${cl_systems}; do
    in_list "${_sys}" "masked dense dense_enc_linear" || \
        { log "ERROR: --cl_systems: unknown system ${_sys} (masked, dense or dense_enc_linear)"; exit 2; }
done
[ -n "${cl_runs}" ] || skip_continual=true
if "${skip_pruning}"; then skip_stages+=" 10 11 12 13 14 15 16"; fi
if "${skip_continual}"; then skip_stages+=" 17 18 19 20"; fi
if "${skip_packing}"; then skip_stages+=" 22"; fi
[ -n "${compare_methods}" ] || skip_stages+=" 23"

spec_opt=""; [ -n "${task_specifiers}" ] && spec_opt="--task_specifiers ${task_specifiers}"
if [ -z "${task_nj}" ]; then
    # shellcheck disable=SC2154
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
# A mask method's pruning results (stages 10-22) and their RESULTS.md; Algorithm 1's are the
# recipe's main results in ${expdir} itself.
method_dir_of() {  # $1: mask method → its result directory
    case "$1" in
        imp_lth) echo "${expdir}" ;;
        imp|omp|random|parp|parp_p|s3_router|s3_router_p|dynamic_pathways|hard_concrete) echo "${expdir}/$1" ;;
        *) log "ERROR: mask method $1: use imp_lth, imp, omp, random, parp, parp_p, s3_router, s3_router_p, dynamic_pathways or hard_concrete"; return 1 ;;
    esac
}
method_dir=$(method_dir_of "${mask_method}") || exit 1
case "${mask_method}" in s3_router|s3_router_p|dynamic_pathways)
    # One score set (or pathway) per task: no mask from mixed data.
    if in_list task_agnostic "${prune_baselines}"; then
        log "ERROR: --mask_method ${mask_method} has no task_agnostic baseline; use --prune_baselines single_task or \"\""
        exit 2
    fi ;;
esac
for m in ${compare_methods}; do method_dir_of "${m}" > /dev/null || exit 1; done
if [ -z "${method_config}" ] && [ -f "conf/mask_methods/${mask_method}.yaml" ]; then
    method_config="conf/mask_methods/${mask_method}.yaml"
fi
figures_dir="${method_dir}/figures"   # PNGs linked from ${method_dir}/RESULTS.md as figures/<name>.png

# Continual-learning runs: NAME → its task, training set and validation set.
cl_names=""
declare -A cl_task=() cl_train=() cl_valid=()
for _run in ${cl_runs}; do
    IFS=: read -r _name _task _tr _va _rest <<< "${_run}"
    if [ -z "${_va}" ] || [ -n "${_rest}" ]; then
        log "ERROR: --cl_runs ${_run}: expected NAME:TASK:TRAIN_SET:VALID_SET"; exit 2
    fi
    cl_names+=" ${_name}"; cl_task[${_name}]=${_task}; cl_train[${_name}]=${_tr}; cl_valid[${_name}]=${_va}
done
cl_stats_dir() { echo "${expdir}/uslu_stats_${cl_train[$1]}"; }  # $1: run
# Stages 1-4 prepare the continual-learning sets too (with --skip_continual true as well: the
# token list covers their labels).
data_sets="${train_set} ${valid_set} ${test_sets}"
for _name in ${cl_names}; do data_sets+=" ${cl_train[${_name}]} ${cl_valid[${_name}]}"; done

# ------------------------------------------------------------------------ data (1-5)
if run_stage 1; then
    log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
    local/data.sh ${local_data_opts}
fi

if run_stage 2; then
    log "Stage 2: validating data/{${data_sets// /,}}"
    _opts=""
    for dset in ${data_sets}; do
        utils/validate_data_dir.sh --no-feats --non-print data/"${dset}"
        _opts+=" --data_dir data/${dset}"
    done
    ${python} -m espnet_pruning.bin.check_data ${_opts} ${spec_opt}
fi

if run_stage 3; then
    log "Stage 3: format audio into ${dumpdir}/raw/"
    for dset in ${data_sets}; do
        out="${dumpdir}/raw/${dset}"
        if [ -f "${out}/.done" ]; then log "  ${out} done, skipped"; continue; fi
        rm -rf "${out}"
        utils/copy_data_dir.sh --validate_opts --non-print data/"${dset}" "${out}"
        # copy_data_dir.sh keeps Kaldi files only; prompts and tasks are ours.
        cp data/"${dset}"/{prompt,utt2category} "${out}/"
        rm -f "${out}"/{wav.scp,reco2file_and_channel,utt2num_samples}
        # shellcheck disable=SC2154
        scripts/audio/format_wav_scp.sh --nj "${nj}" --cmd "${train_cmd}" \
            --audio-format "${audio_format}" --fs "${fs}" \
            data/"${dset}"/wav.scp "${out}"
        echo raw > "${out}/feats_type"
        utils/fix_data_dir.sh --utt_extra_files "prompt utt2category" "${out}"
        touch "${out}/.done"
    done
fi

if run_stage 4; then
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

if run_stage 5; then
    log "Stage 5: statistics for batching"
    collect_stats "${train_set}" "${valid_set}" "${stats_dir}"
    if ! "${skip_continual}"; then
        for name in ${cl_names}; do
            collect_stats "${cl_train[${name}]}" "${cl_valid[${name}]}" "$(cl_stats_dir "${name}")"
        done
    fi
fi

# --------------------------------------------------------------- dense model (6-9)
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

if run_stage 6; then
    log "Stage 6: dense training ${uslu_exp}"
    train_uslu "${uslu_exp}" "${train_config}" ${train_args}
fi

task_of_set() { cut -d' ' -f2 "${dumpdir}/raw/$1/utt2category" | sort -u; }

check_single_task() {  # a test set must hold one task
    local tasks; tasks=$(task_of_set "$1")
    # The message goes to stderr: callers take the task from stdout.
    [ "$(echo "${tasks}" | wc -l)" -eq 1 ] || { log "ERROR: ${dumpdir}/raw/$1/utt2category has several tasks: ${tasks//$'\n'/ }" >&2; exit 1; }
    echo "${tasks}"
}
test_set_opts() {  # --test_set SET:TASK of every test set
    local dset task
    for dset in ${test_sets}; do
        task=$(check_single_task "${dset}") || exit 1
        echo "--test_set ${dset}:${task}"
    done
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
    # shellcheck disable=SC2154
    local logdir=$1 dir f g n _ngpu=0 _cmd="${decode_cmd}"
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

if run_stage 7; then
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

if run_stage 8; then
    log "Stage 8: scoring"
    for dset in ${test_sets}; do score_dir "${uslu_exp}/decode_${dset}" "${dset}"; done
    run_score
fi

if run_stage 9; then
    log "Stage 9: results of ${uslu_exp}"
    _opts=$(test_set_opts)
    [ -f "${results_notes}" ] && _opts+=" --notes ${results_notes}"
    ${python} -m espnet_pruning.bin.uslu_results --exp "${uslu_exp}" ${_opts} \
        --json "${uslu_exp}/results.json" --markdown "${uslu_exp}/RESULTS.md"
fi

# ----------------------------------------------------------------- pruning (10-16)
theta0="${uslu_exp}/${inference_model}"
find_dir="${method_dir}/find_masks"
test_tasks() {  # the task of every test set
    local d task tasks=""
    for d in ${test_sets}; do task=$(check_single_task "${d}") || exit 1; tasks+="${task} "; done
    echo "${tasks}"
}
max_level=$(echo ${prune_levels} | tr ' ' '\n' | sort -n | tail -1)
# Pruned systems: one per kind and level Q. Algorithm 1 finds the multi_task masks (one per
# task; the single_task baseline trains under them too) and, as a baseline, the task_agnostic
# mask (one for all tasks).
pruned_kinds="multi_task"
has_baseline single_task && pruned_kinds+=" single_task"
has_baseline task_agnostic && pruned_kinds+=" task_agnostic"
mask_kinds="multi_task"
has_baseline task_agnostic && mask_kinds+=" task_agnostic"
mask_kind_of() { if [ "$1" = single_task ]; then echo multi_task; else echo "$1"; fi; }
round_dir() { echo "${find_dir}/$(mask_kind_of "$1")/round$2"; }  # $1: kind, $2: round
masks_of() { echo "$(round_dir "$1" "$2")/masks"; }  # $1: kind, $2: level Q (= rounds applied)
pruned_exp() { echo "${method_dir}/uslu_$1_q$2"; }       # $1: kind, $2: level Q
model_exp() {  # $1: kind, $2: level Q, $3: test set → the experiment whose model decodes it
    local task
    if [ "$1" = single_task ]; then
        task=$(check_single_task "$3") || exit 1
        echo "$(pruned_exp "$1" "$2")/${task}"
    else
        pruned_exp "$1" "$2"
    fi
}

# A config per schedule: the dense config with the schedule's keys replaced.
schedule_config() {  # $1: overlay, $2: output
    mkdir -p "$(dirname "$2")"
    ${python} -m espnet_pruning.bin.uslu_config --base "${train_config}" --overlay "$1" --output "$2"
}

# Algorithm 1 and random build level Q from level Q-1; PARP starts every level from θ0.
per_round_method() { case "${mask_method}" in imp_lth|imp|random) return 0 ;; esac; return 1; }
# S3-Router trains every task's scores in one run (the weights are frozen), Dynamic Pathways
# every task's pathway in one run over shared weights: no job per task.
one_run_method() { case "${mask_method}" in s3_router|s3_router_p|dynamic_pathways) return 0 ;; esac; return 1; }
find_masks_job() {  # $1: mask kind, $2: round, $3: log, $4: job command; the rest: more uslu_find_masks options
    local kind=$1 round=$2 logf=$3 job_cmd=$4 _agnostic="" _before=0 _method=""; shift 4
    [ "${kind}" = task_agnostic ] && _agnostic="--task_agnostic"
    per_round_method && _before=$((round - 1))
    [ -n "${method_config}" ] && _method="--method_config ${method_config}"
    ${job_cmd} --num_threads "${train_threads}" --name "find_masks_${kind}_round${round}" "${logf}" \
        ${train_job_env} ${python} -m espnet_pruning.bin.uslu_find_masks \
        --round "${round}" --init_param "${theta0}" \
        --mask_dir "$(masks_of "${kind}" "${_before}")" --mask_method "${mask_method}" ${_method} \
        --output_dir "$(round_dir "${kind}" "${round}")" --fraction "${prune_fraction}" \
        --strategy "${prune_strategy}" --seed "${prune_seed}" ${_agnostic} "$@" -- \
        --config "${find_dir}/train.yaml" $(common_train_opts) \
        --ngpu "${ngpu}" --multiprocessing_distributed true ${train_args}
}

if run_stage 10; then
    if per_round_method; then
        _rounds=$(seq "${max_level}")
        log "Stage 10: ${mask_method} (Algorithm 1) from θ0 = ${theta0}: ${max_level} rounds of p = ${prune_fraction}"
    else
        _rounds=${prune_levels}
        log "Stage 10: ${mask_method} from θ0 = ${theta0} at levels ${prune_levels} (sparsity 1-(1-${prune_fraction})^Q)"
    fi
    [ -f "${theta0}" ] || { log "ERROR: ${theta0}: θ0 not found (run stages 6-7 first)"; exit 1; }
    schedule_config "${find_masks_config}" "${find_dir}/train.yaml"
    _scope=""; [ -n "${scope_config}" ] && _scope="--scope_config ${scope_config}"
    for kind in ${mask_kinds}; do
        ${python} -m espnet_pruning.bin.uslu_masks init --train_config "${uslu_exp}/config.yaml" \
            --tasks $(test_tasks) ${_scope} --output "$(masks_of "${kind}" 0)"
        for round in ${_rounds}; do
            out=$(round_dir "${kind}" "${round}")
            if [ -f "${out}/masks/manifest.json" ]; then log "  ${out} done, skipped"; continue; fi
            mkdir -p "${out}"
            # The tasks of a round are independent: one job each when several run at once;
            # one after another, one job runs them all (one process start, not one per task).
            if [ "${kind}" = multi_task ] && [ "${task_nj}" -ne 1 ] && ! one_run_method; then
                log "  ${kind} round ${round}: one job per task (log: ${out}/find_masks.<task>.log)"
                for task in $(test_tasks); do
                    [ -f "${out}/${task}/masks/manifest.json" ] && continue
                    job_start "${out}/find_masks.${task}.log" \
                        find_masks_job "${kind}" "${round}" "${out}/find_masks.${task}.log" \
                        "${cuda_cmd} --gpu ${ngpu}" --tasks "${task}"
                done
                jobs_wait
            fi
            log "  ${kind} round ${round} (log: ${out}/find_masks.log)"
            if [ "${kind}" = multi_task ] && [ "${task_nj}" -ne 1 ] && ! one_run_method; then  # the merge only, on CPU
                find_masks_job "${kind}" "${round}" "${out}/find_masks.log" "${train_cmd}"
            else
                find_masks_job "${kind}" "${round}" "${out}/find_masks.log" "${cuda_cmd} --gpu ${ngpu}"
            fi
            head -n 12 "${out}/report.txt"
        done
    done
fi

if run_stage 11; then
    log "Stage 11: Algorithm 2 (masked training from θ0) at Q = ${prune_levels}: ${pruned_kinds}"
    schedule_config "${masked_config}" "${method_dir}/masked_train.yaml"
    # Every system of every level is its own job, and so is each single_task model.
    for level in ${prune_levels}; do
        for kind in ${pruned_kinds}; do
            exp=$(pruned_exp "${kind}" "${level}")
            if [ "${kind}" != single_task ]; then
                job_start "${exp}/train.log" train_uslu "${exp}" "${method_dir}/masked_train.yaml" \
                    --init_param "${theta0}" --mask_dir "$(masks_of "${kind}" "${level}")" ${train_args}
                continue
            fi
            if [ -f "${exp}/.done" ]; then log "  ${exp} done, skipped"; continue; fi
            mkdir -p "${exp}"
            # One job per task when several run at once, else one job for all of them.
            if [ "${task_nj}" -ne 1 ]; then
                log "  training ${exp}/<task>, one job per task (log: ${exp}/train.<task>.log)"
                _groups=$(test_tasks)
            else
                log "  training ${exp}/<task>, every task in one job (log: ${exp}/train.all.log)"
                _groups=all
            fi
            for group in ${_groups}; do
                _tasks=${group}; [ "${group}" = all ] && _tasks=$(test_tasks)
                [ "${group}" != all ] && [ -f "${exp}/${group}/.done" ] && continue
                job_start "${exp}/train.${group}.log" \
                    ${cuda_cmd} --gpu "${ngpu}" --num_threads "${train_threads}" \
                    --name "single_task_q${level}_${group}" "${exp}/train.${group}.log" \
                    ${train_job_env} ${python} -m espnet_pruning.bin.uslu_train_tasks \
                    --tasks ${_tasks} --output_dir "${exp}" -- \
                    --config "${method_dir}/masked_train.yaml" $(common_train_opts) \
                    --init_param "${theta0}" --mask_dir "$(masks_of "${kind}" "${level}")" \
                    --ngpu "${ngpu}" --multiprocessing_distributed true ${train_args}
            done
        done
    done
    jobs_wait
    if has_baseline single_task; then
        for level in ${prune_levels}; do touch "$(pruned_exp single_task "${level}")/.done"; done
    fi
fi

if run_stage 12; then
    log "Stage 12: decoding the pruned systems, each task with its subnetwork"
    for level in ${prune_levels}; do
        for kind in ${pruned_kinds}; do
            for dset in ${test_sets}; do
                exp=$(model_exp "${kind}" "${level}" "${dset}")
                add_decode "${exp}/decode_${dset}" "${exp}/config.yaml" \
                    "${exp}/${masked_inference_model}" "${dset}" "$(masks_of "${kind}" "${level}")"
            done
        done
    done
    run_decode "${method_dir}/pruned_decode_logs"
fi

if run_stage 13; then
    log "Stage 13: scoring the pruned systems"
    for level in ${prune_levels}; do
        for kind in ${pruned_kinds}; do
            for dset in ${test_sets}; do
                score_dir "$(model_exp "${kind}" "${level}" "${dset}")/decode_${dset}" "${dset}"
            done
        done
    done
    run_score
fi

if run_stage 14; then
    log "Stage 14: Table 1 (Param% One / All and every task's metric) and Table 2 at Q = ${max_level}"
    _opts=$(test_set_opts)
    for level in ${prune_levels}; do
        for kind in ${pruned_kinds}; do
            _opts+=" --system ${kind}:${level}:$(pruned_exp "${kind}" "${level}"):$(masks_of "${kind}" "${level}")"
        done
    done
    ${python} -m espnet_pruning.bin.uslu_pruning_table --dense "${uslu_exp}" ${_opts} \
        --json "${method_dir}/pruning_table.json" --markdown "${method_dir}/pruning_table.md" \
        --table2_level "${max_level}" --table2_markdown "${method_dir}/pruning_table2.md"
fi

# The --pair options of uslu_significance for two systems at every level, on the test sets
# scored by WER or accuracy (the matched-pairs test needs errors per segment) → _pairs.
matched_pairs() {  # $1, $2: experiment dirs of systems A and B without the level Q
    local level dset task metric
    _pairs=()
    for level in ${prune_levels}; do
        # A method run at fewer levels (stage 23) is compared where both systems exist.
        if [ ! -d "$1${level}" ] || [ ! -d "$2${level}" ]; then
            log "  Q=${level}: $1${level} or $2${level} missing, not compared"; continue
        fi
        for dset in ${test_sets}; do
            task=$(check_single_task "${dset}")
            metric=$(${python} -m espnet_pruning.bin.task_info ${spec_opt} --task "${task}" --field metric)
            case "${metric}" in wer|accuracy) ;; *) continue ;; esac
            _pairs+=(--pair "Q=${level} ${task}:${metric}:${dumpdir}/raw/${dset}/text:$1${level}/decode_${dset}/1best_recog/text:$2${level}/decode_${dset}/1best_recog/text")
        done
    done
}

if run_stage 15; then
    if has_baseline task_agnostic; then
        # Matched-pairs test (MAPSSWE), as the paper's §4, on the tasks scored by WER or accuracy.
        log "Stage 15: matched-pairs test, multi_task vs task_agnostic pruning"
        matched_pairs "${method_dir}/uslu_multi_task_q" "${method_dir}/uslu_task_agnostic_q"
        { echo "## Matched-pairs test: multi-task vs task-agnostic pruning"; echo
          ${python} -m espnet_pruning.bin.uslu_significance "${_pairs[@]}" \
              --name_a multi-task --name_b task-agnostic --json "${method_dir}/significance.json"
        } > "${method_dir}/significance.md.tmp"
        mv "${method_dir}/significance.md.tmp" "${method_dir}/significance.md"
    else
        log "Stage 15: no task_agnostic baseline (--prune_baselines), skipped"
    fi
fi

if run_stage 16; then
    log "Stage 16: figures of the multi_task masks at Q = ${max_level} (Figure 3, per-layer sparsity)"
    for fig in overlap layers; do
        ${python} -m espnet_pruning.bin.uslu_plots "${fig}" --mask_dir "$(masks_of multi_task "${max_level}")" \
            --output "${figures_dir}/${fig}_q${max_level}.png"
    done
    if [ "${mask_method}" = hard_concrete ]; then  # structured masks: whole heads and units
        ${python} -m espnet_pruning.bin.uslu_plots structures --mask_dir "$(masks_of multi_task "${max_level}")" \
            --train_config "${uslu_exp}/config.yaml" --output "${figures_dir}/structures_q${max_level}.png"
        # Measured speed of every task's compiled model (stage 23 shows the mean).
        for level in ${prune_levels}; do
            ${python} -m espnet_pruning.bin.uslu_structure_speed --train_config "${uslu_exp}/config.yaml" \
                --model_file "${theta0}" --mask_dir "$(masks_of multi_task "${level}")" \
                --output "${method_dir}/structure_speed_q${level}.json"
        done
    fi
    # Linked relative to ${method_dir}/RESULTS.md.
    { echo "![task overlap, Q = ${max_level} (Figure 3)](figures/overlap_q${max_level}.png)"
      echo; echo "![sparsity per layer, Q = ${max_level}](figures/layers_q${max_level}.png)"
      if [ "${mask_method}" = hard_concrete ]; then
          echo; echo "![kept heads and FFN units shared by tasks, Q = ${max_level}](figures/structures_q${max_level}.png)"
      fi
    } > "${method_dir}/mask_figures.md"
fi

# ------------------------------------------------------- continual learning (17-20)
# Systems of each run: masked_q<Q> (only the run's task's subnetwork of the multi_task pruned
# model at level Q), dense (all weights of θ0), dense_enc_linear (θ0's encoder linear layers).
cl_system_names() {
    local sys level
    for sys in ${cl_systems}; do
        if [ "${sys}" = masked ]; then
            for level in ${prune_levels}; do echo "masked_q${level}"; done
        else
            echo "${sys}"
        fi
    done
}
cl_exp() { echo "${method_dir}/continual_$1/$2"; }   # $1: run, $2: system
cl_start_exp() {  # $1: system → the experiment it starts from (its step 0 was decoded there)
    case "$1" in masked_q*) pruned_exp multi_task "${1#masked_q}" ;; *) echo "${uslu_exp}" ;; esac
}
cl_start_model() {  # $1: system
    case "$1" in masked_q*) echo "$(cl_start_exp "$1")/${masked_inference_model}" ;; *) echo "${theta0}" ;; esac
}
cl_masks() {  # $1: system → its mask dir, or nothing
    case "$1" in masked_q*) masks_of multi_task "${1#masked_q}" ;; esac
}
cl_epochs() {  # $1: experiment dir → epochs with a checkpoint
    local f
    for f in "$1"/[0-9]*epoch.pth; do [ -f "${f}" ] && basename "${f}" epoch.pth; done | sort -n
}

if run_stage 17; then
    log "Stage 17: continual learning: ${cl_names# } (systems: ${cl_systems})"
    schedule_config "${cl_config}" "${method_dir}/continual_train.yaml"
    ${python} -m espnet_pruning.bin.uslu_config --base "${train_config}" --overlay "${cl_config}" \
        --overlay "${cl_enc_linear_config}" --output "${method_dir}/continual_train_enc_linear.yaml"
    # One job per run and system: they all start from models of stages 6/11.
    for name in ${cl_names}; do
        train_data_override="${cl_train[${name}]} ${cl_valid[${name}]} $(cl_stats_dir "${name}")"
        for sys in $(cl_system_names); do
            init=$(cl_start_model "${sys}")
            [ -f "${init}" ] || { log "ERROR: ${init}: start model of ${sys} not found (stages 6/11)"; exit 1; }
            opts=(--init_param "${init}" --train_tasks "${cl_task[${name}]}")
            config="${method_dir}/continual_train.yaml"
            case "${sys}" in
                masked_q*) opts+=(--mask_dir "$(cl_masks "${sys}")" --update_outside_mask freeze
                                  --unmasked_update "${cl_unmasked_update}") ;;
                dense_enc_linear) config="${method_dir}/continual_train_enc_linear.yaml" ;;
            esac
            exp=$(cl_exp "${name}" "${sys}")
            job_start "${exp}/train.log" train_uslu "${exp}" "${config}" "${opts[@]}" ${train_args}
        done
        train_data_override=""
    done
    jobs_wait
fi

if run_stage 18; then
    log "Stage 18: forgetting curves: every checkpoint decoded on every test set"
    for name in ${cl_names}; do
        for sys in $(cl_system_names); do
            exp=$(cl_exp "${name}" "${sys}")
            for e in $(cl_epochs "${exp}"); do
                for dset in ${test_sets}; do
                    add_decode "${exp}/curve/ep${e}/decode_${dset}" "${exp}/config.yaml" \
                        "${exp}/${e}epoch.pth" "${dset}" "$(cl_masks "${sys}")"
                done
            done
        done
    done
    run_decode "${method_dir}/continual_decode_logs"
fi

if run_stage 19; then
    log "Stage 19: forgetting curves: scoring every checkpoint's decoding"
    for name in ${cl_names}; do
        for sys in $(cl_system_names); do
            exp=$(cl_exp "${name}" "${sys}")
            for e in $(cl_epochs "${exp}"); do
                for dset in ${test_sets}; do
                    d="${exp}/curve/ep${e}/decode_${dset}"
                    [ -f "${d}/score/result.json" ] || score_dir "${d}" "${dset}"
                done
            done
        done
    done
    run_score
fi

if run_stage 20; then
    log "Stage 20: continual-learning reports"
    _sets=$(test_set_opts)
    for name in ${cl_names}; do
        _sys=""
        for sys in $(cl_system_names); do
            _sys+=" --system ${sys}:$(cl_start_exp "${sys}"):$(cl_exp "${name}" "${sys}")"
        done
        # The figure is linked relative to ${method_dir}/RESULTS.md, which includes the report.
        ${python} -m espnet_pruning.bin.uslu_continual_report --name "${name}" \
            --task "${cl_task[${name}]}" --new_data "${cl_train[${name}]}" ${_sets} ${_sys} \
            --out_dir "${method_dir}/continual_${name}" \
            --figure "${figures_dir}/continual_${name}.png" \
            --figure_link "figures/continual_${name}.png"
    done
fi

# ------------------------------------------------------- results and shipping (21-22)
# The sections of ${method_dir}/RESULTS.md in order; those not written (stages skipped) are left out.
results_sections() {
    local name
    echo "${uslu_exp}/RESULTS.md"
    echo "${method_dir}/pruning_table.md" "${method_dir}/pruning_table2.md"
    has_baseline task_agnostic && echo "${method_dir}/significance.md"
    echo "${method_dir}/mask_figures.md"
    for name in ${cl_names}; do echo "${method_dir}/continual_${name}/report.md"; done
    return 0
}
assemble_results() {  # $1: output; the one place that writes a run's RESULTS.md
    local out=$1 f sep=""
    [ -f "${uslu_exp}/RESULTS.md" ] || { log "ERROR: ${uslu_exp}/RESULTS.md not found (run stage 9 first)"; exit 1; }
    for f in $(results_sections); do
        [ -f "${f}" ] || continue
        printf '%s' "${sep}"; sep=$'\n'
        cat "${f}"
    done > "${out}.tmp"
    mv "${out}.tmp" "${out}"
}

if run_stage 21; then
    log "Stage 21: ${method_dir}/RESULTS.md"
    assemble_results "${method_dir}/RESULTS.md"
fi

if run_stage 22; then
    log "Stage 22: packing the multi_task pruned systems"
    _opts=""
    [ -f "${method_dir}/RESULTS.md" ] && _opts+=" --option ${method_dir}/RESULTS.md"
    [ -d "${figures_dir}" ] && _opts+=" --option ${figures_dir}"
    for level in ${prune_levels}; do
        _zip="${method_dir}/packed/uslu_multi_task_q${level}.zip"
        if [ -f "${_zip}" ]; then log "  ${_zip} done, skipped"; continue; fi
        ${python} -m espnet_pruning.bin.uslu_pack \
            --train_config "$(pruned_exp multi_task "${level}")/config.yaml" \
            --model_file "$(pruned_exp multi_task "${level}")/${masked_inference_model}" \
            --mask_dir "$(masks_of multi_task "${level}")" ${_opts} --outpath "${_zip}"
    done
fi

if run_stage 23; then
    log "Stage 23: mask methods compared: ${compare_methods}"
    _opts=""
    for m in ${compare_methods}; do _opts+=" --method ${m}:$(method_dir_of "${m}")"; done
    for name in ${cl_names}; do _opts+=" --cl_run ${name}"; done
    ${python} -m espnet_pruning.bin.uslu_methods_table ${_opts} \
        --json "${expdir}/methods_table.json" --markdown "${expdir}/methods_table.md"
    # Matched-pairs test (MAPSSWE) of every other method's multi_task systems against imp_lth's.
    for m in ${compare_methods}; do
        [ "${m}" = imp_lth ] && continue
        matched_pairs "$(method_dir_of imp_lth)/uslu_multi_task_q" "$(method_dir_of "${m}")/uslu_multi_task_q"
        if [ ${#_pairs[@]} -eq 0 ]; then log "  ${m}: no level in common with imp_lth, no test"; continue; fi
        { echo "## Matched-pairs test: imp_lth vs ${m} (multi-task)"; echo
          ${python} -m espnet_pruning.bin.uslu_significance "${_pairs[@]}" \
              --name_a imp_lth --name_b "${m}" --json "${expdir}/methods_significance_${m}.json"
        } > "${expdir}/methods_significance_${m}.md.tmp"
        mv "${expdir}/methods_significance_${m}.md.tmp" "${expdir}/methods_significance_${m}.md"
    done
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
