"""The analysis contract and the build order (report/analysis.py)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import pytest

from report.analysis import Analysis, NoConfig, execution_order, sections_from_modules, select


@dataclass(frozen=True)
class Knobs:
    """A config for tests."""

    epochs: int = 3


@dataclass
class Mutable:
    """Not frozen: rejected."""

    epochs: int = 3


def module(name: str, requires: tuple[str, ...] = ()) -> ModuleType:
    """A throwaway module with ANALYSIS, compute and draw."""
    mod = ModuleType(f"fake_{name}")
    mod.ANALYSIS = Analysis(name=name, requires=requires)
    mod.compute = lambda ctx: None
    mod.draw = lambda ctx: None
    return mod


def names(sections) -> list[str]:
    return [s.name for s in sections]


def test_defaults() -> None:
    analysis = Analysis(name="x")
    assert analysis.requires == () and isinstance(analysis.config, NoConfig)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"name": "not-an-identifier"}, ValueError, "identifier"),
    ({"config": {"epochs": 3}}, TypeError, "dataclass"),
    ({"config": Mutable()}, TypeError, "frozen"),
    ({"config": Knobs(), "quick": {"epochz": 1}}, ValueError, "epochz"),
])
def test_invalid_declarations_are_rejected(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Analysis(**{"name": "x", **kwargs})


def test_module_without_contract_is_rejected() -> None:
    bare = ModuleType("bare")
    with pytest.raises(TypeError, match="bare: needs ANALYSIS"):
        sections_from_modules([bare])
    no_draw = ModuleType("no_draw")
    no_draw.ANALYSIS = Analysis(name="x")
    no_draw.compute = lambda ctx: None
    with pytest.raises(TypeError, match="draw"):
        sections_from_modules([no_draw])


def test_order_is_topological_with_ties_in_article_order() -> None:
    sections = sections_from_modules([
        module("report", ("train",)),
        module("intro"),
        module("train", ("data",)),
        module("appendix"),
        module("data"),
    ])
    assert names(execution_order(sections)) == ["intro", "appendix", "data", "train", "report"]


def test_order_keeps_article_order_without_dependencies() -> None:
    sections = sections_from_modules([module(n) for n in ("c", "a", "b")])
    assert names(execution_order(sections)) == ["c", "a", "b"]


def test_cycle_is_rejected() -> None:
    sections = sections_from_modules([module("a", ("c",)), module("b", ("a",)),
                                      module("c", ("b",))])
    with pytest.raises(ValueError, match="cycle"):
        execution_order(sections)


def test_self_requirement_is_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        execution_order(sections_from_modules([module("a", ("a",))]))


def test_unknown_requirement_is_rejected() -> None:
    sections = sections_from_modules([module("a"), module("b", ("ghost",))])
    with pytest.raises(ValueError, match="b requires unknown analysis 'ghost'"):
        execution_order(sections)


def test_duplicate_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        execution_order(sections_from_modules([module("a"), module("a")]))


def test_select_adds_requirements_transitively() -> None:
    sections = sections_from_modules([module("a"), module("b", ("a",)), module("c", ("b",)),
                                      module("d")])
    assert select(sections, ["c"]) == {"a", "b", "c"}
    assert select(sections, ["d", "a"]) == {"a", "d"}
    with pytest.raises(ValueError, match="unknown analyses \\['zz'\\]"):
        select(sections, ["zz"])
