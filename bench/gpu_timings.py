"""The GPU run's timing table: per analysis, what its compute manifest recorded, and the wall time
of each phase of bench/gpu.sh; with --markdown, the table of the one-GPU-run goals.

    python bench/gpu_timings.py CACHE_DIR PHASES_LOG > timings.json
    python bench/gpu_timings.py --markdown CACHE_DIR PHASES_LOG > timings.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FIELDS = ("seconds", "peak_rss_bytes", "peak_gpu_bytes", "device", "device_name", "profile",
          "created")
# The goals of the full profile's one GPU run (one H200, from an empty cache, as bench/gpu.sh
# runs it), in seconds: each analysis's compute, and the whole script until its archive is
# written. The data and embeddings sections have none (4.4 s and 165 s on the first H200).
GOALS = {"classifiers": 90, "optimizers": 150, "dynamics": 60, "hidden_layers": 15, "gan": 150,
         "transfer": 120}
WHOLE_GOAL = 360
# "[123 s] build gan exited 0", as gpu.sh's stamp() writes it.
STAMP = re.compile(r"^\[(\d+) s\] (.*)$")


def timings(cache: Path, phases: Path) -> dict:
    """Each analysis computed under `cache` with its recorded cost, and the phase log's lines."""
    rows = {}
    for manifest in sorted(cache.glob("compute/*/*/manifest.json")):
        recorded = json.loads(manifest.read_text())
        rows[recorded["name"]] = {k: recorded.get(k) for k in FIELDS}
    lines = phases.read_text().splitlines() if phases.is_file() else []
    return {"analyses": rows, "phases": lines}


def stamped(lines: list[str]) -> dict[str, int]:
    """Phase text -> seconds since the script started, from the phase log's lines."""
    found = {}
    for line in lines:
        match = STAMP.match(line)
        if match:
            found[match.group(2)] = int(match.group(1))
    return found


def markdown(table: dict) -> str:
    """The goals' table filled in: per analysis its compute seconds, when its build ended (wall
    from the script's start), its peak GPU memory and device; then the whole script."""
    phases = stamped(table["phases"])
    ended = {text.split()[1]: at for text, at in phases.items()
             if text.startswith("build ") and " exited " in text}
    lines = ["| analysis | goal | compute | build ended at | peak GPU memory | device |",
             "| --- | --- | --- | --- | --- | --- |"]
    others = sorted((set(table["analyses"]) | set(ended)) - set(GOALS))
    for name in [*GOALS, *others]:
        row = table["analyses"].get(name)
        goal = f"≤ {GOALS[name]} s" if name in GOALS else "-"
        at = f"{ended[name]} s" if name in ended else "-"
        if row is None:
            why = ("skipped (not in ANALYSES)" if f"skip {name} (not in ANALYSES)" in phases
                   else "not computed (frozen entry reused, or stopped)")
            lines.append(f"| {name} | {goal} | {why} | {at} | - | - |")
            continue
        gpu = row.get("peak_gpu_bytes")
        memory = f"{gpu / 2**30:.1f} GiB" if gpu else "-"
        lines.append(f"| {name} | {goal} | {row.get('seconds') or 0:.1f} s | {at} | {memory} | "
                     f"{row.get('device_name') or row.get('device') or '-'} |")
    whole = phases.get("archive written")
    lines.append(f"| whole script, archive written | ≤ {WHOLE_GOAL} s | - | "
                 f"{f'{whole} s' if whole is not None else 'not reached'} | - | - |")
    # How the builds shared the GPU: the last word on MPS (a failed graph check turns it off).
    sharing = [text for text in phases if text.startswith("MPS ")]
    if sharing:
        lines += ["", f"GPU sharing: {sharing[-1]}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    as_markdown = args[:1] == ["--markdown"]
    result = timings(Path(args[-2]), Path(args[-1]))
    print(markdown(result).rstrip("\n") if as_markdown else json.dumps(result, indent=1))
