"""The build: order analyses, compute or reuse each, draw or reuse their items, render the site
and swap it in atomically."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
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
from report.cache import Cache, pid_alive, read_manifest
from report.config import FULL, BuildConfig, config_json
from report.errors import UserError
from report.freeze import FrozenStore, code_environment
from report.keys import PRESENTATION_MODULES, KeyInputs, Keys, why_changed
from report.machine import cpu_capability
from report.render import SectionView, listing_title, render_site
from report.workers import Job, Pool, WorkerFailed, run_job


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
    force: tuple[str, ...] = ()  # names, or ("all",): compute (and draw) again
    redraw: tuple[str, ...] = ()  # names, or ("all",): draw again from the results
    keep_going: bool = False
    # Analyses run at once, each in its own worker process (1 = one after another, here).
    jobs: int = 1
    preload: tuple[str, ...] = ()  # modules the workers' server imports once (build.py's)
    profile_dir: Path | None = None  # cProfile every analysis that runs, into this folder
    # Frozen results (report/freeze.py): where they live (None = not used), the profiles whose
    # entries this build may use (an explicit --profile uses only its own), and --freeze.
    frozen_dir: Path | None = None
    frozen_profiles: tuple[str, ...] = ()
    freeze: bool = False
    title: str = "MNIST, explored"
    # Extra facts for the appendix (e.g. the committed benchmark results), passed through as is.
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    prose_globals: Mapping[str, Any] = field(default_factory=dict)  # names every prose can use
    # Modules that only present (plots, rendering, the comparison rule): outside compute keys.
    presentation: tuple[str, ...] = PRESENTATION_MODULES


def no_provenance(dataset: Any) -> dict[str, Any]:
    """DataSource's default `describe`: nothing to say."""
    return {}


@dataclass(frozen=True)
class DataSource:
    """How the engine reaches the dataset without knowing what it is."""

    fingerprint: str
    load: Callable[[torch.device], Any]
    # Given the loaded dataset (or None when this build loaded nothing): its provenance.
    describe: Callable[[Any], Mapping[str, Any]] = no_provenance


@dataclass
class Outcome:
    """What happened to one analysis in this build."""

    name: str
    status: str  # compute: run | cached | frozen | failed | skipped
    key: str = ""  # the compute key ("frozen:<code key>" for frozen results)
    seconds: float = 0.0
    peak_bytes: int | None = None
    error: str = ""
    entry: Path | None = None  # the compute results
    manifest: dict = field(default_factory=dict)
    profile: str = ""  # the profile whose config made the results
    frozen_state: str = "none"  # none | frozen (used) | stale (code changed) | damaged | unused
    reason: str = ""  # why the results must be computed (again)
    drawn: str = ""  # drawn | cached | frozen, once the draw stage is done
    draw_key: str = ""
    draw_entry: Path | None = None  # the figures, GIFs, tables and assets
    draw_manifest: dict = field(default_factory=dict)
    draw_reason: str = ""  # why the items must be drawn (again)


def environment_fingerprint(device: torch.device, seed: int, data_fingerprint: str) -> dict:
    """Inputs outside the code and config that change results."""
    import numpy

    found = {"torch": torch.__version__, "numpy": numpy.__version__, "device": device.type,
             "seed": str(seed), "dataset": data_fingerprint}
    if device.type == "cpu":
        # The CPU's vector unit picks torch's kernels, and bf16 support switches CPU training
        # to bf16 autocast (digits.training.autocast): results made on another CPU differ.
        found["cpu"] = cpu_capability()
    return found


def versions() -> dict[str, str]:
    """Versions of the libraries that shape the results, for the manifest and the appendix."""
    import matplotlib
    import numpy

    found = {"python": platform.python_version(), "torch": torch.__version__,
             "numpy": numpy.__version__, "matplotlib": matplotlib.__version__}
    # Read from the installed metadata: importing these only for a version string cost
    # 3-6 s per build (torchvision pulls in torch._dynamo), even when everything was cached.
    for package, dist in (("openTSNE", "openTSNE"), ("sklearn", "scikit-learn"),
                          ("torchvision", "torchvision")):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(dist)
    return found


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's with its kernel level (e.g. "AMD EPYC, AVX512+bf16")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        line = next(row for row in Path("/proc/cpuinfo").read_text().splitlines()
                    if row.startswith("model name"))
        model = line.split(":", 1)[1].strip()
    return f"{model or platform.processor() or platform.machine()}, {cpu_capability()}"


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


@dataclass
class _Progress:
    """Where one build's loop stands: what waits, what runs, what is done."""

    waiting: list[Section]
    prefixes: dict[str, str]  # name -> "[i/n] name" for log lines
    pool: Pool | None  # worker processes (--jobs > 1), or None: one at a time, here
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    entries: dict[str, Path] = field(default_factory=dict)  # compute results of what is done
    used: dict[str, str] = field(default_factory=dict)  # the key of the entry each one used
    decisions: dict[str, Outcome] = field(default_factory=dict)  # frozen, cached or to run
    started: dict[str, tuple[Outcome, Path]] = field(default_factory=dict)  # decision, staging


class Builder:
    """Runs one build; `plan()` alone serves `--list`."""

    def __init__(self, modules: Sequence[ModuleType], config: BuildConfig, options: BuildOptions,
                 data: DataSource, log: Callable[[str], None] = print,
                 profile_configs: Mapping[str, BuildConfig] | None = None):
        self.sections = sections_from_modules(modules)
        self.order = execution_order(self.sections)
        self.by_name = {s.name: s for s in self.sections}
        self.config = config
        # The config of every profile (same seed and --set overrides), to match frozen entries
        # made with another profile than this build's.
        self.profile_configs = dict(profile_configs or {})
        self.profile_configs[config.profile] = config
        self.frozen = FrozenStore(options.frozen_dir) if options.frozen_dir else None
        self.options = options
        self.data = data
        self.log = log
        self.keys = Keys(options.root, options.presentation)
        self._code_inputs: dict[str, dict[str, KeyInputs]] = {}
        self.cache = Cache(options.cache_dir / "compute")
        self.drawn = Cache(options.cache_dir / "draw")
        self.wanted = select(self.sections, options.only) if options.only else \
            {s.name for s in self.sections}
        for flag, names in (("--force", options.force), ("--redraw", options.redraw)):
            unknown = set(names) - set(self.by_name) - {"all"}
            if unknown:
                raise ValueError(f"{flag}: unknown analyses {sorted(unknown)}")
        self._datasets: dict[str, Any] = {}

    # --- keys ---------------------------------------------------------------------------------
    def environment(self) -> dict:
        """What the results depend on beyond code and config (the machine included)."""
        return environment_fingerprint(self.options.device, self.config.seed,
                                       self.data.fingerprint)

    def compute_keys(self) -> dict[str, str]:
        """The compute key of every analysis when every upstream runs or is cached here."""
        keys: dict[str, str] = {}
        for section in self.order:
            keys[section.name] = self._compute_inputs(section, keys).key()
        return keys

    def code_inputs(self, profile: str) -> dict[str, KeyInputs]:
        """Frozen entries' key inputs under `profile`: code, config, seed and data, no machine."""
        if profile not in self._code_inputs:  # memoised: every check asks for the whole chain
            config, env = self.profile_configs[profile], code_environment(self.environment())
            chain: dict[str, KeyInputs] = {}
            for section in self.order:
                chain[section.name] = self.keys.compute_inputs(
                    section, config_json(config.section(section.name)),
                    {u: chain[u].key() for u in section.analysis.requires}, env)
            self._code_inputs[profile] = chain
        return self._code_inputs[profile]

    def code_keys(self, profile: str) -> dict[str, str]:
        """Frozen entries' code keys under `profile`."""
        return {name: inputs.key() for name, inputs in self.code_inputs(profile).items()}

    def _compute_inputs(self, section: Section, used: Mapping[str, str]) -> KeyInputs:
        """This machine's compute key inputs, given the key of the entry each upstream used."""
        return self.keys.compute_inputs(section, config_json(self.config.section(section.name)),
                                        used, self.environment())

    def _draw_inputs(self, section: Section, outcome: Outcome) -> KeyInputs:
        """Draw key inputs: the drawing code, the config that made the results, the results."""
        cfg = self.section_config(section.name, outcome)
        return self.keys.draw_inputs(section, config_json(cfg), outcome.key, self.config.seed)

    # --- deciding what runs -------------------------------------------------------------------
    def _frozen(self, name: str) -> tuple[dict | None, str, str]:
        """The frozen manifest this build may use for `name`, the frozen state to report, and
        why an outdated entry no longer matches."""
        if self.frozen is None:
            return None, "none", ""
        manifest, problem = self.frozen.check(name)
        if problem:
            self.log(f"  {name}: frozen entry damaged ({problem}); not used")
            return None, "damaged", problem
        if manifest is None:
            return None, "none", ""
        profile = manifest.get("profile")
        if profile not in self.profile_configs:
            return None, "stale", f"made with an unknown profile {profile!r}"
        current = self.code_inputs(profile)[name]
        if manifest["code_key"] != current.key():
            return None, "stale", why_changed(manifest.get("inputs"), current)
        if profile not in self.options.frozen_profiles:
            return None, "unused", f"made with the {profile} profile"
        return manifest, "frozen", ""

    def _decide(self, section: Section, used: Mapping[str, str]) -> Outcome:
        """Frozen, cached or to run (status "run", no entry yet), upstream's choices given.

        `used` maps each upstream to the key of the entry it used; a downstream result
        depends on which entry that was, so it enters this analysis's cache key.
        """
        name = section.name
        inputs = self._compute_inputs(section, used)
        key = inputs.key()
        forced = self._forced(name)
        frozen, state, reason = (None, "none", "") if forced else self._frozen(name)
        if frozen is not None:
            return Outcome(name, "frozen", "frozen:" + frozen["code_key"],
                           frozen.get("seconds", 0.0), frozen.get("peak_rss_bytes"),
                           entry=self.frozen.entry(name), manifest=frozen,
                           profile=frozen.get("profile", ""), frozen_state=state)
        manifest, problem = (None, None) if forced else self.cache.check(name, key)
        if problem:
            self.log(f"  {name}: cached entry damaged ({problem}); it runs again")
        if manifest is not None:
            return Outcome(name, "cached", key, manifest.get("seconds", 0.0),
                           manifest.get("peak_rss_bytes"), entry=self.cache.entry(name, key),
                           manifest=manifest, profile=self.config.profile, frozen_state=state,
                           reason=reason)
        if not reason:
            latest = self.cache.latest(name)
            reason = "forced" if forced else \
                why_changed(latest.get("inputs"), inputs) if latest else "never built here"
        return Outcome(name, "run", key, profile=self.config.profile, frozen_state=state,
                       reason=reason)

    def _reusable_drawing(self, section: Section, outcome: Outcome) -> None:
        """Fill the outcome's drawn items when this drawing of its results is frozen or cached,
        else say why it must be drawn (against the frozen drawing, or the latest one here)."""
        name = section.name
        inputs = self._draw_inputs(section, outcome)
        outcome.draw_key = key = inputs.key()
        if self._forced(name) or {"all", name} & set(self.options.redraw):
            outcome.draw_reason = "--force" if self._forced(name) else "--redraw"
            return
        earlier = None
        if outcome.status == "frozen":
            frozen = self.frozen.check_drawn(name, key)
            if frozen is not None:
                outcome.drawn, outcome.draw_entry, outcome.draw_manifest = \
                    "frozen", self.frozen.drawn(name), frozen
                return
            earlier = read_manifest(self.frozen.drawn(name))
        manifest, problem = self.drawn.check(name, key)
        if problem:
            self.log(f"  {name}: drawn items damaged ({problem}); drawn again")
        if manifest is not None:
            outcome.drawn, outcome.draw_entry, outcome.draw_manifest = \
                "cached", self.drawn.entry(name, key), manifest
            return
        earlier = earlier or self.drawn.latest(name)
        outcome.draw_reason = why_changed(earlier.get("inputs"), inputs) if earlier else \
            "never drawn here"

    def plan(self) -> list[dict]:
        """For `--list`: each analysis's state (frozen, cached, stale), profile, drawing, and why
        it must run or be drawn again, in article order."""
        used: dict[str, str] = {}
        states: dict[str, Outcome] = {}
        for section in self.order:
            states[section.name] = outcome = self._decide(section, used)
            used[section.name] = outcome.key
            if outcome.status != "run":
                self._reusable_drawing(section, outcome)
        rows = []
        for s in self.sections:
            outcome = states[s.name]
            state = "stale" if outcome.status == "run" else outcome.status
            drawn = outcome.drawn or ("after compute" if state == "stale" else "redraw")
            note = outcome.reason if state == "stale" else \
                (f"redraw: {outcome.draw_reason}" if drawn == "redraw" else "")
            if outcome.frozen_state == "unused":
                note = "frozen entry of another profile"
            metrics = {**outcome.manifest.get("metrics", {}),
                       **outcome.draw_manifest.get("metrics", {})}
            title = listing_title(s.prose, s.name, metrics,
                                  self.section_config(s.name, outcome))
            rows.append({"name": s.name, "title": title, "requires": s.analysis.requires,
                         "state": state, "profile": outcome.profile, "drawn": drawn,
                         "note": note})
        return rows

    # --- running ------------------------------------------------------------------------------
    def _dataset(self, device: torch.device) -> Any:
        """The dataset on `device`, loaded once per build (compute's device; the CPU to draw)."""
        if str(device) not in self._datasets:
            start = time.perf_counter()
            self._datasets[str(device)] = self.data.load(device)
            self.log(f"  dataset ready on {device} ({time.perf_counter() - start:.1f} s)")
        return self._datasets[str(device)]

    def _forced(self, name: str) -> bool:
        return "all" in self.options.force or name in self.options.force

    def _job(self, section: Section, stage: str, staging: Path, entries: Mapping[str, Path],
             results: Path | None = None, threads: int = 0, cfg: Any = None) -> Job:
        device = self.options.device if stage == "compute" else torch.device("cpu")
        return Job(stage=stage, module=section.module.__name__, name=section.name,
                   cfg=self.config.section(section.name) if cfg is None else cfg,
                   seed=self.config.seed, device=str(device), staging=staging,
                   upstream={u: entries[u] for u in section.analysis.requires},
                   results=results, load=self.data.load, describe=self.data.describe,
                   threads=threads or torch.get_num_threads(),
                   profile_dir=self.options.profile_dir)

    def _run_here(self, job: Job) -> dict[str, Any] | WorkerFailed:
        """Run one stage in this process (the same run_job a worker calls)."""
        try:
            return run_job(job, lambda: self._dataset(torch.device(job.device)), self.log)
        except Exception as exc:  # noqa: BLE001 - reported, fatal unless --keep-going
            user = isinstance(exc, UserError)
            return WorkerFailed(str(exc) if user else
                                f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", user)

    def _commit(self, name: str, key: str, staging: Path, result: Mapping[str, Any],
                outcome: Outcome, inputs: KeyInputs) -> Outcome:
        """Put a finished compute's results into the cache; its outcome."""
        manifest = {"name": name, **result, "device": str(self.options.device),
                    "device_name": device_name(self.options.device), "versions": versions(),
                    "profile": self.config.profile, "inputs": inputs.as_dict(),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        entry = self.cache.commit(staging, name, key, manifest, replace=self._forced(name))
        return dataclasses.replace(
            outcome, status="run", seconds=result["seconds"],
            peak_bytes=result["peak_rss_bytes"], entry=entry,
            manifest=self.cache.lookup(name, key) or manifest)

    def _draw(self, section: Section, outcome: Outcome, entries: Mapping[str, Path],
              prefix: str) -> Outcome:
        """Reuse or make the drawn items of an analysis whose results are ready (in this
        process, on the CPU: seconds)."""
        self._reusable_drawing(section, outcome)
        if outcome.drawn:
            return outcome
        name = section.name
        staging = self.drawn.staging(name)
        result = self._run_here(self._job(section, "draw", staging, entries, outcome.entry,
                                          cfg=self.section_config(name, outcome)))
        if isinstance(result, WorkerFailed):
            self.drawn.discard(staging)
            return self._failed(prefix, name, outcome.key, str(result), result.user)
        inputs = self._draw_inputs(section, outcome)
        manifest = {"name": name, **result, "inputs": inputs.as_dict(),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        entry = self.drawn.commit(staging, name, outcome.draw_key, manifest,
                                  replace=bool(outcome.draw_reason))
        self.log(f"{prefix}: drawn in {result['seconds']:.1f} s")
        return dataclasses.replace(outcome, drawn="drawn", draw_entry=entry,
                                   draw_manifest=self.drawn.lookup(name, outcome.draw_key)
                                   or manifest)

    def _failed(self, prefix: str, name: str, key: str, message: str, user: bool) -> Outcome:
        """Log a failed analysis; raise BuildFailed unless --keep-going."""
        if not user or self.options.keep_going:  # a bug's traceback is always logged
            self.log(f"{prefix}: FAILED: {message}")
        if not self.options.keep_going:
            if user:
                raise BuildFailed(f"{message}\nThe previous site was left untouched.")
            first_line = message.splitlines()[0] if message else message
            raise BuildFailed(f"analysis {name!r} failed: {first_line}. The previous site was "
                              "left untouched; fix the error, or pass --keep-going to render "
                              "the other sections.")
        # One clear message for a user's mistake; a bug keeps its traceback in the log only.
        return Outcome(name, "failed", key, error=message if user else message.splitlines()[0])

    def run(self) -> dict[str, Outcome]:
        """Compute or reuse every wanted analysis in dependency order (side by side with
        --jobs), then draw or reuse its items as soon as its results are ready."""
        for store in (self.cache, self.drawn):
            store.sweep()
        todo = [s for s in self.order if s.name in self.wanted]
        state = _Progress(
            waiting=list(todo),
            prefixes={s.name: f"[{i}/{len(todo)}] {s.name}" for i, s in enumerate(todo, 1)},
            pool=Pool(self.options.jobs, self.options.preload) if self.options.jobs > 1
            else None)
        try:
            while state.waiting or state.started:
                for section in list(state.waiting):
                    self._step(section, state)
                if state.started and state.pool is not None:
                    self._finish(state, *state.pool.wait_any())
        finally:
            # After a failure or Ctrl-C: stop the other workers and drop their half entries.
            if state.pool is not None:
                state.pool.stop()
            for _, staging in state.started.values():
                self.cache.discard(staging)
        return state.outcomes

    def _step(self, section: Section, state: _Progress) -> None:
        """Skip, reuse or start one waiting analysis, if its upstream analyses are done."""
        name, prefix, pool = section.name, state.prefixes[section.name], state.pool
        requires = section.analysis.requires
        waiting = {s.name for s in state.waiting}
        if any(u in state.started or u in waiting for u in requires):
            return  # an upstream has not finished yet
        broken = [u for u in requires if state.outcomes.get(u)
                  and state.outcomes[u].status in ("failed", "skipped")]
        if broken:
            state.waiting.remove(section)
            state.outcomes[name] = Outcome(name, "skipped", "",
                                           error=f"skipped: upstream {', '.join(broken)} failed")
            self.log(f"{prefix}: skipped (upstream {', '.join(broken)} failed)")
            return
        if name not in state.decisions:  # upstream keys are final once they are done
            state.decisions[name] = self._decide(section, state.used)
        decided = state.decisions[name]
        if decided.status == "run" and pool is not None and len(pool) >= pool.jobs:
            return  # every worker is busy
        state.waiting.remove(section)
        if decided.status in ("frozen", "cached"):
            made = f"{decided.manifest.get('profile', '?')} profile on " \
                   f"{decided.manifest.get('device', '?')}"
            self.log(f"{prefix}: {decided.status} ({made}, computed in "
                     f"{decided.seconds:.1f} s)")
            self._ready(state, name, decided)
            return
        if decided.frozen_state == "stale":
            self.log(f"{prefix}: frozen entry outdated ({decided.reason})")
        staging = self.cache.staging(name)
        state.started[name] = (decided, staging)
        job = self._job(section, "compute", staging, state.entries,
                        threads=pool.threads() if pool else 0)
        if pool is None:
            self.log(f"{prefix}: computing")
            self._finish(state, name, self._run_here(job))
        else:
            self.log(f"{prefix}: computing in a worker process ({pool.threads()} threads)")
            pool.start(job)

    def _finish(self, state: _Progress, name: str,
                result: dict[str, Any] | WorkerFailed) -> None:
        """A compute stage ended: commit its results (or record the failure), then draw."""
        decided, staging = state.started.pop(name)
        if isinstance(result, WorkerFailed):
            self.cache.discard(staging)
            state.outcomes[name] = self._failed(state.prefixes[name], name, decided.key,
                                                str(result), result.user)
            return
        inputs = self._compute_inputs(self.by_name[name], state.used)
        outcome = self._commit(name, decided.key, staging, result, decided, inputs)
        peak = f", peak RSS {outcome.peak_bytes / 2**30:.2f} GiB" if outcome.peak_bytes else ""
        self.log(f"{state.prefixes[name]}: computed in {outcome.seconds:.1f} s{peak}")
        self._ready(state, name, outcome)

    def _ready(self, state: _Progress, name: str, outcome: Outcome) -> None:
        """Results are in: draw, and let downstream analyses start."""
        outcome = self._draw(self.by_name[name], outcome,
                             state.entries | {name: outcome.entry}, state.prefixes[name])
        state.outcomes[name] = outcome
        if outcome.status not in ("failed", "skipped"):
            state.entries[name], state.used[name] = outcome.entry, outcome.key

    # --- the site -----------------------------------------------------------------------------
    def build_info(self, outcomes: Mapping[str, Outcome], wall: float) -> dict:
        """The manifest shown in the appendix and written to site/data/manifest.json."""
        device = self.options.device
        # The provenance of the data loaded by analyses that ran now (in this process or in
        # workers), else the one recorded when cached or frozen results were made.
        ran = [o.manifest.get("data") for o in outcomes.values()
               if o.status == "run" and o.manifest]
        recorded = [o.manifest.get("data") for o in outcomes.values() if o.manifest]
        dataset = next((d for d in ran if d), None) or next((d for d in recorded if d), None) \
            or dict(self.data.describe(None))
        configs = {s.name: self.section_config(s.name, outcomes[s.name])
                   for s in self.sections if s.name in outcomes}
        reduced = {s.name: reduced_settings(s.analysis.config, configs[s.name],
                                            s.analysis.zero_means)
                   for s in self.sections if s.name in outcomes}
        return {
            "title": self.options.title,
            "profile": self.config.profile,
            "seed": self.config.seed,
            "device": str(device),
            "device_name": device_name(device),
            "cpu_count": os.cpu_count(),
            "versions": versions(),
            "commit": git_commit(self.options.root),
            "dataset": dataset,
            "reduced": {name: rows for name, rows in reduced.items() if rows},
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": wall,
            "analyses": [{"name": o.name, "status": o.status, "seconds": o.seconds,
                          "drawn": o.drawn, "draw_seconds": o.draw_manifest.get("seconds"),
                          "peak_rss_bytes": o.manifest.get("peak_rss_bytes"),
                          "peak_gpu_bytes": o.manifest.get("peak_gpu_bytes"),
                          "profile": o.profile, "frozen_state": o.frozen_state,
                          "device": o.manifest.get("device", ""),
                          "device_name": o.manifest.get("device_name", ""),
                          "created": o.manifest.get("created", ""),
                          "key": o.key.removeprefix("frozen:")[:12], "error": o.error}
                         for o in outcomes.values()],
            "config": {name: json.loads(config_json(cfg)) for name, cfg in configs.items()},
            **self.options.extra_info,
        }

    def section_config(self, name: str, outcome: Outcome) -> Any:
        """The config that made an analysis's results: a frozen entry's is its own profile's."""
        return self.profile_configs.get(outcome.profile, self.config).section(name)

    def freeze(self, outcomes: Mapping[str, Outcome]) -> list[str]:
        """Copy the results this build computed or reused from the cache into the frozen store,
        with their drawn items; for frozen results drawn anew, store the new drawing.

        An identical entry is not rewritten, so a refreeze changes only what changed. An
        analysis built on frozen upstream results that this profile would not have made (a
        quick re-run on top of frozen full results that differ from quick ones) is not frozen:
        its code key would claim an upstream it did not use. Where the profiles agree on the
        upstream (the same code key, e.g. a section whose quick profile is its full one), it is.
        """
        if self.frozen is None:
            raise ValueError("--freeze needs a folder for frozen results")
        changed = []
        for name, outcome in outcomes.items():
            if outcome.status == "frozen" and outcome.drawn in ("drawn", "cached"):
                # Drawn anew from frozen results (the drawing changed): the key already names
                # the frozen results, so the new drawing is frozen as it is.
                if self.frozen.write_drawn(name, outcome.draw_entry, outcome.draw_manifest):
                    changed.append(f"{name} (drawing)")
                continue
            if outcome.status not in ("run", "cached"):
                continue
            expected = self.code_keys(self.config.profile)
            mixed = [u for u in self.by_name[name].analysis.requires
                     if outcomes[u].status == "frozen"
                     and outcomes[u].key != "frozen:" + expected[u]]
            if mixed:
                self.log(f"freeze: {name} not frozen: it used {', '.join(mixed)} of another "
                         "profile")
                continue
            if self._keeps_full_entry(name):
                self.log(f"freeze: {name} not frozen: its frozen full-profile results are current "
                         f"and a {self.config.profile}-profile result never replaces them")
                continue
            if self.frozen.write(name, outcome.entry, outcome.manifest, self._frozen_code(name),
                                 self._frozen_drawing(name, outcome)):
                changed.append(name)
        sizes = self.frozen.size()
        listing = ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in sizes.items())
        self.log(f"freeze: {len(changed)} entr{'y' if len(changed) == 1 else 'ies'} written "
                 f"({', '.join(changed) or 'none changed'}); {self.frozen.root}: "
                 f"{sum(sizes.values()) / 1e6:.1f} MB ({listing})")
        return changed

    def _keeps_full_entry(self, name: str) -> bool:
        """Whether `name`'s frozen entry is full-profile results that still match their code
        while this build made another profile's (a --profile quick or --force freeze): the full
        profile takes a GPU lease to remake, so a cheaper result never overwrites it."""
        if self.config.profile == FULL or FULL not in self.profile_configs:
            return False
        current, _ = self.frozen.check(name)
        return bool(current) and current.get("profile") == FULL \
            and current["code_key"] == self.code_keys(FULL)[name]

    def _frozen_code(self, name: str) -> dict[str, Any]:
        inputs = self.code_inputs(self.config.profile)[name]
        return {"code_key": inputs.key(), "inputs": inputs.as_dict()}

    def _frozen_drawing(self, name: str, outcome: Outcome) -> tuple[Path, dict] | None:
        """The drawn items with their draw key re-made for the frozen results (the same files:
        frozen results are a byte-for-byte copy of the cached ones they were drawn from)."""
        if outcome.draw_entry is None:
            return None
        frozen = dataclasses.replace(outcome, status="frozen",
                                     key="frozen:" + self.code_keys(self.config.profile)[name])
        inputs = self._draw_inputs(self.by_name[name], frozen)
        return outcome.draw_entry, {**outcome.draw_manifest, "key": inputs.key(),
                                    "inputs": inputs.as_dict()}

    def views(self, outcomes: Mapping[str, Outcome]) -> list[SectionView]:
        """Render inputs in article order for the analyses of this build."""
        result = []
        for section in self.sections:
            outcome = outcomes.get(section.name)
            if outcome is None:
                continue
            cfg = self.section_config(section.name, outcome)
            result.append(SectionView(
                name=section.name, prose=section.prose, cfg=cfg,
                metrics={**outcome.manifest.get("metrics", {}),
                         **outcome.draw_manifest.get("metrics", {})},
                items=outcome.draw_manifest.get("items", []), files=outcome.draw_entry,
                status=outcome.status, error=outcome.error,
                reduced=reduced_settings(section.analysis.config, cfg,
                                         section.analysis.zero_means),
                varies=bool(section.analysis.quick), requires=section.analysis.requires,
                provenance={"profile": outcome.profile, "frozen_state": outcome.frozen_state,
                            **{k: outcome.manifest.get(k, "") for k in
                               ("device", "device_name", "created")}},
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


def reduced_settings(full: Any, used: Any,
                     zero: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The config fields whose value in this build differs from the full profile's default.

    Covers the quick profile's overrides and `--set` alike, so the page can say exactly which
    settings made its numbers. A field listed in `zero` carries what its 0 means ("zero":
    "all"), so that the page never shows a 0 that stands for "every image".
    """
    zero = zero or {}
    return [{"key": f.name, "value": getattr(used, f.name), "full": getattr(full, f.name),
             **({"zero": zero[f.name]} if f.name in zero else {})}
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
          data: DataSource, log: Callable[[str], None] = print,
          profile_configs: Mapping[str, BuildConfig] | None = None,
          ) -> tuple[Path, dict[str, Outcome]]:
    """Run the analyses and render the site; raises BuildFailed leaving the old site intact."""
    start = time.perf_counter()
    recover_site(options.out)
    builder = Builder(modules, config, options, data, log, profile_configs)
    outcomes = builder.run()
    if options.freeze:
        builder.freeze(outcomes)
    index = builder.render(outcomes, time.perf_counter() - start)
    return index, outcomes
