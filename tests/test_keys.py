"""The real project's keys (report/keys.py over analyses/, digits/, report/): what stales what.

Each test edits a copy of the project's sources in a temporary folder and recomputes every
analysis's compute and draw keys there (keys are computed from files on disk, so nothing is
imported from the copy and the repository is never touched).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from analyses import ANALYSES, PRESENTATION
from report.analysis import execution_order, sections_from_modules
from report.config import config_json, make_config
from report.keys import PRESENTATION_MODULES, Keys, why_changed

REPO = Path(__file__).resolve().parent.parent
SECTIONS = execution_order(sections_from_modules(ANALYSES))
NAMES = [s.name for s in SECTIONS]
ENVIRONMENT = {"seed": "0", "dataset": "fingerprint"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Python packages."""
    for folder in ("analyses", "digits", "report"):
        shutil.copytree(REPO / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def keys_of(root: Path, profile: str = "full") -> dict[str, dict]:
    """name -> compute inputs, compute key and draw key, chained as the engine chains them."""
    keys = Keys(root, (*PRESENTATION_MODULES, *PRESENTATION))
    config = make_config([m.ANALYSIS for m in ANALYSES], profile)
    compute: dict[str, str] = {}
    found = {}
    for section in SECTIONS:
        cfg = config_json(config.section(section.name))
        inputs = keys.compute_inputs(section, cfg, compute, ENVIRONMENT)
        compute[section.name] = inputs.key()
        found[section.name] = {"inputs": inputs, "compute": inputs.key(),
                               "draw": keys.draw_inputs(section, cfg, inputs.key(), 0).key()}
    return found


def changed(before: dict, after: dict, stage: str) -> set[str]:
    return {n for n in NAMES if before[n][stage] != after[n][stage]}


def edit_function(path: Path, function: str) -> None:
    """Change what `function` (top level, or a method) in `path` does: a new first statement."""
    tree = ast.parse(path.read_text())
    node = next(n for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function)
    node.body.insert(1 if ast.get_docstring(node) else 0, ast.parse("_edited = 1").body[0])
    path.write_text(ast.unparse(tree) + "\n")


def dependants(names: set[str]) -> set[str]:
    """`names` and every analysis that requires one of them, transitively."""
    found = set(names)
    for section in SECTIONS:  # in execution order, so one pass suffices
        if found & set(section.analysis.requires):
            found.add(section.name)
    return found


def test_no_compute_stage_reaches_a_presentation_module() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    reached = {s.name: sorted(keys.closure(s, "compute").excluded) for s in SECTIONS}
    assert reached == {name: [] for name in NAMES}


def test_every_draw_reaches_the_presentation_it_uses() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    for section in SECTIONS:
        files = {symbol.partition(":")[0] for symbol in keys.symbols(section, "draw")}
        assert f"analyses/{section.name}.py" in files


def test_comments_docstrings_and_formatting_change_no_key(project: Path) -> None:
    before = keys_of(project)
    for path in sorted(project.rglob("*.py")):
        text = path.read_text()
        # A comment on every line that can take one, a reworded docstring, more blank lines.
        text = text.replace('"""', '"""Reworded by a test. ', 1) + "\n\n# a comment\n"
        path.write_text(text.replace("\n\n\ndef ", "\n\n\n# a comment\ndef "))
    assert keys_of(project) == before


def test_prose_edits_change_no_key(project: Path) -> None:
    before = keys_of(project)
    for section in SECTIONS:
        prose = project / "analyses" / f"{section.name}.md"
        prose.write_text(REPO.joinpath("analyses", f"{section.name}.md").read_text()
                         + "\nA sentence appended by a test.\n")
    assert keys_of(project) == before


@pytest.mark.parametrize("path, function", [
    ("digits/plots.py", "new_figure"),  # how every figure is laid out
    ("report/compare.py", "compare"),  # the comparison rule
    ("report/render.py", "pct"),  # how a number is written
])
def test_a_presentation_edit_redraws_and_recomputes_nothing(project: Path, path: str,
                                                            function: str) -> None:
    before = keys_of(project)
    edit_function(project / path, function)
    after = keys_of(project)
    assert changed(before, after, "compute") == set()
    redrawn = changed(before, after, "draw")
    if path != "report/render.py":  # the page's filters run at render time, in no stage
        assert redrawn, f"no draw stage uses {path}:{function}"


def test_a_draw_edit_redraws_only_its_section(project: Path) -> None:
    before = keys_of(project)
    edit_function(project / "analyses" / "embeddings.py", "draw")
    after = keys_of(project)
    assert changed(before, after, "compute") == set()
    assert changed(before, after, "draw") == {"embeddings"}


def test_a_training_loop_edit_stales_exactly_what_runs_it(project: Path) -> None:
    before = keys_of(project)
    edit_function(project / "digits" / "training.py", "train")
    after = keys_of(project)
    # The sections whose compute trains through digits.training.train (directly, through the
    # study runner or through the head and fine-tuning of frozen features); the data,
    # embeddings, hidden-layers and GAN sections train nothing through it themselves.
    runs_it = {"classifiers", "optimizers", "dynamics", "transfer"}
    assert changed(before, after, "compute") == dependants(runs_it)
    assert dependants(runs_it) - runs_it == {"hidden_layers", "gan"}
    # A draw key names its compute results, so their drawings are made again too.
    assert changed(before, after, "draw") == dependants(runs_it)
    why = why_changed(before["classifiers"]["inputs"].as_dict(), after["classifiers"]["inputs"])
    assert why == "code: digits/training.py: train"
    assert why_changed(before["hidden_layers"]["inputs"].as_dict(),
                       after["hidden_layers"]["inputs"]) == "upstream classifiers changed"


def test_an_analysis_edit_stales_it_and_its_dependants(project: Path) -> None:
    before = keys_of(project)
    for section in SECTIONS:
        path = project / "analyses" / f"{section.name}.py"
        original = path.read_text()
        edit_function(path, "compute")
        assert changed(before, keys_of(project), "compute") == dependants({section.name}), \
            section.name
        path.write_text(original)


def test_profiles_have_their_own_keys(project: Path) -> None:
    quick, full = keys_of(project, "quick"), keys_of(project, "full")
    differ = {n for n in NAMES if quick[n]["compute"] != full[n]["compute"]}
    reduced = {m.ANALYSIS.name for m in ANALYSES if m.ANALYSIS.quick}
    assert differ == dependants(reduced)
