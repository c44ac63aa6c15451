#!/usr/bin/env bash
# One ensemble member trained on a lent GPU machine (PyTorch, no TensorFlow, no network, 64 MiB per call) and
# brought back as fp16 weights. docs/training.md ("Training a member on a lent GPU") has the whole recipe.
#
# Here, before the calls (this machine, the project's venv):
#   scripts/device_train.sh prepare                  # .whl/: keras, namex, optree for Python 3.12 (pip download);
#                                                    # .device/weights/lite0.npz, lite2.npz: ImageNet weights, fp16
#   .venv/bin/python -m training cache-images ...    # .cache/images/NAME/: the images (see docs/training.md)
#   scripts/device_train.sh aside                    # models/default (63 MB of tracked ONNX files) out of the tree,
#                                                    # so that it does not travel with the calls
#   .venv/bin/python -m training.device plan --cache .cache/images/NAME --member lite0a   # the calls to make
# There (each `run` call's command; the tool sets $OUT):
#   bash scripts/device_train.sh check --cache .cache/images/NAME              # transfer calls: parts arrived?
#   bash scripts/device_train.sh train --cache .cache/images/NAME --member lite0a --minutes 8.5
# Here, after the last call:
#   scripts/device_train.sh restore                  # models/default back (git status clean again)
#   .venv/bin/python -m training.ensemble import OUT/lite0a.npz OUT/lite0a.json --run-dir runs/device/lite0a \
#       --data ../shared/data/derm/labels.csv --data ../shared/data/derm-extra/labels.csv
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ASIDE=${ASIDE:-/tmp/teleder-models-default.aside}
mode=${1:-}
shift || true

install_wheels() {
    # the device image has torch but not keras; the wheels travel in .whl (carry it)
    if ! "$PYTHON" -c "import keras" 2>/dev/null; then
        compgen -G ".whl/*.whl" >/dev/null || { echo "error: keras is missing and .whl/ holds no wheels" >&2; exit 2; }
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} KERAS_BACKEND=${KERAS_BACKEND:-torch} PYTHONUNBUFFERED=1
}

case "$mode" in
prepare)
    py=${VENV_PYTHON:-.venv/bin/python}
    mkdir -p .whl .device/weights
    for name in keras namex optree; do
        version=$("$py" -c "import importlib.metadata as m; print(m.version('$name'))")
        rm -f .whl/"${name}"-*.whl
        "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version"
    done
    for variant in ${VARIANTS:-lite0 lite2}; do
        PYTHONPATH=$PWD "$py" -c "from training.backbones import save_lite_state; save_lite_state('$variant', '.device/weights/$variant.npz')"
    done
    du -ab .whl .device/weights | sort -n
    ;;
aside)
    if [ -n "$(git status --porcelain -- models/default)" ]; then
        echo "error: models/default has uncommitted changes; commit them first" >&2
        exit 2
    fi
    [ -e "$ASIDE" ] && { echo "error: $ASIDE exists (an earlier aside?): restore first" >&2; exit 2; }
    mv models/default "$ASIDE"
    echo "models/default moved to $ASIDE; run 'scripts/device_train.sh restore' after the device calls"
    ;;
restore)
    if [ -e "$ASIDE" ]; then
        [ -e models/default ] && { echo "error: models/default exists again; compare it with $ASIDE" >&2; exit 2; }
        mv "$ASIDE" models/default
    else
        git restore --source=HEAD --worktree -- models/default  # tracked: git has every file
    fi
    git status --short -- models/default
    ;;
check)
    install_wheels
    exec "$PYTHON" -m training.device check "$@"
    ;;
train)
    install_wheels
    OUT=${OUT:-runs/device-out}
    mkdir -p "$OUT"
    minutes=$(printf '%s\n' "$@" | awk 'found {print; exit} $0 == "--minutes" {found = 1}')
    # The fit stops itself within its budget; SIGINT 45 s after it makes it export the best epoch so far, and
    # the kill 20 s later keeps the command inside the 600 s a device call's command may run.
    limit=$(awk -v m="${minutes:-8.5}" 'BEGIN {printf "%d", m * 60 + 45}')
    set +e
    timeout -s INT -k 20 "$limit" "$PYTHON" -m training.device train --out "$OUT" "$@" 2>&1 | tee "$OUT/train.log"
    rc=${PIPESTATUS[0]}
    set -e
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >>"$OUT/train.log" 2>&1 || true
    exit "$rc"
    ;;
*)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac
