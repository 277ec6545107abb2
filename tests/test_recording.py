"""digits/recording.py: weight/gradient recorders, their summaries as arrays, fixed histogram
bins, activation capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from digits.models import Model2
from digits.recording import (KINDS, LOG_FLOOR, STATS, TB_PERCENTILES, DistributionRecorder,
                              Recording, capture_activations, distribution_summaries, fixed_edges,
                              histograms, percentile_bands, summarize, summary_from_arrays,
                              summary_to_arrays, weight_layers)
from digits.training import TrainSpec, train


def tiny_data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=g)


def fresh_model() -> Model2:
    torch.manual_seed(3)
    return Model2(0.13, 0.31)


def test_weight_layers_of_model2_in_forward_order() -> None:
    assert weight_layers(fresh_model()) == ["conv1", "conv2", "fc1", "fc2"]


def test_recorder_records_every_layer_at_the_due_steps() -> None:
    images, labels = tiny_data()
    model = fresh_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    recorder = DistributionRecorder(every=2, sample_size=1_000, seed=1)
    spec = TrainSpec(epochs=2, batch_size=16, optimizer="adam", lr=1e-3)  # 3 steps an epoch
    train(model, images, labels, spec, generator=torch.Generator().manual_seed(0),
          callbacks=[recorder])
    rec = recorder.recording
    assert rec.layers == ["conv1", "conv2", "fc1", "fc2"]
    assert rec.steps == [1, 3, 5]
    assert rec.epochs == pytest.approx([0.0, 2 / 3, 4 / 3])
    assert rec.shapes == {"conv1": [32, 1, 3, 3], "conv2": [64, 32, 3, 3],
                          "fc1": [128, 36864], "fc2": [10, 128]}
    # Small layers are kept whole, large ones sampled at the same positions every time.
    sizes = {layer: rec.values("weights", layer).shape for layer in rec.layers}
    assert sizes == {"conv1": (3, 288), "conv2": (3, 1_000), "fc1": (3, 1_000), "fc2": (3, 1_000)}
    assert rec.values("grads", "fc1").shape == (3, 1_000)
    # The first snapshot holds the initial weights (before any optimizer step).
    np.testing.assert_array_equal(rec.values("weights", "conv1")[0],
                                  initial["conv1.weight"].flatten().numpy())
    assert not np.array_equal(rec.values("weights", "conv1")[0], rec.values("weights", "conv1")[2])
    for layer in rec.layers:
        assert all(len(v) == 3 for v in rec.stats[layer].values())
        assert (rec.stat(layer, "g_max_abs") >= rec.stat(layer, "g_mean_abs")).all()
        assert (rec.stat(layer, "g_norm") > 0).all()
    assert rec.seconds > 0


def recorded(every: int = 2) -> Recording:
    images, labels = tiny_data()
    recorder = DistributionRecorder(every=every, sample_size=1_000, seed=1)
    train(fresh_model(), images, labels, TrainSpec(epochs=2, batch_size=16, optimizer="adam"),
          generator=torch.Generator().manual_seed(0), callbacks=[recorder])
    return recorder.recording


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same names, dtypes, shapes and values, bit for bit (NaN where NaN)."""
    assert sorted(a) == sorted(b)
    for name, value in a.items():
        assert value.dtype == b[name].dtype and value.shape == b[name].shape, name
        assert value.tobytes() == b[name].tobytes(), name


def test_summaries_survive_their_arrays_bit_for_bit(tmp_path: Path) -> None:
    rec = recorded()
    arrays = distribution_summaries(rec, bins=20, coverage=0.999)
    # Per layer and kind: edges, shares per bin, exact zeros and bands; never the values.
    assert not any(name.endswith((".weights", ".grads")) for name in arrays)
    shapes = {part: arrays[f"fc1.grads.{part}"].shape for part in ("edges", "shares", "zeros",
                                                                   "bands")}
    assert shapes == {"edges": (21,), "shares": (3, 20), "zeros": (3,),
                      "bands": (3, len(TB_PERCENTILES))}
    assert arrays["fc1.grads.shares"].dtype == np.float64
    assert arrays["conv1.stats"].shape == (len(STATS), 3)
    # The summaries are exactly what the sampled values give.
    for kind, scale in zip(KINDS, ("linear", "log")):
        for layer in rec.layers:
            values = rec.values(kind, layer)
            edges = fixed_edges(values, 20, 0.999, scale)
            np.testing.assert_array_equal(arrays[f"{layer}.{kind}.edges"], edges)
            np.testing.assert_array_equal(arrays[f"{layer}.{kind}.shares"],
                                          histograms(values, edges, scale))
            np.testing.assert_array_equal(arrays[f"{layer}.{kind}.zeros"],
                                          (values == 0).mean(axis=1))
            np.testing.assert_array_equal(arrays[f"{layer}.{kind}.bands"],
                                          percentile_bands(values))
    # Stored as .npy files without pickling (what ctx.array writes) and read back.
    for name, values in arrays.items():
        np.save(tmp_path / f"{name}.npy", values, allow_pickle=False)
    back = summary_from_arrays(lambda name: np.load(tmp_path / f"{name}.npy",
                                                    allow_pickle=False))
    assert (back.layers, back.steps, back.epochs, back.shapes, back.stats, back.seconds) == (
        rec.layers, rec.steps, rec.epochs, rec.shapes, rec.stats, rec.seconds)
    assert_same_arrays(summary_to_arrays(back), arrays)
    # And from a plain mapping, twice over.
    assert_same_arrays(summary_to_arrays(summary_from_arrays(
        summary_to_arrays(summary_from_arrays(arrays)))), arrays)


def test_summaries_count_exact_zeros_and_keep_nan_for_statistics_not_kept() -> None:
    rec = Recording(layers=["a"], steps=[1, 2], epochs=[0.0, 0.5], shapes={"a": [2, 2]})
    rec.weights = {"a": [torch.tensor([-1.0, 0.0, 0.5, 1.0]), torch.tensor([-2.0, 0.0, 1.0, 2.0])]}
    rec.grads = {"a": [torch.tensor([0.0, 1e-3, 0.0, 1e-2]), torch.tensor([0.0, 0.0, 0.0, 1.0])]}
    rec.stats = {"a": {"g_norm": [1.0, 2.0]}}
    summary = summarize(rec, bins=4, coverage=1.0)
    np.testing.assert_array_equal(summary.zeros["grads"]["a"], [0.5, 0.75])
    np.testing.assert_array_equal(summary.zeros["weights"]["a"], [0.25, 0.25])
    # Gradient shares leave the zeros out; weight shares count every value.
    np.testing.assert_allclose(summary.shares["grads"]["a"].sum(1), [0.5, 0.25])
    np.testing.assert_allclose(summary.shares["weights"]["a"].sum(1), [1.0, 1.0])
    np.testing.assert_array_equal(summary.bands["weights"]["a"][:, [0, -1]], [[-1, 1], [-2, 2]])
    back = summary_from_arrays(summary_to_arrays(summary))
    assert back.stat("a", "g_norm").tolist() == [1.0, 2.0]
    assert np.isnan(back.stat("a", "w_std")).all()  # not kept: NaN, never a made-up value


def test_sampled_gradients_match_the_true_gradient() -> None:
    images, labels = tiny_data(16)
    model = fresh_model()
    recorder = DistributionRecorder(layers=["fc1"], every=1, sample_size=500, seed=2)
    seen = {}

    class Grab:  # runs after the recorder on the same step
        def after_backward(self, step, epoch, model):
            if step == 1:
                seen["grad"] = model.fc1.weight.grad.flatten().clone()

    train(model, images, labels, TrainSpec(epochs=1, batch_size=16, optimizer="sgd"),
          generator=torch.Generator().manual_seed(0), callbacks=[recorder, Grab()])
    sample = recorder.recording.grads["fc1"][0]
    index = recorder._index["fc1"]
    torch.testing.assert_close(sample, seen["grad"][index])
    assert recorder.recording.stat("fc1", "g_norm")[0] == pytest.approx(
        seen["grad"].norm().item(), rel=1e-5)


def test_recording_does_not_change_training() -> None:
    images, labels = tiny_data()
    spec = TrainSpec(epochs=1, batch_size=16, optimizer="adam", lr=1e-3)
    plain, recorded = fresh_model(), fresh_model()
    train(plain, images, labels, spec, generator=torch.Generator().manual_seed(0))
    train(recorded, images, labels, spec, generator=torch.Generator().manual_seed(0),
          callbacks=[DistributionRecorder(every=1, sample_size=100)])
    for a, b in zip(plain.state_dict().values(), recorded.state_dict().values()):
        assert torch.equal(a, b)


def test_histogram_bins_are_fixed_across_frames() -> None:
    rng = np.random.default_rng(0)
    # A distribution that widens tenfold over the frames, like fc1's weights under Adam.
    frames = np.stack([rng.normal(0, 0.01 * (1 + t), 5_000) for t in range(10)])
    edges = fixed_edges(frames, bins=40)
    assert len(edges) == 41 and edges[0] == -edges[-1]
    shares = histograms(frames, edges)
    assert shares.shape == (10, 40)
    np.testing.assert_allclose(shares.sum(1), 1.0)  # outliers clipped into the end bins
    # The last frame covers the axis; the first is squeezed in the middle of the same axis.
    centre = slice(15, 25)
    assert shares[0, centre].sum() > 0.95 and shares[-1, centre].sum() < 0.5
    # Edges from the first frame alone would have lost most of the last frame.
    first = fixed_edges(frames[:1], bins=40)
    inside = np.abs(frames[-1]) <= first[-1]
    assert inside.mean() < 0.3


def test_log_histograms_leave_out_exact_zeros() -> None:
    values = np.array([[0.0, 0.0, 1e-3, -1e-2, 1e-1, -1.0], [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]])
    edges = fixed_edges(values, bins=5, scale="log", log_floor=0.0)
    assert edges[0] == pytest.approx(-4) and edges[-1] == pytest.approx(0)
    shares = histograms(values, edges, scale="log")
    np.testing.assert_allclose(shares.sum(1), [4 / 6, 5 / 6])
    with pytest.raises(ValueError):
        fixed_edges(values, 5, scale="cubic")


def test_percentile_bands_are_ordered() -> None:
    frames = np.random.default_rng(1).normal(size=(6, 1_000))
    bands = percentile_bands(frames)
    assert bands.shape == (6, len(TB_PERCENTILES))
    assert (np.diff(bands, axis=1) >= 0).all()
    np.testing.assert_allclose(bands[:, 0], frames.min(1))


def test_activation_capture_shapes_and_removal() -> None:
    model = fresh_model().eval()
    x = torch.rand(2, 1, 28, 28)
    with capture_activations(model, ["conv1", "conv2", "fc1", "fc2"]) as capture:
        logits = model(x)
    shapes = {k: tuple(v.shape) for k, v in capture.outputs.items()}
    assert shapes == {"conv1": (2, 32, 26, 26), "conv2": (2, 64, 24, 24), "fc1": (2, 128),
                      "fc2": (2, 10)}
    torch.testing.assert_close(capture.outputs["fc2"], logits.detach())
    capture.outputs.clear()
    model(x)
    assert capture.outputs == {}  # hooks removed on exit
    with pytest.raises(KeyError):
        capture_activations(model, ["conv3"]).__enter__()


def test_log_edges_start_at_the_log_floor_quantile_by_default() -> None:
    magnitudes_ = 10.0 ** np.linspace(-8, 0, 1_001)  # evenly spread over eight decades
    edges = fixed_edges(magnitudes_[None], bins=10, scale="log")
    assert edges[0] == pytest.approx(-8 + 8 * LOG_FLOOR)
    assert edges[-1] == pytest.approx(0)
