#!/usr/bin/env bash
# Create tools/venv with Python >= 3.12 and install espnet_pruning (editable) into it.
# Usage: install_venv.sh [PYTHON]   (default: the first Python >= 3.12 found)
set -euo pipefail
cd "$(dirname "$0")/.."

is_py312() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }

python="${1:-}"
if [ -n "${python}" ]; then
    is_py312 "${python}" || { echo "ERROR: ${python} is not a Python >= 3.12 interpreter" >&2; exit 1; }
else
    candidates=(python3.12 python3.13 python3)
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        candidates+=("${root}"/versions/3.12*/bin/python3.12 "${root}"/versions/3.13*/bin/python3.13)
    fi
    for c in "${candidates[@]}"; do
        if is_py312 "${c}"; then python="${c}"; break; fi
    done
    [ -n "${python}" ] || {
        echo "ERROR: no Python >= 3.12 found (espnet 202611 needs it); install one and run" \
             "make -C tools PYTHON=/path/to/python3.12" >&2
        exit 1
    }
fi
echo "Using $(${python} --version) at $(command -v "${python}" || echo "${python}")"

# An interrupted run is simply redone: make marks success with venv.done only at the end.
if [ -x venv/bin/python ] && ! is_py312 venv/bin/python; then
    echo "tools/venv has $(venv/bin/python --version); recreating it" && rm -rf venv
fi
[ -x venv/bin/python ] || "${python}" -m venv venv
venv/bin/python -m pip install --quiet --upgrade pip
venv/bin/python -m pip install --quiet -e "..[test]"
venv/bin/python -c "import espnet2, whisper, torch, espnet_pruning; print('espnet_pruning environment ready: torch', torch.__version__)"
