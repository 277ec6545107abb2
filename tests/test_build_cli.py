"""The command line (build.py): help, --list, bad --set, bad --device, user errors, interrupts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import build
from analyses import ANALYSES
from report.analysis import sections_from_modules
from report.render import listing_title

REPO = Path(__file__).resolve().parent.parent


def test_help_states_the_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in [("--profile", "auto"), ("--device", "auto"), ("--out", "site"),
                            ("--cache-dir", ".cache"), ("--data-dir", "None")]:
        assert option in text
        assert f"(default: {default}" in text or f"{default})" in text, (option, text)
    assert "(default: auto)" in text and "--keep-going" in text and "--set KEY=VALUE" in text


def test_list_shows_every_analysis_with_state_and_requirements(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = build.main(["--list", "--profile", "quick", "--device", "cpu",
                       "--out", str(tmp_path / "site"), "--cache-dir", str(tmp_path / "cache"),
                       "--frozen-dir", str(tmp_path / "frozen")])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(ANALYSES)  # nothing else on stdout: the list is scriptable
    for line, section in zip(lines, sections_from_modules(ANALYSES)):
        analysis = section.analysis
        fields = line.split()
        assert fields[:2] == [analysis.name, "stale"], line  # an empty cache
        assert "drawing: after compute" in line
        assert f"requires: {', '.join(analysis.requires) or '-'}" in line
        # The title is the prose's first line; one that needs metrics (Jinja) is shown with
        # '…' for each number and its conditions false, never as raw template text.
        title = section.prose.lstrip().split("\n", 1)[0].removeprefix("# ").strip()
        expected = listing_title(section.prose, analysis.name)
        assert title and "{" not in expected and expected != analysis.name
        if "{" not in title:
            assert expected == title
        assert line.rstrip().endswith(f"{expected} (why: never built here)")
    assert not (tmp_path / "site").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("pair, message", [
    ("dataset.nosuch=1", "unknown key 'nosuch' in dataset"),
    ("nosuch.grid=1", "unknown section 'nosuch'"),
    ("dataset.grid=big", "--set dataset.grid=big: expected int"),
    ("grid", "expected key=value"),
])
def test_bad_set_exits_2_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              pair: str, message: str) -> None:
    code = build.main(["--set", pair, "--profile", "quick", "--device", "cpu", "--list",
                       "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set") or err.startswith("error: ")
    assert message in err


def test_bad_set_exit_code_from_the_shell(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "build.py"), "--set", "dataset.grid=x",
                             "--device", "cpu", "--list", "--cache-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "dataset.grid=x: expected int" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_only_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = build.main(["--only", "nosuch", "--profile", "quick", "--device", "cpu",
                       "--out", str(tmp_path / "site"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert "--only: unknown analyses ['nosuch']" in capsys.readouterr().err


def test_device_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda, but CUDA is not available"):
        build.main(["--device", "cuda", "--list", "--cache-dir", str(tmp_path)])


def test_auto_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert build.choose_device("auto") == torch.device("cpu")
    assert build.choose_device("cpu") == torch.device("cpu")


def test_auto_uses_frozen_entries_of_its_profile_or_a_fuller_one() -> None:
    assert build.usable_frozen_profiles("auto", "quick") == ("quick", "full")  # a CPU
    assert build.usable_frozen_profiles("auto", "full") == ("full",)  # a GPU: never quick
    assert build.usable_frozen_profiles("quick", "quick") == ("quick",)
    assert build.usable_frozen_profiles("full", "full") == ("full",)


def test_invalid_choice_is_rejected_by_argparse(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build.main(["--profile", "medium"])
    assert exit_.value.code == 2
    assert "invalid choice: 'medium'" in capsys.readouterr().err


def test_a_user_error_in_an_analysis_prints_one_message_without_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from digits import data as mnist

    def missing(*args, **kwargs):
        raise mnist.DataError("MNIST not found; pass --data-dir with the four IDX files")

    monkeypatch.setattr(mnist, "load_mnist", missing)
    code = build.main(["--only", "dataset", "--profile", "quick", "--device", "cpu",
                       "--out", str(tmp_path / "site"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "error: MNIST not found; pass --data-dir with the four IDX files" in captured.err
    assert captured.err.count("MNIST not found") == 1  # one message, said once
    assert not (tmp_path / "site").exists()


def test_keyboard_interrupt_exits_130_and_keeps_the_site(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("previous")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("report.engine.build", interrupted)
    code = build.main(["--profile", "quick", "--device", "cpu", "--out", str(out),
                       "--cache-dir", str(tmp_path / "cache")])
    assert code == 130
    assert "interrupted" in capsys.readouterr().err
    assert (out / "index.html").read_text() == "previous"


def test_read_benchmarks_returns_committed_results_or_none(tmp_path: Path) -> None:
    assert build.read_benchmarks(tmp_path) is None  # absent
    (tmp_path / "results.json").write_text("{ truncated")
    assert build.read_benchmarks(tmp_path) is None  # unreadable
    (tmp_path / "results.json").write_text('{"benchmarks": "not a list"}')
    assert build.read_benchmarks(tmp_path) is None
    (tmp_path / "results.json").write_text('{"command": "x", "benchmarks": []}')
    assert build.read_benchmarks(tmp_path) == {"command": "x", "benchmarks": []}


def test_jobs_below_one_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = build.main(["--jobs", "0", "--out", str(tmp_path / "site"),
                       "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "--jobs 0" in capsys.readouterr().err


def test_the_dataset_source_reaches_worker_processes() -> None:
    import functools
    import pickle

    # What --jobs hands to a worker must pickle: module-level functions and partials of them.
    load = functools.partial(build.load_dataset, None)
    assert pickle.loads(pickle.dumps(load)).func is build.load_dataset
    assert pickle.loads(pickle.dumps(build.describe_dataset)) is build.describe_dataset
    described = build.describe_dataset(None)
    assert "not loaded" in described["source"] and len(described["md5"]) == 4
