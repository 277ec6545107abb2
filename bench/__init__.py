"""Side-by-side benchmarks of mnist-explored; `python -m bench --help` runs them all.

See bench/README.md. `bench.harness` holds what every benchmark shares (rows, skips, timing,
results.json and results.md), `bench.suite` the benchmarks themselves, and
`bench/bench_training.py`, `bench/bench_tsne.py` the older single benchmarks they reuse.
"""
