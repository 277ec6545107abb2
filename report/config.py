"""The frozen configuration tree: global knobs plus one frozen dataclass per analysis.

Defaults are the `full` profile; each analysis declares its `quick` overrides beside its config,
so the whole article builds on 2 CPU cores in minutes. `--set section.key=value` overrides one
value, converted to the field's declared type; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("quick", "full")
FULL = "full"  # the profile the article is meant to publish


class ConfigError(ValueError):
    """A profile, override or config value is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides a build's results: seed, profile and each analysis's config."""

    seed: int = 7  # the original notebook's seed
    profile: str = "full"
    sections: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The frozen config of one analysis."""
        return self.sections[name]


def with_overrides(obj: Any, overrides: Mapping[str, Any], where: str) -> Any:
    """Return a copy of a frozen dataclass with fields replaced, rejecting unknown names."""
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    return dataclasses.replace(obj, **overrides)


def _convert(text: str, annotation: Any, key: str) -> Any:
    """Convert a command-line string to `annotation` (int, float, bool, str, tuples of those)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(annotation)):
            return None
        return _convert(text, args[0], key)
    if origin is tuple:
        args = typing.get_args(annotation)
        items = [t for t in text.split(",") if t.strip()] if text.strip() else []
        item_type = args[0] if args else str
        return tuple(_convert(t.strip(), item_type, key) for t in items)
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if annotation in (int, float, str):
            return annotation(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {annotation.__name__}") from None
    raise ConfigError(f"--set {key}: fields of type {annotation} cannot be set from the CLI")


def parse_sets(pairs: Iterable[str]) -> dict[str, str]:
    """Split `key=value` strings, rejecting malformed ones."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set seed=1")
        result[key.strip()] = value.strip()
    return result


def make_config(
    analyses: Iterable[Any],
    profile: str,
    sets: Mapping[str, str] | None = None,
) -> BuildConfig:
    """Assemble the config tree for `profile` from the analyses' declarations, then apply `sets`."""
    if profile not in PROFILES:
        raise ConfigError(f"profile {profile!r}: choose one of {PROFILES}")
    sections: dict[str, Any] = {}
    for analysis in analyses:
        cfg = analysis.config
        if profile == "quick":
            cfg = with_overrides(cfg, analysis.quick, f"{analysis.name} quick profile")
        sections[analysis.name] = cfg
    top = {"seed": BuildConfig.seed}
    for key, value in (sets or {}).items():
        if "." not in key:
            if key != "seed":
                raise ConfigError(f"--set {key}: unknown key; top-level keys: ['seed'], "
                                  "others are section.key, e.g. dataset.grid")
            top["seed"] = _convert(value, int, key)
            continue
        section, _, name = key.partition(".")
        if section not in sections:
            raise ConfigError(f"--set {key}: unknown section {section!r}; "
                              f"sections: {sorted(sections)}")
        hints = typing.get_type_hints(type(sections[section]))
        if name not in hints:
            raise ConfigError(f"--set {key}: unknown key {name!r} in {section}; "
                              f"keys: {sorted(hints)}")
        sections[section] = with_overrides(
            sections[section], {name: _convert(value, hints[name], key)}, f"--set {key}"
        )
    return BuildConfig(seed=top["seed"], profile=profile, sections=types.MappingProxyType(sections))


def config_json(cfg: Any) -> str:
    """Canonical JSON of a config dataclass (sorted keys) for hashing and display."""
    data = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return json.dumps(data, sort_keys=True, default=str)
