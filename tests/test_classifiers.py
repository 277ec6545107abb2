"""analyses.classifiers: helpers, the contract, and the whole section on synthetic digits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from analyses import classifiers as c
from analyses import dataset
from digits import original
from digits.data import MNIST
from digits.models import Model2
from report.config import make_config
from report.engine import BuildOptions, DataSource, build
from synthetic import blobs

REPO = Path(__file__).resolve().parent.parent


def test_most_confident_mistakes() -> None:
    probs = torch.tensor([
        [0.9, 0.1, 0.0],   # 0: true 0, right
        [0.2, 0.7, 0.1],   # 1: true 0, wrong at 0.7
        [0.05, 0.05, 0.9],  # 2: true 1, wrong at 0.9
        [0.4, 0.6, 0.0],   # 3: true 0, wrong at 0.6
        [0.3, 0.3, 0.4],   # 4: true 2, right
    ])
    labels = torch.tensor([0, 0, 1, 0, 2])
    mistakes = c.most_confident_mistakes(probs, labels, k=2)
    assert [m["index"] for m in mistakes] == [2, 1]
    assert mistakes[0] == {"index": 2, "true": 1, "predicted": 2,
                           "probability": mistakes[0]["probability"],
                           "true_probability": mistakes[0]["true_probability"]}
    assert np.isclose(mistakes[0]["probability"], 0.9)
    assert np.isclose(mistakes[0]["true_probability"], 0.05)
    assert len(c.most_confident_mistakes(probs, labels, k=10)) == 3
    assert c.most_confident_mistakes(probs[[0, 4]], labels[[0, 4]], k=5) == []


def test_lead_from_arithmetic_is_min_of_lead_and_bias() -> None:
    assert c.lead_from_arithmetic(0.0082, 0.0016) == 0.0016  # a lead bigger than the bias
    assert c.lead_from_arithmetic(0.0010, 0.0016) == 0.0010  # all of a small lead
    assert c.lead_from_arithmetic(-0.002, 0.0016) == 0.0  # no lead, nothing to explain


def test_layer_description_matches_the_original() -> None:
    assert c.describe_layers(Model2()) == \
        "conv 3×3 → 32×26×26 · conv 3×3 → 64×24×24 · fc → 128 · fc → 10"


def test_contract() -> None:
    analysis = c.ANALYSIS
    assert (analysis.name, analysis.requires) == ("classifiers", ("dataset",))
    full = analysis.config
    # The full profile is the original's procedure for models 1 and 2, over several seeds.
    assert (full.train_subset, full.epochs, full.batch_size, full.lr, full.momentum) == \
        (0, original.EPOCHS, original.BATCH_SIZE, original.LR, original.MOMENTUM)
    assert full.seeds >= 3
    assert full.best_seeds >= 3 and full.target >= 0.996
    quick = dataclasses.replace(full, **analysis.quick)
    assert 0 < quick.train_subset <= 15_000 and quick.best_seeds >= 1


def test_test_logits_callback_matches_evaluate() -> None:
    from torch import nn

    from digits.training import History, evaluate

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    callback = c.TestLogits(images, labels, batch_size=16)
    history = History()
    callback.on_epoch_end(1, model, history)
    expected = evaluate(model, images, labels)
    assert history.eval_acc["test"] == [expected.accuracy]
    assert np.isclose(history.eval_loss["test"][0], expected.loss)
    assert callback.logits is not None and callback.logits.shape == (50, 10)




def test_whole_section_on_synthetic_digits(tmp_path: Path) -> None:
    sets = {"classifiers.epochs": "1", "classifiers.seeds": "2", "classifiers.best_epochs": "1",
            "classifiers.best_seeds": "2", "classifiers.train_subset": "0",
            "classifiers.gallery": "4"}
    modules = [dataset, c]
    config = make_config([m.ANALYSIS for m in modules], "quick", sets)
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    data = MNIST(*blobs(200, 1), *blobs(100, 2), source="synthetic")
    source = DataSource(fingerprint="synthetic", load=lambda device: data)
    index, outcomes = build(modules, config, options, source, log=lambda m: None)
    assert outcomes["classifiers"].status == "run", outcomes["classifiers"].error
    metrics = json.loads((tmp_path / "site" / "data" / "classifiers" / "metrics.json")
                         .read_text())
    for key in ("model1", "model2"):
        for scaling in ("plain", "standardised"):
            assert len(metrics[f"{key}_{scaling}_test_accs"]) == 2
        assert metrics[f"{key}_vs_original"]["verdict"] in ("ahead", "behind", "cannot separate")
        assert metrics[f"{key}_standardised_vs_plain"]["b"]["n"] == 2
    assert metrics["model2_vs_model1"]["a"]["mean"] == metrics["model2_plain_test_mean"]
    assert metrics["original_model2_true_acc"] == original.true_accuracy(original.MODEL2_TEST_ACC,
                                                                         100)
    assert metrics["same_budget_as_original"] is False
    # The reproduction trains on [0, 1] pixels, as the original: its saved model 2 says so.
    saved = torch.load(next((tmp_path / "cache" / "classifiers").glob("*/objects/model2.pt")),
                       weights_only=False)
    assert (saved["mean"], saved["std"]) == (0.0, 1.0)
    # Saved in half precision (the largest frozen file otherwise), and it loads into Model2.
    assert saved["state_dict"]["fc1.weight"].dtype == torch.float16
    Model2().load_state_dict(saved["state_dict"])
    reproduction = json.loads((tmp_path / "site" / "data" / "classifiers" / "reproduction.json")
                              .read_text())
    assert [r["step"] for r in reproduction["rows"][:4]] == [
        "original, as reported", "original, correct / test images",
        "this build, [0, 1] pixels", "this build, standardised"]
    page = index.read_text()
    for name in ("architectures", "curves_original", "reproduction", "denominator",
                 "curves_best", "best_seeds", "confusion", "per_class", "mistakes",
                 "confident_mistakes"):
        assert f'id="classifiers-{name}"' in page
