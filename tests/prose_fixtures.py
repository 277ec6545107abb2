"""What the prose sees, in both profiles: the fixtures of the article test in tests/test_prose.py.

A fixture holds, per section, the metrics its prose reads (compute's and draw's, as the page
exports them in data/<name>/metrics.json) and the items its draw stage made (tables with their
rows; figures and GIFs by name). Made from built sites:

    python -m tests.prose_fixtures quick SITE CACHE       # a quick build: every section
    python -m tests.prose_fixtures full SITE CACHE        # a full build of what this machine
                                                          # can make (the frozen sections)

The full fixture takes the sections its build made as they are (real full-profile results:
the frozen ones) and makes the others from the quick fixture with `scale_to_full`: the full
profile's settings, counts set to theirs, per-seed lists extended to the full number of seeds
and accuracies moved to plausible full-profile levels, and then every summary and verdict
drawn again by the sections' own draw steps that need no arrays (the rest kept from the quick
build). Plausible numbers under full-profile settings, not results: they test the words.

Run it again when a draw stage records other metrics (the article test fails on a missing one).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROWS_KEPT = 12  # table rows kept per table (the GAN's per-class table has ten)


def path(profile: str) -> Path:
    """The fixture file of a profile."""
    return FIXTURES / f"prose_{profile}.json"


def load(profile: str) -> dict[str, dict[str, Any]]:
    """name -> {"metrics", "items"} of every section in `profile`'s fixture."""
    return json.loads(path(profile).read_text())["sections"]


# --- reading a built site ----------------------------------------------------------------------


def _items(cache: Path, name: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of the draw entry that made `metrics` (tables' rows cut to ROWS_KEPT): one in
    the cache, or the committed frozen drawing."""
    entries = sorted((cache / "draw" / name).glob("*/manifest.json"),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for entry in [*entries, REPO / "frozen" / name / "drawn" / "manifest.json"]:
        if not entry.is_file():
            continue
        manifest = json.loads(entry.read_text())
        if all(metrics.get(k) == v for k, v in manifest["metrics"].items()):
            return [_slim(i) for i in manifest["items"] if i["kind"] != "asset"]
    raise SystemExit(f"{name}: no draw entry in {cache} made the site's metrics")


def _slim(item: dict[str, Any]) -> dict[str, Any]:
    keep = {k: item[k] for k in ("kind", "name", "columns", "frames", "fps", "width", "height")
            if k in item}
    if item["kind"] == "table":
        keep["rows"] = item["rows"][:ROWS_KEPT]
    return keep


def from_site(site: Path, cache: Path) -> dict[str, dict[str, Any]]:
    """Every section a built site shows: its exported metrics and its draw entry's items."""
    sections = {}
    for folder in sorted((site / "data").iterdir()):
        if folder.is_dir() and (folder / "metrics.json").is_file():
            metrics = json.loads((folder / "metrics.json").read_text())
            sections[folder.name] = {"metrics": metrics,
                                     "items": _items(cache, folder.name, metrics)}
    return sections


# --- a quick section under the full profile's settings --------------------------------------


class Drawn:
    """A stand-in DrawContext for draw steps that read only results and upstream metrics."""

    def __init__(self, cfg: Any, results: Mapping[str, Any], upstream: Mapping[str, Any]):
        from report.context import to_jsonable

        self._jsonable = to_jsonable
        self.cfg, self.results, self.upstream = cfg, results, upstream
        self.metrics: dict[str, Any] = {}
        self.items: list[dict[str, Any]] = []

    def metric(self, name: str, value: Any) -> None:
        self.metrics[name] = json.loads(json.dumps(self._jsonable(value)))

    def metric_of(self, section: str, name: str) -> Any:
        return self.upstream[section][name]

    def table(self, name: str, rows: Any, columns: Any = None) -> None:
        rows = [json.loads(json.dumps(self._jsonable(dict(r)))) for r in rows]
        self.items.append({"kind": "table", "name": name,
                           "columns": list(columns or dict.fromkeys(k for r in rows for k in r)),
                           "rows": rows[:ROWS_KEPT]})

    def figure(self, name: str, fig: Any, **_: Any) -> None:
        import matplotlib.pyplot as plt

        plt.close(fig)

    def asset(self, name: str, data: Any) -> None:
        pass


def full_config(name: str) -> Any:
    """The full profile's config of a section."""
    from analyses import ANALYSES
    from report.config import make_config

    return make_config([m.ANALYSIS for m in ANALYSES], "full").section(name)


def spread(mean: float, sd: float, n: int) -> list[float]:
    """n values with this mean and sample standard deviation (n >= 2), or [mean]."""
    if n < 2:
        return [mean]
    z = np.linspace(-1, 1, n)
    z = z / z.std(ddof=1)
    return [float(mean + sd * v) for v in z]


def _merge(base: dict[str, Any], drawn: Drawn) -> dict[str, Any]:
    """The quick section's metrics and items with what was drawn again in their place."""
    metrics = {**base["metrics"], **drawn.results, **drawn.metrics}
    redrawn = {i["name"]: i for i in drawn.items}
    items = [redrawn.get(i["name"], i) for i in base["items"]]
    return {"metrics": metrics, "items": items}


def _histories(histories: list[dict], seeds: int, epochs: int) -> list[dict]:
    """`seeds` histories of `epochs` epochs each, the quick ones extended."""
    out = []
    for s in range(seeds):
        h = copy.deepcopy(histories[s % len(histories)])
        for key, value in list(h.items()):
            if isinstance(value, list) and value and key != "epochs":
                h[key] = (value + [value[-1]] * epochs)[:epochs]
            elif isinstance(value, dict):
                h[key] = {k: (v + [v[-1]] * epochs)[:epochs] for k, v in value.items()}
        h["epochs"] = list(range(1, epochs + 1))
        out.append(h)
    return out


def classifiers_full(quick: dict[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    from analyses import classifiers as section

    cfg = full_config("classifiers")
    r = copy.deepcopy(quick["metrics"])
    n_test = r["n_test"]
    r["n_train_used"] = r["n_train_total"]
    levels = {"model1_plain": (0.9795, 0.0012), "model2_plain": (0.9842, 0.0009),
              "model1_standardised": (0.9810, 0.0010), "model2_standardised": (0.9856, 0.0008)}
    for key, (mean, sd) in levels.items():
        r[f"{key}_test_accs"] = spread(mean, sd, cfg.seeds)
        r[f"{key}_test_correct"] = [round(a * n_test) for a in r[f"{key}_test_accs"]]
        r[f"{key}_histories"] = _histories(r[f"{key}_histories"], cfg.seeds, cfg.epochs)
    r["best_test_accs"] = spread(0.9962, 0.0004, cfg.best_seeds)
    r["best_test_correct"] = [round(a * n_test) for a in r["best_test_accs"]]
    r["best_histories"] = _histories(r["best_histories"], cfg.best_seeds, cfg.best_epochs)
    ctx = Drawn(cfg, r, upstream)
    ctx.metric("original_denominator", section.original.denominator(n_test))
    ctx.metric("same_budget_as_original", True)
    for step in (section.architectures, section.explain_gap, section.best_summary,
                 section.denominator_table):
        step(ctx)
    return _merge(quick, ctx)


def optimizers_full(quick: dict[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    from analyses import optimizers as section
    from digits.study import LR_CENTRES

    cfg = full_config("optimizers")
    r = copy.deepcopy(quick["metrics"])
    runs = []
    groups: dict[tuple, list[dict]] = {}
    for run in r["runs"]:
        if run["study"] != "grid":
            groups.setdefault((run["study"], run["optimizer"]), []).append(run)
    for group in groups.values():
        for seed in range(cfg.seeds):  # the quick seeds, then copies of them
            new = copy.deepcopy(group[seed % len(group)])
            new["seed"] = seed
            lift = 0.0 if section.run_failure(new) else 0.06  # ten epochs learn more than two
            for key in ("validation", "test", "train_loss"):
                last = new[key][-1]
                if key != "train_loss" and last is not None:
                    last = min(0.995, last + lift + 0.001 * seed)
                new[key] = (new[key] + [last] * cfg.epochs)[:cfg.epochs]
            runs.append(new)
    grids = {}
    for o in cfg.optimizers:
        grids[o] = [LR_CENTRES[o] * f for f in cfg.lr_factors]
        for lr in grids[o]:
            best = lr == r["chosen_lr"][o]
            acc = 0.985 if best else 0.975
            runs.append({"study": "grid", "optimizer": o, "lr": lr, "seed": 0,
                         "validation": [acc] * cfg.epochs, "train_loss": [0.05] * cfg.epochs,
                         "diverged": False})
    r.update(runs=runs, lr_grid=grids, n_train=55_000, n_validation=5_000, n_test=10_000,
             n_runs=len(runs), batch_size=cfg.batch_size,
             grid_val_acc={o: {repr(lr): (0.985 if lr == r["chosen_lr"][o] else 0.975)
                               for lr in grids[o]} for o in cfg.optimizers})
    ctx = Drawn(cfg, r, upstream)
    study = section.Recorded.from_results(r)
    section._describe(ctx, study)
    section._first_update_verdicts(ctx)
    section._summaries_and_verdicts(ctx, study)
    section._tables(ctx, study)
    return _merge(quick, ctx)


def transfer_full(quick: dict[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    from analyses import transfer as section

    cfg = full_config("transfer")
    r = copy.deepcopy(quick["metrics"])
    r.update(n_images=60_000, n_train=55_000, n_val=5_000, n_test=10_000, all_images=True,
             head_epochs_run=cfg.head_epochs, timing_images=cfg.timing_images, tsne_points=5_000)
    levels = {"head": (0.9712, 0.0010), "no_dropout": (0.9705, 0.0011),
              "no_norm": (0.9690, 0.0012), "both": (0.9688, 0.0010),
              "finetune": (0.9890, 0.0008)}
    for key, (mean, sd) in levels.items():
        r[f"{key}_test_accs"] = spread(mean, sd, cfg.seeds)
    r["head_histories"] = _histories(r["head_histories"], cfg.seeds, cfg.head_epochs)
    r["finetune_histories"] = _histories(r["head_histories"], cfg.seeds, cfg.finetune_epochs)
    r.update(finetuned=True, block_params=800_000, finetune_seconds=60.0,
             trunk_maps_seconds=30.0)
    budgets = []
    for per_class, head, cnn in ((10, 0.62, 0.74), (100, 0.86, 0.93), (1_000, 0.94, 0.985)):
        budgets.append({"per_class": per_class, "labelled": 10 * per_class})
        r[f"budget{per_class}_head_accs"] = spread(head, 0.01, cfg.seeds)
        r[f"budget{per_class}_cnn_accs"] = spread(cnn, 0.004, cfg.seeds)
    budgets.append({"per_class": 0, "labelled": 55_000})
    r["budget_runs"] = budgets
    ctx = Drawn(cfg, r, upstream)
    for step in (section.draw_head, section.draw_ablations, section.draw_speed,
                 section.draw_budgets, section.draw_finetune, section.beside_classifiers):
        step(ctx)
    return _merge(quick, ctx)


def gan_full(quick: dict[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    from analyses import gan as section
    from digits.gan import OPTIMIZERS, RECIPES
    from report.compare import Runs, compare

    cfg = full_config("gan")
    m = copy.deepcopy(quick["metrics"])
    recipes = [RECIPES[n] for n in cfg.runs]
    m.update(runs=list(cfg.runs), n_runs=len(cfg.runs), corrected_name=cfg.runs[-1],
             corrected_changes=section.changes(recipes[0], recipes[-1]),
             intermediate_runs=list(cfg.runs[1:-1]), original_optimizer=True,
             optimizer=asdict(OPTIMIZERS[cfg.optimizers[0]]), trials=[], n_trials=0,
             n_train_used=60_000, n_generated=10 * cfg.samples_per_class,
             n_reference=10 * cfg.reference_per_class, steps=600 * cfg.epochs,
             recorded_epochs=list(range(0, cfg.epochs + 1, cfg.record_every)),
             g_widths=list(cfg.g_widths), d_widths=list(cfg.d_widths),
             copy_n=10 * cfg.copy_check)
    m["n_frames"] = len(m["recorded_epochs"])
    for name, value in list(m.items()):  # the generated sets and the copy check, resized
        if isinstance(value, dict) and value.get("unit") in ("noise draw", "image"):
            n = cfg.fid_batches if value["unit"] == "noise draw" else 10 * cfg.copy_check
            a, b = value["a"], value["b"]
            m[name] = compare(Runs(spread(a["mean"], a["std"], n), value["unit"]),
                              Runs(spread(b["mean"], b["std"], n), value["unit"])).as_metric()
    items = []
    for item in quick["items"]:
        item = copy.deepcopy(item)
        if item["name"] == "ablation":  # one row per recipe: the quick ones, then copies
            rows = item["rows"]
            by_run = {row["run"]: row for row in rows}
            item["rows"] = [rows[0]] + [
                {**by_run.get(r.name, rows[-1]), "run": r.name,
                 "change": "the original's setup" if i == 0 else "+ " + ", ".join(
                     section.changes(recipes[i - 1], r))} for i, r in enumerate(recipes)]
        if item["name"] == "per_class":
            for row in item["rows"]:
                for r in cfg.runs:
                    for what in ("recall", "precision"):
                        row.setdefault(f"{r} {what}", row[f"{cfg.runs[-1]} {what}"]
                                       if f"{cfg.runs[-1]} {what}" in row
                                       else row[f"smoothing {what}"])
        items.append(item)
    return {"metrics": m, "items": items}


def dynamics_full(quick: dict[str, Any], upstream: Mapping[str, Any]) -> dict[str, Any]:
    from report.compare import Runs, against, compare

    cfg = full_config("dynamics")
    m = copy.deepcopy(quick["metrics"])
    m.update(snapshots=cfg.frames + 1, flow_runs=cfg.flow_seeds, flow_steps=cfg.flow_steps,
             total_steps=cfg.epochs * cfg.train_size // 32)
    good = spread(m["good_accuracy"] + 0.04, 0.004, cfg.flow_seeds)
    bad = [m["bad_accuracies"][0]] * cfg.flow_seeds  # the sigmoid network stays collapsed
    m.update(good_accuracies=good, bad_accuracies=bad, good_accuracy=float(np.mean(good)))
    m["good_vs_bad_accuracy"] = compare(Runs(good, "seed"), Runs(bad, "seed")).as_metric()
    m["bad_vs_baseline"] = against(Runs(bad, "seed"), m["flow_baseline"],
                                   "the most common class").as_metric()
    ratio = m["flow_ratio_orders"]
    m["flow_ratio_orders"] = compare(
        Runs(spread(ratio["a"]["mean"], ratio["a"]["std"], cfg.flow_seeds), "seed"),
        Runs(spread(ratio["b"]["mean"], ratio["b"]["std"], cfg.flow_seeds), "seed")).as_metric()
    m["overhead_ratios"] = (m["overhead_ratios"] * cfg.overhead_pairs)[:cfg.overhead_pairs]
    timing = m["overhead_vs_plain"]
    m["overhead_vs_plain"] = compare(
        Runs(spread(timing["a"]["mean"], timing["a"]["std"], cfg.overhead_pairs), "timed run"),
        Runs(spread(timing["b"]["mean"], timing["b"]["std"], cfg.overhead_pairs),
             "timed run")).as_metric()
    return {"metrics": m, "items": copy.deepcopy(quick["items"])}


SCALERS = {"classifiers": classifiers_full, "optimizers": optimizers_full,
           "transfer": transfer_full, "gan": gan_full, "dynamics": dynamics_full}


def scale_to_full(quick: Mapping[str, dict], made: Mapping[str, dict]) -> dict[str, dict]:
    """Every section under the full profile: `made` where a full build made it, else the quick
    section scaled (SCALERS; the others, which have no quick settings or only upstream ones,
    as they are)."""
    from analyses import ANALYSES

    out: dict[str, dict] = {}
    for module in ANALYSES:  # article order; upstream sections come first where it matters
        name = module.ANALYSIS.name
        if name in made:
            out[name] = copy.deepcopy(made[name])
        elif name in quick:
            scale = SCALERS.get(name)
            upstream = {k: v["metrics"] for k, v in out.items()}
            out[name] = scale(quick[name], upstream) if scale else copy.deepcopy(quick[name])
    return out


def main(argv: list[str]) -> None:
    profile, site, cache = argv[0], Path(argv[1]), Path(argv[2])
    sections = from_site(site, cache)
    made = sorted(sections)
    if profile == "full":
        sections = scale_to_full(load("quick"), sections)
    FIXTURES.mkdir(exist_ok=True)
    path(profile).write_text(json.dumps({"profile": profile, "made_by_a_build": made,
                                         "sections": sections}, indent=0, sort_keys=True))
    print(f"{path(profile)}: {', '.join(sections)} ({path(profile).stat().st_size:,} bytes)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main(sys.argv[1:])
