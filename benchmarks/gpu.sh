#!/usr/bin/env bash
# Every GPU measurement of the bench in one run, written into the GPU's section
# of BENCHMARKS.md (titled by the device's name, e.g. "NVIDIA H200"), in this order:
#   1. the Fashion-MNIST conv AE's epoch at batch sizes $EPOCH_BATCHES (512,1024), one
#      dispatch per epoch, both convolution implementations, in $EPOCH_DTYPE (tf32,bfloat16)
#      (the goal: an epoch under 50 ms);
#   2. the 64x64x3 conv VAE in bfloat16 at batch sizes $VAE_BATCHES (1024) and widths
#      $VAE_WIDTHS (1,4,16,32), convolutions $VAE_CONV (xla): its fraction of the bfloat16
#      matmul peak and of the roofline (the goal: >= 40% of the peak at its best batch;
#      VAE_BATCHES=1024,4096,8192 for that search),
#      with the plot of its FLOP/s and fraction against FLOPs per step;
#   3. a seeded run repeated bit for bit in fresh processes, with and without XLA's
#      --xla_gpu_deterministic_ops=true, and the step time it costs (conv AE, VAE);
#   4. the conv AE and conv VAE grown from 32x32 to 128x128 pixels, 3 channels, widths 1 and
#      4, batch 1024, bfloat16: the roofline as the workload grows;
#   5. the precision matrix: float32, TF32 and bfloat16, speed and the test figure after
#      the same training (conv AE 5 epochs, VAE 10), where Fashion-MNIST is available.
# Each step appends its run to the section as it ends (headed by what it measured, the date
# and the commit), so a run cut short keeps what it measured and a rerun adds to the earlier
# runs; the steps' log (gpu.log), the report and the plots also go to $OUT where that is set.
# The plots are named by the date (benchmarks/gpu_<date>_*.png), so a later run keeps them.
# BUDGET_S=N bounds the whole run to about N seconds: a step that would start with under a
# minute left is skipped, and the one running at the end is interrupted (a throughput step
# then reports the rows it measured; another step keeps only its log); skipped and cut
# steps are named at the end, exit 1.
# Leave a minute below any hard limit: an interrupted step may take 30 s more to stop.
# ONLY="growth precision" runs only the steps named (epoch, vae64, determinism, growth,
# precision): on one H200 the five took over ten minutes with their compiles (each step's
# start is in its log; benchmarks/logs/ keeps one), so a time-limited machine can split
# them into two runs. A copy whose .git is missing or older than its files names its commit
# in $JAXAE_COMMIT.
#
# For a GPU machine that has JAX, Flax, Optax, NumPy, Pillow, Matplotlib and tqdm but no
# network (the script names a module it lacks before any step): on a machine with one,
# from the repository root, fetch what jaxae needs besides (both folders are git-ignored):
#   bash benchmarks/gpu.sh --prepare     # wheels into .whl/ (for Python 3.12; another:
#                                        # WHEEL_PYTHON=3.11), Fashion-MNIST's IDX files
#                                        # into data/fashion-mnist/
# then copy the repository with .whl/ and data/ to the GPU machine and, from its root there:
#   bash benchmarks/gpu.sh
# On a CPU, DRY_RUN=1 bash benchmarks/gpu.sh runs every step with tiny sizes (a check of
# the script's paths, not a measurement), into $REPORT (default: a fresh scratch folder,
# /tmp/jaxae_gpu_check.*, with its log and plots), and PARSE_ONLY=1 has the bench check
# every step's options at the real settings, as on a GPU, printing each step's command and
# running nothing (tests/test_bench.py does). Every run checks all its steps' options so
# first, and runs none if the bench refuses one (exit 2). A step that fails while it runs
# is named and the others still run; the script then exits 1.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo pipefail$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  --prepare|"") ;;
  -*) echo "gpu.sh: unknown option $1: give --prepare, --help, or the report's path" >&2
      exit 2 ;;
esac
cd "$(dirname "$0")/.."
read -ra ONLY_STEPS <<< "${ONLY:-}"  # split on blanks, no file-name expansion
for step in ${ONLY_STEPS[@]+"${ONLY_STEPS[@]}"}; do
  case $step in epoch|vae64|determinism|growth|precision) ;;
    *) echo "gpu.sh: ONLY names no step $step: give some of epoch vae64 determinism growth" \
            "precision" >&2; exit 2 ;;
  esac
done
BUDGET_S=${BUDGET_S:-}
if [ -n "$BUDGET_S" ]; then
  if ! [[ $BUDGET_S =~ ^[0-9]+$ ]]; then
    echo "gpu.sh: BUDGET_S=$BUDGET_S is not whole seconds: give e.g. BUDGET_S=540" >&2; exit 2
  fi
  BUDGET_S=$((10#$BUDGET_S))  # "0900" is 900, not octal
  if [ "$BUDGET_S" -lt 60 ]; then
    echo "gpu.sh: BUDGET_S=$BUDGET_S leaves no step the minute it needs: give 60 or more" >&2
    exit 2
  fi
fi
if [ "${DRY_RUN:-0}" = 1 ] && [ "${PARSE_ONLY:-0}" = 1 ]; then
  echo "gpu.sh: DRY_RUN=1 runs the tiny settings, PARSE_ONLY=1 checks the real ones: give" \
       "one" >&2; exit 2
fi
wanted() {  # whether ONLY (if set) names this step
  [ ${#ONLY_STEPS[@]} -eq 0 ] || [[ " ${ONLY_STEPS[*]} " == *" $1 "* ]]
}

# Versions as in .venv (pyproject's pins); --no-deps: the image has the rest.
WHEELS="ml-collections==1.1.0 tensorflow-datasets==4.9.10 array-record==0.8.6 dm-tree==0.1.10
  docstring-parser==0.18.0 googleapis-common-protos==1.76.0 immutabledict==4.3.1
  importlib-resources==7.1.0 simple-parsing==0.1.9 tensorflow-metadata==1.21.0
  termcolor==3.3.0 toml==0.10.2 protobuf==7.36.2 six==1.17.0 wrapt==2.5.2"
SOURCE_ONLY="promise==2.3"  # published as a source release alone: built into a wheel here
# What those give, by import name (kept in step with WHEELS and SOURCE_ONLY): each is
# imported before any step, so a missing one is named (TFDS imports its own lazily and
# would fail later, as "has no attribute 'core'")
CARRIED="ml_collections, tensorflow_datasets.core, array_record, tree, docstring_parser"
CARRIED="$CARRIED, google.protobuf, immutabledict, importlib_resources, promise"
CARRIED="$CARRIED, simple_parsing, tensorflow_metadata, termcolor, toml, six, wrapt"
WHEEL_PYTHON=${WHEEL_PYTHON:-3.12}  # the GPU machine's Python, which the wheels are for

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .whl
  rm -f .whl/*.whl  # the wheels of one Python only: an earlier --prepare's may be another's
  for wheel in $WHEELS; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$WHEEL_PYTHON" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
      -d .whl "$wheel"
  done
  for package in $SOURCE_ONLY; do  # pure Python: a wheel built here installs there
    python3 -m pip wheel -q --no-deps -w .whl "$package"
  done
  echo "$WHEEL_PYTHON" > .whl/PYTHON_VERSION
  source=$(dpkg -L dataset-fashion-mnist 2>/dev/null | grep train-images | xargs -r dirname)
  if [ -n "$source" ]; then
    mkdir -p data/fashion-mnist
    cp "$source"/*-ubyte.gz data/fashion-mnist/
  else
    echo "gpu.sh --prepare: no dataset-fashion-mnist package here: put the four IDX .gz files"\
         "in data/fashion-mnist/ yourself" >&2
  fi
  ls -l .whl
  [ ! -d data/fashion-mnist ] || ls -l data/fashion-mnist
  exit 0
fi

DRY_RUN=${DRY_RUN:-0}
PARSE_ONLY=${PARSE_ONLY:-0}
OUT_DIR=${OUT:-}
if [ "$DRY_RUN" = 1 ] || [ "$PARSE_ONLY" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}
  if [ -n "$OUT_DIR" ]; then
    SCRATCH=$OUT_DIR
  else
    SCRATCH=$(mktemp -d /tmp/jaxae_gpu_check.XXXXXX)  # this check's own report, log, plots
    if [ "$PARSE_ONLY" = 1 ]; then trap 'rm -rf "$SCRATCH"' EXIT; fi  # it keeps nothing
  fi
  REPORT=${REPORT:-${1:-$SCRATCH/report.md}}
else
  PY=${PYTHON:-python3}
  REPORT=${REPORT:-${1:-BENCHMARKS.md}}
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    made_for=$(cat .whl/PYTHON_VERSION 2>/dev/null || echo 3.12)
    here=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [ -z "$here" ]; then
      echo "gpu.sh: $PY does not run: give PYTHON=<a Python $made_for with JAX for the GPU>" >&2
      exit 1
    fi
    if [ "$here" != "$made_for" ]; then
      echo "gpu.sh: the wheels in .whl/ are for Python $made_for, $PY is $here:" \
           "rerun WHEEL_PYTHON=$here bash benchmarks/gpu.sh --prepare where there is a network" \
           "(or give PYTHON=<a Python $made_for>)" >&2
      exit 1
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/jaxae_site .whl/*.whl
    export PYTHONPATH=/tmp/jaxae_site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# the IDX files --prepare carried, unless the caller names a folder of them
if [ -z "${JAXAE_FASHION_MNIST_DIR:-}" ] && ls data/fashion-mnist/*-ubyte.gz >/dev/null 2>&1
then
  export JAXAE_FASHION_MNIST_DIR=$PWD/data/fashion-mnist
fi
export TFDS_DATA_DIR=${TFDS_DATA_DIR:-/tmp/jaxae_tfds}

if [ "$DRY_RUN" != 1 ] && [ "$PARSE_ONLY" != 1 ]; then
  "$PY" -c 'import jax' 2>/dev/null || {
    echo "gpu.sh: $PY cannot import jax: give PYTHON=<a Python with JAX for the GPU>" >&2
    exit 1; }
  "$PY" -c 'import jax, sys; d = jax.devices()[0]; print(d.device_kind, jax.__version__);
sys.exit(d.platform != "gpu")' || {
    echo "gpu.sh: JAX sees no GPU here (DRY_RUN=1 checks the script on a CPU)" >&2; exit 1; }
fi
# Every module the bench and its plots import, before any step: a missing one is named here,
# not as every step's options being refused
NEEDED="import $CARRIED, benchmarks.bench, benchmarks.roofline, jaxae.evaluation.plots"
NEEDED="$NEEDED, matplotlib"
if ! failed=$("$PY" -c "$NEEDED" 2>&1); then
  echo "gpu.sh: $PY cannot run the bench: $(printf '%s\n' "$failed" | tail -1); install what" \
       "it lacks there (pip download it, as --prepare does its wheels, and carry .whl/)" >&2
  exit 1
fi
LOG=${OUT_DIR:-${SCRATCH:-/tmp}}/gpu.log
if [ "$PARSE_ONLY" = 1 ]; then LOG=/dev/null; fi  # a check of options writes no log
[ "$LOG" = /dev/null ] || : > "$LOG"
if [ "$PARSE_ONLY" = 1 ] || "$PY" -c \
    'from jaxae.data import load_dataset; load_dataset("fashion_mnist")' >>"$LOG" 2>&1; then
  HAVE_DATA=1
else
  HAVE_DATA=0
  [ "$LOG" = /dev/null ] || tail -3 "$LOG" >&2
  echo "gpu.sh: Fashion-MNIST does not load here (above): random pixels for the speed" \
       "steps, no precision matrix (bash benchmarks/gpu.sh --prepare, then carry data/)" >&2
fi

if [ "$DRY_RUN" = 1 ]; then  # chunks of 2 steps, not whole epochs: a CPU trains slowly
  EPOCH_BATCHES=16,32; EPOCH_CHUNK=2; VAE_BATCHES=8,16; VAE_CHUNK=2; CHUNK=2; CHUNKS=1; STEPS=4
  EPOCHS="--epochs 1"; GROW_SIZES=32; GROW_WIDTHS=1,2; GROW_BATCH=8; PEAK="--peak-n 256"
  # tiny sizes; the other settings as given, so that DRY_RUN checks them too
  EPOCH_DTYPE=${EPOCH_DTYPE:-float32}; VAE_WIDTHS=${VAE_WIDTHS:-1,2}
  VAE_CONV=${VAE_CONV:-patches,xla}
else
  # In the H200 runs (benchmarks/logs/h200-2026-12-04*-gpu.log, BENCHMARKS.md) the epoch was
  # fastest at batch 1024 of 128 to 1024, conv=xla was the faster for 64x64 images, and the
  # wide VAEs compiled slowly (width 32: 75 s; width 16 at batch 4096 was cut unfinished):
  # so the epoch at 512 and 1024, the VAE's widths at batch 1024 alone.
  EPOCH_BATCHES=${EPOCH_BATCHES:-512,1024}; EPOCH_CHUNK=epoch; VAE_BATCHES=${VAE_BATCHES:-1024}
  VAE_CHUNK=5  # steps a chunk: at most 7, an epoch's at batch 8192
  CHUNK=20; CHUNKS=3; STEPS=200; EPOCHS=""; GROW_SIZES=32,64,128; GROW_WIDTHS=1,4
  GROW_BATCH=1024; PEAK=""; EPOCH_DTYPE=${EPOCH_DTYPE:-tf32,bfloat16}
  VAE_WIDTHS=${VAE_WIDTHS:-1,4,16,32}; VAE_CONV=${VAE_CONV:-xla}
fi
[ -e "$REPORT" ] || : > "$REPORT"  # the steps append to it (bench refuses a missing file)
FAILED=""
bench() {  # each step appends its run to the device's section
  local name=$1; shift
  wanted "$name" || return 0
  local limit=()
  if [ -n "$BUDGET_S" ] && [ "$PARSE_ONLY" != 1 ]; then
    local left=$((BUDGET_S - SECONDS))
    if [ "$left" -lt 60 ]; then
      echo "gpu.sh: step $name skipped: $(( left > 0 ? left : 0 )) s of BUDGET_S=$BUDGET_S" \
           "left" | tee -a "$LOG" >&2
      FAILED="$FAILED $name(skipped)"
      return 0
    fi
    # --foreground: the step stays in this script's process group, so an interrupt of the
    # script reaches it too
    limit=(timeout --foreground --preserve-status --signal=INT --kill-after=30 "$left")
  fi
  if [ "$PARSE_ONLY" = 1 ]; then  # the options alone, checked as on a GPU (check_queued)
    [ "$CHECK" = 1 ] || echo "== gpu.sh: $name (python -m benchmarks.bench $*)" >&2
    QUEUED+=("@@step" "$name" "$@" --append "$REPORT")
    return 0
  fi
  echo "== gpu.sh: $name (at ${SECONDS} s)" | tee -a "$LOG" >&2
  local started=$SECONDS status=0
  ${limit[@]+"${limit[@]}"} "$PY" -m benchmarks.bench "$@" --append "$REPORT" 2>&1 \
    | tee -a "$LOG" || status=${PIPESTATUS[0]}
  case $status in
    0) ;;
    130|138|143)  # stopped by SIGINT (the limit's), SIGUSR1 or SIGTERM (the step reports
      # the rows it measured)
      FAILED="$FAILED $name(cut short)" ;;
    *)
      echo "gpu.sh: step $name failed (its output is in $LOG); going on" | tee -a "$LOG" >&2
      FAILED="$FAILED $name" ;;
  esac
  if [ -n "$OUT_DIR" ]; then  # the report, and a plot this step wrote (unless there already)
    for file in "$REPORT" "$PLOT" "$GROW_PLOT"; do
      if [ -f "$file" ] && [ "$(stat -L -c %Y "$file")" -ge "$((EPOCH_START + started))" ] &&
          [ "$(realpath "$(dirname "$file")")" != "$(realpath "$OUT_DIR")" ]; then
        cp "$file" "$OUT_DIR/"
      fi
    done
  fi
}
EPOCH_START=$(( $(date +%s) - SECONDS ))  # the script's start, for the plots' ages
TODAY=$(date +%F)
PLOT=benchmarks/gpu_${TODAY}_conv_vae_64x64x3_roofline.png  # the report names them: keep
GROW_PLOT=benchmarks/gpu_${TODAY}_conv_growth_roofline.png  # them beside it
if [ "$DRY_RUN" = 1 ]; then
  PLOT=$SCRATCH/vae.png; GROW_PLOT=$SCRATCH/grow.png
fi

run_steps() {
bench epoch --models conv_ae --batch-sizes "$EPOCH_BATCHES" --steps-per-chunk "$EPOCH_CHUNK" \
  --chunks "$CHUNKS" --conv patches,xla --compute-dtype "$EPOCH_DTYPE" --data auto $PEAK
bench vae64 --models conv_vae --image-sizes 64 --channels 3 --batch-sizes "$VAE_BATCHES" \
  --widths "$VAE_WIDTHS" --steps-per-chunk "$VAE_CHUNK" --chunks "$CHUNKS" --conv "$VAE_CONV" \
  --compute-dtype bfloat16 \
  --data random --plot "$PLOT" $PEAK
bench determinism --mode determinism --models conv_ae,vae --steps "$STEPS" --data auto
bench growth --models conv_ae,conv_vae --image-sizes "$GROW_SIZES" --channels 3 \
  --widths "$GROW_WIDTHS" --batch-sizes "$GROW_BATCH" --steps-per-chunk "$CHUNK" \
  --chunks "$CHUNKS" --compute-dtype bfloat16 --data random --plot "$GROW_PLOT" $PEAK
if [ "$HAVE_DATA" = 0 ] && wanted precision && [ "$PARSE_ONLY" != 1 ]; then
  FAILED="$FAILED precision(no Fashion-MNIST)"  # skipped, said above: no option refused
fi
if [ "$HAVE_DATA" = 1 ]; then
  bench precision --mode precision --models conv_ae,vae --compute-dtype float32,tf32,bfloat16 \
    --steps-per-chunk "$CHUNK" --chunks "$CHUNKS" $EPOCHS $PEAK
fi
}

QUEUED=()
check_queued() {  # the queued steps' options, each parsed as on a GPU, in one Python process
  [ "${#QUEUED[@]}" -gt 0 ] || return 0
  local refused
  refused=$("$PY" -c 'import contextlib, io, sys, jax; jax.default_backend = lambda: "gpu"
from benchmarks import bench_args
words = sys.argv[1:]  # "@@step", its name, its options; the next step (no option is "@@step")
starts = [i for i, w in enumerate(words) if w == "@@step"] + [len(words)]
for start, end in zip(starts, starts[1:]):
    name, args, said = words[start + 1], words[start + 2:end], io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            bench_args.parse_args(args)
    except SystemExit as refusal:
        if refusal.code:
            print(f"gpu.sh: step {name}: {said.getvalue().strip()}", file=sys.stderr)
            print(name, flush=True)' "${QUEUED[@]}") || refused="$refused checks(failed)"
  for name in $refused; do FAILED="$FAILED $name"; done
  QUEUED=()
}

CHECK=0
if [ "$PARSE_ONLY" != 1 ]; then  # every step's options first: a bad one costs no device time
  CHECK=1; PARSE_ONLY=1; run_steps; check_queued; PARSE_ONLY=0; CHECK=0
  if [ -n "$FAILED" ]; then
    echo "gpu.sh: the bench refuses the options of step(s)$FAILED (above): nothing was run" >&2
    exit 2
  fi
fi
run_steps
if [ "$PARSE_ONLY" = 1 ]; then
  check_queued
  if [ -n "$FAILED" ]; then
    echo "gpu.sh: the bench refuses the options of step(s)$FAILED (above)" >&2; exit 1
  fi
  echo "gpu.sh: done; every step's options pass the bench's checks" >&2
  exit 0
fi
if [ -n "$FAILED" ]; then
  echo "gpu.sh: these steps failed, were skipped or were cut short:$FAILED (the output is" \
       "in $LOG); the report of the others is in $REPORT" >&2
  exit 1
fi
echo "gpu.sh: done; the report is in $REPORT" >&2
