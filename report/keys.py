"""The two keys of every analysis, and why a stored entry no longer matches them.

*Compute key*: the code `compute(ctx)` can run (report/codekeys.py, presentation modules
excluded, the modules that shape every result included), its config slice, the compute keys of
its upstream analyses (a Merkle chain) and the environment: seed and dataset, plus the machine
for the local cache (device type, library versions, the CPU's kernel level), not for frozen
entries, whose *code key* leaves the machine out so that a GPU's results render anywhere.

*Draw key*: the code `draw(ctx)` can run (presentation included), the config slice and the
identity of the compute results it draws from. A new colour, caption logic or comparison rule
changes only draw keys: the figures are redrawn in seconds and no result is recomputed.

Each entry's manifest keeps the inputs of its key, so `--list` can say what changed: the file
and function, the config field, the upstream analysis or the seed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from report.analysis import Section
from report.codekeys import CodeIndex, changed_code, combine

# Modules that shape every result whatever an analysis names: the named random streams and the
# global seeding done before each stage.
RESULT_MODULES = ("report.streams",)
# Modules that only present: recording, rendering and the comparison rule. No compute stage may
# reach them (tests/test_keys.py checks the real project), and they are outside compute keys.
PRESENTATION_MODULES = ("report.context", "report.render", "report.compare")
STAGES = ("compute", "draw")


@dataclass(frozen=True)
class KeyInputs:
    """Everything one key hashes, kept in the entry's manifest to explain a mismatch later."""

    symbols: Mapping[str, str]  # 'path:name' -> digest of its normalised syntax tree
    config: str  # the config slice as canonical JSON
    upstream: Mapping[str, str]  # compute keys of the required analyses (draw: its own compute)
    environment: Mapping[str, str]

    def key(self) -> str:
        """The key (hex SHA-256)."""
        return combine(self.symbols, config=self.config, upstream=dict(self.upstream),
                       environment=dict(self.environment))

    def as_dict(self) -> dict[str, Any]:
        """Plain form for a manifest."""
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}


class Keys:
    """Symbol closures of each analysis's stages (parsed once per build) and the keys over them."""

    def __init__(self, root: Path, presentation: Collection[str] = PRESENTATION_MODULES):
        self.index = CodeIndex(root)
        self.presentation = tuple(presentation)
        self._symbols: dict[tuple[str, str], Mapping[str, str]] = {}

    def closure(self, section: Section, stage: str) -> Any:
        """The Closure of one stage (report.codekeys.Closure)."""
        if stage not in STAGES:
            raise ValueError(f"stage {stage!r}: compute or draw")
        module = section.module.__name__
        if stage == "compute":
            return self.index.closure([(module, "compute"), *((m, "*") for m in RESULT_MODULES)],
                                      exclude=self.presentation)
        return self.index.closure([(module, "draw")])

    def symbols(self, section: Section, stage: str) -> Mapping[str, str]:
        """'path:name' -> digest of every symbol the stage can run (memoised)."""
        if (section.name, stage) not in self._symbols:
            self._symbols[section.name, stage] = self.closure(section, stage).symbols
        return self._symbols[section.name, stage]

    def compute_inputs(self, section: Section, config: str, upstream: Mapping[str, str],
                       environment: Mapping[str, str]) -> KeyInputs:
        """The inputs of a compute key (a code key when `environment` leaves the machine out)."""
        return KeyInputs(self.symbols(section, "compute"), config,
                         {u: upstream[u] for u in section.analysis.requires},
                         dict(sorted(environment.items())))

    def draw_inputs(self, section: Section, config: str, compute: str, seed: int) -> KeyInputs:
        """The inputs of a draw key: drawing code, config, and the results drawn from."""
        return KeyInputs(self.symbols(section, "draw"), config, {"compute": compute},
                         {"seed": str(seed)})


def why_changed(old: Mapping[str, Any] | None, new: KeyInputs) -> str:
    """What differs between a stored entry's key inputs and today's, in a few words."""
    if not old:
        return "made by an older engine that kept no record of its inputs"
    reasons = [f"code: {line}" for line in changed_code(old.get("symbols", {}), new.symbols)]
    before, after = json.loads(old.get("config") or "{}"), json.loads(new.config or "{}")
    reasons += [f"config {k}: {before.get(k)!r} -> {after.get(k)!r}"
                for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    old_up = old.get("upstream", {})
    reasons += [f"upstream {u} changed" for u in sorted(set(old_up) | set(new.upstream))
                if old_up.get(u) != new.upstream.get(u) and u != "compute"]
    if old_up.get("compute", new.upstream.get("compute")) != new.upstream.get("compute"):
        reasons.append("its compute results changed")
    old_env = old.get("environment", {})
    reasons += [f"{k}: {old_env.get(k)} -> {new.environment.get(k)}"
                for k in sorted(set(old_env) | set(new.environment))
                if old_env.get(k) != new.environment.get(k)]
    return "; ".join(reasons) or "unchanged"
