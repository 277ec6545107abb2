"""Running one stage of an analysis, in the build's process or in a worker process (--jobs).

The engine decides what runs; this module only runs it and reports back a result that the
engine commits to the cache. A worker is a fresh process (forked from a server that imported
the analyses once, or spawned where fork is unavailable), so analyses running side by side
share no global state: each seeds its own generators, loads its own copy of the dataset and
measures its own peak memory.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import io
import multiprocessing
import os
import pickle
import pstats
import select
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from report.context import ComputeContext, Context, DrawContext
from report.errors import UserError
from report.streams import seed_globals


def reset_peak_memory(device: torch.device) -> None:
    """Restart this process's peak-memory counters (RSS, and the GPU's on CUDA)."""
    # Writing 5 to clear_refs resets the kernel's peak-RSS counter (VmHWM) for this process.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, int | None]:
    """Peak RSS of this process and peak GPU memory allocated since the last reset, in bytes."""
    rss = None
    with contextlib.suppress(OSError, ValueError, StopIteration):
        line = next(row for row in Path("/proc/self/status").read_text().splitlines()
                    if row.startswith("VmHWM:"))
        rss = int(line.split()[1]) * 1024
    gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"peak_rss_bytes": rss, "peak_gpu_bytes": gpu}


def execute(stage: Callable[[Context], None], ctx: Context,
            profile_dir: Path | None = None, profile_name: str = "") -> dict[str, Any]:
    """Seed, run and measure one stage; what it recorded, its time and its peak memory.

    With `profile_dir`, the run is also profiled (cProfile, which times torch's operators as
    the built-in calls they are): `<profile_name>.prof` for pstats or snakeviz, and
    `<profile_name>.txt`, the 40 functions with the most cumulative time.
    """
    # Seed every generator a stage might touch, so two builds give identical metrics.
    seed_globals(ctx.seed)
    reset_peak_memory(ctx.device)
    profiler = cProfile.Profile() if profile_dir is not None else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        stage(ctx)
    finally:
        if profiler is not None:
            profiler.disable()
    elapsed = time.perf_counter() - start
    if profiler is not None and profile_dir is not None:
        write_profile(profiler, profile_dir, profile_name or ctx.name, elapsed)
    return {"metrics": ctx.metrics, "items": ctx.items, "choices": ctx.choices,
            "streams": ctx.streams.used, "seconds": elapsed, **peak_memory(ctx.device)}


def write_profile(profiler: cProfile.Profile, folder: Path, name: str, seconds: float) -> None:
    """`<name>.prof` (raw) and `<name>.txt` (top 40 by cumulative time) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(folder / f"{name}.prof")
    text = io.StringIO()
    text.write(f"{name}: {seconds:.1f} s; top 40 by cumulative time\n")
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    (folder / f"{name}.txt").write_text(text.getvalue())


# --- worker processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything needed to run one stage of one analysis, here or in a worker; it must pickle."""

    stage: str  # "compute" or "draw": the module's function of that name runs
    module: str  # the analysis module's import name, e.g. "analyses.gan"
    name: str
    cfg: Any
    seed: int
    device: str  # draw always runs on the CPU
    staging: Path
    upstream: Mapping[str, Path]  # the compute entries of the analyses it requires
    results: Path | None  # draw: this analysis's compute entry
    load: Callable[[torch.device], Any]  # DataSource.load
    describe: Callable[[Any], Mapping[str, Any]]  # DataSource.describe
    threads: int  # torch's intra-op threads in a worker
    # The build's environment and folder now: a worker forked from the server would otherwise
    # see the server's, which were fixed when the first worker of the process started.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: str = field(default_factory=os.getcwd)
    build_pid: int = field(default_factory=os.getpid)
    profile_dir: Path | None = None  # --cprofile


def run_job(job: Job, data: Callable[[], Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Run one stage: the one path used by the build's process and by worker processes alike.

    `data` gives the dataset on the job's device (loaded on first use); the result records
    the provenance of the data when the stage read it.
    """
    module = importlib.import_module(job.module)
    used: list[Any] = []

    def loader() -> Any:
        if not used:
            used.append(data())
        return used[0]

    common = {"seed": job.seed, "staging": job.staging, "upstream": job.upstream,
              "data_loader": loader, "log": log}
    if job.stage == "compute":
        ctx: Context = ComputeContext(job.name, job.cfg, device=torch.device(job.device),
                                      **common)
    elif job.stage == "draw" and job.results is not None:
        ctx = DrawContext(job.name, job.cfg, results=job.results, **common)
    else:
        raise ValueError(f"{job.name}: unknown stage {job.stage!r} (or draw without results)")
    result = execute(getattr(module, job.stage), ctx, job.profile_dir,
                     job.name if job.stage == "compute" else f"{job.name}.draw")
    result["data"] = dict(job.describe(used[0])) if used else None
    return result


def _exit_with_build(pid: int) -> None:
    """End this worker as soon as the build process `pid` dies, so that a killed build leaves
    no worker computing on. (Its parent is the forkserver, which lives as long as any of its
    workers does, so the parent's death cannot be the signal.)"""

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)  # Linux 5.3+: readable once the process has exited
            select.select([fd], [], [])
        except (AttributeError, OSError):  # elsewhere: ask every second
            while True:
                time.sleep(1)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-build", daemon=True).start()


def _work(job: Job, conn: Connection) -> None:
    """A worker's body: run the job and send ("done", result) or ("failed", user, text)."""
    _exit_with_build(job.build_pid)
    try:
        os.environ.clear()
        os.environ.update(job.environ)
        os.chdir(job.cwd)
        torch.set_num_threads(job.threads)

        def data() -> Any:
            start = time.perf_counter()
            dataset = job.load(torch.device(job.device))
            print(f"  {job.name}: dataset ready on {job.device} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            return dataset

        conn.send(("done", run_job(job, data, lambda m: print(m, flush=True))))
    except KeyboardInterrupt:
        conn.send(("failed", False, "KeyboardInterrupt: interrupted"))
    except BaseException as exc:  # noqa: BLE001 - reported to the engine, which decides
        user = isinstance(exc, UserError)
        text = str(exc) if user else f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        conn.send(("failed", user, text))
    finally:
        conn.close()


class WorkerFailed(Exception):
    """An analysis failed in a worker; `user` is True for a UserError (one clear message)."""

    def __init__(self, message: str, user: bool):
        super().__init__(message)
        self.user = user


def _context(preload: Sequence[str]) -> Any:
    """forkserver where the platform has it (a worker starts in milliseconds, with torch and
    the analyses already imported once by the server), else spawn (about 3 s of imports each).
    Never plain fork: the build's process may hold CUDA and thread pools."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


class Pool:
    """Up to `jobs` analyses at once, each in its own worker process."""

    def __init__(self, jobs: int, preload: Sequence[str] = ()):
        self.jobs = jobs
        self._mp = _context(["torch", *preload])
        self._running: dict[str, tuple[Any, Connection]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def threads(self) -> int:
        """Intra-op threads per worker: as many as the build's own process uses.

        Not the cores shared out: on the CPU a float sum split over another number of threads
        adds in another order, and a quick build with one thread per worker differed from the
        one-at-a-time build in 25 of the optimizer section's 63 metrics (its chosen learning
        rates included). With the same count a worker computes what the build's process would.
        """
        return torch.get_num_threads()

    def start(self, job: Job) -> None:
        """Start `job` in a new worker."""
        receive, send = self._mp.Pipe(duplex=False)
        process = self._mp.Process(target=_work, args=(job, send), name=f"analysis-{job.name}",
                                   daemon=True)
        try:
            process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            send.close()
            receive.close()
            raise ValueError(f"{job.name}: cannot hand it to a worker process ({exc}); with "
                             "jobs > 1 the DataSource's load and describe must be module-level "
                             "functions (or partials of them), and configs plain values") from exc
        send.close()  # the worker holds the only sending end: EOF when it dies
        self._running[job.name] = (process, receive)

    def wait_any(self) -> tuple[str, dict[str, Any] | WorkerFailed]:
        """Block until a worker ends; its name and result (or the failure)."""
        by_conn = {conn: name for name, (_, conn) in self._running.items()}
        ready = wait(list(by_conn))
        name = by_conn[ready[0]]
        process, conn = self._running.pop(name)
        try:
            message = conn.recv()
        except EOFError:  # died without a word: killed, or out of memory
            message = None
        finally:
            conn.close()
        process.join()
        if message is None:
            return name, WorkerFailed(f"worker process exited with code {process.exitcode} "
                                      "before reporting", user=False)
        if message[0] == "done":
            return name, message[1]
        return name, WorkerFailed(message[2], user=message[1])

    def stop(self) -> None:
        """Terminate every running worker (after a failure or Ctrl-C)."""
        for process, _ in self._running.values():
            process.terminate()
        for process, conn in self._running.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._running.clear()
