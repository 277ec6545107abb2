"""The Context handed to each analysis's run(ctx): config, device, data and artifact writers."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from report.streams import Streams, derive_seed

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RESERVED_FILES = {"manifest.json", "objects"}  # written by the cache and by ctx.save


class ArtifactError(ValueError):
    """An analysis used the Context API wrongly (bad name, duplicate, undeclared upstream)."""


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays to plain JSON types; NaN/inf become None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())  # a 0-d array's tolist() is a scalar, not a list
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise ArtifactError(f"metric value of type {type(value).__name__} is not JSON-friendly")


class Context:
    """What an analysis sees: `cfg`, `device`, `data`, `streams` and the artifact writers.

    Figures, GIFs and tables are named, never captioned: every word a reader sees is written
    in the section's prose (`analyses/<name>.md`), outside the cache key.
    """

    def __init__(
        self,
        name: str,
        cfg: Any,
        *,
        seed: int,
        device: torch.device,
        staging: Path,
        upstream: Mapping[str, Path],
        data_loader: Callable[[], Any] | None = None,
        log: Callable[[str], None] = print,
    ):
        self.name = name
        self.cfg = cfg
        self.device = device
        self.seed = derive_seed(seed, name)
        self.streams = Streams(seed, name)
        self._staging = staging
        self._upstream = dict(upstream)
        self._data_loader = data_loader
        self._log = log
        self.items: list[dict] = []  # figures, gifs, tables and assets in creation order
        self.metrics: dict[str, Any] = {}
        self.choices: list[str] = []  # metrics that record a choice (see `choice`)
        self._names: set[str] = set()
        self._files: set[str] = set()

    # --- inputs ---------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The verified dataset, on `ctx.device` (loaded once per build, on first use)."""
        if self._data_loader is None:
            raise ArtifactError(f"{self.name}: this build has no dataset")
        return self._data_loader()

    def load(self, upstream: str, name: str) -> Any:
        """An object another analysis saved with `ctx.save`; it must be in `requires`."""
        if upstream not in self._upstream:
            raise ArtifactError(
                f"{self.name}: ctx.load({upstream!r}, ...) but {upstream!r} is not in its "
                f"requires {sorted(self._upstream)}"
            )
        path = self._upstream[upstream] / "objects" / f"{name}.pt"
        if not path.is_file():
            raise ArtifactError(f"{self.name}: {upstream} saved no object named {name!r}")
        return torch.load(path, map_location="cpu", weights_only=False)

    def metric_of(self, upstream: str, name: str) -> Any:
        """A metric another analysis recorded; it must be in `requires`."""
        if upstream not in self._upstream:
            raise ArtifactError(f"{self.name}: {upstream!r} is not in its requires")
        manifest = json.loads((self._upstream[upstream] / "manifest.json").read_text())
        return manifest["metrics"][name]

    # --- outputs --------------------------------------------------------------------------
    def _claim(self, name: str, file: str | None = None) -> None:
        if not _NAME.match(name):
            raise ArtifactError(f"{self.name}: artifact name {name!r} must be [A-Za-z0-9_.-]")
        if name in self._names:
            raise ArtifactError(f"{self.name}: artifact {name!r} written twice")
        # Figures, GIFs and assets share the entry folder: one file must not overwrite another.
        if file is not None and (file in self._files or file in _RESERVED_FILES):
            raise ArtifactError(f"{self.name}: artifact {name!r} would overwrite file {file!r}")
        self._names.add(name)
        if file is not None:
            self._files.add(file)

    def figure(self, name: str, fig: Any, *, dpi: int = 110) -> None:
        """Save a matplotlib figure as PNG and close it (the prose gives caption and alt text)."""
        import matplotlib.pyplot as plt

        file = f"{name}.png"
        self._claim(name, file)
        fig.savefig(self._staging / file, dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})
        width, height = (int(v) for v in fig.get_size_inches() * dpi)
        plt.close(fig)
        self.items.append({"kind": "figure", "name": name, "file": file,
                           "width": width, "height": height})

    def gif(self, name: str, frames: Sequence[np.ndarray], *, fps: float = 4.0,
            sprite: bool = False) -> None:
        """Save RGB uint8 frames [H, W, 3] as a looping GIF shown at `fps` frames per second.

        With `sprite`, the frames are also written as one PNG grid (asset `<name>.frames.png`,
        `sprite_columns` frames per row) from which the page's GIF player can pause and seek.
        """
        import imageio.v3 as iio

        file = f"{name}.gif"
        self._claim(name, file)
        if not frames:
            raise ArtifactError(f"{self.name}: gif {name!r} has no frames")
        stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
        iio.imwrite(self._staging / file, stack, extension=".gif",
                    duration=1000.0 / fps, loop=0)
        self.items.append({"kind": "gif", "name": name, "file": file,
                           "fps": fps, "frames": len(stack),
                           "width": int(stack.shape[2]), "height": int(stack.shape[1])})
        if sprite:
            self._sprite(self.items[-1], stack)

    def _sprite(self, item: dict, stack: np.ndarray) -> None:
        """Write a GIF's frames as a PNG grid, an asset named in the GIF's item."""
        import imageio.v3 as iio

        count, height, width = stack.shape[:3]
        columns = math.ceil(math.sqrt(count))
        grid = np.full((math.ceil(count / columns) * height, columns * width, 3), 255,
                       dtype=np.uint8)
        for i, frame in enumerate(stack):
            row, col = divmod(i, columns)
            grid[row * height:(row + 1) * height, col * width:(col + 1) * width] = frame
        buffer = io.BytesIO()
        iio.imwrite(buffer, grid, extension=".png", optimize=True)
        item["sprite"], item["sprite_columns"] = f"{item['name']}.frames.png", columns
        self.asset(item["sprite"], buffer.getvalue())

    def table(self, name: str, rows: Sequence[Mapping[str, Any]], *,
              columns: Sequence[str] | None = None) -> None:
        """Record a table (list of row dicts); it is rendered and exported as JSON and CSV."""
        self._claim(name)
        rows = [to_jsonable(dict(r)) for r in rows]
        columns = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
        self.items.append({"kind": "table", "name": name, "columns": columns, "rows": rows})

    def asset(self, name: str, data: bytes | str) -> None:
        """A file the page loads at run time (e.g. data for an interactive figure)."""
        self._claim(name, name)
        payload = data.encode() if isinstance(data, str) else data
        (self._staging / name).write_bytes(payload)
        self.items.append({"kind": "asset", "name": name, "file": name, "bytes": len(payload)})

    def metric(self, name: str, value: Any) -> None:
        """Record a number (or short string/list) the prose and site/data/ can use."""
        if name in self.metrics:
            raise ArtifactError(f"{self.name}: metric {name!r} recorded twice")
        self.metrics[name] = to_jsonable(value)

    def choice(self, name: str, value: Any) -> None:
        """Record a metric that is a choice the build made (a learning rate, "the best" X).

        Choices must be made on training or validation data only; a test scrambles the test
        labels and checks that no recorded choice changes.
        """
        self.metric(name, value)
        self.choices.append(name)

    def save(self, name: str, obj: Any) -> None:
        """Keep an object (weights, arrays) for downstream analyses' `ctx.load`."""
        if not _NAME.match(name):
            raise ArtifactError(f"{self.name}: saved object name {name!r} must be [A-Za-z0-9_.-]")
        folder = self._staging / "objects"
        folder.mkdir(exist_ok=True)
        torch.save(obj, folder / f"{name}.pt")

    # --- progress -------------------------------------------------------------------------
    def progress(self, iterable: Iterable | None = None, *, desc: str = "",
                 total: int | None = None, **kwargs: Any) -> tqdm:
        """A tqdm bar on stderr, labelled with the analysis name."""
        return tqdm(iterable, desc=f"  {self.name}: {desc}", total=total, leave=False,
                    file=sys.stderr, mininterval=1.0, dynamic_ncols=True, **kwargs)

    def log(self, message: str) -> None:
        """A progress line with the time since the analysis started."""
        self._log(f"  {self.name}: {message}")

    def timer(self) -> "Stopwatch":
        """A stopwatch: `with ctx.timer() as t: ...; t.seconds`."""
        return Stopwatch()


class Stopwatch:
    """Measures wall time of a block, synchronising CUDA so GPU work is counted."""

    seconds: float = 0.0

    def __enter__(self) -> "Stopwatch":
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._start


def table_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of a table."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()
