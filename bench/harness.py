"""What every benchmark shares: rows of two measured sides and their ratio, skips, timing, output.

A benchmark is a function `fn(run: Run) -> None` that measures both sides of a comparison and
records them with `run.row(...)`, or records why one part could not run with `run.skip(...)`.
`run_benchmark` calls it and turns an exception into a recorded outcome, so that one benchmark
that cannot run (no CUDA, a package missing, a bug) never stops the others: `Skip` means
"cannot run here" (status skipped), any other exception is a failure (status failed, its
traceback printed). `write_results` writes `results.json` and `results.md` from the outcomes.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Skip(Exception):
    """Raised by a benchmark (or one part of it) that cannot run here; the message says why."""


@dataclass
class Side:
    """One side of a comparison: what ran, its median, the unit and every repeat."""

    label: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)


@dataclass
class Row:
    """Two sides measured on one device in one run; `ours` is the project's way of doing it.

    `ratio` is how many times better ours is: ours / theirs when higher is better (images/s),
    theirs / ours when lower is better (seconds). A skipped row has `skipped` set and no sides.
    """

    what: str
    device: str
    ours: Side | None = None
    theirs: Side | None = None
    higher_is_better: bool = True
    detail: str = ""
    skipped: str = ""

    @property
    def ratio(self) -> float | None:
        """ours relative to theirs, > 1 when ours is better; None when skipped or undefined."""
        if self.ours is None or self.theirs is None:
            return None
        a, b = self.ours.value, self.theirs.value
        num, den = (a, b) if self.higher_is_better else (b, a)
        return num / den if den > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON, the ratio included."""
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Outcome:
    """What one benchmark did: ok (at least one row measured), skipped or failed, and why."""

    name: str
    title: str
    status: str  # "ok", "skipped", "failed" or "interrupted" (by SIGINT: the rest did not run)
    seconds: float
    rows: list[Row] = field(default_factory=list)
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"name": self.name, "title": self.title, "status": self.status,
                "seconds": self.seconds, "reason": self.reason, "info": self.info,
                "rows": [r.as_dict() for r in self.rows]}


class Run:
    """Handed to a benchmark: options, shared data, progress lines and the rows it records."""

    def __init__(self, name: str, *, size: str = "small", device: str = "cpu",
                 cuda_available: bool = False, data: Callable[[], Any] | None = None,
                 data_dir: Path | None = None, log: Callable[[str], None] = print,
                 budget: float = float("inf")):
        self.name = name
        self.size = size
        self.device = device  # the resolved choice: "cpu" or "cuda"
        self.cuda_available = cuda_available
        self._data = data
        self.data_dir = data_dir
        self._log = log
        self.rows: list[Row] = []
        self.info: dict[str, Any] = {}
        self.budget = budget  # seconds of timed repeats per `repeats` loop before it stops early
        self.start = time.perf_counter()

    def repeats(self, n: int):
        """0 .. n-1, stopping early (after at least one) once `budget` seconds have passed.

        Keeps the whole command inside its time on a machine slower than the sizes assumed;
        the rows say how many repeats their medians are of.
        """
        start = time.perf_counter()
        for i in range(n):
            if i > 0 and time.perf_counter() - start > self.budget:
                self.log(f"stopping after {i} of {n} repeats: over the {self.budget:.0f} s budget")
                return
            yield i

    def data(self) -> Any:
        """MNIST (uint8 tensors on the CPU), loaded once for all benchmarks."""
        if self._data is None:
            raise Skip("no dataset loader was given")
        return self._data()

    def log(self, message: str) -> None:
        """One progress line, prefixed with the benchmark's name and the time since its start."""
        self._log(f"[{self.name} {time.perf_counter() - self.start:6.1f}s] {message}")

    def row(self, what: str, device: str, ours: Side, theirs: Side, *,
            higher_is_better: bool = True, detail: str = "") -> Row:
        """Record a measured comparison and print it."""
        row = Row(what, device, ours, theirs, higher_is_better, detail)
        self.rows.append(row)
        ratio = row.ratio
        self.log(f"{what} ({device}): {ours.label} {fmt_value(ours.value, ours.unit)} vs "
                 f"{theirs.label} {fmt_value(theirs.value, theirs.unit)}: "
                 f"{'n/a' if ratio is None else f'{ratio:.2f}x'}")
        return row

    def skip(self, what: str, device: str, reason: str) -> Row:
        """Record that one comparison could not run here, and why."""
        row = Row(what, device, skipped=reason)
        self.rows.append(row)
        self.log(f"{what} ({device}): skipped: {reason}")
        return row

    def require_cuda(self) -> None:
        """Skip unless the chosen device is CUDA and CUDA is available."""
        if self.device != "cuda":
            raise Skip("the chosen device is the CPU (--device cuda to run it on the GPU)")
        if not self.cuda_available:
            raise Skip("CUDA is not available here")


def run_benchmark(name: str, title: str, fn: Callable[[Run], None], run: Run) -> Outcome:
    """Call `fn(run)`; a Skip or any exception becomes the outcome instead of propagating."""
    start = time.perf_counter()
    status, reason = "ok", ""
    try:
        fn(run)
    except Skip as skip:
        status, reason = "skipped", str(skip)
    except KeyboardInterrupt:  # Ctrl-C or `timeout -s INT`: keep what was measured, stop after
        status, reason = "interrupted", "interrupted (SIGINT) before it finished"
    except Exception as error:  # noqa: BLE001 - one benchmark's failure must not stop the rest
        traceback.print_exc()
        status, reason = "failed", f"{type(error).__name__}: {error}"
    if status == "ok" and not any(r.skipped == "" for r in run.rows):
        status = "skipped"
        reason = "; ".join(r.skipped for r in run.rows) or "it recorded nothing"
    seconds = time.perf_counter() - start
    if status != "ok":
        run.log(f"{status}: {reason}")
    run.log(f"done in {seconds:.1f} s")
    return Outcome(name, title, status, seconds, run.rows, reason, run.info)


# --- timing ------------------------------------------------------------------------------------


def sync(device: Any) -> None:
    """Wait for queued CUDA work, so that wall time counts it (no-op on the CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: Any = "cpu") -> tuple[float, Any]:
    """(seconds, result) of one call, synchronised on CUDA before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def median(values: Sequence[float]) -> float:
    """The median of the repeats (a shared machine drifts: the median ignores one outlier)."""
    return float(statistics.median(values))


# --- the machine and the command -----------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def git_commit() -> str:
    """The commit benchmarked, with '+changes' when the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10,
                               check=False).stdout
        return head + ("+changes" if dirty.strip() else "") if head else "unknown"
    except Exception:  # noqa: BLE001 - no git, or not a checkout
        return "unknown"


def machine() -> dict[str, Any]:
    """The hardware and software the numbers came from."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
               "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    return {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "torch_threads": torch.get_num_threads(), "gpu": gpu,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "torchvision": _version("torchvision"),
                     "numpy": _version("numpy"), "scikit-learn": _version("scikit-learn"),
                     "openTSNE": _version("openTSNE"),
                     "efficientnet-lite-pytorch": _version("efficientnet-lite-pytorch"),
                     "torchdr": _version("torchdr")},
        "commit": git_commit(),
    }


def command_line(argv: Sequence[str]) -> str:
    """The command as a user would type it: `python -m bench ...`."""
    return shlex.join(["python", "-m", "bench", *argv])


# --- output ------------------------------------------------------------------------------------


def fmt_value(value: float, unit: str) -> str:
    """A measured value with its unit, rounded for reading."""
    if unit == "s":
        return f"{value:.3f} s" if value < 1 else f"{value:.1f} s" if value < 100 else \
            f"{value:,.0f} s"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio as the table prints it: three significant figures or so, then the × sign."""
    if ratio is None:
        return "n/a"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.2f}×"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: what ran where, then one table row per comparison."""
    m = report["machine"]
    gpu = m.get("gpu")
    load = m.get("load_average")
    cpu = (f"{_cell(m['cpu'])}, {m['cpu_count']} cores ({m.get('cpus_usable')} usable, "
           f"{m['torch_threads']} torch threads)")
    if load:
        cpu += f", load average {load[0]:.1f} at the start"
        end = report.get("load_average_end")
        cpu += f", {end[0]:.1f} at the end" if end else ""
    gpu_text = (f"{_cell(gpu['name'])}, {gpu['memory_gib']} GiB, CUDA {gpu['cuda']}" if gpu
                else "none")
    others = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "torch" and v)
    intro = ("Written by `python -m bench` (see `bench/README.md`); every ratio compares two "
             "sides measured in the same run on the same machine. *× better* is how many times "
             "faster the first side is than the second (above 1: the first wins).")
    lines = [
        "# Benchmarks", "", intro, "",
        "| | |",
        "| --- | --- |",
        f"| command | `{_cell(report['command'])}` |",
        f"| date | {report['date']} (wall time {report['seconds']:.0f} s) |",
        f"| CPU | {cpu} |",
        f"| GPU | {gpu_text} |",
        f"| torch | {m['versions']['torch']} |",
        f"| others | {others}, Python {m['python']} |",
        f"| commit | {m.get('commit', 'unknown')} |",
        f"| options | size {report['options']['size']}, device {report['options']['device']} |",
        "",
        "| benchmark | device | first side | second side | × better | details |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for outcome in report["benchmarks"]:
        title = _cell(outcome["title"])
        if outcome["status"] != "ok" and not outcome["rows"]:
            lines.append(f"| {title} | | {outcome['status']}: {_cell(outcome['reason'])} "
                         f"| | | |")
            continue
        for row in outcome["rows"]:
            what = title if row["what"] == outcome["title"] else f"{title}: {_cell(row['what'])}"
            if row["skipped"]:
                lines.append(f"| {what} | {row['device']} | skipped: {_cell(row['skipped'])} "
                             f"| | | |")
                continue
            ours, theirs = row["ours"], row["theirs"]
            ratio = fmt_ratio(row["ratio"])
            lines.append(
                f"| {what} | {row['device']} "
                f"| {_cell(ours['label'])}: {fmt_value(ours['value'], ours['unit'])} "
                f"| {_cell(theirs['label'])}: {fmt_value(theirs['value'], theirs['unit'])} "
                f"| {ratio} | {_cell(row['detail'])} |")
        if outcome["status"] in ("failed", "interrupted"):
            lines.append(f"| {title} | | {outcome['status']}: {_cell(outcome['reason'])} "
                         f"| | | |")
    lines.append("")
    return "\n".join(lines)


def make_report(outcomes: Sequence[Outcome], *, argv: Sequence[str], options: dict[str, Any],
                seconds: float, machine_info: dict[str, Any] | None = None,
                date: str | None = None) -> dict[str, Any]:
    """Everything results.json holds."""
    return {
        "command": command_line(argv),
        "date": date or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": seconds,
        "options": options,
        "machine": machine_info if machine_info is not None else machine(),
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "benchmarks": [o.as_dict() for o in outcomes],
    }


def write_results(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write results.json and results.md into `out` (created); returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
