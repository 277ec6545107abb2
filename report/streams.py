"""Named random streams: every random draw of an analysis comes from a stream named for its use.

A stream's seed hashes the build's one seed, the analysis name and the stream name, so a stream
is stable across runs and devices, independent of every other stream, and needs no hand-picked
offset. The registry records each name used and its seed; the cache manifest keeps it, so a
reader can tell which draws an analysis made. Asking for the same name twice gives the same
sequence again: that is how paired runs share data order or initial weights on purpose.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: object) -> int:
    """A 32-bit seed from any parts (the build seed, names): stable, and distinct per parts."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class Streams:
    """The random streams of one analysis in one build."""

    def __init__(self, seed: int, owner: str):
        self.base = seed
        self.owner = owner
        self.used: dict[str, int] = {}

    def seed(self, name: str) -> int:
        """The seed of stream `name` (recorded in the registry)."""
        if not name:
            raise ValueError("a random stream needs a name that says what it draws")
        value = derive_seed(self.base, self.owner, name)
        self.used[name] = value
        return value

    def torch(self, name: str) -> torch.Generator:
        """A CPU torch.Generator for stream `name`."""
        return torch.Generator().manual_seed(self.seed(name))

    def numpy(self, name: str) -> np.random.Generator:
        """A numpy Generator for stream `name`."""
        return np.random.default_rng(self.seed(name))

    def seed_torch_global(self, name: str) -> None:
        """Seed torch's global generators (weight init, dropout) from stream `name`."""
        torch.manual_seed(self.seed(name))


def seed_globals(seed: int) -> None:
    """Seed the global generators a stage might touch (torch's, Python's) before it starts."""
    torch.manual_seed(seed)
    random.seed(seed)
