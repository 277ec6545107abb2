#!/usr/bin/env bash
# The next GPU run rehearsed on the CPU, the way the lease will make it, before device time is
# spent on it:
#
#   bash bench/gpu_rehearse.sh [MNIST_DIR]
#
# It clones HEAD (committed work only, as the device gets it) into a temporary folder, makes the
# slim checkout there (bench/gpu_slim.py) and runs bench/gpu.sh with the ANALYSES that prints,
# on the CPU, in the full profile with the tests' tiny settings (tests/tiny.py) for the analyses
# that run (the frozen entries they reuse stay valid, as on the device). Then it goes back to the branch,
# unpacks the archive as the note's steps say and checks that the graph check passed, that every
# analysis run exited 0 and came back frozen, that the archive was written, and that `build.py
# --list` here reads the entries as fresh (with the same settings). Exit 0 only then;
# the clone is deleted on success and kept, with its path printed, on failure. This checkout is
# never touched. The carried wheels are left out: they are built for the device's Python 3.12,
# and the interpreter here has the packages already.
# Measured on the 2-core build machine (2026-12-05, Python 3.12 and torch 2.11 running gpu.sh):
# optimizers, dynamics, gan and transfer built in 84 s, the whole rehearsal (benchmarks and
# launch counts included) in 3 min 42 s.
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
# The tests' tiny settings on the real data, for the analyses that run only.
EXTRA=$("$PY" tests/tiny.py $RUN) || exit 1
DEVICE=cpu PYTHON="$PY" BUILD_BUDGET=3000 TOTAL_BUDGET=3300 BENCH_BUDGET=60 EXTRA_SETS="$EXTRA" \
  ANALYSES="$RUN" bash bench/gpu.sh "$OUT" "$DATA" > "$CLONE/gpu.log" 2>&1
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
for pair in $EXTRA; do SETS+=(--set "$pair"); done
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
