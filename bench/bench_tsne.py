"""Benchmark: openTSNE against scikit-learn's TSNE on the same PCA-50 input of MNIST.

For each size, both embed the same seeded subset of the 70,000 train + test images, reduced to
50 dimensions by a PCA fitted on all of them. Prints wall time, the time ratio and the accuracy
of a 10-nearest-neighbour classifier (5-fold stratified CV) in each 2-D embedding, and writes
everything as JSON (default bench/results/bench_tsne.json; bench/results/ is git-ignored).

    python bench/bench_tsne.py --sizes 1000 2000 5000

`python -m bench` runs one size of it with the other benchmarks (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is stated in --help."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000],
                        help="numbers of images to embed")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="n_jobs for both implementations (the default is os.cpu_count())")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--dims", type=int, default=50, help="PCA dimensions fed to t-SNE")
    parser.add_argument("--gradients", choices=("fft", "bh", "auto"), default="fft",
                        help="openTSNE's negative_gradient_method (the article uses fft; auto "
                             "picks Barnes-Hut below 10,000 points)")
    parser.add_argument("--k", type=int, default=10, help="neighbours of the kNN score")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the MNIST IDX files; None = the cache, then mirrors")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bench_tsne.json")
    return parser.parse_args(argv)


def pca_inputs(data_dir: Path | None, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA-`dims` features [70000, dims] float32 of all images, and their labels."""
    import torch
    from sklearn.decomposition import PCA

    from digits.data import load_mnist

    mnist = load_mnist(data_dir, log=lambda m: print(f"data: {m}"))
    images = torch.cat([mnist.train_images, mnist.test_images]).reshape(-1, 784).numpy()
    labels = torch.cat([mnist.train_labels, mnist.test_labels]).numpy()
    pixels = images.astype(np.float32) / 255
    features = PCA(n_components=dims, svd_solver="covariance_eigh").fit_transform(pixels)
    return features.astype(np.float32), labels


def run_opentsne(x: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, float, int]:
    """openTSNE with the article's settings: embedding, seconds, iterations."""
    from openTSNE import TSNE

    start = time.perf_counter()
    emb = TSNE(perplexity=args.perplexity, initialization="pca", n_jobs=args.threads,
               negative_gradient_method=args.gradients, random_state=args.seed).fit(x)
    return np.asarray(emb), time.perf_counter() - start, 250 + 500


def run_sklearn(x: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, float, int]:
    """scikit-learn's TSNE (Barnes-Hut), PCA initialisation, automatic learning rate."""
    from sklearn.manifold import TSNE

    start = time.perf_counter()
    model = TSNE(n_components=2, perplexity=args.perplexity, init="pca", learning_rate="auto",
                 n_jobs=args.threads, random_state=args.seed)
    emb = model.fit_transform(x)
    return emb, time.perf_counter() - start, int(model.n_iter_)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, write JSON."""
    import openTSNE
    import sklearn

    from digits.embedding_quality import knn_cv_predict
    from digits.metrics import accuracy

    args = parse_args(argv)
    features, labels = pca_inputs(args.data_dir, args.dims)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{'n':>7} {'openTSNE s':>11} {'sklearn s':>10} {'ratio':>6} "
          f"{'kNN openTSNE':>13} {'kNN sklearn':>12}")
    for n in args.sizes:
        idx = np.sort(rng.choice(len(features), size=min(n, len(features)), replace=False))
        x, y = features[idx], labels[idx]
        result = {"n": len(idx)}
        for name, runner in (("opentsne", run_opentsne), ("sklearn", run_sklearn)):
            emb, seconds, iterations = runner(x, args)
            pred = knn_cv_predict(emb, y, k=args.k, folds=5, seed=args.seed, n_jobs=args.threads)
            result[name] = {"seconds": seconds, "iterations": iterations,
                            "knn_accuracy": accuracy(y, pred)}
        result["time_ratio_sklearn_over_opentsne"] = (result["sklearn"]["seconds"]
                                                      / result["opentsne"]["seconds"])
        rows.append(result)
        o, s = result["opentsne"], result["sklearn"]
        print(f"{len(idx):>7,} {o['seconds']:>11.1f} {s['seconds']:>10.1f} "
              f"{result['time_ratio_sklearn_over_opentsne']:>5.2f}x "
              f"{o['knn_accuracy']:>13.2%} {s['knn_accuracy']:>12.2%}", flush=True)
    report = {
        "benchmark": "openTSNE vs scikit-learn TSNE on MNIST PCA-50",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # The load average tells whether other jobs shared the CPU (times are wall clock).
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "load_average": os.getloadavg()},
        "versions": {"openTSNE": openTSNE.__version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
