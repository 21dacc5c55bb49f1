#!/usr/bin/env bash
# Fetch ESPnet's recipe scripts (egs2/TEMPLATE/asr1: asr.sh, utils/, steps/, scripts/,
# pyscripts/) from the espnet source distribution of the given version, via the package
# registry, into tools/espnet/ (git-ignored), with the copy of SLURP's official scorer that
# ESPnet's slurp_entity recipe carries (egs2/slurp_entity/asr1/local/evaluation; the tests
# compare espnet_pruning's SLURP figures with it). Nothing of ESPnet is committed to this repo.
# Usage: install_espnet_scripts.sh VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"
pip="venv/bin/python -m pip"
[ -x venv/bin/python ] || { echo "ERROR: tools/venv missing; run make -C tools" >&2; exit 1; }

mkdir -p downloads
sdist="downloads/espnet-${version}.tar.gz"
if [ ! -s "${sdist}" ]; then
    ${pip} download --quiet --no-deps --no-binary=:all: "espnet==${version}" -d downloads.tmp
    mv downloads.tmp/espnet-"${version}".tar.gz "${sdist}"
    rm -rf downloads.tmp
fi

rm -rf espnet.tmp && mkdir espnet.tmp
slurp_eval="egs2/slurp_entity/asr1/local/evaluation"
tar -xzf "${sdist}" -C espnet.tmp "espnet-${version}/egs2/TEMPLATE/asr1" \
    "espnet-${version}/${slurp_eval}"
mkdir -p espnet.tmp/egs2/TEMPLATE "espnet.tmp/$(dirname "${slurp_eval}")"
mv "espnet.tmp/espnet-${version}/egs2/TEMPLATE/asr1" espnet.tmp/egs2/TEMPLATE/asr1
mv "espnet.tmp/espnet-${version}/${slurp_eval}" "espnet.tmp/${slurp_eval}"
rm -rf "espnet.tmp/espnet-${version}"
echo "${version}" > espnet.tmp/VERSION
for f in asr.sh utils steps scripts pyscripts; do
    [ -e "espnet.tmp/egs2/TEMPLATE/asr1/${f}" ] || { echo "ERROR: ${sdist} lacks egs2/TEMPLATE/asr1/${f}" >&2; exit 1; }
done
[ -f "espnet.tmp/${slurp_eval}/metrics/metrics.py" ] || { echo "ERROR: ${sdist} lacks ${slurp_eval}/metrics/metrics.py" >&2; exit 1; }
rm -rf espnet && mv espnet.tmp espnet
echo "ESPnet ${version} recipe scripts in tools/espnet/egs2/TEMPLATE/asr1"
