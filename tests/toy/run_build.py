"""Run a toy build in its own process (for the kill, interrupt and concurrency tests).

usage: python run_build.py ROOT OUT CACHE NAME... [--set KEY=VALUE]... [--jobs N]
Exit codes: 0 built, 1 BuildFailed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def main() -> int:
    """Build the named toy analyses of the project at ROOT."""
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--set", action="append", default=[], dest="sets")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root))

    import torch

    from report.config import make_config, parse_sets
    from report.engine import BuildFailed, BuildOptions, DataSource, build
    from toy import load_data

    modules = [importlib.import_module(f"toy.{name}") for name in args.names]
    config = make_config([m.ANALYSIS for m in modules], "full", parse_sets(args.sets))
    options = BuildOptions(root=args.root, out=args.out, cache_dir=args.cache,
                           templates=args.root / "templates", device=torch.device("cpu"),
                           jobs=args.jobs)
    data = DataSource(fingerprint="toy-data", load=load_data)
    try:
        build(modules, config, options, data)
    except BuildFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
