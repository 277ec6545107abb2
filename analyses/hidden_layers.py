"""Visualizing the trained hidden layers: filters, feature maps of one digit, saliency per class.

`compute` loads the classifiers section's model 2 and records its filters, the feature maps of
a right and a wrong test digit, saliency maps and the shares of saliency on ink; `draw` makes
the figures and the verdict from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from digits import drawing
from digits.metrics import accuracy
from digits.models import Model2
from digits.plots import new_figure
from digits.recording import capture_activations
from digits.sampling import subset_index
from digits.training import predict_logits, to_input
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, compare

LAYERS = ("conv1", "conv2", "fc1", "fc2")
EXAMPLES = ("correct", "wrong")  # the two digits followed through every layer


@dataclass(frozen=True)
class Config:
    """Knobs of the hidden-layers section (it trains nothing: it reads the classifiers' model 2)."""

    example: int = 0  # the shown test image: the first correctly classified one from here on
    saliency_examples: int = 4  # digits (distinct, seeded) whose per-class saliency is shown
    # Test images (a seeded subset) over which the saliency-on-ink claim is measured: one
    # forward and backward pass of the true class each, about a second for 200 on 2 CPU cores.
    saliency_images: int = 200


ANALYSIS = Analysis(
    name="hidden_layers",
    requires=("dataset", "classifiers"),
    config=Config(),
    quick={},  # nothing to shorten: forward and backward passes of one trained model
)


# --- helpers (pure, tested in tests/test_hidden_layers.py) -------------------------------------


def load_model2(ctx: ComputeContext) -> Model2:
    """The two-conv network as trained by the classifiers section, in eval mode on the CPU."""
    saved = ctx.load("classifiers", "model2")
    model = Model2(saved["mean"], saved["std"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def layer_kernels(model: Model2, layer: str) -> np.ndarray:
    """The named conv layer's kernels [out, in, k, k] as numpy."""
    weight = getattr(model, layer).weight
    if weight.dim() != 4:
        raise ValueError(f"{layer} is not a convolution (weight {tuple(weight.shape)})")
    return weight.detach().cpu().numpy()


@torch.no_grad()
def activations(model: Model2, image: torch.Tensor) -> dict[str, np.ndarray]:
    """What each layer passes on for one uint8 image [28, 28]: ReLU maps, fc1 units, class probs."""
    with capture_activations(model, LAYERS) as capture:
        model(to_input(image[None]))
    out = {name: F.relu(capture.outputs[name][0]).cpu().numpy() for name in LAYERS[:3]}
    out["fc2"] = F.softmax(capture.outputs["fc2"][0], dim=0).cpu().numpy()
    return out


def true_class_saliency(model: Model2, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 500) -> np.ndarray:
    """d logit_label / d pixel of each uint8 image [N, 28, 28] for its own label -> [N, 28, 28]."""
    out = []
    for start in range(0, len(labels), batch_size):
        x = to_input(images[start:start + batch_size]).requires_grad_(True)
        rows = torch.arange(x.shape[0])
        # Image i's input only influences row i's logits, so one backward gives all gradients
        # (autograd.grad: the gradient of the input only, none left on the weights).
        (grad,) = torch.autograd.grad(model(x)[rows, labels[start:start + batch_size]].sum(), x)
        out.append(grad[:, 0].detach().cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, 28, 28), np.float32)


def ink_shares(images: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: the share of |saliency| on ink pixels (> 0), and the share of pixels inked.

    If the network's sensitivity were spread evenly, the first would equal the second.
    """
    ink = images.reshape(len(images), -1) > 0
    weight = np.abs(saliency.reshape(len(saliency), -1)).astype(np.float64)
    total = np.maximum(weight.sum(1), 1e-30)
    return (weight * ink).sum(1) / total, ink.mean(1)


def input_saliency(model: Model2, image: torch.Tensor) -> np.ndarray:
    """d logit_c / d pixel for every class c [10, 28, 28] (pixels scaled to [0, 1])."""
    x = to_input(image[None]).repeat(10, 1, 1, 1).requires_grad_(True)
    logits = model(x)
    # Row c's input only influences row c's logits, so one backward gives all ten gradients.
    (grad,) = torch.autograd.grad(logits[torch.arange(10), torch.arange(10)].sum(), x)
    return grad[:, 0].detach().cpu().numpy()


# --- compute -----------------------------------------------------------------------------------


def compute(ctx: ComputeContext) -> None:
    """Filters, a right and a wrong test image through every layer, and saliency."""
    model = load_model2(ctx)
    test_x, test_y = ctx.data.test_images.cpu(), ctx.data.test_labels.cpu()
    probs = F.softmax(predict_logits(model, test_x), dim=1)
    ctx.metric("test_accuracy", accuracy(test_y, probs.argmax(1)))
    record_weights(ctx, model)
    record_digits_through_layers(ctx, model, test_x, test_y, probs)
    measured = measure_saliency(ctx, model, test_x, test_y)
    record_saliency_maps(ctx, model, test_x, probs.argmax(1),
                         example_images(ctx, measured, test_y))


def record_weights(ctx: ComputeContext, model: Model2) -> None:
    """conv1's and conv2's kernels and fc2's weight matrix.

    float16: model 2 is saved in half precision (analyses/classifiers.py), so its weights are
    float16 values and these arrays hold them exactly.
    """
    for layer in ("conv1", "conv2"):
        ctx.array(f"{layer}_kernels", layer_kernels(model, layer).astype(np.float16))
    ctx.array("fc2_weights", model.fc2.weight.detach().cpu().numpy().astype(np.float16))


def record_digits_through_layers(ctx: ComputeContext, model: Model2, test_x: torch.Tensor,
                                 test_y: torch.Tensor, probs: torch.Tensor) -> None:
    """One digit through every layer: a correct one and the most confident mistake."""
    cfg: Config = ctx.cfg
    predicted = probs.argmax(1)
    right = torch.nonzero(predicted[cfg.example:] == test_y[cfg.example:])
    if not len(right):
        raise RuntimeError("model 2 classified no test image correctly from cfg.example on")
    correct = int(right[0, 0]) + cfg.example
    wrong_mask = predicted != test_y
    if not wrong_mask.any():
        raise RuntimeError("model 2 made no mistake on the test set: there is no wrong example")
    wrong = int(torch.argmax(torch.where(wrong_mask, probs.max(1).values, -1.0)))
    ctx.metric("mistakes", int(wrong_mask.sum()))
    for key, index in zip(EXAMPLES, (correct, wrong)):
        acts = activations(model, test_x[index])
        label, pred = int(test_y[index]), int(predicted[index])
        for name, value in {"index": index, "label": label, "predicted": pred,
                            "probability": float(probs[index, pred]),
                            "true_probability": float(probs[index, label])}.items():
            ctx.metric(f"{key}_{name}", value)
        for layer in LAYERS[:3]:
            # Measured on the float32 maps: the float16 arrays below could round a tiny
            # positive value to zero.
            ctx.metric(f"{key}_{layer}_active", float((acts[layer] > 0).mean()))
        # The conv maps (58 K values per digit) in half precision, for pictures only; fc1's
        # 128 units and fc2's 10 probabilities as they are.
        for layer, values in acts.items():
            dtype = np.float16 if layer.startswith("conv") else np.float32
            ctx.array(f"{key}_{layer}", values.astype(dtype))


def measure_saliency(ctx: ComputeContext, model: Model2, test_x: torch.Tensor,
                     test_y: torch.Tensor) -> np.ndarray:
    """Share of the true class's |saliency| on ink and the share of ink, per test image.

    Returns the indices of the measured images (a seeded subset of the test set).
    """
    cfg: Config = ctx.cfg
    index = subset_index(len(test_y), cfg.saliency_images, ctx.streams.torch("saliency_images"))
    maps = true_class_saliency(model, test_x[index], test_y[index])
    on_ink, ink = ink_shares(test_x[index].numpy(), maps)
    ctx.metric("saliency_images", len(index))
    ctx.array("saliency_on_ink_shares", on_ink)
    ctx.array("ink_shares", ink)
    return index


def example_images(ctx: ComputeContext, candidates: np.ndarray,
                   test_y: torch.Tensor) -> list[int]:
    """The first image of each of a few distinct, seeded digits (from `candidates` if there)."""
    cfg: Config = ctx.cfg
    labels = test_y.numpy()
    digits = np.sort(ctx.streams.numpy("saliency_digits").choice(
        10, size=cfg.saliency_examples, replace=False))
    chosen = []
    for d in digits:
        pool = candidates[labels[candidates] == d]
        chosen.append(int(pool[0]) if len(pool) else int(np.flatnonzero(labels == d)[0]))
    return chosen


def record_saliency_maps(ctx: ComputeContext, model: Model2, test_x: torch.Tensor,
                         predicted: torch.Tensor, chosen: list[int]) -> None:
    """All ten classes' saliency maps for a few test digits, and what the model predicts."""
    ctx.metric("saliency_indices", chosen)
    # float32: gradients can be small enough for half precision to lose them (125 KB for 4).
    ctx.array("saliency_maps", np.stack([input_saliency(model, test_x[i]) for i in chosen]))
    ctx.array("saliency_predicted", predicted[chosen].numpy().astype(np.uint8))


# --- draw: figures (pure, tested in tests/test_hidden_layers.py) -------------------------------


def mosaic(tiles: np.ndarray, ncols: int, gap: int = 1) -> np.ndarray:
    """Tiles [n, h, w] in rows of `ncols`, separated by `gap` NaN pixels (drawn blank)."""
    n, h, w = tiles.shape
    nrows = -(-n // ncols)
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def _diverging(ax, image: np.ndarray, limit: float, **kwargs):
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    im = ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest", **kwargs)
    ax.grid(False)
    return im


def conv_filters_figure(kernels: np.ndarray, layer: str):
    """Every kernel of one conv layer on one zero-centred diverging scale.

    One input channel: the filters in rows of 8. Several: one column per filter (output
    channel), one row per input channel it reads.
    """
    out, inp, k, _ = kernels.shape
    if inp == 1:
        image = mosaic(kernels[:, 0], 8)
        fig, axes = new_figure(4.2, 2.6)
    else:
        image = mosaic(kernels.transpose(1, 0, 2, 3).reshape(inp * out, k, k), out)
        fig, axes = new_figure(9.0, 9.0 * image.shape[0] / image.shape[1] + 0.9)
    ax = axes[0, 0]
    im = _diverging(ax, image, float(np.abs(kernels).max()))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{layer}: {out} filters of {inp} x {k}x{k} weights", fontsize=9)
    if inp > 1:
        ax.set_xlabel(f"output channel ({layer} filter) 1 to {out}")
        ax.set_ylabel(f"input channel 1 to {inp}")
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.02)
    return fig


def fc_weights_figure(weight: np.ndarray, layer: str):
    """A fully connected weight matrix [out, in] on a zero-centred diverging scale."""
    fig, axes = new_figure(7.5, 2.4)  # tall enough for ten class labels readable on a phone
    ax = axes[0, 0]
    im = _diverging(ax, weight, float(np.abs(weight).max()), aspect="auto")
    ax.set_yticks(range(weight.shape[0]))
    ax.set_ylabel("class")
    ax.set_xlabel(f"{layer} input unit")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return fig


def feature_map_figure(image: np.ndarray, acts: dict[str, np.ndarray], title: str):
    """Input, conv1 and conv2 maps, fc1 units and class probabilities of one image."""
    fig, _ = new_figure(9, 6.6)
    fig.delaxes(fig.axes[0])
    grid = fig.add_gridspec(3, 2, width_ratios=[1, 3.2], height_ratios=[1.45, 1.45, 1],
                            hspace=0.35, wspace=0.12)
    panels = [("input", fig.add_subplot(grid[0, 0]), image, "gray_r"),
              ("conv1", fig.add_subplot(grid[0, 1]), mosaic(acts["conv1"], 8, 2), "magma"),
              ("conv2", fig.add_subplot(grid[1, :]), mosaic(acts["conv2"], 16, 2), "magma")]
    for name, ax, data, cmap in panels:
        shape = "28×28" if name == "input" else "×".join(map(str, acts[name].shape))
        note = "" if name == "input" else " after ReLU"
        ax.imshow(data, cmap=cmap, interpolation="nearest", vmin=0)
        ax.set_title(f"{name} ({shape}){note}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[2, 0])
    probs = acts["fc2"]
    ax.bar(range(10), probs, color=["C3" if i == probs.argmax() else "0.6" for i in range(10)])
    ax.set_xticks(range(10))
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)
    ax.set_title("class probabilities", fontsize=8)
    ax = fig.add_subplot(grid[2, 1])
    ax.imshow(acts["fc1"].reshape(4, 32), cmap="magma", vmin=0, interpolation="nearest")
    ax.set_title("fc1 after ReLU (128 units as 4×32)", fontsize=8)
    ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def saliency_figure(images: np.ndarray, maps: np.ndarray, labels, predicted):
    """Rows: examples; columns: the image, then the saliency map of each class."""
    n = len(images)
    # Rows tall enough for two-line titles at a size readable on a phone (digits.plots).
    fig, axes = new_figure(9.5, 1.3 * n + 0.3, nrows=n, ncols=11)
    for r in range(n):
        axes[r, 0].imshow(images[r], cmap="gray_r", interpolation="nearest")
        axes[r, 0].set_title(f"label {labels[r]}", fontsize=7)
        limit = float(np.abs(maps[r]).max())
        for c in range(10):
            ax = axes[r, c + 1]
            _diverging(ax, maps[r, c], limit)
            mark = "\n(pred.)" if c == predicted[r] else ""
            ax.set_title(f"class {c}{mark}", fontsize=6.5,
                         color="C3" if c == predicted[r] else "black")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    return fig


def shares_figure(ink: np.ndarray, on_ink: np.ndarray):
    """Per image: share of |saliency| on ink against share of pixels inked, and y = x."""
    fig, axes = new_figure(4.2, 3.6)
    ax = axes[0, 0]
    ax.scatter(ink, on_ink, s=8, alpha=0.6, color="C0", lw=0)
    ax.plot([0, 1], [0, 1], color="k", lw=0.7, ls="--", label="no preference for ink")
    ax.set_xlim(0, max(0.05, 1.15 * float(ink.max())))
    ax.set_ylim(0, 1)
    ax.set_xlabel("share of the image's pixels that carry ink")
    ax.set_ylabel("share of |saliency| on those pixels")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# --- draw --------------------------------------------------------------------------------------


def draw(ctx: DrawContext) -> None:
    """The filter, feature-map and saliency figures, the saliency-on-ink verdict, and the
    drawing pad's network."""
    draw_filters(ctx)
    draw_digits_through_layers(ctx)
    draw_saliency(ctx)
    draw_pad(ctx)


def draw_filters(ctx: DrawContext) -> None:
    """Trained filters: conv1, conv2 (the original showed conv1 under conv2's title), fc2."""
    for layer in ("conv1", "conv2"):
        kernels = ctx.array(f"{layer}_kernels").astype(np.float32)
        ctx.metric(f"{layer}_kernel_shape", list(kernels.shape))
        ctx.metric(f"{layer}_max_abs", float(np.abs(kernels).max()))
        # 150 dpi: conv2's 64 x 32 kernels are 4 pixels a weight at the column width.
        ctx.figure(f"{layer}_filters", conv_filters_figure(kernels, layer), dpi=150)
    fc2 = ctx.array("fc2_weights").astype(np.float32)
    ctx.metric("fc2_shape", list(fc2.shape))
    ctx.figure("fc2_weights", fc_weights_figure(fc2, "fc1"))


def draw_digits_through_layers(ctx: DrawContext) -> None:
    """The right and the wrong digit's maps, each titled with its label and prediction."""
    results = ctx.results
    images = ctx.data.test_images.cpu()
    for key in EXAMPLES:
        acts = {layer: ctx.array(f"{key}_{layer}").astype(np.float32) for layer in LAYERS}
        if key == "correct":
            ctx.metric("activation_shapes", {k: list(v.shape) for k, v in acts.items()})
        index, label = results[f"{key}_index"], results[f"{key}_label"]
        pred, probability = results[f"{key}_predicted"], results[f"{key}_probability"]
        title = (f"test image {index}: label {label}, predicted {pred} ({probability:.1%})")
        ctx.figure(f"feature_maps_{key}",
                   feature_map_figure(images[index].numpy(), acts, title))


def draw_saliency(ctx: DrawContext) -> None:
    """Saliency on ink against ink over the measured images, and the per-class maps."""
    on_ink, ink = ctx.array("saliency_on_ink_shares"), ctx.array("ink_shares")
    ctx.metric("saliency_on_ink", float(on_ink.mean()))
    ctx.metric("ink_share", float(ink.mean()))
    # Image by image, for this one trained network: a statement about it, not about training.
    ctx.metric("saliency_vs_ink",
               compare(Runs(on_ink, "image"), Runs(ink, "image")).as_metric())
    ctx.metric("saliency_above_diagonal", float((on_ink > ink).mean()))
    ctx.figure("saliency_shares", shares_figure(ink, on_ink))
    chosen = ctx.results["saliency_indices"]
    data = ctx.data
    ctx.figure("saliency", saliency_figure(
        data.test_images.cpu()[chosen].numpy(), ctx.array("saliency_maps"),
        data.test_labels.cpu()[chosen].tolist(), ctx.array("saliency_predicted").tolist()))


# --- draw: the drawing pad (templates/static/draw_pad.js runs it; digits/drawing.py) ------------

PAD_SCRIPT = "draw_pad_model.js"  # the asset: weights and example digits (digits/drawing.py)
PAD_CORRECT = 6  # example buttons: the first test digits the network reads right ...
PAD_MISTAKES = 4  # ... and its most confident mistakes
PAD_CHECK = 1_000  # test images on which the float16 weights are checked against float32


def draw_pad(ctx: DrawContext) -> None:
    """The stronger CNN as the page runs it: batch norms folded, float16, in a script asset
    with a few test digits to load; its size, and what the float16 rounding changes."""
    model = drawing.best_cnn(ctx.load("classifiers", "best"))
    folded = drawing.fold_batch_norm(model)
    half = drawing.half_rounded(folded)
    data = ctx.data
    images, labels = data.test_images.cpu(), data.test_labels.cpu()
    examples = drawing.pad_examples(images.numpy(), labels.numpy(),
                                    ctx.array_of("classifiers", "best_seed0_logits"),
                                    PAD_CORRECT, PAD_MISTAKES)
    script = drawing.encode_pad_script(half, examples)
    ctx.asset(PAD_SCRIPT, script)
    ctx.metric("pad_script", PAD_SCRIPT)
    ctx.metric("pad_script_bytes", len(script.encode()))
    ctx.metric("pad_parameters", half.parameters)
    ctx.metric("pad_side", drawing.SIDE)
    ctx.metric("pad_box", drawing.BOX)
    _, maps = drawing.forward(half, np.zeros((1, drawing.SIDE, drawing.SIDE), np.uint8))
    ctx.metric("pad_maps", [{"channels": m.shape[1], "size": m.shape[2]} for m in maps])
    ctx.metric("pad_multiply_adds", drawing.multiply_adds(half))
    ctx.metric("pad_examples", [{k: v for k, v in e.items() if k != "pixels"}
                                for e in examples])
    # What storing float16 changes: the trained network (float32, batch norm unfolded) and the
    # page's, on the first test images.
    x = to_input(images[:PAD_CHECK])
    with torch.no_grad():
        trained = model(x)
        page = drawing.folded_module(half)(x)
    ctx.metric("pad_checked", len(x))
    ctx.metric("pad_same_class", int((trained.argmax(1) == page.argmax(1)).sum()))
    ctx.metric("pad_max_logit_change", float((trained - page).abs().max()))
