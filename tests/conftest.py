"""Shared fixtures: a toy project in a temporary folder, no network outside the e2e tests, and
two builds of the real site per session: the published page, as `python build.py` makes it here
(the e2e and browser tests), and every analysis computed on the real data (the e2e tests)."""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tiny import on_real_data, set_args

from report.config import make_config
from report.engine import BuildOptions, DataSource, Outcome, build

REPO = Path(__file__).resolve().parent.parent
TOY_SOURCE = Path(__file__).resolve().parent / "toy"
# A site built earlier (`build.py --device cpu --out DIR`) that the browser tests use instead of
# building one: for iterating on them without waiting for a build.
SITE_ENV = "MNIST_EXPLORED_SITE"
# Where the browser tests saved their screenshots, for the summary at the end of the run.
ARTIFACTS_KEY = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives the built site in headless Chromium (Debian's `chromium` "
        "package and Playwright); select with `-m browser`")
    config.stash[ARTIFACTS_KEY] = []


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in config.stash.get(ARTIFACTS_KEY, []):
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach the network: name resolution and connecting both fail at once."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("browser"):
        return

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in unit tests")

    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family == socket.AF_UNIX:  # local IPC (the worker processes' forkserver)
            return real_connect(sock, address)
        refuse()

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", connect)


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
        """Change a module's text without changing what it does: a comment and a docstring."""
        path = self.source(name)
        text = path.read_text() + "\n# edited by a test\n"
        path.write_text(text.replace('"""', '"""Reworded by a test. ', 1))

    def edit_code(self, name: str, function: str = "compute") -> None:
        """Change what one function of a toy module does (a new statement at its start)."""
        path = self.source(name)
        tree = ast.parse(path.read_text())
        node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
        node.body.insert(1 if ast.get_docstring(node) else 0, ast.parse("_edited = 1").body[0])
        path.write_text(ast.unparse(tree) + "\n")

    def modules(self, names: Sequence[str]) -> list[ModuleType]:
        """Import toy.<name> for each name, from this project."""
        return [importlib.import_module(f"toy.{name}") for name in names]

    def data_source(self) -> DataSource:
        """A toy dataset that counts how often it is loaded."""

        def load(device: torch.device) -> list[int]:
            self.data_loads += 1
            return [1, 2, 3]

        return DataSource(fingerprint="toy-data", load=load,
                          describe=lambda dataset: {"source": "toy"})

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


# --- the real site, built once per session ------------------------------------------------------


def quick_args(out: Path, cache: Path, *extra: str) -> list[str]:
    """build.py arguments for a quick CPU build into `out` with its own cache. With an explicit
    profile only that profile's frozen entries are reused (with --set, none matches)."""
    return ["--profile", "quick", "--device", "cpu", "--out", str(out),
            "--cache-dir", str(cache), *extra]


def computed_args(out: Path, cache: Path) -> list[str]:
    """build.py arguments that compute every analysis on the real MNIST with tiny settings
    (tests/tiny.py), reusing no frozen entry: the frozen store is an empty folder."""
    empty = cache.parent / "no-frozen-entries"
    empty.mkdir(parents=True, exist_ok=True)
    return quick_args(out, cache, "--frozen-dir", str(empty),
                      *set_args(on_real_data()))


def site_statuses(site: Path) -> dict[str, str]:
    """Analysis name -> run | cached | frozen | failed | skipped, from a built site's manifest."""
    manifest = json.loads((site / "data" / "manifest.json").read_text())
    return {a["name"]: a["status"] for a in manifest["analyses"]}


@pytest.fixture(scope="session")
def computed_site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every analysis computed and drawn on the real MNIST, tiny settings, from an empty cache
    (about 65 s on 2 CPU cores): the whole pipeline on the real data, whatever is frozen. The
    quick profile's own sizes would cost about 6 minutes once no quick entry is frozen."""
    import build  # here, not at the top: only the tests that need the real site import it

    root = tmp_path_factory.mktemp("computed")
    out, cache = root / "site", root / "cache"
    assert build.main(computed_args(out, cache)) == 0
    return {"out": out, "cache": cache, "first": site_statuses(out)}


@pytest.fixture(scope="session")
def published_site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The page `python build.py` makes on this machine (profile auto, on the CPU) from the
    committed frozen entries, computing what is not frozen there; a fresh cache."""
    import build

    root = tmp_path_factory.mktemp("published")
    out, cache = root / "site", root / "cache"
    assert build.main(["--device", "cpu", "--out", str(out), "--cache-dir", str(cache)]) == 0
    return {"out": out, "cache": cache, "first": site_statuses(out)}


@pytest.fixture(scope="session")
def site_dir(request: pytest.FixtureRequest) -> Path:
    """The published page, for tests that only read it: $MNIST_EXPLORED_SITE when set (a site
    built earlier), otherwise the session's `published_site` (built on first use)."""
    override = os.environ.get(SITE_ENV)
    if override:
        path = Path(override).resolve()
        if not (path / "index.html").is_file():
            pytest.fail(f"${SITE_ENV}={override} holds no index.html: build one with "
                        f"`python build.py --device cpu --out {override}`")
        return path
    return request.getfixturevalue("published_site")["out"]
