"""The analysis contract and the order in which analyses run.

An analysis module declares `ANALYSIS = Analysis(...)` and two stages: `compute(ctx)` does the
expensive work and records raw results (report.context.ComputeContext); `draw(ctx)` turns them
into figures, GIFs, tables and verdicts (report.context.DrawContext), on the CPU, in seconds.
Each stage has its own key (report/keys.py).
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class NoConfig:
    """Config of an analysis without knobs."""


@dataclass(frozen=True)
class Analysis:
    """Declares one article section: its name, upstream analyses and config.

    `config` is a frozen dataclass instance whose defaults are the full profile; `quick` maps
    field names to the values the quick profile uses instead. The section's title, like every
    word a reader sees, lives in its prose (the first line of `<name>.md`, `# Title`).
    """

    name: str
    requires: tuple[str, ...] = ()
    config: Any = field(default_factory=NoConfig)
    quick: Mapping[str, Any] = field(default_factory=dict)
    # What 0 means for settings where 0 is not a count (e.g. {"train_subset": "all"}), so that
    # the page never shows "train_subset 6,000 (full: 0)".
    zero_means: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"analysis name {self.name!r} must be a Python identifier")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"{self.name}: config must be a dataclass instance")
        if not type(self.config).__dataclass_params__.frozen:
            raise TypeError(f"{self.name}: config dataclass must be frozen")
        fields = {f.name for f in dataclasses.fields(self.config)}
        for what, names in (("quick overrides", self.quick), ("zero_means names", self.zero_means)):
            unknown = set(names) - fields
            if unknown:
                raise ValueError(f"{self.name}: {what} unknown fields {sorted(unknown)}")


@dataclass(frozen=True)
class Section:
    """An analysis bound to the module that runs it."""

    analysis: Analysis
    module: ModuleType

    @property
    def name(self) -> str:
        """The analysis name."""
        return self.analysis.name

    @property
    def source_path(self) -> Path:
        """The module's source file."""
        return Path(self.module.__file__)

    @property
    def prose_path(self) -> Path:
        """The Markdown prose beside the module (`analyses/<name>.md`)."""
        return self.source_path.with_suffix(".md")

    @property
    def prose(self) -> str:
        """The prose template's text ('' when the module has no prose file)."""
        path = self.prose_path
        return path.read_text(encoding="utf-8") if path.exists() else ""

    @property
    def raw_title(self) -> str:
        """The title line of the prose for listings: the name when it has Jinja or is missing."""
        first = self.prose.lstrip().split("\n", 1)[0]
        if not first.startswith("# ") or "{" in first:
            return self.name
        return first[2:].strip()



def sections_from_modules(modules: Sequence[ModuleType]) -> list[Section]:
    """Bind each module's ANALYSIS to it, checking the contract (ANALYSIS, compute, draw)."""
    sections = []
    for module in modules:
        analysis = getattr(module, "ANALYSIS", None)
        stages = [callable(getattr(module, stage, None)) for stage in ("compute", "draw")]
        if not isinstance(analysis, Analysis) or not all(stages):
            raise TypeError(f"{module.__name__}: needs ANALYSIS = Analysis(...), compute(ctx) "
                            "and draw(ctx)")
        sections.append(Section(analysis, module))
    return sections


def execution_order(sections: Sequence[Section]) -> list[Section]:
    """Topological order over `requires`, ties broken by article order; rejects cycles/unknowns."""
    by_name: dict[str, Section] = {}
    for section in sections:
        if section.name in by_name:
            raise ValueError(f"analysis {section.name!r} is listed twice")
        by_name[section.name] = section
    for section in sections:
        for upstream in section.analysis.requires:
            if upstream not in by_name:
                raise ValueError(f"{section.name} requires unknown analysis {upstream!r}")
    sorter = graphlib.TopologicalSorter({s.name: s.analysis.requires for s in sections})
    position = {s.name: i for i, s in enumerate(sections)}
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise ValueError(f"analyses form a cycle: {' -> '.join(exc.args[1])}") from exc
    order: list[Section] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        for name in ready:
            order.append(by_name[name])
            sorter.done(name)
    return order


def select(sections: Sequence[Section], only: Sequence[str]) -> set[str]:
    """Names to build for `--only`: the named analyses and everything they depend on."""
    by_name = {s.name: s for s in sections}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise ValueError(f"--only: unknown analyses {unknown}; known: {sorted(by_name)}")
    wanted: set[str] = set()
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].analysis.requires)
    return wanted
