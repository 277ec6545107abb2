"""The interactive map's file format: written here, read by templates/static/tsne_map.js.

A map is two kinds of files, both assets of the section that draws it.

The points script (`map_points.js`), loaded with a <script> tag because browsers refuse
fetch() of local files on file:// pages. Its whole text is one line:

    window.mnistMapData=window.mnistMapData||{};window.mnistMapData["tsne"]={...};

The page names it in `<div class="tsne-map" data-src="..." data-key="tsne" data-figure="...">`
(`MAP_GLOBAL` and `MAP_KEY` here); the script loads `data-src`, reads
`window.mnistMapData[data-key]` and shows the map in place of the static figure `data-figure`.
The object is JSON with these fields:

- `version`: 1 (the format's version; the script does not read it).
- `n`: the number of points.
- `bounds`: `[x0, y0, span]`, the map's lower-left corner and the side of the square that
  holds it: coordinate = x0 + q / 65535 * span (and y0 for y). The script does not need it: it
  draws the quantised values, whose common scale already keeps the map's aspect ratio.
- `n_train`: an `index` below it is training image #index, otherwise test image
  #(index - n_train) (the tooltip's words).
- `colors`: one `#rrggbb` per digit, 0 to 9 (points and legend).
- `sheets`: the sprite sheets' file names, relative to the folder of the points script.
- `sheet_size`: thumbnails per sheet: point i is on sheet floor(i / sheet_size), at position
  i % sheet_size.
- `sheet_columns`: thumbnails per row of a sheet (`SHEET_COLUMNS`): position p is at column
  p % sheet_columns, row floor(p / sheet_columns).
- `thumb`: 28, a thumbnail's side in pixels (the script assumes 28).
- `data`: base64 of the points, little-endian, 9 bytes a point, one array after another:
  `index` uint32[n] (position in train + test) at byte 0, `x` uint16[n] at 4n, `y` uint16[n]
  at 6n, `label` uint8[n] at 8n. Every array starts at a multiple of its item size, so the
  script reads them as typed-array views of one buffer; it rejects a length other than 9n.
  `x` and `y` are quantised on one common scale (the longer side spans 0..65535, the shorter
  starts at 0); y grows upwards, and the script flips it for the screen.

Points are stored along a Z-order curve over the map (`morton_order`), thumbnails in the same
order: each sheet then covers one region, and pointing at an island loads one sheet.

The sprite sheets (`map_sprites_<k>.png`): PNGs with a 4-bit palette of `GREY_LEVELS` (16)
greys, index 0 white paper to 15 black ink, each thumbnail 28 x 28 pixels, `SHEET_COLUMNS` per
row, in the points' order. The script loads a sheet the first time a point on it is shown and
draws the thumbnail from it in the tooltip.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np

SHEET_COLUMNS = 100  # thumbnails per row of a sprite sheet: a 10,000 sheet is 2,800 px square
GREY_LEVELS = 16  # thumbnails keep 16 grey levels (4-bit PNG): 6.8 MB instead of 11.6 MB for 70k
MAP_KEY = "tsne"  # the points' key in window.mnistMapData (the page's data-key)
MAP_GLOBAL = "mnistMapData"  # the global object the points script fills


def quantize_xy(xy: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """uint16 coordinates [n, 2] on one common scale (keeps the aspect), and [x0, y0, span]."""
    xy = np.asarray(xy, dtype=np.float64)
    lo = xy.min(axis=0)
    span = float((xy.max(axis=0) - lo).max()) or 1.0
    q = np.rint((xy - lo) / span * 65535).clip(0, 65535).astype(np.uint16)
    return q, [float(lo[0]), float(lo[1]), span]


def morton_order(xy: np.ndarray) -> np.ndarray:
    """Indices that sort points along a Z-order curve, so that nearby points stay together.

    The map stores points (and their thumbnails) in this order: each sprite sheet then covers
    a compact region, so pointing at one island loads one sheet instead of all of them.
    """
    q, _ = quantize_xy(xy)

    def spread(v: np.ndarray) -> np.ndarray:  # 16 bits -> every other bit of 32
        v = v.astype(np.uint64)
        for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333),
                            (1, 0x55555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v

    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1))
    return np.argsort(code, kind="stable")


def encode_map_data(xy: np.ndarray, labels: np.ndarray, index: np.ndarray, *,
                    sheets: list[str], sheet_size: int, n_train: int,
                    colors: list[str]) -> str:
    """The map's points as a script that stores them in `window.mnistMapData.tsne` (the module
    docstring gives the format)."""
    n = len(xy)
    q, bounds = quantize_xy(xy)
    blob = (np.asarray(index, dtype="<u4").tobytes() + q[:, 0].astype("<u2").tobytes()
            + q[:, 1].astype("<u2").tobytes() + np.asarray(labels, dtype=np.uint8).tobytes())
    header = {"version": 1, "n": n, "bounds": bounds, "n_train": n_train, "colors": colors,
              "sheets": sheets, "sheet_size": sheet_size, "sheet_columns": SHEET_COLUMNS,
              "thumb": 28, "data": base64.b64encode(blob).decode("ascii")}
    body = json.dumps(header, separators=(",", ":"))
    return (f"window.{MAP_GLOBAL}=window.{MAP_GLOBAL}||{{}};"
            f"window.{MAP_GLOBAL}[{json.dumps(MAP_KEY)}]={body};\n")


def decode_map_data(text: str) -> dict:
    """Inverse of encode_map_data: header fields plus index, xy (de-quantised) and labels."""
    match = re.search(r"\]=(\{.*\});\s*$", text, re.S)
    if not match:
        raise ValueError("not a map data script")
    header = json.loads(match.group(1))
    n = header["n"]
    blob = base64.b64decode(header.pop("data"))
    if len(blob) != 9 * n:
        raise ValueError(f"map data holds {len(blob)} bytes, expected {9 * n}")
    index = np.frombuffer(blob, "<u4", n, 0)
    qx = np.frombuffer(blob, "<u2", n, 4 * n)
    qy = np.frombuffer(blob, "<u2", n, 6 * n)
    labels = np.frombuffer(blob, np.uint8, n, 8 * n)
    x0, y0, span = header["bounds"]
    xy = np.stack([x0 + qx / 65535 * span, y0 + qy / 65535 * span], axis=1)
    return {**header, "index": index.copy(), "xy": xy, "labels": labels.copy()}


def sprite_sheet_png(images: np.ndarray) -> bytes:
    """Images uint8 [m, 28, 28] as one 4-bit grey PNG, SHEET_COLUMNS per row, ink dark on white."""
    m, h, w = images.shape
    rows = -(-m // SHEET_COLUMNS)
    sheet = np.zeros((rows * h, SHEET_COLUMNS * w), np.uint8)
    tiles = images.reshape(m, h, w)
    for i in range(m):
        r, c = divmod(i, SHEET_COLUMNS)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tiles[i]
    levels = (sheet.astype(np.uint16) * (GREY_LEVELS - 1) + 127) // 255  # nearest of 16 levels
    from PIL import Image

    image = Image.fromarray(levels.astype(np.uint8), "P")
    # Palette index 0 = white paper ... 15 = black ink.
    step = 255 // (GREY_LEVELS - 1)
    image.putpalette([255 - i * step for i in range(GREY_LEVELS) for _ in range(3)])
    buffer = io.BytesIO()
    # zlib level 6, not optimize=True (level 9): 0.2 s of CPU per 10,000-thumbnail sheet against
    # 2.1 s, for files 3.3 % larger; it keeps the full map's draw stage near 9 s on two cores.
    image.save(buffer, "PNG", compress_level=6, bits=4)
    return buffer.getvalue()


def decode_sprite_sheet(png: bytes, count: int, size: int = 28) -> np.ndarray:
    """Inverse of sprite_sheet_png: uint8 ink images [count, size, size] (16 levels, 0..255)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    ink = 255 - rgb
    out = np.empty((count, size, size), np.uint8)
    for i in range(count):
        r, c = divmod(i, SHEET_COLUMNS)
        out[i] = ink[r * size:(r + 1) * size, c * size:(c + 1) * size]
    return out


def hex_color(rgb: tuple[float, ...]) -> str:
    """A matplotlib RGB tuple in [0, 1] as '#rrggbb'."""
    return "#" + "".join(f"{round(255 * v):02x}" for v in rgb[:3])
