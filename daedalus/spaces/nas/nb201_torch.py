"""The NAS-Bench-201 network in PyTorch: the searched cell, stacked into a small trainable image classifier.

The operations and the reduction block follow the benchmark's code (Dong & Yang, ICLR 2020): ``none`` is a
zero, ``skip_connect`` the identity, ``nor_conv_kxk`` ReLU-Conv-BN, ``avg_pool_3x3`` a 3x3 average pool that
keeps the size; a cell's node j is the sum of its incoming edges, and the cell's output is node 3. The
benchmark's network is stem -> 5 cells -> reduction -> 5 cells -> reduction -> 5 cells -> BN-ReLU -> pool ->
linear at 16 channels; ``n_cells`` (default 1) and ``channels`` scale that down to what a CPU trains in
minutes.

The block classes below are copied verbatim into exported files (see ``export.py``), so they use only
``torch`` and ``nn``, and they carry their own explanations.
"""

from __future__ import annotations

import torch
from torch import nn

from daedalus.spaces.nas.export import build_layers
from daedalus.spaces.nas.nb201_plan import nb201_layers


class Zero(nn.Module):
    """The 'none' operation: the edge carries nothing (multiplying keeps the shape, device and dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv -> BatchNorm, the convolution of NAS-Bench-201 (no conv bias: the BN shift replaces it)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell: nodes 0..3, node 0 is the input, node j sums op(node i) over its edges j <- i,
    and the output is the last node. ``cell`` lists the edges as (target, source, operation)."""

    def __init__(self, channels: int, cell: tuple[tuple[int, int, str], ...]) -> None:
        super().__init__()
        self.cell = tuple(cell)
        self.edges = nn.ModuleDict({f"edge_{dst}_{src}": self.operation(op, channels) for dst, src, op in cell})

    @staticmethod
    def operation(name: str, channels: int) -> nn.Module:
        if name == "none":
            return Zero()
        if name == "skip_connect":
            return nn.Identity()
        if name == "nor_conv_1x1":
            return ReLUConvBN(channels, channels, 1)
        if name == "nor_conv_3x3":
            return ReLUConvBN(channels, channels, 3)
        if name == "avg_pool_3x3":
            return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        raise ValueError(f"unknown NAS-Bench-201 operation {name!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, 1 + max(dst for dst, _, _ in self.cell)):
            incoming = [self.edges[f"edge_{dst}_{src}"](nodes[src]) for dst, src, _ in self.cell if dst == node]
            nodes.append(torch.stack(incoming).sum(dim=0))
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's reduction between stages, a ResNet basic block: two ReLU-Conv-BN (the first with the
    stride) plus a shortcut of average pooling and a 1x1 conv. ``ceil_mode`` makes the shortcut's size match
    the strided conv's on odd sizes too (the benchmark only saw 32x32)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=stride)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False) if stride == 2 else nn.Identity(),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


# The building blocks an NB201 network may use, for build_layers and the exporter.
BLOCKS: tuple[type, ...] = (Zero, ReLUConvBN, NB201Cell, ResidualReduction)


class NB201Network(nn.Sequential):
    """Stem conv-BN, ``n_stages`` stages of ``n_cells`` cells (a reduction doubling the channels between
    stages), BN-ReLU, global average pooling and a linear classifier: ``n_outputs`` logits for ``in_shape``
    (C, H, W) images. ``ops`` are the cell's operation names, one per edge of ``edges``."""

    def __init__(self, ops: list[str] | tuple[str, ...], edges: tuple[tuple[int, int], ...],
                 in_shape: tuple[int, int, int], n_outputs: int, channels: int = 16, n_cells: int = 1,
                 n_stages: int = 3) -> None:
        layers = nb201_layers(ops, edges, in_shape, n_outputs, channels=channels, n_cells=n_cells, n_stages=n_stages)
        super().__init__(build_layers(layers, BLOCKS))
