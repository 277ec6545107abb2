"""The GPU run's timing table: per analysis, what its compute manifest recorded, and the wall time
of each phase of bench/gpu.sh.

    python bench/gpu_timings.py CACHE_DIR PHASES_LOG > timings.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIELDS = ("seconds", "peak_rss_bytes", "peak_gpu_bytes", "device", "device_name", "profile",
          "created")


def timings(cache: Path, phases: Path) -> dict:
    """Each analysis computed under `cache` with its recorded cost, and the phase log's lines."""
    rows = {}
    for manifest in sorted(cache.glob("compute/*/*/manifest.json")):
        recorded = json.loads(manifest.read_text())
        rows[recorded["name"]] = {k: recorded.get(k) for k in FIELDS}
    lines = phases.read_text().splitlines() if phases.is_file() else []
    return {"analyses": rows, "phases": lines}


if __name__ == "__main__":
    print(json.dumps(timings(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))
