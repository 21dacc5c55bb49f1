# Environment of the recipe: the project's Python (make -C tools) and ESPnet's utils/.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ ! -f "${MAIN_ROOT}/tools/activate_python.sh" ] || [ ! -d "${MAIN_ROOT}/tools/espnet" ]; then
    echo "ERROR: ${MAIN_ROOT}/tools is not set up; run: make -C ${MAIN_ROOT}/tools" >&2
    exit 1
fi
. "${MAIN_ROOT}/tools/activate_python.sh"
export PATH="${PWD}/utils:${PATH}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
# One thread per process: recipes run several jobs side by side.
export OMP_NUM_THREADS=1
