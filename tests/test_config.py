"""The config tree, profiles and --set parsing (report/config.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from report.analysis import Analysis
from report.config import BuildConfig, ConfigError, config_json, make_config, parse_sets


@dataclass(frozen=True)
class TrainConfig:
    """Every field type --set supports."""

    epochs: int = 10
    lr: float = 0.01
    augment: bool = False
    optimizer: str = "sgd"
    seeds: tuple[int, ...] = (1, 2, 3)
    widths: tuple[float, ...] = (0.5,)
    limit: int | None = None


@dataclass(frozen=True)
class Plain:
    """A second section."""

    grid: int = 5


ANALYSES = [
    Analysis(name="train", config=TrainConfig(),
             quick={"epochs": 1, "seeds": (1,)}),
    Analysis(name="data", config=Plain()),
]


def build(profile: str = "full", **sets: str) -> BuildConfig:
    return make_config(ANALYSES, profile, sets)


def test_full_profile_is_the_defaults() -> None:
    config = build()
    assert config.profile == "full" and config.seed == 7
    assert config.section("train") == TrainConfig()
    assert config.section("data") == Plain()


def test_quick_profile_applies_overrides() -> None:
    config = build("quick")
    assert config.section("train") == TrainConfig(epochs=1, seeds=(1,))
    assert config.section("data") == Plain()


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="profile 'fast'"):
        build("fast")


@pytest.mark.parametrize("key, text, expected", [
    ("train.epochs", "3", 3),
    ("train.lr", "1e-3", 0.001),
    ("train.lr", "2", 2.0),
    ("train.optimizer", "adam", "adam"),
    ("train.augment", "true", True),
    ("train.augment", "Yes", True),
    ("train.augment", "on", True),
    ("train.augment", "1", True),
    ("train.augment", "false", False),
    ("train.augment", "NO", False),
    ("train.augment", "0", False),
    ("train.seeds", "4,5, 6", (4, 5, 6)),
    ("train.seeds", "9", (9,)),
    ("train.seeds", "", ()),
    ("train.widths", "0.25,1", (0.25, 1.0)),
    ("train.limit", "500", 500),
    ("train.limit", "none", None),
])
def test_set_converts_to_the_declared_type(key: str, text: str, expected: object) -> None:
    section, name = key.split(".")
    value = getattr(build(**{key: text}).section(section), name)
    assert value == expected and type(value) is type(expected)


def test_set_applies_after_the_quick_profile() -> None:
    config = build("quick", **{"train.epochs": "2"})
    assert config.section("train").epochs == 2
    assert config.section("train").seeds == (1,)  # the other quick overrides stay


def test_set_seed() -> None:
    assert build(seed="11").seed == 11


@pytest.mark.parametrize("key, text, match", [
    ("train.epochs", "many", "expected int"),
    ("train.epochs", "1.5", "expected int"),
    ("train.lr", "fast", "expected float"),
    ("train.augment", "maybe", "expected bool"),
    ("train.seeds", "1,x", "expected int"),
    ("seed", "abc", "expected int"),
    ("nosuch.epochs", "1", "unknown section 'nosuch'"),
    ("train.epochz", "1", "unknown key 'epochz' in train"),
    ("epochs", "1", "unknown key"),
])
def test_set_errors_name_the_key(key: str, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(**{key: text})


def test_parse_sets() -> None:
    assert parse_sets(["a.b=1", " seed = 3 ", "x.y=a=b"]) == {"a.b": "1", "seed": "3",
                                                                "x.y": "a=b"}
    for bad in ("novalue", "=3"):
        with pytest.raises(ConfigError, match="expected key=value"):
            parse_sets([bad])


def test_config_is_frozen() -> None:
    config = build()
    with pytest.raises(Exception):
        config.section("train").epochs = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.sections["train"] = Plain()  # type: ignore[index]


def test_config_json_is_canonical() -> None:
    text = config_json(TrainConfig())
    assert json.loads(text)["seeds"] == [1, 2, 3]
    assert text == config_json(TrainConfig())
    assert list(json.loads(text)) == sorted(json.loads(text))
