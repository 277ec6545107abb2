"""A slim checkout for the GPU run: the code and only the frozen entries the run reads.

A device call sends the working tree and its carry, 64 MiB (67.1 MB) at most together. The
carry (`bench/gpu_carry.sh`: MNIST gzipped and the wheels the device lacks) is 33.8 MB, and the
frozen store grows with every full-profile section: 30.3 MB with four of the eight, with all
eight about 53 MB (estimated from the quick entries: the GAN's recorded digits, GIF and frame
sheet were 2.65 MB for 3 recipes x 6 recorded epochs, and the full profile records 5 x 22). So
a run after the first (a refreeze, or the rest of a run cut short) would not fit. It needs far
less: the code, and the frozen entries that the analyses it runs require (the data section and
the classifiers for the GAN and transfer; the optimizer study for dynamics, once that one is
done).

This makes a commit of HEAD's tree without the other frozen entries, checks it out detached (the
dropped files leave the working tree, so they do not travel) and prints the device call with
the analyses to run (`ANALYSES=` for bench/gpu.sh). Afterwards `--back` returns to the branch,
where the results are unpacked and committed as usual. Which analyses run is read from `build.py
--list --profile full`: those whose full-profile results are not frozen.

    python bench/gpu_slim.py            # make and check out the slim commit, print the call
    python bench/gpu_slim.py --dry-run  # only say what it would keep, drop and run
    python bench/gpu_slim.py --back     # back to the branch the slim commit was made from
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from report.freeze import FrozenStore  # noqa: E402 - after the path fix above

LIMIT = 64 * 2**20  # bytes a device call may send: tracked files, untracked ones and the carry
MARK = "GPU run: slim checkout of"  # how a slim commit's message starts (see --back)


@dataclass(frozen=True)
class Plan:
    """What the GPU run computes, which frozen entries it reads, and which stay behind."""

    run: tuple[str, ...]
    keep: tuple[str, ...]
    drop: tuple[str, ...]


def git(*args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run git in `cwd`; its stdout, stripped. A failure raises with git's message."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def plan(states: Mapping[str, str], requires: Mapping[str, Iterable[str]],
         frozen: Iterable[str]) -> Plan:
    """Analyses whose state is not "frozen" run; the frozen entries they need (transitively,
    through analyses that are frozen or run) stay; every other frozen entry is dropped."""
    run = tuple(name for name, state in states.items() if state != "frozen")
    needed: set[str] = set()
    todo = list(run)
    while todo:
        for upstream in requires.get(todo.pop(), ()):
            if upstream not in needed:
                needed.add(upstream)
                todo.append(upstream)
    present = sorted(frozen)
    keep = tuple(n for n in present if n in needed and states.get(n) == "frozen")
    drop = tuple(n for n in present if n not in keep)
    return Plan(run=run, keep=keep, drop=drop)


def parse_list(text: str) -> dict[str, str]:
    """{analysis: state} from `build.py --list` output (name and state lead each row)."""
    states = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and "drawing:" in fields and fields[1] in ("frozen", "cached",
                                                                        "stale"):
            states[fields[0]] = fields[1]
    return states


def full_profile_states() -> dict[str, str]:
    """Each analysis's state in the full profile, as `build.py --list` reports it here."""
    done = subprocess.run([sys.executable, "build.py", "--list", "--profile", "full",
                           "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    states = parse_list(done.stdout)
    if done.returncode != 0 or not states:
        raise RuntimeError(f"build.py --list failed:\n{done.stdout}{done.stderr}")
    return states


def requirements() -> dict[str, tuple[str, ...]]:
    """Each analysis's direct requirements, from the analyses' declarations."""
    from analyses import ANALYSES  # noqa: PLC0415 - imports torch: only when planning

    return {m.ANALYSIS.name: tuple(m.ANALYSIS.requires) for m in ANALYSES}


def slim_commit(drop: Iterable[str], message: str, cwd: Path = ROOT) -> str:
    """A commit of HEAD's tree without frozen/<name> for each dropped name, HEAD its parent;
    made in a temporary index, so the branch, the index and the working tree are untouched."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git("read-tree", "HEAD", env=env, cwd=cwd)
        paths = [f"frozen/{name}" for name in drop]
        if paths:
            git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *paths, env=env, cwd=cwd)
        tree = git("write-tree", env=env, cwd=cwd)
    return git("commit-tree", tree, "-p", "HEAD", "-m", message, cwd=cwd)


def tree_bytes(commit: str, cwd: Path = ROOT) -> int:
    """Bytes of the files in `commit`'s tree."""
    listing = git("ls-tree", "-r", "-l", commit, cwd=cwd)
    return sum(int(line.split()[3]) for line in listing.splitlines() if line.split()[1] == "blob")


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def frozen_store(root: Path = ROOT) -> FrozenStore:
    """The working tree's frozen store (its entries and their sizes)."""
    return FrozenStore(root / "frozen")


def frozen_sizes(names: Iterable[str], root: Path) -> str:
    """'name (x.y MB), ...' for frozen entries in the working tree."""
    sizes = frozen_store(root).size()
    return ", ".join(f"{n} ({sizes[n] / 1e6:.1f} MB)" for n in names) or "none"


def make(chosen: Plan, carry: Path, dry_run: bool, root: Path = ROOT) -> int:
    """Make and check out the slim commit of `chosen`; print what travels and the device call."""
    print(f"runs:  {' '.join(chosen.run) or 'nothing: every section is frozen in full'}")
    print(f"keeps: {frozen_sizes(chosen.keep, root)}")
    print(f"drops: {frozen_sizes(chosen.drop, root)}")
    if not chosen.run or dry_run:
        return 0
    branch = git("rev-parse", "--abbrev-ref", "HEAD", cwd=root)
    problem = None
    if git("status", "--porcelain", cwd=root):
        problem = "the working tree has changes: commit them first (the GPU run uses commits)"
    elif branch == "HEAD":
        problem = "HEAD is detached: check out the branch to run from (--back leaves a slim one)"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    head = git("rev-parse", "--short", "HEAD", cwd=root)
    commit = slim_commit(chosen.drop, f"{MARK} {branch} ({head})\n\nDropped: "
                         f"{', '.join(chosen.drop) or 'nothing'}; runs: {' '.join(chosen.run)}",
                         cwd=root)
    tracked, carried = tree_bytes(commit, cwd=root), folder_bytes(root / carry)
    git("switch", "--quiet", "--detach", commit, cwd=root)
    print(f"checked out {commit[:12]} (detached): {MARK} {branch} ({head})")
    print(f"travels: tracked {tracked / 1e6:.1f} MB + {carry} {carried / 1e6:.1f} MB = "
          f"{(tracked + carried) / 1e6:.1f} MB of {LIMIT / 1e6:.1f} MB")
    if tracked + carried > LIMIT:
        print("warning: over the device's limit: carry fewer wheels", file=sys.stderr)
    print(f'run(command="ANALYSES=\'{" ".join(chosen.run)}\' bash bench/gpu.sh $OUT '
          f'{carry}/mnist {carry}/wheels", carry=["{carry}"], timeout_s=600)')
    print(f"then: python bench/gpu_slim.py --back (git switch {branch}), unpack, --list, commit")
    return 0


def back(cwd: Path = ROOT) -> int:
    """Leave a slim checkout for the branch it was made from."""
    message = git("log", "-1", "--format=%s", cwd=cwd)
    if not message.startswith(MARK):
        print(f"error: HEAD is not a slim checkout (its message: {message!r})", file=sys.stderr)
        return 2
    branch = message[len(MARK):].split()[0]
    git("switch", "--quiet", branch, cwd=cwd)
    print(f"back on {branch} ({git('rev-parse', '--short', 'HEAD', cwd=cwd)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: make the slim checkout (or plan it), or go back."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="plan only: change nothing")
    parser.add_argument("--back", action="store_true",
                        help="return to the branch the slim commit was made from")
    parser.add_argument("--carry", type=Path, default=Path(".carry"),
                        help="the carried folder, counted in what travels (default: .carry)")
    args = parser.parse_args(argv)
    try:
        if args.back:
            return back()
        return make(plan(full_profile_states(), requirements(), frozen_store().names()),
                    args.carry, args.dry_run)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
