"""Frozen results (report/freeze.py) on the toy analyses: freeze, reuse on a fresh clone and on
another device, stale and damaged entries, explicit profiles, refreezing, and damaged caches."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from conftest import ToyProject, statuses

from report.config import PROFILES, make_config
from report.engine import Builder, BuildOptions, build
from report.freeze import FrozenStore

CHAIN = ["alpha", "beta", "gamma", "delta"]


def frozen_build(toy: ToyProject, *, profile: str = "full", allowed: tuple[str, ...] = PROFILES,
                 freeze: bool = False, cache: Path | None = None,
                 names: tuple[str, ...] = tuple(CHAIN), **options):
    """A build of the toy chain that uses (and with `freeze` writes) toy.root/frozen."""
    modules = toy.modules(names)
    configs = {p: make_config([m.ANALYSIS for m in modules], p, {}) for p in PROFILES}
    opts = BuildOptions(root=toy.root, out=toy.out, cache_dir=cache or toy.cache,
                        templates=toy.templates, device=torch.device("cpu"),
                        frozen_dir=toy.root / "frozen", frozen_profiles=allowed, freeze=freeze,
                        **options)
    return build(modules, configs[profile], opts, toy.data_source(), log=toy.logs.append,
                 profile_configs=configs)


def section_html(index: Path, name: str) -> str:
    """One section's rendered HTML without its status class (the page also shows build-wide
    facts such as times, and the class says run or frozen)."""
    page = index.read_text()
    start = page.index(f'id="{name}"')
    html = page[start:page.index("</section>", start)]
    html = re.sub(r'<p class="provenance".*?</p>\s*', "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"status-\w+", "", html))


def test_fresh_clone_renders_frozen_results_without_running(toy: ToyProject,
                                                            tmp_path: Path) -> None:
    index, outcomes = frozen_build(toy, freeze=True)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")
    assert FrozenStore(toy.root / "frozen").names() == sorted(CHAIN)
    before = {name: section_html(index, name) for name in CHAIN}
    loads = toy.data_loads
    index, outcomes = frozen_build(toy, cache=tmp_path / "empty-cache")  # a fresh clone
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "frozen")
    assert toy.data_loads == loads  # nothing ran, so the dataset was never loaded
    assert {name: section_html(index, name) for name in CHAIN} == before
    assert "Frozen results: made with the full profile on" in index.read_text()


def test_a_frozen_entry_from_another_device_renders_the_same_page(toy: ToyProject,
                                                                  tmp_path: Path) -> None:
    index, _ = frozen_build(toy, freeze=True)
    before = section_html(index, "alpha")
    manifest_path = toy.root / "frozen" / "alpha" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(device="cuda", device_name="NVIDIA H100", versions={"torch": "2.11.0"})
    manifest_path.write_text(json.dumps(manifest))
    index, outcomes = frozen_build(toy, cache=tmp_path / "empty-cache")
    assert outcomes["alpha"].status == "frozen"
    assert section_html(index, "alpha") == before


def test_changing_one_analysis_reruns_it_and_its_dependents_only(toy: ToyProject,
                                                                 tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)
    toy.edit_code("beta")
    builder_logs = len(toy.logs)
    _, outcomes = frozen_build(toy, profile="quick", cache=tmp_path / "empty-cache")
    assert statuses(outcomes) == {"alpha": "frozen", "beta": "run", "gamma": "run",
                                  "delta": "frozen"}
    assert outcomes["beta"].frozen_state == "stale" and outcomes["beta"].profile == "quick"
    assert outcomes["alpha"].profile == "full"
    assert any("beta: frozen entry outdated" in line for line in toy.logs[builder_logs:])
    info = json.loads((toy.out / "data" / "manifest.json").read_text())
    rows = {row["name"]: row for row in info["analyses"]}
    assert rows["beta"]["frozen_state"] == "stale" and rows["beta"]["profile"] == "quick"
    assert rows["alpha"]["status"] == "frozen" and rows["alpha"]["profile"] == "full"
    page = (toy.out / "index.html").read_text()
    assert "Re-run here with the quick profile." in section_html(toy.out / "index.html", "beta")
    assert "Re-run here" not in section_html(toy.out / "index.html", "alpha")
    assert "(frozen entry stale)" in page  # the appendix's table
    # Only alpha has quick settings, and it is frozen full: a quick build of these sections
    # is a full-profile page, and its banner counts the frozen sections.
    banner = re.sub(r"<[^>]+>", "", page[page.index('class="profile'):page.index("Seed 7")])
    assert re.sub(r"\s+", " ", banner).strip().startswith(
        'class="profile profile-full" role="note"> Full profile. The full data and training '
        'budgets. 2 of 4 sections reuse frozen results, made earlier (on ')


def test_a_damaged_frozen_entry_is_reported_and_run_again(toy: ToyProject,
                                                          tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)
    (toy.root / "frozen" / "alpha" / "arrays" / "values.npz").unlink()
    _, outcomes = frozen_build(toy, cache=tmp_path / "empty-cache")
    assert outcomes["alpha"].status == "run" and outcomes["alpha"].frozen_state == "damaged"
    assert any("alpha: frozen entry damaged" in line and "missing" in line for line in toy.logs)


def test_damaged_frozen_drawings_are_drawn_again_from_the_frozen_results(
        toy: ToyProject, tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)
    next((toy.root / "frozen" / "alpha" / "drawn").glob("*.png")).unlink()
    _, outcomes = frozen_build(toy, cache=tmp_path / "empty-cache")
    assert (outcomes["alpha"].status, outcomes["alpha"].drawn) == ("frozen", "drawn")
    assert {n: o.drawn for n, o in outcomes.items() if n != "alpha"} == \
        dict.fromkeys(["beta", "gamma", "delta"], "frozen")


def test_a_drawing_change_redraws_frozen_results_and_freeze_keeps_only_it(
        toy: ToyProject, tmp_path: Path) -> None:
    """The durable-results promise: a presentation change never un-publishes a section."""
    frozen_build(toy, freeze=True)
    store = toy.root / "frozen"
    stamps = {p.relative_to(store): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    toy.edit_code("plots", "line")  # how alpha's figure is drawn
    _, outcomes = frozen_build(toy, cache=tmp_path / "fresh-clone", freeze=True)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "frozen")  # nothing computed
    assert outcomes["alpha"].drawn == "drawn" and outcomes["alpha"].profile == "full"
    assert toy.data_loads == 1  # only the first build's delta read the data
    changed = sorted(str(p) for p, t in stamps.items()
                     if not (store / p).exists() or (store / p).stat().st_mtime_ns != t)
    assert changed and all(p.startswith("alpha/drawn/") for p in changed), changed
    _, again = frozen_build(toy, cache=tmp_path / "another-clone")
    assert {n: (o.status, o.drawn) for n, o in again.items()} == \
        dict.fromkeys(CHAIN, ("frozen", "frozen"))


def test_an_explicit_profile_uses_only_its_own_frozen_entries(toy: ToyProject,
                                                              tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)  # full
    _, outcomes = frozen_build(toy, profile="quick", allowed=("quick",),
                               cache=tmp_path / "empty-cache")
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")
    assert {o.frozen_state for o in outcomes.values()} == {"unused"}


def test_a_quick_freeze_never_replaces_current_full_results(toy: ToyProject,
                                                            tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)  # full
    store = toy.root / "frozen"
    before = {n: (store / n / "manifest.json").read_bytes() for n in CHAIN}
    toy.edit_code("delta")  # delta's full entry goes stale; the others stay current
    _, outcomes = frozen_build(toy, profile="quick", allowed=("quick",), freeze=True,
                               cache=tmp_path / "empty-cache")
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "run")
    after = {n: json.loads((store / n / "manifest.json").read_text()) for n in CHAIN}
    assert {n: m["profile"] for n, m in after.items()} == {
        "alpha": "full", "beta": "full", "gamma": "full", "delta": "quick"}
    assert all((store / n / "manifest.json").read_bytes() == before[n] for n in CHAIN[:3])
    assert any("freeze: alpha not frozen: its frozen full-profile results are current" in line
               for line in toy.logs)


def test_refreezing_rewrites_only_what_changed(toy: ToyProject) -> None:
    frozen_build(toy, freeze=True)
    store = toy.root / "frozen"
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("manifest.json")}
    frozen_build(toy, freeze=True, force=("delta",))  # delta re-runs: same code, new entry
    after = {p: p.stat().st_mtime_ns for p in store.rglob("manifest.json")}
    changed = sorted(p.parent.name for p in stamps if stamps[p] != after[p])
    assert changed == []  # every entry was frozen and still matches: nothing rewritten
    toy.edit_code("delta")
    _, outcomes = frozen_build(toy, freeze=True)
    assert outcomes["delta"].status == "run"
    after = {p: p.stat().st_mtime_ns for p in store.rglob("manifest.json")}
    assert sorted(str(p.relative_to(store)) for p in stamps if stamps[p] != after.get(p)) == \
        ["delta/drawn/manifest.json", "delta/manifest.json"]


def test_a_frozen_entry_holds_results_objects_and_drawn_items(toy: ToyProject) -> None:
    store = toy.root / "frozen"
    frozen_build(toy, freeze=True, names=("alpha",))
    # Saved objects are frozen with the results: draw (ctx.saved) and downstream read them.
    assert (store / "alpha" / "objects" / "vector.pt").is_file()
    assert (store / "alpha" / "arrays" / "values.npz").is_file()
    manifest = json.loads((store / "alpha" / "manifest.json").read_text())
    assert manifest["profile"] == "full" and manifest["device"] == "cpu"
    assert {"code_key", "cache_key", "files", "versions", "inputs"} <= set(manifest)
    assert not any(f.startswith("drawn/") for f in manifest["files"])  # each part its own list
    drawn = json.loads((store / "alpha" / "drawn" / "manifest.json").read_text())
    assert set(drawn["files"]) == {"line.png"} and drawn["metrics"] == {"squares_total": 14}
    assert drawn["inputs"]["upstream"] == {"compute": "frozen:" + manifest["code_key"]}


def test_plan_lists_frozen_cached_and_stale(toy: ToyProject) -> None:
    frozen_build(toy, freeze=True)
    toy.edit_code("gamma")
    toy.edit_code("delta", "draw")
    modules = toy.modules(CHAIN)
    configs = {p: make_config([m.ANALYSIS for m in modules], p, {}) for p in PROFILES}
    options = BuildOptions(root=toy.root, out=toy.out, cache_dir=toy.cache,
                           templates=toy.templates, device=torch.device("cpu"),
                           frozen_dir=toy.root / "frozen", frozen_profiles=PROFILES)
    plan = Builder(modules, configs["full"], options, toy.data_source(),
                   profile_configs=configs).plan()
    assert [(row["name"], row["state"], row["drawn"], row["note"]) for row in plan] == [
        ("alpha", "frozen", "frozen", ""), ("beta", "frozen", "frozen", ""),
        ("gamma", "stale", "after compute", "code: toy/gamma.py: compute"),
        ("delta", "frozen", "redraw", "redraw: code: toy/delta.py: draw")]


def test_a_damaged_cache_entry_is_reported_and_run_again(toy: ToyProject) -> None:
    toy.build(CHAIN)
    figure = next(toy.cache.glob("draw/alpha/*/*.png"))
    figure.unlink()  # a figure deleted by hand
    _, outcomes = toy.build(CHAIN)
    assert (outcomes["alpha"].status, outcomes["alpha"].drawn) == ("cached", "drawn")
    assert any("alpha: drawn items damaged" in line and figure.name in line
               for line in toy.logs)
    assert figure.is_file()  # the entry was replaced by a complete one
    array = next(toy.cache.glob("compute/alpha/*/arrays/values.npz"))
    array.write_bytes(b"not an array")  # a result file edited by hand
    _, outcomes = toy.build(CHAIN)
    assert outcomes["alpha"].status == "run"
    assert any("alpha: cached entry damaged" in line and "values.npz" in line
               for line in toy.logs)


def test_frozen_store_copy_is_independent_of_the_cache(toy: ToyProject, tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)
    shutil.rmtree(toy.cache)
    index, outcomes = frozen_build(toy)
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "frozen")
    assert index.is_file()


def test_a_quick_result_is_frozen_only_on_upstream_results_quick_would_make(
        toy: ToyProject, tmp_path: Path) -> None:
    frozen_build(toy, freeze=True, names=("alpha", "beta", "delta"))  # full
    toy.edit_code("beta")
    # A CPU build (--profile auto: quick; frozen entries of quick or full): beta, epsilon run.
    _, outcomes = frozen_build(toy, profile="quick", freeze=True, cache=tmp_path / "clone",
                               names=("alpha", "beta", "delta", "epsilon"))
    assert statuses(outcomes) == {"alpha": "frozen", "beta": "run", "delta": "frozen",
                                  "epsilon": "run"}
    manifests = {n: json.loads((toy.root / "frozen" / n / "manifest.json").read_text())
                 for n in ("beta", "epsilon")}
    # Quick alpha differs from the frozen full one: beta's quick result is not frozen on it.
    assert manifests["beta"]["profile"] == "full"
    assert any("freeze: beta not frozen: it used alpha of another profile" in line
               for line in toy.logs)
    # delta's quick profile is its full one: epsilon's quick result stands on it and is frozen.
    assert manifests["epsilon"]["profile"] == "quick"
    _, again = frozen_build(toy, profile="quick", cache=tmp_path / "another-clone",
                            names=("alpha", "delta", "epsilon"))
    assert statuses(again) == dict.fromkeys(("alpha", "delta", "epsilon"), "frozen")


def test_redraw_draws_frozen_results_again_and_computes_nothing(toy: ToyProject,
                                                                tmp_path: Path) -> None:
    frozen_build(toy, freeze=True)
    _, outcomes = frozen_build(toy, cache=tmp_path / "clone", redraw=("all",))
    assert statuses(outcomes) == dict.fromkeys(CHAIN, "frozen")
    assert {o.drawn for o in outcomes.values()} == {"drawn"}
    _, again = frozen_build(toy, cache=tmp_path / "clone", redraw=("beta",))
    assert {n: o.drawn for n, o in again.items()} == {"alpha": "frozen", "beta": "drawn",
                                                      "gamma": "frozen", "delta": "frozen"}
