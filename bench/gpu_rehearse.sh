#!/usr/bin/env bash
# The next GPU run rehearsed on the CPU, the way the lease will make it, before device time is
# spent on it:
#
#   bash bench/gpu_rehearse.sh [MNIST_DIR]
#
# It clones HEAD (committed work only, as the device gets it) into a temporary folder, makes the
# slim checkout there (bench/gpu_slim.py) and runs bench/gpu.sh with the ANALYSES that prints,
# on the CPU, in the full profile with the tiny settings below for the analyses that run (the
# frozen entries they reuse stay valid, as on the device). Then it goes back to the branch,
# unpacks the archive as the note's steps say and checks that the graph check passed, that every
# analysis run exited 0 and came back frozen, that the archive was written, and that `build.py
# --list` here reads the entries as fresh (with the same settings). Exit 0 only then;
# the clone is deleted on success and kept, with its path printed, on failure. This checkout is
# never touched. The carried wheels are left out: they are built for the device's Python 3.12,
# and the interpreter here has the packages already.
# Measured on the 2-core build machine (2026-12-05): optimizers, dynamics, gan and transfer built
# in about 190 s, the whole rehearsal (benchmarks and launch counts included) in about 5 minutes.
# Environment: PYTHON [.venv/bin/python, else python3], an interpreter with the project installed
# that runs gpu.sh (another Python, say 3.12 with torch 2.11 as on the device, rehearses that);
# .venv/bin/python, where there is one, checks that the entries it made are fresh here.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -n "${PYTHON:-}" ] || [ -x "$PY" ] || PY=python3
PY=$(command -v "$PY") || { echo "error: no Python at ${PYTHON:-python3}: set PYTHON"; exit 2; }
CHECK_PY=$ROOT/.venv/bin/python
[ -x "$CHECK_PY" ] || CHECK_PY=$PY
DATA=${1:-$ROOT/.carry/mnist}
[ -d "$DATA" ] || DATA=$HOME/.cache/mnist-explored/mnist
DATA=$(cd "$DATA" && pwd) || { echo "error: no MNIST folder: pass one (four IDX files)"; exit 2; }

# Tiny settings of one analysis: the full profile's code paths in seconds to minutes on 2 cores.
# tests/test_bench.py checks that every key names a field of that analysis's config.
tiny() {
  case $1 in
    embeddings) echo "embeddings.tsne_points=2000 embeddings.knn_points=2000 \
embeddings.trust_points=400" ;;
    classifiers) echo "classifiers.train_subset=1000 classifiers.epochs=1 classifiers.seeds=2 \
classifiers.best_epochs=1 classifiers.best_seeds=1" ;;
    optimizers) echo "optimizers.epochs=1 optimizers.train_subset=600 optimizers.test_subset=500 \
optimizers.validation=300 optimizers.seeds=2 optimizers.lr_factors=0.3,1.0 \
optimizers.update_probes=2" ;;
    dynamics) echo "dynamics.train_size=2000 dynamics.epochs=1 dynamics.frames=10 \
dynamics.overhead_pairs=2 dynamics.flow_steps=100 dynamics.flow_test=500 dynamics.flow_seeds=2" ;;
    gan) echo "gan.train_subset=1000 gan.epochs=2 gan.record_every=1 gan.optimizers=original,dcgan \
gan.g_widths=32,64,128 gan.d_widths=128,64,32 gan.samples_per_class=20 \
gan.reference_per_class=20 gan.fid_batches=1 gan.copy_check=10" ;;
    transfer) echo "transfer.input_size=48 transfer.train_subset=1000 transfer.test_subset=300 \
transfer.validation=200 transfer.seeds=2 transfer.budgets=10,0 transfer.cnn_epochs=1 \
transfer.cnn_min_steps=20 transfer.timing_images=64 transfer.finetune_epochs=1 \
transfer.tsne_points=300 transfer.maps_per_stage=8 transfer.threads=1 transfer.download=false" ;;
    *) ;;  # dataset, hidden_layers: quick = full, nothing to shorten
  esac
}

CLONE=$(mktemp -d /tmp/gpu-rehearsal.XXXXXX)
OUT="$CLONE/out"
git clone -q "$ROOT" "$CLONE/repo" || exit 1
cd "$CLONE/repo" || exit 1
"$PY" bench/gpu_slim.py | tee "$CLONE/slim.txt"
RUN=$(sed -n "s/^run(command=\"ANALYSES='\([^']*\)'.*/\1/p" "$CLONE/slim.txt")
if [ -z "$RUN" ]; then
  echo "nothing to rehearse: bench/gpu_slim.py planned no run (see above)"
  rm -rf "$CLONE"
  exit 0
fi
EXTRA=""
for name in $RUN; do [ "$name" = gan ] || EXTRA="$EXTRA $(tiny "$name")"; done
GAN=""
case " $RUN " in *" gan "*) GAN=$(tiny gan) ;; esac
DEVICE=cpu PYTHON="$PY" BUILD_BUDGET=3000 TOTAL_BUDGET=3300 BENCH_BUDGET=60 EXTRA_SETS="$EXTRA" \
  GAN_SETS="$GAN" ANALYSES="$RUN" bash bench/gpu.sh "$OUT" "$DATA" > "$CLONE/gpu.log" 2>&1
echo "bench/gpu.sh exited $? (its output: $CLONE/gpu.log)"
"$PY" bench/gpu_slim.py --back
cat "$OUT"/results.tgz.part-* | tar -xzf - -C . || echo "error: the archive did not unpack"

problems=0
check() {  # check WHAT COMMAND...: run the check, say what failed
  if ! "${@:2}" > /dev/null 2>&1; then echo "FAILED: $1"; problems=$((problems + 1)); fi
}
check "graph check passed" grep -q "graph check exited 0" reports/phases.log
for name in $RUN; do
  check "build $name exited 0" grep -q "build $name exited 0" reports/phases.log
  check "frozen/$name came back" test -f "frozen/$name/manifest.json"
done
check "archive written" grep -q "archive written" "$CLONE/gpu.log"  # stamped after packing
# Fresh here, read by this checkout's interpreter (the run's may be another Python, as the
# device's 3.12 is): with the same settings, every entry the run made lists as frozen in full.
SETS=()
for pair in $EXTRA $GAN; do SETS+=(--set "$pair"); done
"$CHECK_PY" build.py --list --profile full --device cpu "${SETS[@]}" > "$CLONE/list.txt" 2>&1
for name in $RUN; do
  check "frozen/$name fresh for $CHECK_PY" grep -Eq "^$name +frozen +full " "$CLONE/list.txt"
done
cat "$OUT/timings.md" 2>/dev/null
if [ "$problems" -gt 0 ]; then
  echo "rehearsal FAILED ($problems problems): kept in $CLONE (gpu.log, repo/reports)"
  exit 1
fi
echo "rehearsal passed: $RUN ran clean on the CPU (slim clone of $(git rev-parse --short HEAD))"
rm -rf "$CLONE"
