"""The build: order analyses, run or reuse each, render the site and swap it in atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import random
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from report.analysis import Section, execution_order, sections_from_modules, select
from report.cache import Cache, cache_key, pid_alive
from report.config import BuildConfig, config_json
from report.context import Context
from report.errors import UserError
from report.render import SectionView, render_site


class BuildFailed(RuntimeError):
    """An analysis failed (without --keep-going); the previous site was left in place."""


@dataclass(frozen=True)
class BuildOptions:
    """How to build (not what: that is the BuildConfig)."""

    root: Path  # project root: module sources are hashed relative to it
    out: Path
    cache_dir: Path
    templates: Path
    device: torch.device
    only: tuple[str, ...] = ()
    force: tuple[str, ...] = ()  # names, or ("all",)
    keep_going: bool = False
    title: str = "MNIST, explored"
    prose_globals: Mapping[str, Any] = field(default_factory=dict)  # names every prose can use


@dataclass(frozen=True)
class DataSource:
    """How the engine reaches the dataset without knowing what it is."""

    fingerprint: str
    load: Callable[[torch.device], Any]
    describe: Callable[[], Mapping[str, Any]] = dict


@dataclass
class Outcome:
    """What happened to one analysis in this build."""

    name: str
    status: str  # run | cached | failed | skipped
    key: str = ""
    seconds: float = 0.0
    peak_bytes: int | None = None
    error: str = ""
    entry: Path | None = None
    manifest: dict = field(default_factory=dict)


def environment_fingerprint(device: torch.device, seed: int, data_fingerprint: str) -> dict:
    """Inputs outside the code and config that change results."""
    import numpy

    return {"torch": torch.__version__, "numpy": numpy.__version__, "device": device.type,
            "seed": str(seed), "dataset": data_fingerprint}


def _reset_peak_memory(device: torch.device) -> None:
    # Writing 5 to clear_refs resets the kernel's peak-RSS counter (VmHWM) for this process.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> dict[str, int | None]:
    rss = None
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("VmHWM:"))
        rss = int(line.split()[1]) * 1024
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"peak_rss_bytes": rss, "peak_gpu_bytes": gpu}


def git_commit(root: Path) -> str:
    """HEAD's short hash, with '+dirty' when the work tree differs; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class Builder:
    """Runs one build; `plan()` alone serves `--list`."""

    def __init__(self, modules: Sequence[ModuleType], config: BuildConfig, options: BuildOptions,
                 data: DataSource, log: Callable[[str], None] = print):
        self.sections = sections_from_modules(modules)
        self.order = execution_order(self.sections)
        self.config = config
        self.options = options
        self.data = data
        self.log = log
        self.cache = Cache(options.cache_dir)
        self.wanted = select(self.sections, options.only) if options.only else \
            {s.name for s in self.sections}
        unknown_force = set(options.force) - {s.name for s in self.sections} - {"all"}
        if unknown_force:
            raise ValueError(f"--force: unknown analyses {sorted(unknown_force)}")
        self._dataset = None

    # --- keys ---------------------------------------------------------------------------------
    def keys(self) -> dict[str, str]:
        """The cache key of every analysis, upstream first (Merkle chain)."""
        env = environment_fingerprint(self.options.device, self.config.seed,
                                      self.data.fingerprint)
        keys: dict[str, str] = {}
        for section in self.order:
            keys[section.name] = cache_key(
                section.source_path, self.options.root,
                config_json(self.config.section(section.name)),
                {u: keys[u] for u in section.analysis.requires}, env)
        return keys

    def plan(self) -> list[dict]:
        """For `--list`: name, requires and cache state of each analysis in article order."""
        keys = self.keys()
        return [{"name": s.name, "title": s.raw_title, "requires": s.analysis.requires,
                 "state": self.cache.state(s.name, keys[s.name])} for s in self.sections]

    # --- running ------------------------------------------------------------------------------
    def _dataset_on_device(self) -> Any:
        if self._dataset is None:
            start = time.perf_counter()
            self._dataset = self.data.load(self.options.device)
            self.log(f"  dataset ready on {self.options.device} "
                     f"({time.perf_counter() - start:.1f} s)")
        return self._dataset

    def _forced(self, name: str) -> bool:
        return "all" in self.options.force or name in self.options.force

    def _run_one(self, section: Section, key: str, entries: Mapping[str, Path]) -> Outcome:
        name = section.name
        staging = self.cache.staging(name)
        ctx = Context(name, self.config.section(name), seed=self.config.seed,
                      device=self.options.device, staging=staging,
                      upstream={u: entries[u] for u in section.analysis.requires},
                      data_loader=self._dataset_on_device, log=self.log)
        # Seed every generator an analysis might touch, so two builds give identical metrics.
        torch.manual_seed(ctx.seed)
        random.seed(ctx.seed)
        _reset_peak_memory(self.options.device)
        start = time.perf_counter()
        try:
            section.run(ctx)
        except BaseException:
            self.cache.discard(staging)
            raise
        elapsed = time.perf_counter() - start
        memory = _peak_memory(self.options.device)
        manifest = {"name": name, "metrics": ctx.metrics, "items": ctx.items,
                    "choices": ctx.choices, "streams": ctx.streams.used,
                    "data": dict(self.data.describe()) if self._dataset is not None else None,
                    "seconds": elapsed, **memory, "device": str(self.options.device),
                    "profile": self.config.profile,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        entry = self.cache.commit(staging, name, key, manifest, replace=self._forced(name))
        return Outcome(name, "run", key, elapsed, memory["peak_rss_bytes"], entry=entry,
                       manifest=self.cache.lookup(name, key) or manifest)

    def run(self) -> dict[str, Outcome]:
        """Run or reuse every wanted analysis in dependency order."""
        keys = self.keys()
        self.cache.sweep()
        outcomes: dict[str, Outcome] = {}
        entries: dict[str, Path] = {}
        todo = [s for s in self.order if s.name in self.wanted]
        for index, section in enumerate(todo, 1):
            name, key = section.name, keys[section.name]
            prefix = f"[{index}/{len(todo)}] {name}"
            broken = [u for u in section.analysis.requires
                      if outcomes.get(u) and outcomes[u].status in ("failed", "skipped")]
            if broken:
                outcomes[name] = Outcome(name, "skipped", key,
                                         error=f"skipped: upstream {', '.join(broken)} failed")
                self.log(f"{prefix}: skipped (upstream {', '.join(broken)} failed)")
                continue
            manifest = None if self._forced(name) else self.cache.lookup(name, key)
            if manifest is not None:
                entry = self.cache.entry(name, key)
                outcomes[name] = Outcome(name, "cached", key, manifest.get("seconds", 0.0),
                                         manifest.get("peak_rss_bytes"), entry=entry,
                                         manifest=manifest)
                entries[name] = entry
                self.log(f"{prefix}: cached (ran in {manifest.get('seconds', 0):.1f} s)")
                continue
            self.log(f"{prefix}: running")
            try:
                outcome = self._run_one(section, key, entries)
            except Exception as exc:  # noqa: BLE001 - reported, and fatal unless --keep-going
                # A user's mistake gets its one clear message; a bug gets its traceback.
                user = isinstance(exc, UserError)
                outcomes[name] = Outcome(name, "failed", key,
                                         error=str(exc) if user else f"{type(exc).__name__}: {exc}")
                if not user:
                    self.log(f"{prefix}: FAILED: {type(exc).__name__}: {exc}\n"
                             f"{traceback.format_exc()}")
                elif self.options.keep_going:
                    self.log(f"{prefix}: FAILED: {exc}")
                if user and not self.options.keep_going:
                    raise BuildFailed(f"{exc}\nThe previous site was left untouched.") from exc
                if not self.options.keep_going:
                    raise BuildFailed(f"analysis {name!r} failed: {exc}. The previous site was "
                                      "left untouched; fix the error, or pass --keep-going to "
                                      "render the other sections.") from exc
                continue
            outcomes[name] = outcome
            entries[name] = outcome.entry
            peak = f", peak RSS {outcome.peak_bytes / 2**30:.2f} GiB" if outcome.peak_bytes else ""
            self.log(f"{prefix}: done in {outcome.seconds:.1f} s{peak}")
        return outcomes

    # --- the site -----------------------------------------------------------------------------
    def build_info(self, outcomes: Mapping[str, Outcome], wall: float) -> dict:
        """The manifest shown in the appendix and written to site/data/manifest.json."""
        import matplotlib
        import numpy

        versions = {"python": platform.python_version(), "torch": torch.__version__,
                    "numpy": numpy.__version__, "matplotlib": matplotlib.__version__}
        # Read from the installed metadata: importing these only for a version string cost
        # 3-6 s per build (torchvision pulls in torch._dynamo), even when everything was cached.
        for package, dist in (("openTSNE", "openTSNE"), ("sklearn", "scikit-learn"),
                              ("torchvision", "torchvision")):
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions[package] = metadata.version(dist)
        device = self.options.device
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            (platform.processor() or platform.machine())
        dataset = dict(self.data.describe())
        if self._dataset is None:
            # Every analysis was cached: the provenance is the one recorded when they ran.
            recorded = [o.manifest.get("data") for o in outcomes.values() if o.manifest]
            dataset = next((d for d in recorded if d), dataset)
        reduced = {s.name: reduced_settings(s.analysis.config, self.config.section(s.name))
                   for s in self.sections if s.name in outcomes}
        return {
            "title": self.options.title,
            "profile": self.config.profile,
            "seed": self.config.seed,
            "device": str(device),
            "device_name": device_name,
            "cpu_count": os.cpu_count(),
            "versions": versions,
            "commit": git_commit(self.options.root),
            "dataset": dataset,
            "reduced": {name: rows for name, rows in reduced.items() if rows},
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": wall,
            "analyses": [{"name": o.name, "status": o.status, "seconds": o.seconds,
                          "peak_rss_bytes": o.manifest.get("peak_rss_bytes"),
                          "peak_gpu_bytes": o.manifest.get("peak_gpu_bytes"),
                          "key": o.key[:12], "error": o.error} for o in outcomes.values()],
            "config": {name: json.loads(config_json(cfg))
                       for name, cfg in self.config.sections.items() if name in outcomes},
        }

    def views(self, outcomes: Mapping[str, Outcome]) -> list[SectionView]:
        """Render inputs in article order for the analyses of this build."""
        result = []
        for section in self.sections:
            outcome = outcomes.get(section.name)
            if outcome is None:
                continue
            cfg = self.config.section(section.name)
            result.append(SectionView(
                name=section.name, prose=section.prose, cfg=cfg,
                metrics=outcome.manifest.get("metrics", {}),
                items=outcome.manifest.get("items", []), files=outcome.entry,
                status=outcome.status, error=outcome.error,
                reduced=reduced_settings(section.analysis.config, cfg),
                title=section.raw_title, prose_file=_relative(section.prose_path,
                                                              self.options.root)))
        return result

    def render(self, outcomes: Mapping[str, Outcome], wall: float) -> Path:
        """Render into a fresh temporary folder beside `out`, then swap it in under a lock."""
        out = self.options.out.resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        views = self.views(outcomes)
        try:
            render_site(tmp, self.options.templates, views, self.build_info(outcomes, wall),
                        keep_going=self.options.keep_going,
                        prose_globals=self.options.prose_globals)
            swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # With --keep-going, a section whose prose failed was rendered as failed: report it.
        for view in views:
            outcome = outcomes[view.name]
            if view.status == "failed" and outcome.status not in ("failed", "skipped"):
                outcome.status, outcome.error = "failed", view.error
                self.log(f"{view.name}: prose FAILED: {view.error}")
        return out / "index.html"


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root` when it lies under it, else as given."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def reduced_settings(full: Any, used: Any) -> list[dict[str, Any]]:
    """The config fields whose value in this build differs from the full profile's default.

    Covers the quick profile's overrides and `--set` alike, so the page can say exactly which
    settings made its numbers.
    """
    return [{"key": f.name, "value": getattr(used, f.name), "full": getattr(full, f.name)}
            for f in dataclasses.fields(full) if getattr(used, f.name) != getattr(full, f.name)]


def swap_in(new: Path, out: Path) -> None:
    """Replace `out` by `new` under an exclusive lock; a crash mid-way is repaired next time."""
    lock_path = out.parent / f".{out.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = out.parent / f"{out.name}.old-{os.getpid()}"
        if out.exists():
            os.rename(out, old)
        os.rename(new, out)
        shutil.rmtree(old, ignore_errors=True)


def recover_site(out: Path) -> None:
    """If a build died between the two renames of `swap_in`, put the previous site back."""
    out = out.resolve()

    def dead(path: Path) -> bool:
        # A live build may be between the two renames of swap_in: its folders are its own.
        pid = path.name.rsplit("-", 1)[-1]
        return pid.isdigit() and not pid_alive(int(pid))

    for tmp in filter(dead, out.parent.glob(f"{out.name}.tmp-*")):
        shutil.rmtree(tmp, ignore_errors=True)
    if out.exists():
        for stale in filter(dead, out.parent.glob(f"{out.name}.old-*")):
            shutil.rmtree(stale, ignore_errors=True)
        return
    olds = sorted(filter(dead, out.parent.glob(f"{out.name}.old-*")),
                  key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], out)


def build(modules: Sequence[ModuleType], config: BuildConfig, options: BuildOptions,
          data: DataSource, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Outcome]]:
    """Run the analyses and render the site; raises BuildFailed leaving the old site intact."""
    start = time.perf_counter()
    recover_site(options.out)
    builder = Builder(modules, config, options, data, log)
    outcomes = builder.run()
    index = builder.render(outcomes, time.perf_counter() - start)
    return index, outcomes
