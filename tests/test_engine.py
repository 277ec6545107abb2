"""The engine on toy analyses: cache hits and misses, --force/--only, failures, kills, races,
prose edits, manifests and reduced settings; and the cache keys of the real project."""

from __future__ import annotations

import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ToyProject, statuses

from report.cache import Cache
from report.config import make_config
from report.engine import (
    Builder,
    BuildFailed,
    BuildOptions,
    DataSource,
    Outcome,
    build,
    recover_site,
    reduced_settings,
)
from report.render import ProseError
from report.streams import derive_seed

CHAIN = ["alpha", "beta", "gamma", "delta"]


def entries(cache: Path, name: str) -> list[Path]:
    """Every folder under cache/compute/<name>/: committed entries and staging folders."""
    folder = cache / "compute" / name
    return sorted(folder.iterdir()) if folder.exists() else []


# --- cache hits, misses and the Merkle chain ----------------------------------------------------


def test_first_build_runs_everything_second_reuses_everything(toy: ToyProject) -> None:
    index, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")
    assert index.is_file()
    assert toy.data_loads == 1  # only delta reads ctx.data
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    assert toy.data_loads == 1  # a fully cached build never loads the dataset
    for name in CHAIN:
        assert len(entries(toy.cache, name)) == 1


def test_editing_upstream_compute_reruns_it_and_its_dependents_only(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("alpha")
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == {"alpha": "run", "beta": "run", "gamma": "run",
                                  "delta": "cached"}


def test_editing_downstream_compute_reruns_only_it(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("gamma")
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == {"alpha": "cached", "beta": "cached", "gamma": "run",
                                  "delta": "cached"}


def test_editing_an_imported_project_function_invalidates_the_importer(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("helpers", "double")  # imported by alpha's compute only
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == {"alpha": "run", "beta": "run", "gamma": "run",
                                  "delta": "cached"}


def test_comments_and_docstrings_change_no_key(toy: ToyProject) -> None:
    _, first = toy.build(CHAIN)
    for name in [*CHAIN, "helpers", "plots"]:
        toy.touch_source(name)
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    assert {n: o.drawn for n, o in outcomes.items()} == dict.fromkeys(CHAIN, "cached")
    assert {n: (o.key, o.draw_key) for n, o in outcomes.items()} == \
        {n: (o.key, o.draw_key) for n, o in first.items()}


def test_editing_draw_redraws_without_computing(toy: ToyProject) -> None:
    _, first = toy.build(CHAIN)
    toy.edit_code("alpha", "draw")
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    assert {n: o.drawn for n, o in outcomes.items()} == {"alpha": "drawn", "beta": "cached",
                                                         "gamma": "cached", "delta": "cached"}
    assert outcomes["alpha"].key == first["alpha"].key
    assert outcomes["alpha"].draw_key != first["alpha"].draw_key


def test_editing_a_presentation_module_redraws_only_what_uses_it(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("plots", "line")  # drawing code of alpha: no compute stage reaches it
    index, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    assert outcomes["alpha"].drawn == "drawn"
    assert {n for n, o in outcomes.items() if o.drawn == "drawn"} == {"alpha"}
    assert "Alpha summed 4 values" in index.read_text()


def test_a_failing_draw_fails_like_a_failing_compute(toy: ToyProject) -> None:
    index, _ = toy.build(CHAIN)
    before = index.read_bytes()
    with pytest.raises(BuildFailed, match="drawing broke on purpose"):
        toy.build(CHAIN, sets={"beta.draw_fail": "true"})
    assert index.read_bytes() == before
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    index, outcomes = toy.build(CHAIN, sets={"beta.draw_fail": "true"}, keep_going=True)
    assert statuses(outcomes) == {"alpha": "cached", "beta": "failed", "gamma": "skipped",
                                  "delta": "cached"}
    assert "could not be built" in section(index.read_text(), "beta")


def test_plan_says_why_an_entry_must_run_again(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("helpers", "double")
    toy.edit_code("gamma", "draw")
    modules = toy.modules(CHAIN)
    options = BuildOptions(root=toy.root, out=toy.out, cache_dir=toy.cache,
                           templates=toy.templates, device=torch.device("cpu"))
    plan = {row["name"]: row for row in Builder(
        modules, make_config([m.ANALYSIS for m in modules], "full", {"alpha.n": "5"}),
        options, toy.data_source()).plan()}
    assert plan["alpha"]["state"] == "stale"
    assert "code: toy/helpers.py: double" in plan["alpha"]["note"]
    assert "config n: 4 -> 5" in plan["alpha"]["note"]
    assert plan["beta"]["note"] == "upstream alpha changed"
    assert plan["gamma"]["note"] == "upstream beta changed"
    assert (plan["delta"]["state"], plan["delta"]["drawn"]) == ("cached", "cached")


def test_plan_names_a_changed_drawing(toy: ToyProject) -> None:
    toy.build(CHAIN)
    toy.edit_code("alpha", "draw")
    modules = toy.modules(CHAIN)
    options = BuildOptions(root=toy.root, out=toy.out, cache_dir=toy.cache,
                           templates=toy.templates, device=torch.device("cpu"))
    plan = {row["name"]: row for row in Builder(
        modules, make_config([m.ANALYSIS for m in modules], "full"), options,
        toy.data_source()).plan()}
    assert (plan["alpha"]["state"], plan["alpha"]["drawn"]) == ("cached", "redraw")
    assert plan["alpha"]["note"] == "redraw: code: toy/alpha.py: draw"


def test_editing_prose_or_templates_rerenders_without_running(toy: ToyProject) -> None:
    toy.build(CHAIN)
    prose = toy.root / "toy" / "gamma.md"
    prose.write_text("# Gamma section\n\nGamma now says {{ m.beta_sum_plus_one }} in new words.\n")
    base = toy.templates / "base.html"
    base.write_text(base.read_text().replace("<body>", "<body data-edited=\"yes\">"))
    index, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    page = index.read_text()
    assert "Gamma now says 7 in new words." in page  # beta's sum 0+1+2+3 = 6, plus one
    assert 'data-edited="yes"' in page


def test_config_change_invalidates_the_section_and_its_dependents(toy: ToyProject) -> None:
    toy.build(CHAIN)
    _, outcomes = toy.build(CHAIN, sets={"alpha.label": "renamed"})
    assert statuses(outcomes) == {"alpha": "run", "beta": "run", "gamma": "run",
                                  "delta": "cached"}


def test_seed_change_invalidates_everything(toy: ToyProject) -> None:
    toy.build(CHAIN)
    _, outcomes = toy.build(CHAIN, sets={"seed": "8"})
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")


def test_quick_profile_overrides_reach_the_analysis_and_the_key(toy: ToyProject) -> None:
    index, outcomes = toy.build(["alpha"], profile="quick")
    assert outcomes["alpha"].manifest["metrics"]["n"] == 2  # quick={"n": 2}
    assert "Alpha summed 2 values" in index.read_text()
    _, full = toy.build(["alpha"], profile="full")
    assert full["alpha"].status == "run"
    assert full["alpha"].manifest["metrics"]["n"] == 4
    assert full["alpha"].key != outcomes["alpha"].key


def test_plan_reports_the_cache_state_for_list(toy: ToyProject) -> None:
    toy.build(["alpha"])
    modules = toy.modules(CHAIN)
    options = BuildOptions(root=toy.root, out=toy.out, cache_dir=toy.cache,
                           templates=toy.templates, device=torch.device("cpu"))
    plan = Builder(modules, make_config([m.ANALYSIS for m in modules], "full"), options,
                   toy.data_source()).plan()
    assert [(row["name"], row["state"], row["requires"], row["title"]) for row in plan] == [
        ("alpha", "cached", (), "Alpha section"), ("beta", "stale", ("alpha",), "Beta section"),
        ("gamma", "stale", ("beta",), "Gamma section"), ("delta", "stale", (), "Delta section")]
    assert toy.data_loads == 0  # planning never loads the dataset


# --- --force and --only ------------------------------------------------------------------------


def test_force_one_reruns_only_it(toy: ToyProject) -> None:
    toy.build(CHAIN)
    _, outcomes = toy.build(CHAIN, force=("beta",))
    assert statuses(outcomes) == {"alpha": "cached", "beta": "run", "gamma": "cached",
                                  "delta": "cached"}
    assert len(entries(toy.cache, "beta")) == 1  # same key: the entry was replaced, not added


def test_forced_results_replace_the_cached_entry(toy: ToyProject) -> None:
    toy.build(CHAIN)
    manifest = toy.cache.glob("compute/beta/*/manifest.json").__next__()
    stale = json.loads(manifest.read_text())
    stale["metrics"]["sum"] = -1  # what a previous, different run might have left
    manifest.write_text(json.dumps(stale))
    _, outcomes = toy.build(CHAIN, force=("beta",))
    assert outcomes["beta"].manifest["metrics"]["sum"] != -1
    entry = Cache(toy.cache / "compute").lookup("beta", outcomes["beta"].key)
    assert entry is not None and entry["metrics"]["sum"] != -1
    assert [p.name for p in entries(toy.cache, "beta") if p.name.startswith(".")] == []


def test_force_all_reruns_everything(toy: ToyProject) -> None:
    toy.build(CHAIN)
    _, outcomes = toy.build(CHAIN, force=("all",))
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")


def test_force_unknown_name_is_rejected(toy: ToyProject) -> None:
    with pytest.raises(ValueError, match="--force: unknown"):
        toy.build(CHAIN, force=("nope",))


def test_only_runs_the_named_analysis_and_its_requirements(toy: ToyProject) -> None:
    index, outcomes = toy.build(CHAIN, only=("gamma",))
    assert statuses(outcomes) == {"alpha": "run", "beta": "run", "gamma": "run"}
    assert not (toy.cache / "compute" / "delta").exists()
    page = index.read_text()
    assert 'id="gamma"' in page and 'id="delta"' not in page


def test_only_unknown_name_is_rejected(toy: ToyProject) -> None:
    with pytest.raises(ValueError, match="--only: unknown"):
        toy.build(CHAIN, only=("nope",))


def test_execution_follows_dependencies_then_article_order(toy: ToyProject) -> None:
    # Article order puts gamma first, but it needs beta, which needs alpha.
    _, outcomes = toy.build(["gamma", "delta", "beta", "alpha"])
    assert list(outcomes) == ["delta", "alpha", "beta", "gamma"]
    running = [line.split("] ")[1].split(":")[0] for line in toy.logs if line.endswith("computing")]
    assert running == ["delta", "alpha", "beta", "gamma"]


def test_site_sections_follow_article_order(toy: ToyProject) -> None:
    index, _ = toy.build(["gamma", "delta", "beta", "alpha"])
    page = index.read_text()
    positions = [page.index(f'<section id="{name}"')
                 for name in ("gamma", "delta", "beta", "alpha")]
    assert positions == sorted(positions)


# --- failures ----------------------------------------------------------------------------------


def test_failing_analysis_raises_leaves_old_site_and_no_cache_entry(toy: ToyProject) -> None:
    index, _ = toy.build(CHAIN)
    before = index.read_bytes()
    with pytest.raises(BuildFailed, match="beta broke on purpose"):
        toy.build(CHAIN, sets={"beta.fail": "true"})
    assert index.read_bytes() == before
    # Only the entry of the earlier, successful build: no new key, no staging folder.
    assert len(entries(toy.cache, "beta")) == 1
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    assert not list(toy.out.parent.glob("site.tmp-*"))


def test_first_build_failing_leaves_no_site_and_no_entry(toy: ToyProject) -> None:
    with pytest.raises(BuildFailed):
        toy.build(CHAIN, sets={"beta.fail": "yes"})
    assert not toy.out.exists()
    assert entries(toy.cache, "beta") == []
    assert len(entries(toy.cache, "alpha")) == 1  # what completed before the failure is kept


def test_keep_going_renders_others_marks_failed_and_skips_dependents(toy: ToyProject) -> None:
    index, outcomes = toy.build(CHAIN, sets={"beta.fail": "1"}, keep_going=True)
    assert statuses(outcomes) == {"alpha": "run", "beta": "failed", "gamma": "skipped",
                                  "delta": "run"}
    assert outcomes["beta"].error == "RuntimeError: beta broke on purpose"
    assert "beta" in outcomes["gamma"].error
    logged = "\n".join(toy.logs)
    assert "Traceback" in logged  # a bug in an analysis is logged with its traceback
    page = index.read_text()
    beta = page[page.index('<section id="beta"'):page.index('<section id="gamma"')]
    assert "could not be built" in beta and "RuntimeError: beta broke on purpose" in beta
    assert "Alpha summed 4 values" in page and "The toy dataset has 3 items." in page
    manifest = json.loads((toy.out / "data" / "manifest.json").read_text())
    assert {a["name"]: a["status"] for a in manifest["analyses"]}["beta"] == "failed"
    assert entries(toy.cache, "beta") == [] and entries(toy.cache, "gamma") == []


def test_load_from_an_analysis_not_in_requires_fails(toy: ToyProject) -> None:
    _, outcomes = toy.build(["alpha", "sneaky"], keep_going=True)
    assert outcomes["sneaky"].status == "failed"
    assert "not in its requires" in outcomes["sneaky"].error


def test_dead_staging_folder_is_swept_and_live_one_kept(toy: ToyProject) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = toy.cache / "compute" / "alpha" / f".tmp-{dead_pid}-deadbeef"
    stale.mkdir(parents=True)
    (stale / "line.png").write_bytes(b"half a figure")
    # Another build's, still alive:
    live = toy.cache / "compute" / "alpha" / f".tmp-{os.getppid()}-cafecafe"
    live.mkdir()
    _, outcomes = toy.build(["alpha"])
    assert outcomes["alpha"].status == "run"
    assert not stale.exists()
    assert live.exists()


def test_keyboard_interrupt_keeps_old_site_and_cache_usable(toy: ToyProject) -> None:
    index, _ = toy.build(CHAIN)
    before = index.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        toy.build(CHAIN, sets={"beta.interrupt": "on"})
    assert index.read_bytes() == before
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    assert not list(toy.out.parent.glob("site.tmp-*"))
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")


def test_recover_site_restores_old_site_of_a_dead_build(tmp_path: Path) -> None:
    out = tmp_path / "site"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    old = tmp_path / f"site.old-{int(dead.stdout)}"
    old.mkdir()
    (old / "index.html").write_text("previous")
    recover_site(out)
    assert (out / "index.html").read_text() == "previous"
    assert not old.exists()


def test_recover_site_leaves_a_live_builds_swap_alone(tmp_path: Path) -> None:
    # Another build (alive) is between its two renames: site/ moved aside, new one not yet in.
    out = tmp_path / "site"
    old = tmp_path / f"site.old-{os.getppid()}"
    old.mkdir()
    (old / "index.html").write_text("previous")
    recover_site(out)
    assert not out.exists(), "took the folder a running build is swapping"
    assert old.exists()


def section(page: str, name: str) -> str:
    """The HTML of one section of the page."""
    start = page.index(f'<section id="{name}"')
    return page[start:page.index("</section>", start)]


# --- prose: every word is outside the cache key -------------------------------------------------


def test_editing_captions_alt_text_and_title_rerenders_without_running(toy: ToyProject) -> None:
    _, first = toy.build(CHAIN)
    prose = toy.root / "toy" / "alpha.md"
    text = prose.read_text()
    edits = {"# Alpha section": "# Alpha, retitled",
             "A line over": "A freshly captioned line over",
             'alt="A rising line."': 'alt="A line that climbs."',
             'caption="Squares."': 'caption="Squares of the first values."'}
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    prose.write_text(text)
    index, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")
    assert {n: o.key for n, o in outcomes.items()} == {n: o.key for n, o in first.items()}
    page = index.read_text()
    alpha = section(page, "alpha")
    assert "<h2>1. Alpha, retitled</h2>" in alpha and '<a href="#alpha">Alpha, retitled</a>' in page
    assert "A freshly captioned line over 4 values." in alpha
    assert 'alt="A line that climbs."' in alpha and "A rising line" not in page
    assert "Squares of the first values." in alpha
    exported = json.loads((toy.out / "data" / "alpha" / "values.json").read_text())
    assert exported["caption"] == "Squares of the first values."


def test_an_unplaced_item_fails_the_render_and_keeps_results_and_site(toy: ToyProject) -> None:
    index, _ = toy.build(CHAIN)
    before = index.read_bytes()
    prose = toy.root / "toy" / "alpha.md"
    text = prose.read_text()
    prose.write_text(text.replace('{{ table("values", caption="Squares.") }}', ""))
    with pytest.raises(ProseError, match=r"alpha\.md: .*\['values'\]"):
        toy.build(CHAIN)
    assert index.read_bytes() == before
    assert not list(toy.out.parent.glob("site.tmp-*"))
    prose.write_text(text)
    _, outcomes = toy.build(CHAIN)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "cached")


def test_keep_going_renders_a_section_with_bad_prose_as_failed(toy: ToyProject) -> None:
    prose = toy.root / "toy" / "alpha.md"
    prose.write_text(prose.read_text().replace('alt="A rising line."', ""))
    index, outcomes = toy.build(CHAIN, keep_going=True)
    assert outcomes["alpha"].status == "failed" and "needs alt text" in outcomes["alpha"].error
    assert {n: o.status for n, o in outcomes.items() if n != "alpha"} == {
        "beta": "run", "gamma": "run", "delta": "run"}
    page = index.read_text()
    assert "could not be built" in section(page, "alpha")
    assert "Beta's sum is 6" in page


def test_prose_globals_reach_the_prose(toy: ToyProject) -> None:
    prose = toy.root / "toy" / "delta.md"
    prose.write_text(prose.read_text() + "\nThe original had {{ original.n_items | num }} items.\n")
    index, _ = toy.build(["delta"], prose_globals={"original": {"n_items": 1234}})
    assert "The original had 1,234 items." in index.read_text()


# --- manifests ----------------------------------------------------------------------------------


def test_manifest_records_choices_and_streams(toy: ToyProject) -> None:
    _, outcomes = toy.build(["alpha", "delta"])
    alpha = outcomes["alpha"].manifest
    assert alpha["choices"] == ["threshold"] and alpha["metrics"]["threshold"] == 2
    seed = derive_seed(7, "alpha", "draw")
    assert alpha["streams"] == {"draw": seed}
    # The recorded seed is the one the draw came from.
    assert alpha["metrics"]["draw"] == int(np.random.default_rng(seed).integers(0, 1_000_000))
    assert outcomes["delta"].manifest["choices"] == []
    assert outcomes["delta"].manifest["streams"] == {}
    # The cache keeps them, and another build seed gives other stream seeds.
    _, again = toy.build(["alpha", "delta"])
    assert again["alpha"].status == "cached"
    assert again["alpha"].manifest["streams"] == {"draw": seed}
    assert again["alpha"].manifest["choices"] == ["threshold"]
    _, reseeded = toy.build(["alpha"], sets={"seed": "8"})
    assert reseeded["alpha"].manifest["streams"] == {"draw": derive_seed(8, "alpha", "draw")}


def provenance() -> DataSource:
    """A dataset that, like build.py's, describes itself by whether this build loaded it."""
    loaded: list[torch.device] = []

    def load(device: torch.device) -> list[int]:
        loaded.append(device)
        return [1, 2, 3]

    def describe(dataset: list[int] | None) -> dict:
        source = "read from the toy files" if dataset is not None else "not loaded in this build"
        return {"source": source, "md5": {"toy.idx": "f" * 32}}

    return DataSource(fingerprint="toy-data", load=load, describe=describe)


def build_with(toy: ToyProject, names: list[str], data: DataSource,
               sets: dict[str, str] | None = None, **options):
    """Build toys with a given DataSource (the fixture's `build` always uses its own)."""
    modules = toy.modules(names)
    options = BuildOptions(root=toy.root, out=toy.out, cache_dir=toy.cache,
                           templates=toy.templates, device=torch.device("cpu"), **options)
    return build(modules, make_config([m.ANALYSIS for m in modules], "full", sets or {}),
                 options, data, log=toy.logs.append)


def test_a_fully_cached_build_shows_the_provenance_recorded_when_it_ran(toy: ToyProject) -> None:
    index, outcomes = build_with(toy, ["alpha", "delta"], provenance())
    recorded = outcomes["delta"].manifest["data"]
    assert recorded == {"source": "read from the toy files", "md5": {"toy.idx": "f" * 32}}
    index, outcomes = build_with(toy, ["alpha", "delta"], provenance())
    assert statuses(outcomes) == {"alpha": "cached", "delta": "cached"}
    page = index.read_text()
    appendix = page[page.index('<section id="appendix"'):]
    assert "read from the toy files" in appendix and "not loaded in this build" not in page
    assert "<code>toy.idx</code> MD5 <code>" + "f" * 32 in appendix
    manifest = json.loads((toy.out / "data" / "manifest.json").read_text())
    assert manifest["dataset"] == recorded


def test_a_build_that_loads_the_data_describes_it_now(toy: ToyProject) -> None:
    build_with(toy, ["delta"], provenance())

    def again() -> DataSource:
        return DataSource(fingerprint="toy-data", load=lambda device: [1, 2, 3],
                          describe=lambda dataset: {"source": "loaded again"})

    index, outcomes = build_with(toy, ["delta"], again())
    assert outcomes["delta"].status == "cached"  # nothing loaded: the recorded provenance
    assert "read from the toy files" in index.read_text()
    index, outcomes = build_with(toy, ["delta"], again(), force=("delta",))
    assert outcomes["delta"].status == "run"
    page = index.read_text()
    assert "loaded again" in page and "read from the toy files" not in page


# --- user errors --------------------------------------------------------------------------------

USER_MESSAGE = "beta needs the toy files; pass --data-dir TOY"


def test_a_user_error_fails_with_its_message_and_no_traceback(toy: ToyProject) -> None:
    with pytest.raises(BuildFailed) as failure:
        toy.build(CHAIN, sets={"beta.user_error": "true"})
    message = str(failure.value)
    assert message.splitlines()[0] == USER_MESSAGE
    assert "UserError" not in message and "Traceback" not in message
    assert "Traceback" not in "\n".join(toy.logs)
    assert not toy.out.exists()
    assert entries(toy.cache, "beta") == []


def test_a_user_error_with_keep_going_is_one_line(toy: ToyProject) -> None:
    index, outcomes = toy.build(CHAIN, sets={"beta.user_error": "on"}, keep_going=True)
    assert statuses(outcomes) == {"alpha": "run", "beta": "failed", "gamma": "skipped",
                                  "delta": "run"}
    assert outcomes["beta"].error == USER_MESSAGE
    logged = "\n".join(toy.logs)
    assert "Traceback" not in logged and f"beta: FAILED: {USER_MESSAGE}" in logged
    assert USER_MESSAGE in section(index.read_text(), "beta")


# --- reduced settings ---------------------------------------------------------------------------


def test_quick_and_set_overrides_appear_as_reduced_settings(toy: ToyProject) -> None:
    # beta.fail=false is the full profile's value: not a reduced setting.
    index, _ = toy.build(["alpha", "beta"], profile="quick",
                         sets={"alpha.label": "renamed", "beta.fail": "false"})
    page = index.read_text()
    alpha = section(page, "alpha")
    box = alpha[alpha.index('<p class="reduced"'):]
    box = box[:box.index("</p>")]
    assert "<code>n</code> 2 (full: 4);" in box  # the quick profile's override
    assert "<code>label</code> renamed (full: alpha)." in box  # --set
    assert ("A line over 2 values. Settings that differ from the full profile: <code>n</code> 2 "
            "(full: 4).") in alpha
    beta = section(page, "beta")
    assert "Settings that differ" not in beta  # none of its own; it reads alpha's results:
    assert ("builds on results made with other settings: "
            '<a href="#alpha">alpha</a> (quick profile).') in beta
    manifest = json.loads((toy.out / "data" / "manifest.json").read_text())
    appendix = page[page.index('<section id="appendix"'):]
    assert '<a href="#alpha">alpha</a>: <code>n</code> 2 (full: 4); <code>label</code>' in appendix
    assert manifest["reduced"] == {"alpha": [{"key": "n", "value": 2, "full": 4},
                                             {"key": "label", "value": "renamed",
                                              "full": "alpha"}]}
    index, _ = toy.build(["alpha", "beta"])
    page = index.read_text()
    assert 'class="reduced"' not in page and "differ from the full profile:" not in page
    assert json.loads((toy.out / "data" / "manifest.json").read_text())["reduced"] == {}


def test_reduced_settings() -> None:
    from dataclasses import dataclass, replace

    @dataclass(frozen=True)
    class Knobs:
        epochs: int = 5
        seeds: tuple[int, ...] = (1, 2, 3)
        name: str = "x"

    full = Knobs()
    assert reduced_settings(full, full) == []
    assert reduced_settings(full, replace(full, seeds=(1,), epochs=5)) == [
        {"key": "seeds", "value": (1,), "full": (1, 2, 3)}]
    assert [r["key"] for r in reduced_settings(full, Knobs(2, (1,), "y"))] == [
        "epochs", "seeds", "name"]


# --- killed, interrupted and concurrent builds (real processes) --------------------------------


def start_toy_build(toy: ToyProject, names: list[str], sets: list[str], block: Path,
                    jobs: int = 1) -> subprocess.Popen:
    """A toy build in a child process; its `slow` analysis blocks until `block/release` exists."""
    command = [sys.executable, str(toy.root / "toy" / "run_build.py"), str(toy.root),
               str(toy.out), str(toy.cache), *names, "--jobs", str(jobs)]
    for pair in sets:
        command += ["--set", pair]
    env = {**os.environ, "TOY_BLOCK_DIR": str(block)}
    # A test run from a background job inherits SIGINT as ignored, and an ignored SIGINT stays
    # ignored across exec: the child would never see the interrupt the test sends. Restore the
    # default so Python installs its KeyboardInterrupt handler however pytest was launched.
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_started(block: Path, procs: list[subprocess.Popen], count: int = 1) -> None:
    """Wait until `count` children are blocked inside `slow` (120 s at most: a loaded machine starts processes slowly)."""
    deadline = time.monotonic() + 120
    while len(list(block.glob("started-*"))) < count:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"toy build exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("toy build never reached the slow analysis")
        time.sleep(0.02)


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_build_leaves_site_and_cache_usable(toy: ToyProject, tmp_path: Path,
                                                   how: str, jobs: int) -> None:
    names = ["alpha", "beta", "slow"]
    index, _ = toy.build(names)
    before = index.read_bytes()
    block = tmp_path / "block"
    block.mkdir()
    # alpha.n=5 changes alpha's key and so beta's and slow's: all three run, slow blocks (in
    # the build's process, or in a worker whose staging folder the build made).
    proc = start_toy_build(toy, names, ["alpha.n=5", "slow.version=2"], block, jobs=jobs)
    try:
        wait_for_started(block, [proc])
        proc.send_signal(getattr(signal, how))
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        # The killed process left its half-written staging folder (swept by the next build).
        assert list(toy.cache.glob(f"compute/slow/.tmp-{proc.pid}-*"))
    else:
        assert proc.returncode == 130, stderr
        assert not list(toy.cache.glob("compute/slow/.tmp-*"))  # discarded on the way out
    assert index.read_bytes() == before, "the previous site was touched"
    assert not list(toy.out.parent.glob("site.tmp-*"))  # it died before rendering

    _, outcomes = toy.build(names, sets={"alpha.n": "5", "slow.version": "2"})
    # With two workers beta ran beside slow, and may not have finished when the build died.
    beta = {"cached", "run"} if jobs > 1 else {"cached"}
    assert outcomes["beta"].status in beta
    assert statuses(outcomes) | {"beta": "cached"} == \
        {"alpha": "cached", "beta": "cached", "slow": "run"}
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    assert "Slow ran version 2." in index.read_text()


def test_two_concurrent_builds_do_not_corrupt_the_cache(toy: ToyProject, tmp_path: Path) -> None:
    names = ["alpha", "beta", "gamma", "slow"]
    block = tmp_path / "block"
    block.mkdir()
    procs = [start_toy_build(toy, names, [], block) for _ in range(2)]
    try:
        wait_for_started(block, procs, count=2)  # both are inside slow at the same time
        (block / "release").write_text("")
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (_, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
    cache = Cache(toy.cache / "compute")
    for name in names:
        found = entries(toy.cache, name)
        assert len(found) == 1 and not found[0].name.startswith("."), found
        manifest = json.loads((found[0] / "manifest.json").read_text())
        assert cache.lookup(name, manifest["key"]) == manifest
        for item in manifest["items"]:
            if "file" in item:
                assert (found[0] / item["file"]).is_file()
    page = (toy.out / "index.html").read_text()
    for name in names:  # run by the build that swapped last, or reused from the other's
        assert re.search(f'<section id="{name}" class="section status-(run|cached)">', page)
    assert not list(toy.out.parent.glob("site.tmp-*"))
    assert not list(toy.out.parent.glob("site.old-*"))
    # And the next build reuses everything.
    _, outcomes = toy.build(names)
    assert statuses(outcomes) == dict.fromkeys(names, "cached")


def test_cpu_results_are_keyed_by_the_cpus_kernel_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from report import engine, machine

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(machine, "cpu_bf16", lambda: True)
    with_bf16 = engine.environment_fingerprint(cpu, 7, "data")
    monkeypatch.setattr(machine, "cpu_bf16", lambda: False)
    without = engine.environment_fingerprint(cpu, 7, "data")
    assert with_bf16["cpu"].endswith("+bf16") and not without["cpu"].endswith("+bf16")
    assert with_bf16["cpu"].removesuffix("+bf16") == without["cpu"] != ""
    # A GPU build's results do not depend on the host's vector unit.
    assert "cpu" not in engine.environment_fingerprint(cuda, 7, "data")
    assert without["cpu"] in engine.device_name(cpu)


# --- analyses side by side (--jobs) --------------------------------------------------------------


def toy_source() -> DataSource:
    """The toy dataset through module-level functions, which worker processes can receive."""
    from toy import describe_data, load_data

    return DataSource(fingerprint="toy-data", load=load_data, describe=describe_data)


def comparable(outcome: Outcome) -> dict:
    """What an analysis computed and drew, without its timings and memory."""
    m, d = outcome.manifest, outcome.draw_manifest
    files = {**m["files"], **{f"drawn/{k}": v for k, v in d["files"].items()}}
    return {"metrics": m["metrics"], "arrays": m["items"], "choices": m["choices"],
            "streams": m["streams"], "data": m["data"], "drawn": d["metrics"],
            "items": d["items"],
            "files": {k: v["sha256"] for k, v in files.items() if not k.endswith(".png")}}


def test_workers_compute_what_the_build_process_computes(toy: ToyProject) -> None:
    names = ["alpha", "beta", "gamma", "delta", "slow"]
    _, here = build_with(toy, names, toy_source())
    index, workers = build_with(toy, names, toy_source(), jobs=3, force=("all",))
    assert statuses(workers) == dict.fromkeys(names, "run")
    assert {n: comparable(o) for n, o in workers.items()} == \
        {n: comparable(o) for n, o in here.items()}
    assert workers["delta"].manifest["data"] == {"source": "read from the toy files"}
    assert any("computing in a worker process" in line for line in toy.logs)
    assert "read from the toy files" in index.read_text()
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    # The cache made by workers serves a one-at-a-time build.
    _, again = build_with(toy, names, toy_source())
    assert statuses(again) == dict.fromkeys(names, "cached")


def test_an_analysis_runs_while_another_is_still_working(toy: ToyProject, tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    # In article order slow comes before beta: one at a time, beta would wait for slow.
    proc = start_toy_build(toy, ["alpha", "slow", "beta"], [], block, jobs=2)
    try:
        wait_for_started(block, [proc])
        deadline = time.monotonic() + 30
        while not [e for e in entries(toy.cache, "beta") if not e.name.startswith(".")]:
            assert time.monotonic() < deadline, "beta never finished while slow was blocked"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert not entries(toy.cache, "slow") or \
            all(e.name.startswith(".") for e in entries(toy.cache, "slow"))
        (block / "release").write_text("")
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Slow ran version 1." in (toy.out / "index.html").read_text()


def test_a_failing_worker_fails_the_build_and_keeps_the_old_site(toy: ToyProject) -> None:
    names = ["alpha", "beta", "gamma", "delta"]
    index, _ = build_with(toy, names, toy_source())
    before = index.read_bytes()
    with pytest.raises(BuildFailed, match="beta broke on purpose"):
        build_with(toy, names, toy_source(), {"beta.fail": "true"}, jobs=2)
    assert index.read_bytes() == before
    assert not list(toy.cache.glob("*/*/.tmp-*"))
    with pytest.raises(BuildFailed, match="pass --data-dir TOY") as caught:
        build_with(toy, names, toy_source(), {"beta.user_error": "true"}, jobs=2)
    assert "Traceback" not in str(caught.value)
    _, outcomes = build_with(toy, names, toy_source(), {"beta.fail": "true"}, jobs=2,
                             keep_going=True)
    assert statuses(outcomes) == {"alpha": "cached", "beta": "failed", "gamma": "skipped",
                                  "delta": "cached"}
    assert outcomes["beta"].error == "RuntimeError: beta broke on purpose"
    assert any("Traceback" in line and "beta broke on purpose" in line for line in toy.logs)


@pytest.mark.parametrize("jobs", [1, 2])
def test_cprofile_writes_a_profile_per_analysis_that_ran(toy: ToyProject, tmp_path: Path,
                                                         jobs: int) -> None:
    profiles = tmp_path / "profiles"
    build_with(toy, ["alpha", "beta"], toy_source(), jobs=jobs, profile_dir=profiles)
    for name in ("alpha", "beta"):
        text = (profiles / f"{name}.txt").read_text()
        assert text.startswith(f"{name}: ") and f"toy/{name}.py" in text and "(compute)" in text
        assert pstats.Stats(str(profiles / f"{name}.prof")).total_calls > 0
        drawn = (profiles / f"{name}.draw.txt").read_text()  # the draw stage, in this process
        assert drawn.startswith(f"{name}.draw: ") and "(draw)" in drawn
    # Cached analyses do not run, so they leave no profile.
    shutil.rmtree(profiles)
    build_with(toy, ["alpha", "beta"], toy_source(), profile_dir=profiles)
    assert not profiles.exists()
