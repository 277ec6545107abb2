"""The contexts an analysis's two stages see: `compute(ctx)` records results, `draw(ctx)` reads
them back and makes what a reader sees (figures, GIFs, tables, verdicts).

This is the recording API: how results are written, not what they are, so it is outside every
compute key (report/codekeys.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from report.streams import Streams, derive_seed

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ARRAYS, OBJECTS = "arrays", "objects"  # folders of a compute entry: ctx.array and ctx.save
_RESERVED_FILES = {"manifest.json", ARRAYS, OBJECTS}


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


class Results:
    """The read side of a compute entry: its metrics, arrays and saved objects."""

    def __init__(self, owner: str, name: str, folder: Path):
        self.owner, self.name, self.folder = owner, name, folder
        self._manifest: dict | None = None

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The metrics compute recorded (read-only)."""
        if self._manifest is None:
            self._manifest = json.loads((self.folder / "manifest.json").read_text())
        return MappingProxyType(self._manifest.get("metrics", {}))

    def metric(self, name: str) -> Any:
        """One recorded metric; a clear error when compute recorded no such metric."""
        if name not in self.metrics:
            raise ArtifactError(f"{self.owner}: {self.name} recorded no metric {name!r}")
        return self.metrics[name]

    def array(self, name: str) -> np.ndarray:
        """An array compute recorded with `ctx.array(name, values)`."""
        folder = self.folder / ARRAYS
        if _NAME.match(name) and (folder / f"{name}.npz").is_file():
            with np.load(folder / f"{name}.npz", allow_pickle=False) as stored:
                return stored["values"]
        if _NAME.match(name) and (folder / f"{name}.npy").is_file():  # results made before npz
            return np.load(folder / f"{name}.npy", allow_pickle=False)
        raise ArtifactError(f"{self.owner}: {self.name} recorded no array named {name!r}")

    def object(self, name: str) -> Any:
        """An object compute saved with `ctx.save(name, obj)`."""
        path = self.folder / OBJECTS / f"{name}.pt"
        if not _NAME.match(name) or not path.is_file():
            raise ArtifactError(f"{self.owner}: {self.name} saved no object named {name!r}")
        return torch.load(path, map_location="cpu", weights_only=False)


class Context:
    """What both stages of an analysis see: config, seed, named streams, data, upstream results,
    metrics, logging and progress."""

    def __init__(self, name: str, cfg: Any, *, seed: int, device: torch.device, staging: Path,
                 upstream: Mapping[str, Path], data_loader: Callable[[], Any] | None = None,
                 log: Callable[[str], None] = print):
        self.name = name
        self.cfg = cfg
        self.device = device
        self.seed = derive_seed(seed, name)
        self.streams = Streams(seed, name)
        self._staging = staging
        self._upstream = {u: Results(name, u, path) for u, path in upstream.items()}
        self._data_loader = data_loader
        self._log = log
        self.metrics: dict[str, Any] = {}
        self.choices: list[str] = []  # metrics that record a choice (see ComputeContext.choice)
        self.items: list[dict] = []  # figures, gifs, tables and assets, in creation order
        self._names: set[str] = set()
        self._files: set[str] = set()

    # --- inputs ---------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """The verified dataset, on `ctx.device` (loaded once per build, on first use)."""
        if self._data_loader is None:
            raise ArtifactError(f"{self.name}: this build has no dataset")
        return self._data_loader()

    def _up(self, upstream: str) -> Results:
        if upstream not in self._upstream:
            raise ArtifactError(f"{self.name}: {upstream!r} is not in its requires "
                                f"{sorted(self._upstream)}")
        return self._upstream[upstream]

    def load(self, upstream: str, name: str) -> Any:
        """An object an upstream analysis saved with `ctx.save`; it must be in `requires`."""
        return self._up(upstream).object(name)

    def metric_of(self, upstream: str, name: str) -> Any:
        """A metric an upstream analysis's compute recorded; it must be in `requires`."""
        return self._up(upstream).metric(name)

    def array_of(self, upstream: str, name: str) -> np.ndarray:
        """An array an upstream analysis's compute recorded; it must be in `requires`."""
        return self._up(upstream).array(name)

    # --- outputs --------------------------------------------------------------------------
    def metric(self, name: str, value: Any) -> None:
        """Record a number (or short string/list) the prose and site/data/ can use."""
        if name in self.metrics:
            raise ArtifactError(f"{self.name}: metric {name!r} recorded twice")
        self.metrics[name] = to_jsonable(value)

    def _claim(self, name: str, file: str | None = None) -> None:
        if not _NAME.match(name):
            raise ArtifactError(f"{self.name}: artifact name {name!r} must be [A-Za-z0-9_.-]")
        if name in self._names:
            raise ArtifactError(f"{self.name}: artifact {name!r} written twice")
        # Items share the entry folder: one file must not overwrite another.
        if file is not None and (file in self._files or file in _RESERVED_FILES):
            raise ArtifactError(f"{self.name}: artifact {name!r} would overwrite file {file!r}")
        self._names.add(name)
        if file is not None:
            self._files.add(file)

    # --- progress -------------------------------------------------------------------------
    def progress(self, iterable: Iterable | None = None, *, desc: str = "",
                 total: int | None = None, **kwargs: Any) -> Any:
        """A tqdm bar on a terminal; elsewhere (a file, a CI log) a log line every tenth."""
        label = f"  {self.name}: {desc}"
        if sys.stderr.isatty():
            return tqdm(iterable, desc=label, total=total, leave=False, file=sys.stderr,
                        mininterval=1.0, dynamic_ncols=True, **kwargs)
        return LineProgress(iterable, desc=label, total=total, log=self._log)

    def log(self, message: str) -> None:
        """A progress line, labelled with the analysis name."""
        self._log(f"  {self.name}: {message}")

    def timer(self) -> "Stopwatch":
        """A stopwatch: `with ctx.timer() as t: ...; t.seconds`."""
        return Stopwatch()


class ComputeContext(Context):
    """What `compute(ctx)` sees: it trains and measures, and records raw results.

    It records metrics, choices, arrays (`ctx.array`) and saved objects (`ctx.save`); figures,
    GIFs, tables and verdicts belong to `draw`, which reads these back.
    """

    def choice(self, name: str, value: Any) -> None:
        """Record a metric that is a choice the build made (a learning rate, "the best" X).

        Choices must be made on training or validation data only; a test scrambles the test
        labels and checks that no recorded choice changes.
        """
        self.metric(name, value)
        self.choices.append(name)

    def array(self, name: str, values: Any) -> None:
        """Record an array (coordinates, snapshots, samples, counts) for `draw` to read."""
        self._claim(name)
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        values = np.asarray(values)
        if values.dtype == object:
            raise ArtifactError(f"{self.name}: array {name!r} holds Python objects; record "
                                "numbers (or use ctx.save)")
        folder = self._staging / ARRAYS
        folder.mkdir(exist_ok=True)
        # Compressed: generated digits and histogram snapshots are mostly zeros (the GAN's
        # frames shrink about fivefold), and results are committed in frozen/.
        np.savez_compressed(folder / f"{name}.npz", values=values)
        self.items.append({"kind": "array", "name": name, "shape": list(values.shape),
                           "dtype": str(values.dtype)})

    def save(self, name: str, obj: Any) -> None:
        """Keep an object (weights) for `draw` (`ctx.saved`) and downstream `ctx.load`."""
        if not _NAME.match(name):
            raise ArtifactError(f"{self.name}: saved object name {name!r} must be [A-Za-z0-9_.-]")
        folder = self._staging / OBJECTS
        folder.mkdir(exist_ok=True)
        torch.save(obj, folder / f"{name}.pt")


class DrawContext(Context):
    """What `draw(ctx)` sees: the compute results, and the writers of everything a reader sees.

    It trains nothing and runs on the CPU. `ctx.results` holds compute's metrics, `ctx.array`
    and `ctx.saved` its arrays and objects; `ctx.metric` records derived numbers and verdicts
    (never a name compute already recorded).
    """

    def __init__(self, name: str, cfg: Any, *, results: Path, **kwargs: Any):
        super().__init__(name, cfg, device=torch.device("cpu"), **kwargs)
        self._results = Results(name, name, results)

    @property
    def results(self) -> Mapping[str, Any]:
        """The metrics this analysis's compute recorded (read-only)."""
        return self._results.metrics

    def array(self, name: str) -> np.ndarray:
        """An array this analysis's compute recorded."""
        return self._results.array(name)

    def saved(self, name: str) -> Any:
        """An object this analysis's compute saved."""
        return self._results.object(name)

    def metric(self, name: str, value: Any) -> None:
        """Record a derived number or verdict (its name must not be one compute recorded)."""
        if name in self.results:
            raise ArtifactError(f"{self.name}: draw records metric {name!r}, which compute "
                                "already recorded")
        super().metric(name, value)

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


class LineProgress:
    """tqdm's interface for logs that are not a terminal: a line at every tenth of the total
    (or every 100 updates without a total), never carriage-return frames."""

    def __init__(self, iterable: Iterable | None, *, desc: str, total: int | None,
                 log: Callable[[str], None]):
        self.iterable, self.desc, self.log = iterable, desc, log
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self._shown, self._postfix = total, 0, 0, ""
        self._start = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        for value in self.iterable or ():
            yield value
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count `n` more steps; log when a new tenth is reached."""
        self.n += n
        step = self.n * 10 // self.total if self.total else self.n // 100
        if step > self._shown:
            self._shown = step
            self._line()

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the next line (loss, accuracy)."""
        self._postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: lines are already written."""

    def _line(self) -> None:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        postfix = f", {self._postfix}" if self._postfix else ""
        self.log(f"{self.desc} {done} ({time.perf_counter() - self._start:.0f} s{postfix})")


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
