"""bench/gpu_slim.py: which frozen entries the GPU run reads, and the slim commit without the rest.

The plan is checked on the repository's own analyses and `build.py --list`; the commit and the
way back in a throwaway git repository, never in this checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import gpu_slim  # noqa: E402 - after the path fix above

# The analyses' requirements as declared (the first test checks them against the code).
REQUIRES = {"dataset": (), "embeddings": ("dataset",), "classifiers": ("dataset",),
            "optimizers": (), "dynamics": ("dataset", "optimizers"),
            "hidden_layers": ("dataset", "classifiers"), "gan": ("dataset", "classifiers"),
            "transfer": ("dataset", "classifiers")}
ALL = tuple(REQUIRES)


def states(*stale: str) -> dict[str, str]:
    """Every analysis frozen but the `stale` ones."""
    return {name: "stale" if name in stale else "frozen" for name in ALL}


def test_the_declared_requirements_are_the_ones_planned_here() -> None:
    assert gpu_slim.requirements() == REQUIRES


def test_the_run_keeps_what_its_analyses_read_and_drops_the_rest() -> None:
    """Today's store: the GAN and transfer read the data and the classifiers; dynamics reads
    the optimizer study, which runs too, so its quick entry stays behind with the rest."""
    chosen = gpu_slim.plan(states("optimizers", "dynamics", "gan", "transfer"), REQUIRES,
                           ["dataset", "embeddings", "classifiers", "optimizers", "dynamics",
                            "hidden_layers"])
    assert chosen.run == ("optimizers", "dynamics", "gan", "transfer")
    assert chosen.keep == ("classifiers", "dataset")
    assert chosen.drop == ("dynamics", "embeddings", "hidden_layers", "optimizers")


def test_a_frozen_upstream_of_a_stale_analysis_travels() -> None:
    """A run cut short after the optimizer study: dynamics needs its entry, not the GAN's."""
    chosen = gpu_slim.plan(states("dynamics"), REQUIRES, ALL)
    assert chosen.run == ("dynamics",)
    assert chosen.keep == ("dataset", "optimizers")
    assert set(chosen.drop) == set(ALL) - {"dataset", "optimizers"}


def test_requirements_are_followed_through_frozen_analyses() -> None:
    """A stale hidden-layers section reads the classifiers, which read the data."""
    chosen = gpu_slim.plan(states("hidden_layers"), {**REQUIRES, "hidden_layers":
                                                     ("classifiers",)}, ALL)
    assert chosen.keep == ("classifiers", "dataset")


def test_nothing_to_run_keeps_nothing() -> None:
    chosen = gpu_slim.plan(states(), REQUIRES, ALL)
    assert chosen.run == () and chosen.keep == () and set(chosen.drop) == set(ALL)


def test_the_states_come_from_build_list_in_the_full_profile() -> None:
    """The real `build.py --list`: one state per analysis, read from its scriptable rows."""
    found = gpu_slim.full_profile_states()
    assert list(found) == list(ALL)  # article order
    assert set(found.values()) <= {"frozen", "cached", "stale"}


def test_parse_list_reads_name_and_state_and_skips_other_lines() -> None:
    text = ("profile: auto -> quick (device cpu)\n"
            "dataset        frozen  full   drawing: frozen        requires: -    The data\n"
            "gan            stale   full   drawing: after compute requires: dataset  A GAN "
            "(why: code: digits/gan.py: frozen stale)\n")
    assert gpu_slim.parse_list(text) == {"dataset": "frozen", "gan": "stale"}


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository on branch `main` with code and three frozen entries, committed."""
    run_git(tmp_path, "init", "-q", "-b", "main")
    run_git(tmp_path, "config", "user.name", "Test")
    run_git(tmp_path, "config", "user.email", "test@example.com")
    (tmp_path / "code.py").write_text("print(1)\n")
    for name in ("dataset", "classifiers", "embeddings"):
        (tmp_path / "frozen" / name / "drawn").mkdir(parents=True)
        (tmp_path / "frozen" / name / "manifest.json").write_text(f'"{name}"\n')
        (tmp_path / "frozen" / name / "drawn" / "figure.png").write_bytes(name.encode() * 100)
    run_git(tmp_path, "add", ".")
    run_git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_the_slim_commit_lacks_the_dropped_entries_and_leaves_the_checkout_alone(
        repo: Path) -> None:
    head = run_git(repo, "rev-parse", "HEAD")
    commit = gpu_slim.slim_commit(["embeddings"], f"{gpu_slim.MARK} main ({head[:7]})", cwd=repo)
    files = run_git(repo, "ls-tree", "-r", "--name-only", commit).splitlines()
    assert "code.py" in files and "frozen/classifiers/drawn/figure.png" in files
    assert not [f for f in files if f.startswith("frozen/embeddings/")]
    assert run_git(repo, "rev-parse", f"{commit}^") == head
    # Branch, index and working tree as they were.
    assert run_git(repo, "rev-parse", "HEAD") == head
    assert run_git(repo, "status", "--porcelain") == ""
    assert (repo / "frozen" / "embeddings" / "manifest.json").exists()
    # The size counted is the slim tree's: the code, the kept entries' manifests and figures.
    assert gpu_slim.tree_bytes(commit, cwd=repo) == \
        9 + len('"dataset"\n') + len('"classifiers"\n') + 700 + 1100


def test_back_returns_to_the_branch_and_its_dropped_files(repo: Path) -> None:
    commit = gpu_slim.slim_commit(["embeddings"], f"{gpu_slim.MARK} main (abc1234)", cwd=repo)
    run_git(repo, "switch", "-q", "--detach", commit)
    assert not (repo / "frozen" / "embeddings").exists()  # left behind: it does not travel
    assert gpu_slim.back(cwd=repo) == 0
    assert run_git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (repo / "frozen" / "embeddings" / "drawn" / "figure.png").exists()


def test_back_refuses_where_head_is_no_slim_commit(repo: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert gpu_slim.back(cwd=repo) == 2
    assert "not a slim checkout" in capsys.readouterr().err


SLIM_PLAN = gpu_slim.Plan(run=("gan",), keep=("classifiers", "dataset"), drop=("embeddings",))


def test_make_checks_out_the_slim_commit_and_prints_the_device_call(
        repo: Path, capsys: pytest.CaptureFixture) -> None:
    (repo / ".carry").mkdir()  # counted in what travels (untracked here: ignored in the project)
    (repo / ".carry" / "wheel.whl").write_bytes(b"w" * 1000)
    (repo / ".git" / "info" / "exclude").write_text(".carry/\n")
    head = run_git(repo, "rev-parse", "--short", "HEAD")
    assert gpu_slim.make(SLIM_PLAN, Path(".carry"), dry_run=False, root=repo) == 0
    out = capsys.readouterr().out
    assert run_git(repo, "log", "-1", "--format=%s") == f"{gpu_slim.MARK} main ({head})"
    assert not (repo / "frozen" / "embeddings").exists()
    assert "ANALYSES='gan' bash bench/gpu.sh $OUT .carry/mnist .carry/wheels" in out
    assert f"+ .carry {1000 / 1e6:.1f} MB" in out
    assert gpu_slim.back(cwd=repo) == 0 and (repo / "frozen" / "embeddings").exists()


def test_make_refuses_uncommitted_changes_and_a_detached_head(
        repo: Path, capsys: pytest.CaptureFixture) -> None:
    head = run_git(repo, "rev-parse", "HEAD")
    (repo / "code.py").write_text("print(2)\n")
    assert gpu_slim.make(SLIM_PLAN, Path(".carry"), dry_run=False, root=repo) == 2
    assert "commit them first" in capsys.readouterr().err
    run_git(repo, "checkout", "-q", "code.py")
    run_git(repo, "switch", "-q", "--detach", head)
    assert gpu_slim.make(SLIM_PLAN, Path(".carry"), dry_run=False, root=repo) == 2
    assert "HEAD is detached" in capsys.readouterr().err
    assert run_git(repo, "rev-parse", "HEAD") == head  # nothing made, nothing switched


def test_a_dry_run_or_nothing_to_run_changes_nothing(repo: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    head = run_git(repo, "rev-parse", "HEAD")
    assert gpu_slim.make(SLIM_PLAN, Path(".carry"), dry_run=True, root=repo) == 0
    idle = gpu_slim.Plan(run=(), keep=(), drop=("classifiers", "dataset", "embeddings"))
    assert gpu_slim.make(idle, Path(".carry"), dry_run=False, root=repo) == 0
    out = capsys.readouterr().out
    assert "drops: embeddings (0.0 MB)" in out and "nothing: every section is frozen" in out
    assert run_git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert run_git(repo, "rev-parse", "HEAD") == head
