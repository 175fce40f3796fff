#!/usr/bin/env bash
# The GPU measurements of bench/RESULTS.md in as few device calls as possible: a GPU machine
# is lent for minutes (see the README's Speed), has PyTorch but not hpsearch's other
# dependencies, and reaches nothing outside it.
#
#   bash bench/gpu.sh prepare   # here, once: wheels and MNIST into .gpu/ (git-ignored, 20 MB)
#   bash bench/gpu.sh check     # there (carry .gpu): GPU tests, trainer, populations (CUDA
#                               # graphs and eager side by side at K=1 and 16), precision
#   bash bench/gpu.sh study     # there (carry .gpu): studies/mnist_gpu.yaml for its 10 minutes
#
# Each step prints its figures and keeps its log under $OUT (the device tool brings it back);
# a step fails alone, after at most STEP_LIMIT seconds (300; the study's 660).
# A rehearsal here, on the CPU, before spending device time (small sizes, this venv):
#   PY=.venv/bin/python DEVICE=cpu EPOCHS=1 SIZES=1,4 bash bench/gpu.sh check
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
out=${OUT:-/tmp/hpsearch-gpu}
data=/tmp/hpsearch-data
py=${PY:-python3}  # the GPU image's Python, which holds its PyTorch
device=${DEVICE:-cuda}
epochs=${EPOCHS:-14}
sizes=${SIZES:-1,16,64,256,512}
tf32_sizes=${TF32_SIZES:-${SIZES:-1,16,512}}  # fewer: its point is the ratio to fp32
# hpsearch's dependencies that the GPU machine's image lacks (it has torch, numpy, scipy,
# scikit-learn, click, pyyaml, tqdm, pytest): the versions constraints.txt and the venv hold.
# polars and plotly are left out: MNIST, the trainer and the tests below import neither.
wheels=(
  optuna==5.0.0 sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0
  greenlet==3.5.6 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 typing-extensions==4.16.0 cmaes==0.13.1
)

prepare() {
  local python=${PYTHON:-.venv/bin/python}
  mkdir -p .gpu/wheels .gpu/MNIST/raw
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/wheels "${wheels[@]}"
  local raw=${HPSEARCH_DATA_DIR:-../shared/data}/MNIST/raw
  for f in "$raw"/*-ubyte; do gzip -c "$f" >".gpu/MNIST/raw/$(basename "$f").gz"; done
  du -sh .gpu
}

setup() {
  if [ -z "${PY:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/site:$PWD
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi
  export PYTHONUNBUFFERED=1 HPSEARCH_DATA_DIR=$data
  mkdir -p "$data/MNIST/raw" "$out"
  for f in .gpu/MNIST/raw/*.gz; do gunzip -c "$f" >"$data/MNIST/raw/$(basename "$f" .gz)"; done
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
}

failed=()
step() {  # step NAME COMMAND...: runs it, its output also in $OUT/NAME.log
  # A failing or hung step costs only itself: the lease is too short to rerun the steps after
  # it, so they run anyway, and the script fails at its end, naming it.
  local name=$1
  shift
  echo "== $name: $*"
  if ! timeout -k 10 "${STEP_LIMIT:-300}" "$@" 2>&1 | tee "$out/$name.log"; then
    echo "== $name FAILED (see $name.log); the next steps run"
    failed+=("$name")
  fi
}

case $mode in
  prepare) prepare ;;
  check)
    setup
    step tests "$py" -m pytest -q -x -p no:cacheprovider tests/training -m "not slow"
    # ours alone: the DataLoader reference loop would spend a minute of device time
    step trainer "$py" bench/trainer.py --epochs "$epochs" --data-dir "$data" --device "$device" \
      --skip-reference
    step population-fp32 "$py" bench/population.py --data-dir "$data" --epochs "$epochs" \
      --sizes "$sizes" --skip-study --skip-groups --device "$device" --precision fp32
    step population-tf32 "$py" bench/population.py --data-dir "$data" --epochs "$epochs" \
      --sizes "$tf32_sizes" --skip-study --skip-groups --eager-sizes "" \
      --device "$device" --precision tf32
    step precision "$py" bench/precision.py --data-dir "$data" --epochs "$epochs" \
      --members 16 --device "$device"
    ;;
  study)
    setup
    db="sqlite:///$out/mnist_gpu.db"
    STEP_LIMIT=660 step study "$py" -m hpsearch run studies/mnist_gpu.yaml --no-progress --storage "$db"
    step status "$py" -m hpsearch status studies/mnist_gpu.yaml --storage "$db"
    step best "$py" -m hpsearch best studies/mnist_gpu.yaml --storage "$db" --format json
    ;;
  *)
    echo "usage: bash bench/gpu.sh prepare|check|study" >&2
    exit 2
    ;;
esac
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed steps: ${failed[*]}" >&2
  exit 1
fi
