"""bench/: result rows and ratios, skip and failure handling, results.json and results.md.

No timing assertions here: speed goals live in the benchmarks, never in timed tests. The
benchmarks themselves are replaced by stubs; nothing here trains or embeds anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import gpu_timings, harness  # noqa: E402 - after the path fix above
from bench.harness import Outcome, Row, Run, Side, Skip, markdown, run_benchmark  # noqa: E402

MACHINE = {
    "cpu": "Test CPU", "cpu_count": 2, "cpus_usable": 2, "torch_threads": 2, "gpu": None,
    "load_average": [1.5, 1.0, 0.5], "platform": "Linux", "python": "3.11.0",
    "versions": {"torch": "2.0.0", "numpy": "2.0", "openTSNE": None}, "commit": "abc123",
}


def quiet_run(name: str = "demo", **kwargs) -> Run:
    return Run(name, log=lambda message: None, **kwargs)


def report_of(outcomes: list[Outcome], **kwargs) -> dict:
    return harness.make_report(outcomes, argv=["--device", "cpu"], seconds=12.3,
                               options={"device": "cpu", "size": "small"},
                               machine_info=MACHINE, date="2026-01-01 00:00 UTC", **kwargs)


# --- rows and ratios -------------------------------------------------------------------------


def test_ratio_is_how_many_times_better_the_first_side_is():
    faster = Row("x", "cpu", Side("a", 300.0, "img/s"), Side("b", 100.0, "img/s"))
    quicker = Row("x", "cpu", Side("a", 2.0, "s"), Side("b", 10.0, "s"), higher_is_better=False)
    assert faster.ratio == pytest.approx(3.0)
    assert quicker.ratio == pytest.approx(5.0)


def test_ratio_is_none_when_skipped_or_undefined():
    assert Row("x", "cuda", skipped="no CUDA").ratio is None
    assert Row("x", "cpu", Side("a", 1.0, "s"), Side("b", 0.0, "s")).ratio is None
    assert Row("x", "cpu", Side("a", 0.0, "s"), Side("b", 1.0, "s"),
               higher_is_better=False).ratio is None


def test_row_as_dict_carries_the_ratio():
    row = Row("x", "cpu", Side("a", 4.0, "img/s", [3.0, 4.0, 5.0]), Side("b", 2.0, "img/s"))
    d = row.as_dict()
    assert d["ratio"] == pytest.approx(2.0)
    assert d["ours"]["runs"] == [3.0, 4.0, 5.0]
    json.dumps(d)


# --- outcomes: ok, skipped, failed -----------------------------------------------------------


def test_a_measured_row_makes_an_ok_outcome():
    def fn(run: Run) -> None:
        run.row("x", "cpu", Side("a", 2.0, "img/s"), Side("b", 1.0, "img/s"))
        run.info["n"] = 5

    outcome = run_benchmark("demo", "Demo", fn, quiet_run())
    assert (outcome.status, outcome.reason) == ("ok", "")
    assert outcome.info == {"n": 5} and len(outcome.rows) == 1


def test_skip_is_recorded_with_its_reason():
    def fn(run: Run) -> None:
        raise Skip("openTSNE is not installed")

    outcome = run_benchmark("demo", "Demo", fn, quiet_run())
    assert outcome.status == "skipped"
    assert outcome.reason == "openTSNE is not installed"


def test_an_exception_is_recorded_as_failed_and_keeps_the_rows_measured_before(capsys):
    def fn(run: Run) -> None:
        run.row("first", "cpu", Side("a", 2.0, "s"), Side("b", 1.0, "s"))
        raise RuntimeError("boom")

    outcome = run_benchmark("demo", "Demo", fn, quiet_run())
    assert outcome.status == "failed"
    assert outcome.reason == "RuntimeError: boom"
    assert [r.what for r in outcome.rows] == ["first"]
    assert "Traceback" in capsys.readouterr().err


def test_only_skipped_rows_make_a_skipped_outcome():
    def fn(run: Run) -> None:
        run.skip("x", "cuda", "CUDA is not available")

    outcome = run_benchmark("demo", "Demo", fn, quiet_run())
    assert outcome.status == "skipped"
    assert "CUDA is not available" in outcome.reason


def test_a_benchmark_that_records_nothing_is_skipped():
    outcome = run_benchmark("demo", "Demo", lambda run: None, quiet_run())
    assert outcome.status == "skipped"


def test_require_cuda_skips_on_the_cpu_and_without_cuda():
    with pytest.raises(Skip, match="CPU"):
        quiet_run(device="cpu", cuda_available=True).require_cuda()
    with pytest.raises(Skip, match="not available"):
        quiet_run(device="cuda", cuda_available=False).require_cuda()
    quiet_run(device="cuda", cuda_available=True).require_cuda()


def test_missing_data_loader_is_a_skip():
    with pytest.raises(Skip):
        quiet_run().data()


def test_repeats_stop_early_once_over_budget_but_run_at_least_once():
    assert list(quiet_run(budget=0.0).repeats(5)) == [0]
    assert list(quiet_run().repeats(3)) == [0, 1, 2]


# --- results.json and results.md -------------------------------------------------------------


def outcomes_of_every_kind() -> list[Outcome]:
    ok = Outcome("training", "training core vs DataLoader", "ok", 3.0, [
        Row("training core vs DataLoader", "cpu", Side("tensors", 200.0, "img/s", [200.0]),
            Side("DataLoader | PIL", 100.0, "img/s", [100.0]), detail="n 320"),
        Row("training core vs DataLoader", "cuda", skipped="CUDA is not available")])
    skipped = Outcome("tsne", "openTSNE vs scikit-learn TSNE", "skipped", 0.1,
                      reason="openTSNE is not installed")
    failed = Outcome("gan", "GAN training steps", "failed", 0.2, reason="ValueError: bad")
    timed = Outcome("rebuild", "site rebuild", "ok", 9.0, [
        Row("no change vs cold", "cpu", Side("no change", 2.0, "s"), Side("cold", 8.0, "s"),
            higher_is_better=False)])
    return [ok, skipped, failed, timed]


def test_markdown_states_the_hardware_and_the_command():
    text = markdown(report_of(outcomes_of_every_kind()))
    for expected in ("`python -m bench --device cpu`", "Test CPU, 2 cores", "| GPU | none |",
                     "| torch | 2.0.0 |", "2026-01-01 00:00 UTC", "abc123", "load average 1.5"):
        assert expected in text, expected
    assert "openTSNE None" not in text  # versions of packages not installed are left out


def test_markdown_has_one_row_per_comparison_with_ratios_skips_and_failures():
    text = markdown(report_of(outcomes_of_every_kind()))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| benchmark |"))
    body = lines[header + 2:]  # after the header and its separator
    body = body[:body.index("")] if "" in body else body
    assert len(body) == 5
    assert "2.00×" in body[0] and "200 img/s" in body[0] and "n 320" in body[0]
    assert "DataLoader \\| PIL" in body[0]  # a pipe in a label does not break the table
    assert "cuda" in body[1] and "skipped: CUDA is not available" in body[1]
    assert "skipped: openTSNE is not installed" in body[2]
    assert "failed: ValueError: bad" in body[3]
    assert "site rebuild: no change vs cold" in body[4] and "4.00×" in body[4]


def test_markdown_names_the_gpu_when_there_is_one():
    machine = dict(MACHINE, gpu={"name": "NVIDIA H100", "memory_gib": 79.2, "cuda": "13.0",
                                 "count": 1})
    report = harness.make_report([], argv=[], seconds=1.0, options={"size": "full",
                                                                    "device": "cuda"},
                                 machine_info=machine, date="d")
    assert "| GPU | NVIDIA H100, 79.2 GiB, CUDA 13.0 |" in markdown(report)


def test_write_results_writes_json_and_markdown(tmp_path):
    report = report_of(outcomes_of_every_kind())
    json_path, md_path = harness.write_results(report, tmp_path / "out")
    loaded = json.loads(json_path.read_text())
    assert loaded["command"] == "python -m bench --device cpu"
    assert [b["status"] for b in loaded["benchmarks"]] == ["ok", "skipped", "failed", "ok"]
    assert loaded["benchmarks"][0]["rows"][0]["ratio"] == pytest.approx(2.0)
    assert loaded["machine"]["cpu"] == "Test CPU"
    assert md_path.read_text() == markdown(report)


@pytest.mark.parametrize("value, unit, text", [
    (0.1234, "s", "0.123 s"), (12.34, "s", "12.3 s"), (123456.0, "img/s", "123,456 img/s"),
    (12.34, "img/s", "12.3 img/s"), (1.234, "steps/s", "1.23 steps/s")])
def test_fmt_value_rounds_for_reading(value, unit, text):
    assert harness.fmt_value(value, unit) == text


# --- the command -----------------------------------------------------------------------------


def test_main_runs_each_benchmark_and_records_every_outcome(tmp_path, monkeypatch, capsys):
    import bench.__main__ as cli

    calls = []

    def ok(run: Run) -> None:
        calls.append(("ok", run.size, run.device))
        run.row("x", "cpu", Side("a", 3.0, "img/s"), Side("b", 1.0, "img/s"))

    def broken(run: Run) -> None:
        calls.append(("broken",))
        raise ZeroDivisionError("division by zero")

    def absent(run: Run) -> None:
        calls.append(("absent",))
        raise Skip("a package is missing")

    monkeypatch.setattr(cli, "BENCHMARKS", {"broken": ("Broken", broken),
                                            "absent": ("Absent", absent), "ok": ("OK", ok)})
    assert cli.main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["broken", "absent", "ok"]  # a failure stops nothing
    assert calls[-1] == ("ok", "small", "cpu")
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert [(b["name"], b["status"]) for b in loaded["benchmarks"]] == [
        ("broken", "failed"), ("absent", "skipped"), ("ok", "ok")]
    assert loaded["command"] == f"python -m bench --device cpu --out {tmp_path}"
    assert "3.00×" in (tmp_path / "results.md").read_text()


def test_only_runs_the_named_benchmarks(tmp_path, monkeypatch):
    import bench.__main__ as cli

    ran = []
    monkeypatch.setattr(cli, "BENCHMARKS", {
        name: (name, lambda run, name=name: ran.append(name)) for name in ("a", "b", "c")})
    cli.main(["--device", "cpu", "--only", "c", "a", "--out", str(tmp_path)])
    assert ran == ["a", "c"]  # in the suite's order


def test_unknown_benchmark_name_is_refused():
    import bench.__main__ as cli

    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "nonsense"])


def test_every_benchmark_has_sizes_for_both_sizes():
    from bench.suite import BENCHMARKS, BUDGET, SIZES

    assert set(SIZES) == set(BENCHMARKS)
    for name, table in SIZES.items():
        assert set(table) == {"small", "full"}, name
    assert set(BUDGET) == {"small", "full"}


def test_interrupt_is_recorded_the_rest_not_run_and_the_files_written(tmp_path, monkeypatch):
    import bench.__main__ as cli

    def measured_then_interrupted(run: Run) -> None:
        run.row("x", "cpu", Side("a", 2.0, "s"), Side("b", 4.0, "s"), higher_is_better=False)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "BENCHMARKS", {
        "first": ("First", measured_then_interrupted),
        "second": ("Second", lambda run: pytest.fail("ran after the interrupt"))})
    assert cli.main(["--device", "cpu", "--out", str(tmp_path)]) == 130
    loaded = json.loads((tmp_path / "results.json").read_text())
    first, second = loaded["benchmarks"]
    assert first["status"] == "interrupted" and first["rows"][0]["ratio"] == pytest.approx(2.0)
    assert second["status"] == "skipped" and "interrupted" in second["reason"]
    assert "interrupted" in (tmp_path / "results.md").read_text()


def test_data_dir_given_then_cache_then_a_folder_in_the_checkout(tmp_path, monkeypatch):
    import bench.__main__ as cli
    from digits import data

    assert cli.find_data_dir(tmp_path)[0] == tmp_path
    monkeypatch.setattr(data, "default_cache_dir", lambda: tmp_path / "empty-cache")
    checkout = tmp_path / "checkout"
    (checkout / "carried" / "mnist").mkdir(parents=True)
    (checkout / "carried" / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setattr(cli, "ROOT", checkout)
    assert cli.find_data_dir(None)[0] == checkout / "carried" / "mnist"
    cache = tmp_path / "cache"
    cache.mkdir()
    for spec in data.MNIST_FILES:
        (cache / spec.name).write_bytes(b"")
    monkeypatch.setattr(data, "default_cache_dir", lambda: cache)
    assert cli.find_data_dir(None) == (None, f"the cache {cache}")


@pytest.mark.parametrize("size", ["small", "full"])
def test_device_sizes_resolve_for_both_devices(size):
    from bench.suite import SIZES, sizes

    for name, table in SIZES.items():
        if "cpu" not in table["full"]:
            continue  # one size for every device
        for device in ("cpu", "cuda") if "cuda" in table["full"] else ("cpu",):
            resolved = sizes(quiet_run(size=size), name, device)
            # One run each where a benchmark has no "repeat" (the t-SNE ones).
            assert resolved.get("repeat", 1) >= 1 and resolved["n"] >= 1, (name, device)


def test_gpu_timings_reads_each_compute_manifest_and_the_phases(tmp_path: Path) -> None:
    for name, seconds in (("classifiers", 61.5), ("gan", 140.0)):
        entry = tmp_path / "compute" / name / "abc123"
        entry.mkdir(parents=True)
        (entry / "manifest.json").write_text(json.dumps(
            {"name": name, "seconds": seconds, "peak_gpu_bytes": 2**30, "device": "cuda",
             "profile": "full", "metrics": {"ignored": 1}}))
    (tmp_path / "phases.log").write_text("[4 s] start\n[300 s] builds over\n")
    table = gpu_timings.timings(tmp_path, tmp_path / "phases.log")
    assert table["analyses"]["gan"]["seconds"] == 140.0
    assert table["analyses"]["classifiers"]["peak_gpu_bytes"] == 2**30
    assert "metrics" not in table["analyses"]["gan"]
    assert table["phases"] == ["[4 s] start", "[300 s] builds over"]


def test_gpu_timings_fills_in_the_goals_table(tmp_path: Path) -> None:
    entry = tmp_path / "compute" / "gan" / "abc123"
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text(json.dumps(
        {"name": "gan", "seconds": 140.04, "peak_gpu_bytes": 3 * 2**30, "device": "cuda",
         "device_name": "NVIDIA H200", "profile": "full"}))
    (tmp_path / "phases.log").write_text(
        "[4 s] start: profile full on cuda\n[5 s] skip classifiers (not in ANALYSES)\n"
        "[151 s] build gan exited 0\n[520 s] build budget reached\n[600 s] build transfer "
        "exited 130\n[612 s] archive written\n")
    rows = gpu_timings.markdown(gpu_timings.timings(tmp_path, tmp_path / "phases.log"))
    lines = rows.splitlines()
    assert lines[0].startswith("| analysis | goal | compute | build ended at |")
    assert "| gan | ≤ 150 s | 140.0 s | 151 s | 3.0 GiB | NVIDIA H200 |" in lines
    assert ("| transfer | ≤ 120 s | not computed (frozen entry reused, or stopped) | 600 s "
            "| - | - |") in lines
    assert lines[2] == "| classifiers | ≤ 90 s | skipped (not in ANALYSES) | - | - | - |"
    assert lines[-1] == "| whole script, archive written | ≤ 360 s | - | 612 s | - | - |"


def test_gpu_timings_says_how_the_builds_shared_the_gpu(tmp_path: Path) -> None:
    (tmp_path / "phases.log").write_text(
        "[1 s] MPS on: server 42, pipes in /tmp/x\n[9 s] graph check exited 1 (1 failed)\n"
        "[10 s] MPS off: the graph check failed under MPS (graph_check_mps.txt); checking "
        "again\n[300 s] archive written\n")
    lines = gpu_timings.markdown(gpu_timings.timings(tmp_path, tmp_path / "phases.log"))
    assert lines.splitlines()[-1] == ("GPU sharing: MPS off: the graph check failed under MPS "
                                      "(graph_check_mps.txt); checking again")
    (tmp_path / "phases.log").write_text("[300 s] archive written\n")
    lines = gpu_timings.markdown(gpu_timings.timings(tmp_path, tmp_path / "phases.log"))
    assert "GPU sharing" not in lines


# --- bench/launches.py and the GPU run's scripts -----------------------------------------------


def test_launches_count_kernels_not_views_or_conversions_that_copy_nothing() -> None:
    """A cast and an addition launch kernels; a view and `.float()` of a float tensor do not."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench import launches

    floats, bytes_ = torch.ones(4, 4), torch.ones(4, 4, dtype=torch.uint8)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        floats.float()
        floats.t()
        floats.view(16)
        bytes_.float()
        floats + 1
    counts = launches.tally(prof.events())
    assert counts["launches"] == 2 and counts["reads"] == 0


def run_mps_start(tmp_path: Path, control: str | None, probe_exit: int) -> tuple[str, str]:
    """bench/gpu_mps.sh's mps_start with stand-ins for the MPS control program (a script that
    logs its arguments and input ($input) to calls.log, then runs `control`; or none on PATH)
    and for the CUDA probe's Python; returns what it printed, with the pipe variable after it,
    and the calls."""
    import shutil
    import subprocess

    # PATH holds the stand-ins and the few tools the functions use, nothing else: a real MPS
    # control program (on a machine with a GPU) must never be reached.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "mkdir", "timeout"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "calls.log"
    calls.touch()
    if control is not None:
        tool = bin_dir / "nvidia-cuda-mps-control"
        tool.write_text(f"#!/bin/bash\ninput=$(cat)\necho \"args:$* stdin:$input\" >> {calls}\n"
                        f"{control}\n")
        tool.chmod(0o755)
    python = bin_dir / "fake-python"
    python.write_text(f"#!/bin/bash\nexit {probe_exit}\n")
    python.chmod(0o755)
    script = (f"source {REPO / 'bench' / 'gpu_mps.sh'}; mps_start {python} {tmp_path / 'mps'}; "
              "echo \"pipe=${CUDA_MPS_PIPE_DIRECTORY:-}\"")
    result = subprocess.run([str(bin_dir / "bash"), "-c", script], capture_output=True,
                            text=True, env={"PATH": str(bin_dir)}, stdin=subprocess.DEVNULL)
    return result.stdout, calls.read_text()


def test_mps_is_kept_only_when_a_cuda_client_runs_through_its_server(tmp_path: Path) -> None:
    out, calls = run_mps_start(
        tmp_path, 'if [ "$input" = get_server_list ]; then echo 4242; fi', probe_exit=0)
    assert out.splitlines()[0].startswith("MPS on: server 4242, pipes in ")
    assert out.splitlines()[1] == f"pipe={tmp_path / 'mps' / 'pipe'}"
    assert calls.splitlines() == ["args:-d stdin:", "args: stdin:get_server_list"]


@pytest.mark.parametrize("control, probe_exit, why, expected_calls", [
    (None, 0, "nvidia-cuda-mps-control not found", []),
    ("exit 1", 0, "the daemon did not start, see mps-log/start.txt", ["args:-d stdin:"]),
    # A daemon that started is told to quit.
    ("true", 1, "a CUDA client failed under the daemon", ["args:-d stdin:", "args: stdin:quit"]),
    ("true", 0, "the probe ran without an MPS server",
     ["args:-d stdin:", "args: stdin:get_server_list", "args: stdin:quit"]),
])
def test_without_a_working_mps_the_builds_time_slice_and_no_daemon_is_left(
        tmp_path: Path, control: str | None, probe_exit: int, why: str,
        expected_calls: list[str]) -> None:
    out, calls = run_mps_start(tmp_path, control, probe_exit)
    assert out.splitlines() == [f"MPS off: {why} (the builds time-slice the GPU)", "pipe="]
    assert calls.splitlines() == expected_calls


@pytest.mark.parametrize("script", ["gpu.sh", "gpu_carry.sh", "gpu_mps.sh", "gpu_rehearse.sh"])
def test_gpu_run_scripts_parse(script: str) -> None:
    """bash reads the scripts of the GPU run without running them (their runs need a device or
    the network: bench/gpu_rehearse.sh rehearses them on the CPU, in minutes)."""
    import subprocess

    result = subprocess.run(["bash", "-n", str(REPO / "bench" / script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_the_rehearsal_sizes_only_the_analyses_it_runs() -> None:
    """bench/gpu_rehearse.sh reads the tests' tiny settings (`python tests/tiny.py NAME...`) for
    the analyses the GPU run makes: none for the others, whose frozen entries it reuses."""
    import subprocess

    from tiny import on_real_data  # tests/ is on the path, as for conftest.py

    result = subprocess.run([sys.executable, str(REPO / "tests" / "tiny.py"), "gan", "transfer"],
                            capture_output=True, text=True, check=True)
    pairs = result.stdout.split()
    assert pairs == [f"{k}={v}" for k, v in on_real_data(["gan", "transfer"]).items()]
    assert {p.split(".")[0] for p in pairs} == {"gan", "transfer"}
    assert "gan.train_subset=600" in pairs  # the real data's subset, not the synthetic 0 (all)
