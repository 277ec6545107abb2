"""Tiny settings for every analysis: each runs whole in seconds on 2 CPU cores.

`TINY` sizes the analyses for the small synthetic digits of tests/synthetic.py (where a subset
of 0, "all", is a few hundred images); `ON_REAL_DATA` adds the subsets that keep them as small on
the real MNIST (60,000 training and 10,000 test images). tests/test_choices.py builds every
analysis with TINY; conftest.py's `computed_site` builds the whole article on the real data with
both, and bench/gpu_rehearse.sh rehearses the GPU run with them:

    python tests/tiny.py NAME...   # the real-data pairs of those analyses, as key=value
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

# Small enough for seconds per analysis on two CPU cores; every analysis still runs whole.
TINY = {
    "embeddings.tsne_points": "300", "embeddings.knn_points": "300",
    "embeddings.trust_points": "60", "embeddings.trust_repeats": "2",
    "embeddings.scatter3d_points": "200", "embeddings.tsne_gradients": "bh",
    "embeddings.thumb_grid": "8", "embeddings.threads": "1",
    "classifiers.train_subset": "0", "classifiers.epochs": "1", "classifiers.seeds": "2",
    "classifiers.best_epochs": "1", "classifiers.best_seeds": "1",
    "optimizers.optimizers": "sgd,adam,adagrad", "optimizers.epochs": "1",
    "optimizers.validation": "60", "optimizers.train_subset": "120",
    "optimizers.test_subset": "0", "optimizers.seeds": "2", "optimizers.update_probes": "2",
    "dynamics.train_size": "160", "dynamics.epochs": "1", "dynamics.frames": "4",
    "dynamics.overhead_pairs": "2", "dynamics.overhead_steps": "5",
    "dynamics.flow_steps": "10", "dynamics.flow_test": "60", "dynamics.flow_seeds": "2",
    "hidden_layers.saliency_images": "30",
    "gan.train_subset": "0", "gan.epochs": "2", "gan.record_every": "1",
    "gan.g_widths": "16,16,32", "gan.d_widths": "32,16,16",
    "gan.runs": "original,range,smoothing", "gan.samples_per_class": "8",
    "gan.reference_per_class": "8", "gan.fid_batches": "2", "gan.copy_check": "4",
    "gan.walk_steps": "4",
    "transfer.backbone": "efficientnet_lite0", "transfer.input_size": "32",
    "transfer.validation": "60", "transfer.seeds": "2", "transfer.budgets": "2,0",
    "transfer.head_epochs": "2", "transfer.head_min_steps": "5",
    "transfer.head_lrs": "0.001,0.003", "transfer.cnn_epochs": "1", "transfer.cnn_min_steps": "2",
    "transfer.timing_images": "32", "transfer.finetune_epochs": "1",
    "transfer.tsne_points": "120", "transfer.maps_per_stage": "4", "transfer.download": "false",
    "transfer.threads": "1", "transfer.feature_cache": "off",
}

ON_REAL_DATA = {
    "classifiers.train_subset": "600", "optimizers.test_subset": "500",
    "gan.train_subset": "600", "transfer.train_subset": "600", "transfer.test_subset": "300",
}


def set_args(settings: dict[str, str]) -> list[str]:
    """build.py's `--set key=value` arguments for `settings`."""
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def on_real_data(names: Iterable[str] | None = None) -> dict[str, str]:
    """TINY with ON_REAL_DATA's subsets, for the real MNIST; only the analyses `names` if given."""
    settings = {**TINY, **ON_REAL_DATA}
    if names is None:
        return settings
    wanted = set(names)
    return {key: value for key, value in settings.items() if key.split(".")[0] in wanted}


if __name__ == "__main__":
    print(" ".join(f"{key}={value}" for key, value in on_real_data(sys.argv[1:]).items()))
