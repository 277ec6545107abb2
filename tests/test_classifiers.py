"""analyses.classifiers: helpers, the contract, and compute and draw on synthetic digits."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import blobs

from analyses import PRESENTATION
from analyses import classifiers as c
from analyses.gan import load_judge
from digits import original
from digits.data import MNIST
from digits.models import BestCNN, Model2
from digits.recipes import BEST_CNN, eval_batch_size
from digits.training import predict_logits
from report.analysis import sections_from_modules
from report.context import ComputeContext, DrawContext, Results
from report.keys import PRESENTATION_MODULES, Keys
from report.render import SectionView, make_environment, render_sections
from report.workers import execute

REPO = Path(__file__).resolve().parent.parent
ITEMS = {"architectures", "curves_original", "reproduction", "denominator", "curves_best",
         "best_seeds", "confusion", "per_class", "mistakes", "confident_mistakes"}


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


def test_layer_shapes_and_their_description_match_the_original() -> None:
    shapes = c.layer_shapes(Model2())
    assert [row["name"] for row in shapes] == ["conv1", "conv2", "fc1", "fc2"]
    assert shapes[0] == {"name": "conv1", "kind": "Conv2d", "shape": [32, 26, 26],
                         "parameters": 32 * 9 + 32, "kernel": [3, 3]}
    assert shapes[2]["kernel"] is None and shapes[2]["parameters"] == 64 * 24 * 24 * 128 + 128
    json.dumps(shapes)  # recorded as a metric: plain JSON types only
    assert c.describe_layers(shapes) == \
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
    # The stronger CNN's recipe is digits.recipes.BEST_CNN, not copied into the config: a
    # profile changes only its epochs and seeds.
    fields = {f.name for f in dataclasses.fields(full)}
    assert {f for f in fields if f.startswith("best_")} == {"best_epochs", "best_seeds"}
    assert not fields & {"max_shift", "max_degrees", "dropout"}
    assert full.best_epochs == BEST_CNN.epochs
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


def test_compute_reaches_no_presentation_module_and_draw_does_the_verdicts() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    (section,) = sections_from_modules([c])
    compute = keys.closure(section, "compute")
    assert compute.excluded == frozenset()
    assert not any(s.startswith(("report/compare.py", "digits/plots.py"))
                   for s in compute.symbols)
    draw = set(keys.symbols(section, "draw"))
    assert {"report/compare.py:compare", "report/compare.py:summarize"} <= draw
    # Training code is compute's alone: an edit to it never re-draws, and the reverse.
    assert "analyses/classifiers.py:train_one" not in draw
    assert "analyses/classifiers.py:most_confident_mistakes" not in compute.symbols


# --- compute and draw on synthetic digits -------------------------------------------------------


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """compute on 200 training and 100 test blobs: 2 seeds of everything, 1 epoch."""
    tmp = tmp_path_factory.mktemp("classifiers")
    data = MNIST(*blobs(200, 1), *blobs(100, 2), source="synthetic")
    dataset = tmp / "dataset"
    dataset.mkdir()
    pixels = data.train_images.float() / 255
    dataset_metrics = {"train_mean": pixels.mean().item(), "train_std": pixels.std().item()}
    (dataset / "manifest.json").write_text(json.dumps({"metrics": dataset_metrics}))
    cfg = dataclasses.replace(c.ANALYSIS.config, epochs=1, seeds=2, best_epochs=1, best_seeds=2,
                              train_subset=0, gallery=4)
    staging = tmp / "compute"
    staging.mkdir()
    ctx = ComputeContext("classifiers", cfg, seed=7, device=torch.device("cpu"),
                         staging=staging, upstream={"dataset": dataset},
                         data_loader=lambda: data, log=lambda m: None)
    result = execute(c.compute, ctx)
    (staging / "manifest.json").write_text(json.dumps({"metrics": result["metrics"]}))
    return {"ctx": ctx, "folder": staging, "dataset": dataset, "data": data, "cfg": cfg,
            "dataset_metrics": dataset_metrics, "tmp": tmp}


def draw_from(computed: dict, folder: Path, name: str) -> DrawContext:
    """Run draw over the compute results in `folder`, into a fresh staging folder `name`."""
    staging = computed["tmp"] / name
    staging.mkdir()
    ctx = DrawContext("classifiers", computed["cfg"], seed=7, staging=staging,
                      upstream={"dataset": computed["dataset"]},
                      data_loader=lambda: computed["data"], log=lambda m: None, results=folder)
    execute(c.draw, ctx)
    return ctx


def test_compute_records_raw_results_and_no_verdict(computed: dict) -> None:
    ctx, folder = computed["ctx"], computed["folder"]
    m = ctx.metrics
    for key in ("model1", "model2"):
        for scaling in ("plain", "standardised"):
            correct = m[f"{key}_{scaling}_test_correct"]
            assert len(correct) == 2 and len(m[f"{key}_{scaling}_histories"]) == 2
            assert m[f"{key}_{scaling}_test_accs"] == [k / 100 for k in correct]
    assert len(m["best_test_accs"]) == len(m["best_histories"]) == 2
    assert m["n_train_used"] == 200 and m["n_test"] == 100
    assert m["best_recipe"] == {**dataclasses.asdict(BEST_CNN), "epochs": 1}
    assert np.array(m["best_confusion"]).sum() == 100
    # Summaries and verdicts are draw's: nothing compute records is one.
    assert not [k for k, v in m.items() if isinstance(v, dict) and "verdict" in v]
    assert not [k for k in m if k.endswith(("_test_mean", "_test_std", "_acc_mean"))]
    assert [i["kind"] for i in ctx.items] == ["array", "array"]
    logits = Results("test", "classifiers", folder).array("best_seed0_logits")
    predictions = Results("test", "classifiers", folder).array("model2_seed0_predictions")
    assert (logits.dtype, logits.shape) == (np.float32, (100, 10))
    assert (predictions.dtype, predictions.shape) == (np.uint8, (100,))
    # The recorded logits are seed 0's: their argmax gives its correct count.
    labels = computed["data"].test_labels.numpy()
    assert int((logits.argmax(1) == labels).sum()) == m["best_test_correct"][0]
    assert int((predictions == labels).sum()) == m["model2_plain_test_correct"][0]


def test_saved_models_load_where_they_are_used(computed: dict) -> None:
    folder, data = computed["folder"], computed["data"]
    # The reproduction trains on [0, 1] pixels, as the original: its saved model 2 says so.
    model2 = torch.load(folder / "objects" / "model2.pt", weights_only=False)
    assert (model2["mean"], model2["std"]) == (0.0, 1.0)
    assert model2["state_dict"]["fc1.weight"].dtype == torch.float16
    Model2().load_state_dict(model2["state_dict"])
    # The stronger CNN in float32: the GAN section's judge loads it and gives the recorded
    # test logits of seed 0.
    best = torch.load(folder / "objects" / "best.pt", weights_only=False)
    assert best["state_dict"]["classifier.1.weight"].dtype == torch.float32
    assert best["dropout"] == BEST_CNN.dropout
    assert (best["mean"], best["std"]) == (computed["dataset_metrics"]["train_mean"],
                                          computed["dataset_metrics"]["train_std"])
    upstream = types.SimpleNamespace(device=torch.device("cpu"),
                                     load=lambda up, name: torch.load(
                                         folder / "objects" / f"{name}.pt", weights_only=False))
    judge = load_judge(upstream)
    assert isinstance(judge, BestCNN) and not judge.training
    logits = predict_logits(judge, data.test_images, eval_batch_size(torch.device("cpu")))
    recorded = Results("test", "classifiers", folder).array("best_seed0_logits")
    np.testing.assert_array_equal(logits.numpy(), recorded)


def test_draw_makes_every_item_and_verdict_from_the_results(computed: dict) -> None:
    first = draw_from(computed, computed["folder"], "draw1")
    again = draw_from(computed, computed["folder"], "draw2")
    assert first.metrics == again.metrics  # draw reads results; it trains nothing
    assert {i["name"] for i in first.items} == ITEMS
    m, r = first.metrics, computed["ctx"].metrics
    assert not set(m) & set(r)
    for key in ("model1", "model2"):
        assert m[f"{key}_vs_original"]["verdict"] in ("ahead", "behind", "cannot separate")
        assert m[f"{key}_standardised_vs_plain"]["b"]["n"] == 2
    assert m["model2_vs_model1"]["a"]["mean"] == m["model2_plain_test_mean"]
    assert m["original_model2_true_acc"] == original.true_accuracy(original.MODEL2_TEST_ACC, 100)
    assert m["same_budget_as_original"] is False
    assert m["best_seed0_errors"] == 100 - r["best_test_correct"][0]
    assert m["model2_seed0_correct"] == r["model2_plain_test_correct"][0]
    assert m["gallery_size"] == min(4, m["best_seed0_errors"])
    tables = {i["name"]: i["rows"] for i in first.items if i["kind"] == "table"}
    assert [row["step"] for row in tables["reproduction"][:4]] == [
        "original, as reported", "original, correct / test images",
        "this build, [0, 1] pixels", "this build, standardised"]


def test_verdicts_follow_the_recorded_results(computed: dict) -> None:
    """Edited results (model 2 always right, model 1 never) turn draw's verdict around."""
    folder = computed["tmp"] / "edited"
    folder.mkdir()
    for part in ("arrays", "objects"):
        (folder / part).symlink_to(computed["folder"] / part)
    metrics = dict(computed["ctx"].metrics)
    metrics["model2_plain_test_accs"] = [1.0, 0.99]
    metrics["model1_plain_test_accs"] = [0.1, 0.11]
    (folder / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    m = draw_from(computed, folder, "draw_edited").metrics
    assert m["model2_vs_model1"]["verdict"] == "ahead"
    assert m["model2_plain_test_mean"] == pytest.approx(0.995)


def test_prose_renders_from_compute_and_draw_metrics(computed: dict) -> None:
    ctx = draw_from(computed, computed["folder"], "draw_prose")
    metrics = {**computed["ctx"].metrics, **ctx.metrics}
    view = SectionView("classifiers", (REPO / "analyses" / "classifiers.md").read_text(),
                       computed["cfg"], metrics, ctx.items, ctx._staging, "run")
    render_sections(make_environment(REPO / "templates"), [view], {
        "metrics": {"classifiers": metrics, "dataset": computed["dataset_metrics"]},
        "build": {"profile": "quick", "reduced": {}, "device": "cpu"},
        "original": original.facts()})
    plain = " ".join(view.html.split())
    for name in ITEMS:
        assert f'id="classifiers-{name}"' in plain
    # The recipe's settings come from the recorded recipe, not from the config.
    assert f"(p = {BEST_CNN.dropout})" in plain
    assert f"Nesterov momentum {BEST_CNN.momentum}, weight decay {BEST_CNN.weight_decay}" \
        in plain
