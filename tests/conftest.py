"""Shared fixtures: a toy project in a temporary folder, and no network outside the e2e tests."""

from __future__ import annotations

import importlib
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import torch

from report.config import make_config
from report.engine import BuildOptions, DataSource, Outcome, build

REPO = Path(__file__).resolve().parent.parent
TOY_SOURCE = Path(__file__).resolve().parent / "toy"


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach the network: name resolution and connecting both fail at once."""
    if request.node.get_closest_marker("e2e"):
        return

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in unit tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _purge_toy_modules() -> None:
    for name in [n for n in sys.modules if n == "toy" or n.startswith("toy.")]:
        del sys.modules[name]


@dataclass
class ToyProject:
    """A project root holding a copy of tests/toy (as package `toy`) and of templates/."""

    root: Path
    logs: list[str] = field(default_factory=list)
    data_loads: int = 0

    @property
    def out(self) -> Path:
        return self.root.parent / "site"

    @property
    def cache(self) -> Path:
        return self.root.parent / "cache"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    def source(self, name: str) -> Path:
        """A toy module's source file in this project."""
        return self.root / "toy" / f"{name}.py"

    def touch_source(self, name: str) -> None:
        """Change a module's bytes without changing what it does."""
        path = self.source(name)
        path.write_text(path.read_text() + "\n# edited by a test\n")

    def modules(self, names: Sequence[str]) -> list[ModuleType]:
        """Import toy.<name> for each name, from this project."""
        return [importlib.import_module(f"toy.{name}") for name in names]

    def data_source(self) -> DataSource:
        """A toy dataset that counts how often it is loaded."""

        def load(device: torch.device) -> list[int]:
            self.data_loads += 1
            return [1, 2, 3]

        return DataSource(fingerprint="toy-data", load=load, describe=lambda: {"source": "toy"})

    def build(self, names: Sequence[str], *, profile: str = "full",
              sets: Mapping[str, str] | None = None, **options) -> tuple[Path, dict[str, Outcome]]:
        """Build the named toys into this project's out and cache folders."""
        modules = self.modules(names)
        config = make_config([m.ANALYSIS for m in modules], profile, sets or {})
        opts = BuildOptions(root=self.root, out=self.out, cache_dir=self.cache,
                            templates=self.templates, device=torch.device("cpu"), **options)
        return build(modules, config, opts, self.data_source(), log=self.logs.append)


def statuses(outcomes: Mapping[str, Outcome]) -> dict[str, str]:
    """name -> run | cached | failed | skipped."""
    return {name: outcome.status for name, outcome in outcomes.items()}


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ToyProject:
    """A fresh toy project, importable as `toy`, with its own templates, out and cache folders."""
    root = tmp_path / "project"
    shutil.copytree(TOY_SOURCE, root / "toy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "templates", root / "templates")
    _purge_toy_modules()
    monkeypatch.syspath_prepend(str(root))
    yield ToyProject(root)
    _purge_toy_modules()
