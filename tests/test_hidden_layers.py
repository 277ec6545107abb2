"""The hidden-layers section (analyses/hidden_layers.py): filters, maps, saliency and prose."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from analyses import PRESENTATION, hidden_layers
from digits import original
from digits.data import MNIST
from digits.models import BestCNN, Model2
from report.analysis import sections_from_modules
from report.compare import AHEAD, BEHIND, UNSEPARATED, Runs, compare
from report.context import ComputeContext, DrawContext, Results
from report.keys import PRESENTATION_MODULES, Keys
from report.render import SectionView, make_environment, render_sections
from report.workers import execute

REPO = Path(__file__).resolve().parent.parent


def model_with_distinct_convs() -> Model2:
    torch.manual_seed(0)
    model = Model2()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.linspace(-1, 1, 288).reshape(32, 1, 3, 3))
        model.conv2.weight.copy_(torch.linspace(0.5, -0.5, 18432).reshape(64, 32, 3, 3))
    return model.eval()


def inked_images(n: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images, about half of the pixels blank (no ink)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    images[images < 128] = 0
    return images


# --- filters and maps ---------------------------------------------------------------------------


def test_conv2_filters_are_not_conv1s() -> None:
    model = model_with_distinct_convs()
    conv1 = hidden_layers.layer_kernels(model, "conv1")
    conv2 = hidden_layers.layer_kernels(model, "conv2")
    assert conv1.shape == (32, 1, 3, 3) and conv2.shape == (64, 32, 3, 3)
    fig = hidden_layers.conv_filters_figure(conv2, "conv2")
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    # 32 rows (input channels) x 64 columns (filters) of 3x3 tiles with 1-pixel gaps.
    assert shown.shape == (32 * 4 - 1, 64 * 4 - 1)
    np.testing.assert_array_equal(shown[0:3, 4:7], conv2[1, 0])  # filter 1, input channel 0
    np.testing.assert_array_equal(shown[4:7, 0:3], conv2[0, 1])  # filter 0, input channel 1
    assert "conv2" in fig.axes[0].get_title()
    # Every weight shown is conv2's, each exactly once (none of conv1's 288).
    np.testing.assert_array_equal(np.sort(shown[np.isfinite(shown)]), np.sort(conv2.ravel()))
    with pytest.raises(ValueError):
        hidden_layers.layer_kernels(model, "fc1")


def test_mosaic_layout() -> None:
    tiles = np.arange(5 * 2 * 2, dtype=float).reshape(5, 2, 2)
    out = hidden_layers.mosaic(tiles, ncols=3)
    assert out.shape == (5, 8)
    np.testing.assert_array_equal(out[3:5, 0:2], tiles[3])
    assert np.isnan(out[2]).all() and np.isnan(out[3:5, 6:8]).all()


def test_activations_and_saliency() -> None:
    model = model_with_distinct_convs()
    image = torch.randint(0, 256, (28, 28), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    acts = hidden_layers.activations(model, image)
    assert {k: v.shape for k, v in acts.items()} == {"conv1": (32, 26, 26),
                                                     "conv2": (64, 24, 24), "fc1": (128,),
                                                     "fc2": (10,)}
    assert (acts["conv1"] >= 0).all() and acts["fc2"].sum() == pytest.approx(1, abs=1e-5)
    maps = hidden_layers.input_saliency(model, image)
    assert maps.shape == (10, 28, 28)
    x = (image.float() / 255)[None, None].requires_grad_(True)
    model(x)[0, 7].backward()
    np.testing.assert_allclose(maps[7], x.grad[0, 0].numpy(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(maps[7], maps[3])


# --- the saliency claim ---------------------------------------------------------------------------


def test_true_class_saliency_is_each_images_own_row() -> None:
    model = model_with_distinct_convs()
    images = inked_images(5)
    labels = torch.tensor([3, 0, 9, 3, 7])
    batched = hidden_layers.true_class_saliency(model, images, labels, batch_size=2)
    assert batched.shape == (5, 28, 28)
    for i, label in enumerate(labels.tolist()):
        every_class = hidden_layers.input_saliency(model, images[i])
        np.testing.assert_allclose(batched[i], every_class[label], rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())  # leaves the model clean


def test_ink_shares_on_known_maps() -> None:
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    images[:, 0, :] = 200  # one row of four inked pixels: a quarter of the image
    on_ink_only = np.where(images[0] > 0, 1.0, 0.0)
    uniform = -np.ones((4, 4))  # the sign does not matter: |saliency| counts
    on_ink, ink = hidden_layers.ink_shares(images, np.stack([on_ink_only, uniform]))
    np.testing.assert_allclose(ink, [0.25, 0.25])
    np.testing.assert_allclose(on_ink, [1.0, 0.25])


def test_saliency_claim_is_ahead_only_when_saliency_favours_ink() -> None:
    rng = np.random.default_rng(0)
    images = inked_images(60).numpy()
    ink = images > 0
    noise = rng.random(images.shape)
    # Concentrated: ink pixels get five times the background's sensitivity.
    on_ink, share = hidden_layers.ink_shares(images, noise * np.where(ink, 5.0, 1.0))
    assert compare(Runs(on_ink, "image"), Runs(share, "image")).verdict == AHEAD
    # Indifferent to ink: the two shares agree up to noise.
    on_ink, share = hidden_layers.ink_shares(images, noise)
    assert compare(Runs(on_ink, "image"), Runs(share, "image")).verdict == UNSEPARATED
    # Avoiding ink.
    on_ink, share = hidden_layers.ink_shares(images, noise * np.where(ink, 0.1, 1.0))
    assert compare(Runs(on_ink, "image"), Runs(share, "image")).verdict == BEHIND


# --- the whole section --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def computed(tmp_path_factory) -> dict:
    """compute on synthetic test images with a random (untrained) model 2 on [0, 1] pixels."""
    tmp = tmp_path_factory.mktemp("hidden")
    data = MNIST(inked_images(20, seed=1), torch.arange(20) % 10, inked_images(100, seed=2),
                 torch.arange(100) % 10, source="synthetic")
    torch.manual_seed(0)
    model2 = Model2()
    classifiers = tmp / "classifiers"
    (classifiers / "objects").mkdir(parents=True)
    (classifiers / "manifest.json").write_text(json.dumps({"metrics": {}}))
    # Saved as the classifiers section saves it: every float tensor in half precision.
    torch.save({"state_dict": {k: v.half() for k, v in model2.state_dict().items()},
                "mean": 0.0, "std": 1.0}, classifiers / "objects" / "model2.pt")
    # The stronger CNN and its recorded test logits, which only draw reads (the drawing pad).
    best = BestCNN(0.13, 0.31).eval()
    torch.save({"state_dict": best.state_dict(), "mean": 0.13, "std": 0.31, "dropout": 0.4},
               classifiers / "objects" / "best.pt")
    (classifiers / "arrays").mkdir()
    with torch.no_grad():
        np.savez_compressed(classifiers / "arrays" / "best_seed0_logits.npz",
                            values=best(data.test_images[:, None].float() / 255).numpy())
    dataset = tmp / "dataset"
    dataset.mkdir()
    (dataset / "manifest.json").write_text(json.dumps({"metrics": {}}))
    staging = tmp / "compute"
    staging.mkdir()
    cfg = hidden_layers.Config(saliency_images=40)
    upstream = {"dataset": dataset, "classifiers": classifiers}
    ctx = ComputeContext("hidden_layers", cfg, seed=3, device=torch.device("cpu"),
                         staging=staging, upstream=upstream, data_loader=lambda: data,
                         log=lambda m: None)
    result = execute(hidden_layers.compute, ctx)
    (staging / "manifest.json").write_text(json.dumps({"metrics": result["metrics"]}))
    return {"ctx": ctx, "folder": staging, "upstream": upstream, "data": data, "tmp": tmp}


def draw_from(computed: dict, name: str, folder: Path | None = None) -> DrawContext:
    """Run draw over compute's results (or those in `folder`) into a fresh staging folder."""
    staging = computed["tmp"] / name
    staging.mkdir()
    ctx = DrawContext("hidden_layers", computed["ctx"].cfg, seed=3, staging=staging,
                      upstream=computed["upstream"], data_loader=lambda: computed["data"],
                      log=lambda m: None, results=folder or computed["folder"])
    execute(hidden_layers.draw, ctx)
    return ctx


@pytest.fixture(scope="module")
def section(computed) -> tuple[SimpleNamespace, Path]:
    """The section as the page sees it: compute's and draw's metrics merged, draw's items."""
    ctx = draw_from(computed, "drawn")
    merged = SimpleNamespace(cfg=ctx.cfg, metrics={**computed["ctx"].metrics, **ctx.metrics},
                             items=ctx.items, streams=computed["ctx"].streams)
    return merged, ctx._staging


def render(ctx: SimpleNamespace, staging: Path, metrics: dict | None = None,
           reduced: dict | None = None, model2_acc: float | None = None) -> str:
    """The section's HTML; `model2_acc`: the classifiers' accuracy of the network as trained
    (default: this section's, of its stored copy)."""
    view = SectionView("hidden_layers", (REPO / "analyses" / "hidden_layers.md").read_text(),
                       ctx.cfg, metrics or ctx.metrics, ctx.items, staging, "run")
    env = make_environment(REPO / "templates")
    trained = view.metrics["test_accuracy"] if model2_acc is None else model2_acc
    classifiers = {"n_train_used": 6_000, "n_train_total": 60_000, "n_test": 10_000,
                   "model2_plain_histories": [{"epochs": [1, 2]}], "best_test_accs": [0.99],
                   "model2_plain_test_accs": [trained, 0.5]}
    render_sections(env, [view], {"metrics": {"hidden_layers": view.metrics,
                                              "classifiers": classifiers},
                                  "build": {"profile": "quick", "reduced": reduced or {}},
                                  "original": original.facts()})
    assert view.title == "Visualizing the trained hidden layers"
    return view.html


def test_section_runs_on_synthetic_data(section) -> None:
    ctx, _ = section
    m = ctx.metrics
    assert m["conv2_kernel_shape"] == [64, 32, 3, 3]
    assert m["wrong_predicted"] != m["wrong_label"]
    assert m["saliency_images"] == 40 and len(m["saliency_indices"]) == 4
    assert m["saliency_vs_ink"]["a"]["n"] == m["saliency_vs_ink"]["b"]["n"] == 40
    assert m["saliency_vs_ink"]["a"]["mean"] == pytest.approx(m["saliency_on_ink"])
    assert 0 < m["ink_share"] < 1
    # The shown digits are distinct, each the first of its class among the measured images.
    labels = [int(i) % 10 for i in m["saliency_indices"]]
    assert len(set(labels)) == 4
    assert {"saliency_images", "saliency_digits"} <= set(ctx.streams.used)
    assert {i["name"] for i in ctx.items} == {
        "conv1_filters", "conv2_filters", "fc2_weights", "feature_maps_correct",
        "feature_maps_wrong", "saliency", "saliency_shares", "draw_pad_model.js"}


def test_compute_records_arrays_and_no_verdict(computed) -> None:
    ctx, folder = computed["ctx"], computed["folder"]
    m = ctx.metrics
    assert not [k for k, v in m.items() if isinstance(v, dict) and "verdict" in v]
    assert all(i["kind"] == "array" for i in ctx.items)  # no figure: those are draw's

    def array(name: str) -> np.ndarray:
        return Results("hidden_layers", "hidden_layers", folder).array(name)

    # The kernels as saved (float16), exactly: model 2 is stored in half precision.
    saved = torch.load(computed["upstream"]["classifiers"] / "objects" / "model2.pt",
                       weights_only=False)["state_dict"]
    np.testing.assert_array_equal(array("conv2_kernels"), saved["conv2.weight"].numpy())
    assert array("fc2_weights").shape == (10, 128)
    for key in ("correct", "wrong"):
        assert array(f"{key}_conv2").shape == (64, 24, 24)
        assert array(f"{key}_conv2").dtype == np.float16
        assert array(f"{key}_fc2").sum() == pytest.approx(1, abs=1e-5)
        # The share of active values is measured in compute, on the float32 maps.
        assert m[f"{key}_conv1_active"] == pytest.approx(float((array(f"{key}_conv1") > 0)
                                                              .mean()), abs=1e-3)
    assert array("saliency_on_ink_shares").shape == array("ink_shares").shape == (40,)
    assert array("saliency_maps").shape == (4, 10, 28, 28)
    labels = computed["data"].test_labels.numpy()
    assert array("saliency_predicted").dtype == np.uint8
    assert m["wrong_label"] == labels[m["wrong_index"]]


def test_draw_reproduces_items_and_verdict_from_the_results(computed) -> None:
    first, again = draw_from(computed, "draw1"), draw_from(computed, "draw2")
    assert first.metrics == again.metrics
    assert not set(first.metrics) & set(computed["ctx"].metrics)
    assert first.metrics["saliency_vs_ink"]["a"]["mean"] == pytest.approx(
        float(Results("hidden_layers", "hidden_layers", computed["folder"])
              .array("saliency_on_ink_shares").mean()))
    # Edited shares (saliency nearly all on ink) turn the verdict: it is drawn from the arrays.
    edited = computed["tmp"] / "edited"
    (edited / "arrays").mkdir(parents=True)
    for path in (computed["folder"] / "arrays").iterdir():
        (edited / "arrays" / path.name).symlink_to(path)
    (edited / "manifest.json").write_text((computed["folder"] / "manifest.json").read_text())
    (edited / "arrays" / "saliency_on_ink_shares.npz").unlink()
    # (Nearly all on ink, with some spread: a spread of zero would measure no noise.)
    np.savez_compressed(edited / "arrays" / "saliency_on_ink_shares.npz",
                        values=np.linspace(0.95, 1.0, 40))
    assert draw_from(computed, "draw_edited", edited).metrics["saliency_vs_ink"]["verdict"] \
        == AHEAD


def test_compute_reaches_no_presentation_module() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    (section,) = sections_from_modules([hidden_layers])
    compute = keys.closure(section, "compute")
    assert compute.excluded == frozenset()
    assert "analyses/hidden_layers.py:conv_filters_figure" not in compute.symbols
    draw = set(keys.symbols(section, "draw"))
    assert "report/compare.py:compare" in draw
    assert "analyses/hidden_layers.py:true_class_saliency" not in draw


def test_prose_renders_and_names_reduced_upstream_settings(section) -> None:
    ctx, staging = section
    plain = " ".join(render(ctx, staging).split())
    assert "@@ITEM" not in plain and "conv2 filters" in plain
    assert "trained there on 6,000 of the 60,000 training images for 2 epochs (the original " \
        f"trained its model 2 for {original.EPOCHS})." in plain
    reduced = " ".join(render(ctx, staging, reduced={"classifiers": [
        {"key": "epochs", "value": 2, "full": 10}, {"key": "seeds", "value": 2, "full": 3},
        {"key": "train_subset", "value": 6000, "full": 0}]}).split())
    assert "for 2 epochs (the original trained its model 2 for " \
        f"{original.EPOCHS}): settings that differ from the full profile's, so the filters" \
        in reduced
    assert "<code>" not in reduced.split("so the filters")[0]  # no raw setting names
    only_seeds = " ".join(render(ctx, staging, reduced={"classifiers": [
        {"key": "seeds", "value": 2, "full": 3}]}).split())
    assert "differ from the full profile" not in only_seeds  # seeds do not shape model 2


@pytest.mark.parametrize("trained, says", [
    (None, "correctly, as the network in full precision did."),
    (0.9837, "correctly, against 98.37 % for the network as the classifiers section measured "
             "it, in full precision: rounding cost 1 correct answer."),
    (0.9830, "correctly, against 98.30 % for the network as the classifiers section measured "
             "it, in full precision: rounding gained 6 correct answers.")])
def test_the_stored_copys_accuracy_is_set_beside_the_trained_networks(
        section, trained: float | None, says: str) -> None:
    ctx, staging = section
    metrics = {**ctx.metrics, "test_accuracy": 0.9836}
    plain = " ".join(render(ctx, staging, metrics, model2_acc=trained).split())
    assert f"it classifies 98.36 % of the test images {says}" in plain


@pytest.mark.parametrize("verdict", [AHEAD, BEHIND, UNSEPARATED])
def test_strokes_sentence_follows_the_verdict(section, verdict: str) -> None:
    ctx, staging = section
    metrics = json.loads(json.dumps(ctx.metrics))
    metrics["saliency_vs_ink"]["verdict"] = verdict
    html = render(ctx, staging, metrics)
    assert ("concentrates on the strokes" in html) == (verdict == AHEAD)


# --- the drawing pad ----------------------------------------------------------------------------


def test_draw_pad_asset_is_the_saved_cnn_folded_in_half_precision(section, computed) -> None:
    from digits import drawing

    ctx, staging = section
    m = ctx.metrics
    script = (staging / hidden_layers.PAD_SCRIPT).read_text()
    net, examples = drawing.decode_pad_script(script)
    saved = torch.load(computed["upstream"]["classifiers"] / "objects" / "best.pt",
                       weights_only=False)
    expected = drawing.half_rounded(drawing.fold_batch_norm(drawing.best_cnn(saved)))
    assert len(net.layers) == len(expected.layers)
    for ours, theirs in zip(net.layers, expected.layers):
        assert (ours.kind, ours.relu) == (theirs.kind, theirs.relu)
        if ours.weight is not None:
            np.testing.assert_array_equal(ours.weight, theirs.weight)
            np.testing.assert_array_equal(ours.bias, theirs.bias)
    assert m["pad_script"] == hidden_layers.PAD_SCRIPT
    assert m["pad_script_bytes"] == len(script.encode())
    assert m["pad_parameters"] == expected.parameters
    assert m["pad_maps"] == [{"channels": 32, "size": 28}, {"channels": 32, "size": 28},
                             {"channels": 64, "size": 14}, {"channels": 64, "size": 14}]
    assert m["pad_multiply_adds"] == drawing.multiply_adds(expected)
    # The examples: right ones first, then mistakes, as the recorded logits read them.
    logits = Results("classifiers", "best", computed["upstream"]["classifiers"]).array(
        "best_seed0_logits")
    labels = computed["data"].test_labels.numpy()
    flags = [e["mistake"] for e in m["pad_examples"]]
    # (An untrained network reads few digits right: one per digit, as many as there are.)
    assert flags == sorted(flags) and 1 <= flags.count(False) <= hidden_layers.PAD_CORRECT
    right = [e["label"] for e in m["pad_examples"] if not e["mistake"]]
    assert len(set(right)) == len(right)  # one per digit
    assert 0 < flags.count(True) <= hidden_layers.PAD_MISTAKES
    for e, shown in zip(m["pad_examples"], examples):
        assert e == {k: v for k, v in shown.items() if k != "pixels"}
        assert (logits[e["index"]].argmax() != labels[e["index"]]) == e["mistake"]
        np.testing.assert_array_equal(shown["pixels"],
                                      computed["data"].test_images[e["index"]].numpy())
    # float16 against the trained float32 network, on every test image here (fewer than
    # PAD_CHECK).
    assert m["pad_checked"] == len(labels)
    assert 0 <= m["pad_checked"] - m["pad_same_class"] <= 2
    assert 0 < m["pad_max_logit_change"] < 0.05


def test_prose_places_the_pad_and_says_it_needs_javascript(section) -> None:
    ctx, staging = section
    html = render(ctx, staging)
    assert html.count('class="draw-pad"') == 1
    assert f'data-src="assets/hidden_layers/{hidden_layers.PAD_SCRIPT}"' in html
    assert html.count('class="draw-pad-example') == len(ctx.metrics["pad_examples"])
    assert html.count('class="draw-pad-map"') == len(ctx.metrics["pad_maps"])
    assert "needs JavaScript" in html
    pad = html[html.index('<div class="draw-pad"'):html.index('class="draw-pad-nojs"')]
    assert "\n\n" not in pad and "<p><div" not in html  # one HTML block, not broken by Markdown
    text = " ".join(html.split())
    assert f"({ctx.metrics['pad_script_bytes']:,} bytes)" in text
