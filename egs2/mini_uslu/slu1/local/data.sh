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

# Continual learning on IC: new (synthetic-style) SLURP data mixed with the old real
# SLURP training data, as the paper trains on SLURP real + synthetic (§4.1).
for s in train valid; do
    out="data/${s}_cl_ic_mix"
    [ -f "${out}/.done" ] && continue
    rm -rf "${out}" "${out}.old_ic"
    mkdir -p "${out}.old_ic"
    awk '$2 == "ic_slurp" {print $1}' "data/${s}/utt2category" > "${out}.old_ic/uttlist"
    for f in wav.scp text utt2spk prompt utt2category utt2num_samples; do
        utils/filter_scp.pl "${out}.old_ic/uttlist" "data/${s}/${f}" > "${out}.old_ic/${f}"
    done
    utils/utt2spk_to_spk2utt.pl "${out}.old_ic/utt2spk" > "${out}.old_ic/spk2utt"
    utils/combine_data.sh --extra_files "prompt utt2category utt2num_samples" \
        "${out}" "data/${s}_cl_ic" "${out}.old_ic"
    rm -rf "${out}.old_ic"
    touch "${out}/.done"
done
