#!/usr/bin/env bash
# Check the system tools recipes need; install them with apt where we are root.
#   sox        audio conversion (ESPnet's format_wav_scp.sh)
#   sctk       NIST sclite / sc_stats (WER scoring, matched-pairs test)
#   espeak-ng  TTS engine of the embedded mini corpus
#   flac       LibriSpeech and SLURP audio
set -euo pipefail

declare -A probe=( [sox]=sox [sctk]=/usr/lib/sctk/bin/sclite [espeak-ng]=espeak-ng [flac]=flac )
missing=()
for pkg in sox sctk espeak-ng flac; do
    p="${probe[$pkg]}"
    if [ "${pkg}" = sctk ]; then
        { [ -x "${p}" ] || command -v sclite >/dev/null 2>&1; } || missing+=("${pkg}")
    else
        command -v "${p}" >/dev/null 2>&1 || missing+=("${pkg}")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "System packages present: sox sctk espeak-ng flac"
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing with apt-get: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "ERROR: missing system packages: ${missing[*]}" >&2
    echo "Install them, e.g. 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu), then rerun make -C tools." >&2
    exit 1
fi
