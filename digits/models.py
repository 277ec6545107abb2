"""The article's networks. Every model takes images in [0, 1] as [B, 1, 28, 28] and returns logits."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Standardize(nn.Module):
    """Subtract the training-set mean and divide by its std (buffers, not parameters)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std."""
        return (x - self.mean) / self.std


class Model1(nn.Module):
    """The original's model 1: one 3x3 conv (32 maps of 26x26), fc 128, fc 10; 2.77 M parameters."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.fc1 = nn.Linear(32 * 26 * 26, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, 10]."""
        x = F.relu(self.conv1(self.standardize(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


class Model2(nn.Module):
    """The original's model 2: conv 32x26x26, conv 64x24x24, fc 128, fc 10; 4.74 M parameters."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 24 * 24, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, 10]."""
        x = F.relu(self.conv1(self.standardize(x)))
        x = F.relu(self.conv2(x))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def conv_bn(channels_in: int, channels_out: int) -> nn.Sequential:
    """3x3 convolution (same padding, no bias: batch norm has its own shift), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class BestCNN(nn.Module):
    """A stronger CNN: 2x conv32-BN + pool, 2x conv64-BN + pool, fc 256-BN with dropout, fc 10.

    Shapes: 32x28x28 -> pool 32x14x14 -> 64x14x14 -> pool 64x7x7 -> 256 -> 10; 0.87 M
    parameters at the defaults, a third of model 1's, because pooling shrinks the map the
    fully connected layer sees from 64x24x24 (model 2) to 64x7x7.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, width: int = 32, hidden: int = 256,
                 dropout: float = 0.4):
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.features = nn.Sequential(
            conv_bn(1, width), conv_bn(width, width), nn.MaxPool2d(2),
            conv_bn(width, 2 * width), conv_bn(2 * width, 2 * width), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 7 * 7, hidden, bias=False),
            nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, 10]."""
        return self.classifier(self.features(self.standardize(x)))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (buffers such as the normalisation constants excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
