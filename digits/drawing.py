"""The drawing pad's network and preprocessing, in Python; templates/static/draw_pad.js mirrors it.

The hidden-layers section's draw stage (never a compute stage: nothing here changes a result)
turns the classifiers section's stronger CNN (object `best`: BestCNN's state dict, mean, std)
into a script the page runs in plain JavaScript:

1. `fold_batch_norm`: each batch norm folded into the convolution or linear layer before it, as
   evaluation mode computes it: with s = gamma / sqrt(running_var + eps), the weight of output
   unit o becomes W[o] * s[o] and its bias (b[o] - running_mean[o]) * s[o] + beta[o]. Dropout is
   the identity in evaluation mode. What is left is a list of `Layer`s: convolution 3x3 with
   same padding (+ ReLU), max-pool 2, dense (+ ReLU), after the input standardisation
   (x - mean) / std, which stays a separate step because the zero padding of the first
   convolution is zero in standardised units (folding it into conv 1 would change the borders).
2. `half_rounded`: the weights rounded to float16, as the page stores them.
3. `encode_pad_script` / `decode_pad_script`: the script asset (format below).
4. `forward`: the forward pass the script runs, in numpy, computed the same way (each 3x3
   convolution as nine shifted multiply-adds over the zero-padded maps, in float32), returning
   the logits and every convolution's maps after ReLU. `folded_module` is the same network in
   torch, the reference the tests compare both against.
5. `preprocess`: a drawing made MNIST-like, as the page does it (NIST's digits were prepared
   this way for MNIST): the bounding box of the ink scaled, aspect kept, so that its longer
   side is `BOX` (20) pixels, by area averaging (every output pixel the mean of the ink it
   covers: anti-aliased), then placed in a `SIDE` x `SIDE` (28) field at the whole-pixel offset
   that brings its centre of mass closest to the field's centre; intensities 0..255, ink
   bright on black, as MNIST stores them.

The script asset, one line:

    window.mnistPadModel={...};

with the JSON fields: `version` (1); `mean`, `std` (the input standardisation); `layers`, each
`{"kind": "conv" | "pool" | "dense", "relu": bool, "shape": [...], "weight": offset,
"bias": offset}` (conv shape [out, in, 3, 3], dense [out, in]; offsets in float16 elements
into `weights`; pool has neither); `weights`: base64 of every weight and bias as float16,
little-endian, in layer order; `examples`: test digits the page can load into the pad, each
`{"index", "label", "predicted", "probability", "mistake", "pixels"}` (pixels: base64 of 784
uint8, row-major, as MNIST stores them; predicted and probability: the classifiers section's
recorded test logits of this network).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from digits.models import BestCNN, Standardize

PAD_GLOBAL = "mnistPadModel"  # the global the script asset sets (draw_pad.js reads it)
SIDE = 28  # the field, as MNIST's
BOX = 20  # the longer side of the scaled ink's bounding box, as MNIST's


@dataclass
class Layer:
    """One step of the folded network: conv 3x3 same padding, max-pool 2 or dense."""

    kind: str  # "conv" | "pool" | "dense"
    weight: np.ndarray | None = None  # conv [out, in, 3, 3], dense [out, in]; float32
    bias: np.ndarray | None = None  # [out], float32
    relu: bool = False


@dataclass
class PadNet:
    """The network the page runs: input standardisation, then `layers`."""

    mean: float
    std: float
    layers: list[Layer]

    @property
    def parameters(self) -> int:
        return sum(layer.weight.size + layer.bias.size for layer in self.layers
                   if layer.weight is not None)

    @property
    def conv_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == "conv"]


# --- from the trained model -----------------------------------------------------------------


def best_cnn(saved: dict) -> BestCNN:
    """The classifiers section's saved stronger CNN, rebuilt in evaluation mode on the CPU."""
    state = saved["state_dict"]
    width = state["features.0.0.weight"].shape[0]
    hidden = state["classifier.1.weight"].shape[0]
    model = BestCNN(saved["mean"], saved["std"], width=width, hidden=hidden,
                    dropout=saved.get("dropout", 0.4))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    return model.eval()


def fold_batch_norm(model: nn.Module) -> PadNet:
    """The model's layers in order with every batch norm folded in (evaluation mode).

    Walks the leaf modules: Conv2d (3x3, padding 1, stride 1) and Linear start a layer,
    BatchNorm folds into it, ReLU marks it, MaxPool2d(2) is a layer, Flatten and Dropout are
    the identity here, Standardize gives mean and std. Anything else is refused.
    """
    mean, std = 0.0, 1.0
    layers: list[Layer] = []
    for module in model.modules():
        if list(module.children()):
            continue
        if isinstance(module, Standardize):
            mean, std = float(module.mean), float(module.std)
        elif isinstance(module, nn.Conv2d):
            if (module.kernel_size != (3, 3) or module.padding != (1, 1)
                    or module.stride != (1, 1) or module.groups != 1):
                raise ValueError(f"the pad runs 3x3 same convolutions only, not {module}")
            layers.append(_layer("conv", module))
        elif isinstance(module, nn.Linear):
            layers.append(_layer("dense", module))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _fold(layers[-1], module)
        elif isinstance(module, nn.ReLU):
            layers[-1].relu = True
        elif isinstance(module, nn.MaxPool2d):
            if module.kernel_size not in (2, (2, 2)) or module.stride not in (2, (2, 2)):
                raise ValueError(f"the pad runs 2x2 max-pooling only, not {module}")
            layers.append(Layer("pool"))
        elif not isinstance(module, (nn.Flatten, nn.Dropout)):
            raise ValueError(f"the pad cannot run {type(module).__name__}")
    return PadNet(mean, std, layers)


def _layer(kind: str, module: nn.Module) -> Layer:
    weight = module.weight.detach().double().numpy()
    bias = (module.bias.detach().double().numpy() if module.bias is not None
            else np.zeros(weight.shape[0]))
    return Layer(kind, weight, bias)


def _fold(layer: Layer, bn: nn.Module) -> None:
    """Fold evaluation-mode batch norm into `layer` with torch's own fusion (in float64 until
    the end)."""
    fuse = fuse_conv_bn_weights if layer.kind == "conv" else fuse_linear_bn_weights
    weight, bias = fuse(torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                        bn.running_mean.double(), bn.running_var.double(), bn.eps,
                        bn.weight.detach().double(), bn.bias.detach().double())
    layer.weight, layer.bias = weight.detach().numpy(), bias.detach().numpy()


def as_float32(net: PadNet) -> PadNet:
    """The same network with float32 weights (what torch and the page compute with)."""
    return _cast(net, lambda a: a.astype(np.float32))


def half_rounded(net: PadNet) -> PadNet:
    """Weights and biases rounded to float16 (what the page stores), held as float32."""
    return _cast(net, lambda a: a.astype(np.float16).astype(np.float32))


def _cast(net: PadNet, cast) -> PadNet:
    def apply(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else cast(a)
    return PadNet(net.mean, net.std, [Layer(layer.kind, apply(layer.weight), apply(layer.bias),
                                            layer.relu) for layer in net.layers])


def folded_module(net: PadNet) -> nn.Sequential:
    """`net` as a torch module in float32: uint8-scaled input [B, 1, 28, 28] in [0, 1] -> logits."""
    modules: list[nn.Module] = [Standardize(net.mean, net.std)]
    flat = False
    for layer in net.layers:
        if layer.kind == "pool":
            modules.append(nn.MaxPool2d(2))
            continue
        if layer.kind == "conv":
            out, inp = layer.weight.shape[:2]
            module: nn.Module = nn.Conv2d(inp, out, 3, padding=1)
        else:
            if not flat:
                modules.append(nn.Flatten())
                flat = True
            module = nn.Linear(layer.weight.shape[1], layer.weight.shape[0])
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(layer.weight.astype(np.float32)))
            module.bias.copy_(torch.from_numpy(layer.bias.astype(np.float32)))
        modules.append(module)
        if layer.relu:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules).eval()


# --- the forward pass the page runs, in numpy -------------------------------------------------


def forward(net: PadNet, images: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 images [B, 28, 28] -> (logits [B, classes], each conv layer's maps after its ReLU
    [B, C, H, W]), in float32, computed as draw_pad.js computes them."""
    x = ((np.asarray(images, np.float32) / np.float32(255) - np.float32(net.mean))
         / np.float32(net.std))[:, None]
    maps = []
    for layer in net.layers:
        if layer.kind == "conv":
            x = conv3x3(x, layer.weight.astype(np.float32), layer.bias.astype(np.float32))
        elif layer.kind == "pool":
            b, c, h, w = x.shape
            x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2).max((3, 5))
            continue
        else:
            x = x.reshape(len(x), -1) @ layer.weight.astype(np.float32).T \
                + layer.bias.astype(np.float32)
        if layer.relu:
            x = np.maximum(x, np.float32(0))
        if layer.kind == "conv":
            maps.append(x)
    return x, maps


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Same-padded 3x3 convolution (cross-correlation, as torch) of x [B, in, H, W]: nine
    shifted copies of the zero-padded input, each weighted and summed into the output."""
    b, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.broadcast_to(bias[None, :, None, None], (b, weight.shape[0], h, w)).copy()
    for dy in range(3):
        for dx in range(3):
            shifted = padded[:, :, dy:dy + h, dx:dx + w].reshape(b, -1, h * w)
            out += np.matmul(weight[:, :, dy, dx], shifted).reshape(out.shape)
    return out


def multiply_adds(net: PadNet, side: int = SIDE) -> int:
    """Multiply-adds of one forward pass of a side x side image."""
    total, size = 0, side
    for layer in net.layers:
        if layer.kind == "conv":
            total += layer.weight.size * size * size
        elif layer.kind == "pool":
            size //= 2
        else:
            total += layer.weight.size
    return total


# --- the script asset -------------------------------------------------------------------------


def encode_pad_script(net: PadNet, examples: list[dict]) -> str:
    """The network (float16) and example digits as the script the page loads (module doc)."""
    blobs, layers, offset = [], [], 0
    for layer in net.layers:
        entry: dict = {"kind": layer.kind, "relu": layer.relu}
        if layer.weight is not None:
            entry["shape"] = list(layer.weight.shape)
            for key in ("weight", "bias"):
                values = np.asarray(getattr(layer, key), dtype="<f2").ravel()
                entry[key] = offset
                blobs.append(values.tobytes())
                offset += values.size
        layers.append(entry)
    shown = [{**{k: v for k, v in e.items() if k != "pixels"},
              "pixels": base64.b64encode(np.asarray(e["pixels"], np.uint8).tobytes())
              .decode("ascii")} for e in examples]
    body = {"version": 1, "mean": net.mean, "std": net.std, "layers": layers,
            "weights": base64.b64encode(b"".join(blobs)).decode("ascii"), "examples": shown}
    return f"window.{PAD_GLOBAL}={json.dumps(body, separators=(',', ':'))};\n"


def decode_pad_script(text: str) -> tuple[PadNet, list[dict]]:
    """Inverse of encode_pad_script: the network (float16 values as float32) and the examples
    (pixels as uint8 [28, 28])."""
    match = re.fullmatch(rf"window\.{PAD_GLOBAL}=(\{{.*\}});\s*", text, re.S)
    if not match:
        raise ValueError("not a drawing-pad model script")
    body = json.loads(match.group(1))
    values = np.frombuffer(base64.b64decode(body["weights"]), "<f2").astype(np.float32)
    layers = []
    for entry in body["layers"]:
        layer = Layer(entry["kind"], relu=entry["relu"])
        if "shape" in entry:
            size = math.prod(entry["shape"])
            layer.weight = values[entry["weight"]:entry["weight"] + size].reshape(entry["shape"])
            layer.bias = values[entry["bias"]:entry["bias"] + entry["shape"][0]]
        layers.append(layer)
    examples = [{**e, "pixels": np.frombuffer(base64.b64decode(e["pixels"]), np.uint8)
                 .reshape(SIDE, SIDE)} for e in body["examples"]]
    return PadNet(body["mean"], body["std"], layers), examples


# --- MNIST-style preprocessing of a drawing ---------------------------------------------------


def area_weights(n: int, scale: float) -> np.ndarray:
    """[m, n] for n source cells scaled by `scale` into m = ceil(n * scale) output cells:
    output cell j covers source [j / scale, (j + 1) / scale); each weight is the share of that
    span a source cell fills (what lies beyond the source is blank), so a row is the mean ink
    over the output cell's area."""
    m = max(1, math.ceil(n * scale - 1e-9))
    out = np.zeros((m, n))
    for j in range(m):
        a, b = j / scale, (j + 1) / scale
        for i in range(int(math.floor(a)), min(n, int(math.ceil(b)))):
            overlap = min(i + 1, b) - max(i, a)
            if overlap > 0:
                out[j, i] = overlap * scale
    return out


def round_half_up(x):
    """floor(x + 0.5): JavaScript's Math.round, which draw_pad.js uses (numpy's rounds to even)."""
    return np.floor(np.asarray(x, np.float64) + 0.5)


def preprocess(ink: np.ndarray) -> np.ndarray:
    """A drawing [H, W] of ink intensities (0 = paper, up to 255) -> uint8 [28, 28] as MNIST's.

    The bounding box of the non-zero ink, scaled by one factor on both axes so that its longer
    side is BOX pixels (the shorter keeps the aspect and may end within a pixel, which is then
    partly inked), by area averaging; then placed in
    the SIDE x SIDE field at the whole-pixel offset round(SIDE / 2 - centre of mass) (pixel
    centres at i + 0.5), what falls outside cut off; values rounded half up to 0..255.
    """
    ink = np.asarray(ink, np.float64)
    out = np.zeros((SIDE, SIDE), np.uint8)
    inked = ink > 0
    rows, cols = np.flatnonzero(inked.any(1)), np.flatnonzero(inked.any(0))
    if not len(rows):
        return out
    box = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = box.shape
    scale = BOX / max(h, w)
    small = area_weights(h, scale) @ box @ area_weights(w, scale).T
    th, tw = small.shape
    total = small.sum()
    if total <= 0:
        return out
    cy = float(((np.arange(th) + 0.5) * small.sum(1)).sum() / total)
    cx = float(((np.arange(tw) + 0.5) * small.sum(0)).sum() / total)
    oy, ox = int(round_half_up(SIDE / 2 - cy)), int(round_half_up(SIDE / 2 - cx))
    field = np.zeros((SIDE, SIDE))
    y0, x0 = max(0, oy), max(0, ox)
    y1, x1 = min(SIDE, oy + th), min(SIDE, ox + tw)
    if y1 > y0 and x1 > x0:
        field[y0:y1, x0:x1] = small[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    out[:] = np.clip(round_half_up(field), 0, 255).astype(np.uint8)
    return out


# --- what the section shows -------------------------------------------------------------------


def pad_examples(images: np.ndarray, labels: np.ndarray, logits: np.ndarray, correct: int,
                 mistakes: int) -> list[dict]:
    """Test digits for the pad's buttons: the first test images the network reads right, one
    per digit, `correct` of them; then its `mistakes` most confident mistakes (most confident
    first; ties in index order, as the classifiers section's gallery)."""
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    predicted = probs.argmax(1)
    right, seen = [], set()
    for i in np.flatnonzero(predicted == labels):
        if len(right) == correct:
            break
        if int(labels[i]) not in seen:
            seen.add(int(labels[i]))
            right.append(int(i))
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:mistakes]
    return [{"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
             "probability": float(probs[i, predicted[i]]), "mistake": mistake,
             "pixels": np.asarray(images[i], np.uint8)}
            for chosen, mistake in ((right, False), (wrong, True)) for i in chosen]
