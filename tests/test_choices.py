"""The test set chooses nothing, and two builds agree: every analysis, whole, on tiny data.

Each analysis records its choices with `ctx.choice` (learning rates, the optimizer carried into
later sections, any "best" pick); the manifest lists them. This test builds every analysis of
the article on small synthetic digits three times: twice alike, which must give identical
results (timings aside: the determinism check, at a fraction of a second quick build's cost),
and once with the test labels scrambled, which must change no recorded choice while the
reported test accuracy changes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from synthetic import blobs
from tiny import TINY

from analyses import ANALYSES
from digits import original
from digits.data import MNIST
from report.config import make_config
from report.engine import BuildOptions, DataSource, build

REPO = Path(__file__).resolve().parent.parent


def build_all(root: Path, data: MNIST) -> dict[str, dict]:
    """Build every analysis on `data`; each analysis's compute manifest, with its drawn
    metrics under "drawn"."""
    config = make_config([m.ANALYSIS for m in ANALYSES], "quick", TINY)
    options = BuildOptions(root=REPO, out=root / "site", cache_dir=root / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    source = DataSource(fingerprint=f"synthetic-{root.name}", load=lambda device: data)
    _, outcomes = build(ANALYSES, config, options, source, log=lambda m: None)
    failed = {n: o.error for n, o in outcomes.items() if o.status != "run"}
    assert not failed, failed
    return {name: {**json.loads((o.entry / "manifest.json").read_text()),
                   "drawn": o.draw_manifest["metrics"]} for name, o in outcomes.items()}


@pytest.fixture(scope="module")
def data() -> tuple[MNIST, MNIST]:
    """Synthetic digits, and the same with the test labels scrambled."""
    train, test = blobs(400, 1, label_noise=0.1), blobs(200, 2, label_noise=0.1)
    scrambled_labels = test[1][torch.randperm(200, generator=torch.Generator().manual_seed(5))]
    return (MNIST(*train, *test, source="synthetic"),
            MNIST(*train, test[0], scrambled_labels, source="synthetic"))


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory,
               data: tuple[MNIST, MNIST]) -> tuple[dict, dict]:
    clean, scrambled = data
    return (build_all(tmp_path_factory.mktemp("clean"), clean),
            build_all(tmp_path_factory.mktemp("scrambled"), scrambled))


TIMING = re.compile(r"seconds|per_second|overhead|hook_share")


def without_timings(value: object) -> object:
    """Drop wall-clock measurements (names matching TIMING), which differ between runs."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_two_builds_give_identical_results(two_builds: tuple[dict, dict],
                                           data: tuple[MNIST, MNIST],
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """Determinism: every analysis computed and drawn again from an empty cache gives the same
    metrics, choices, random streams and result files (timings aside)."""
    first = two_builds[0]
    again = build_all(tmp_path_factory.mktemp("clean-again"), data[0])
    for name, manifest in first.items():
        for part in ("metrics", "drawn", "choices", "streams"):
            assert without_timings(manifest[part]) == without_timings(again[name][part]), \
                (name, part)
        arrays = {k: v["sha256"] for k, v in manifest["files"].items()
                  if k.startswith("arrays/") and not TIMING.search(k)}
        assert arrays == {k: again[name]["files"][k]["sha256"] for k in arrays}, name


def test_choices_are_recorded(two_builds: tuple[dict, dict]) -> None:
    clean, _ = two_builds
    recorded = {(name, c) for name, m in clean.items() for c in m["choices"]}
    assert {("optimizers", "chosen_lr"), ("optimizers", "best_optimizer"),
            ("optimizers", "best_lr")} <= recorded


def test_scrambled_test_labels_change_no_choice(two_builds: tuple[dict, dict]) -> None:
    clean, scrambled = two_builds
    for name, manifest in clean.items():
        assert manifest["choices"] == scrambled[name]["choices"], name
        for choice in manifest["choices"]:
            assert manifest["metrics"][choice] == scrambled[name]["metrics"][choice], \
                f"{name}.{choice} depends on the test labels"


def test_scrambling_is_seen_by_what_reports_on_the_test_set(two_builds: tuple[dict, dict]) -> None:
    # The check above could pass vacuously if the scramble never reached the analyses.
    clean, scrambled = two_builds
    assert clean["optimizers"]["drawn"]["fair_test_mean"] != \
        scrambled["optimizers"]["drawn"]["fair_test_mean"]
    assert clean["classifiers"]["metrics"]["best_test_accs"] != \
        scrambled["classifiers"]["metrics"]["best_test_accs"]
