"""Frozen features, computed once and cached, and the small head trained on them.

A frozen extractor gives the same features for an image at every epoch, so computing them once
and training the head on the stored vectors does the same training as recomputing them for
every batch, as the original did (135 s an epoch), at a fraction of the cost. The features are
kept on the device and, optionally, on disk under a key that hashes everything they depend on
(the weights, the preprocessing, the images, torch and the device type).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digits.backbones import Extractor, preprocess
from digits.training import History, TrainSpec, autocast, train

# --- extraction --------------------------------------------------------------------------------


@torch.no_grad()
def extract(extractor: Extractor, images: torch.Tensor, size: int, normalise: bool = True,
            batch_size: int = 256, progress: Callable[..., Any] | None = None,
            desc: str = "features") -> torch.Tensor:
    """Pooled features [N, D] (float32, on the images' device) of uint8 digits [N, 28, 28].

    The extractor runs in eval mode, batch by batch (bf16 autocast on CUDA).
    """
    device = images.device
    extractor.to(device).eval()
    if device.type == "cuda":
        extractor.to(memory_format=torch.channels_last)
    out = []
    bar = progress(total=images.shape[0], desc=desc) if progress else None
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size]
        with autocast(device):
            out.append(extractor(preprocess(batch, size, normalise)).float())
        if bar is not None:
            bar.update(batch.shape[0])
    if bar is not None:
        bar.close()
    if not out:
        return torch.empty(0, extractor.feature_dim, device=device)
    return torch.cat(out)


def feature_key(weights_sha256: str, backbone: str, size: int, normalise: bool,
                images: torch.Tensor, device_type: str, part: str = "features") -> str:
    """A content hash of everything the features depend on (hex SHA-256)."""
    digest = hashlib.sha256()
    images_bytes = images.detach().cpu().contiguous().numpy().tobytes()
    for item in (weights_sha256, backbone, str(size), str(normalise), device_type,
                 torch.__version__, part, str(tuple(images.shape)),
                 hashlib.sha256(images_bytes).hexdigest()):
        digest.update(item.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _to(value: Any, device: torch.device) -> Any:
    """A tensor, or a dict of tensors and numbers, moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


class FeatureCache:
    """Features on disk by content key (a folder of `<key>.pt`); `None` folder = no disk cache.

    A value is a tensor or a dict of tensors and numbers (loaded with weights_only=True).
    """

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder else None

    def get(self, key: str, device: torch.device) -> Any:
        """The stored value for `key`, its tensors on `device`, or None."""
        if self.folder is None:
            return None
        path = self.folder / f"{key}.pt"
        if not path.is_file():
            return None
        try:
            return _to(torch.load(path, map_location="cpu", weights_only=True), device)
        except Exception:  # noqa: BLE001 - a torn or foreign file: recompute rather than fail
            return None

    def put(self, key: str, value: Any) -> None:
        """Store `value` under `key` (written to a temporary name, then renamed)."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{key}.{time.time_ns()}.tmp"
        torch.save(_to(value, torch.device("cpu")), temporary)
        temporary.replace(self.folder / f"{key}.pt")


def cached(cache: FeatureCache, key: str, device: torch.device,
           compute: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, whether it came from the disk cache); computes and stores it on a miss."""
    hit = cache.get(key, device)
    if hit is not None:
        return hit, True
    features = compute()
    cache.put(key, features)
    return features, False


# --- the head ----------------------------------------------------------------------------------


# Evaluation batches, as before the loops moved into digits.training (a different batching
# could move the last bits of a score): heads score 4,096 feature vectors at a time (64 MB of
# VGG16's 4,096-wide features), fine-tuned models 1,024 trunk maps.
HEAD_EVAL_BATCH = 4_096
FINETUNE_EVAL_BATCH = 1_024


def make_head(feature_dim: int, dropout: float, n_classes: int = 10) -> nn.Sequential:
    """The trained part: dropout, then one linear layer (the original's replaced last layer)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, n_classes))


def train_head(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, *, epochs: int,
               batch_size: int, lr: float, generator: torch.Generator,
               eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
               eval_mode: bool = False, weight_decay: float = 0.0) -> History:
    """Train `head` with Adam on stored features; score each eval set after every epoch.

    `eval_mode` trains with the head in eval mode, dropout off: the original's mistake
    (it called model.eval() before training). The head runs in float32 (it is one small layer).
    """
    head.to(features.device)
    # Fused Adam on CUDA: one kernel per step instead of a dozen (the head's steps are tiny).
    # On the CPU a step over the head's two tensors is cheap one tensor at a time, and that
    # kernel keeps the head's results as they were.
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay,
                                 fused=features.device.type == "cuda")
    spec = TrainSpec(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr,
                     weight_decay=weight_decay, eval_batch_size=HEAD_EVAL_BATCH)
    return train(head, features, labels, spec, generator=generator, eval_sets=eval_sets,
                 optimizer=optimizer, inputs=nn.Identity(), amp=False,
                 train_mode=not eval_mode)


def epochs_for(n: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """At least `epochs`, and enough epochs for `min_steps` steps on a small labelled set."""
    return max(epochs, math.ceil(min_steps / max(1, math.ceil(n / batch_size))))


def recompute_epoch(extractor: Extractor, head: nn.Module, images: torch.Tensor,
                    labels: torch.Tensor, *, size: int, normalise: bool, batch_size: int,
                    lr: float, generator: torch.Generator) -> float:
    """Seconds for one epoch done as the original did: features recomputed for every batch.

    The extractor stays frozen (eval mode, no gradients); only the head steps.
    """
    device = images.device
    extractor.to(device).eval()

    def features(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(device):
            return extractor(preprocess(batch, size, normalise)).float()

    head.to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    spec = TrainSpec(epochs=1, batch_size=batch_size, optimizer="adam", lr=lr)
    return train(head, images, labels, spec, generator=generator, optimizer=optimizer,
                 inputs=features, amp=False).seconds


# --- fine-tuning the last block ----------------------------------------------------------------


@torch.no_grad()
def trunk_maps(extractor: Extractor, images: torch.Tensor, size: int, normalise: bool = True,
               batch_size: int = 256) -> torch.Tensor:
    """The frozen trunk's maps (everything before the last block), computed once (bf16 on CUDA
    to halve their memory, float32 on the CPU)."""
    device = images.device
    extractor.to(device).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out = []
    for start in range(0, images.shape[0], batch_size):
        with autocast(device):
            out.append(extractor.trunk(preprocess(images[start:start + batch_size], size,
                                                  normalise)).to(dtype))
    return torch.cat(out)


class FineTuned(nn.Module):
    """The extractor's last block (trainable, batch norm frozen in eval mode) and a head."""

    def __init__(self, extractor: Extractor, head: nn.Module):
        super().__init__()
        self.extractor, self.head = extractor, head

    def train(self, mode: bool = True) -> FineTuned:
        """Train mode for the head (its dropout) only: the extractor's batch norms keep their
        ImageNet statistics, the usual practice when fine-tuning with small batches."""
        super().train(mode)
        self.extractor.eval()
        return self

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Logits from trunk maps."""
        return self.head(self.extractor.tail(maps))


def fine_tune(model: FineTuned, maps: torch.Tensor, labels: torch.Tensor, *, epochs: int,
              batch_size: int, lr: float, block_lr: float, generator: torch.Generator,
              eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> History:
    """Train the last block and the head on stored trunk maps (Adam, the block at `block_lr`).

    The block's batch norms stay in eval mode (`FineTuned.train`); only the head's dropout
    trains. The block is unfrozen for the run and frozen again after it.
    """
    block = model.extractor.last_block()
    optimizer = torch.optim.Adam([{"params": block, "lr": block_lr},
                                  {"params": model.head.parameters(), "lr": lr}])
    spec = TrainSpec(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr,
                     eval_batch_size=FINETUNE_EVAL_BATCH)
    for parameter in block:
        parameter.requires_grad_(True)
    try:
        return train(model, maps, labels, spec, generator=generator, eval_sets=eval_sets,
                     optimizer=optimizer, inputs=nn.Identity())
    finally:
        for parameter in block:
            parameter.requires_grad_(False)
