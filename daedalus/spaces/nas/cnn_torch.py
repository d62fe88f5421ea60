"""The CNN space's building block in PyTorch, and the network built from a ``cnn_layers`` plan.

``ConvBlock`` is copied verbatim into exported files (see ``export.py``), so it uses only ``torch`` and
``nn`` and carries its own explanation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from daedalus.spaces.nas.export import Layer, build_layers


class ConvBlock(nn.Module):
    """Two KxK convolutions, each followed by normalisation, with ReLU after each: a VGG pair, or with
    ``residual`` a ResNet basic block (the input is added before the last ReLU). The first conv carries the
    stride; when the shape changes, the shortcut is a strided 1x1 conv (ResNet's projection shortcut). Convs
    have no bias under batch norm, whose shift replaces it."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, norm: bool = True,
                 residual: bool = False) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=not norm)
        self.norm1 = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size, padding=padding, bias=not norm)
        self.norm2 = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.relu = nn.ReLU()
        self.residual = residual
        if residual and (stride != 1 or c_in != c_out):
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not norm),
                nn.BatchNorm2d(c_out) if norm else nn.Identity(),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        if self.residual:
            h = h + self.shortcut(x)
        return self.relu(h)


# The building blocks a CNN of this space may use, for build_layers and the exporter.
BLOCKS: tuple[type, ...] = (ConvBlock,)


class CNNNetwork(nn.Sequential):
    """The network of a ``cnn_layers`` plan (the layers in order, named as in the exported file)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        super().__init__(build_layers(layers, BLOCKS))
