"""The tabular MLP that :class:`~daedalus.spaces.nas.mlp.MLPSpace` describes, as a PyTorch module.

This file imports nothing but torch on purpose: ``export-arch`` copies it verbatim into the exported model
file, so the exported network is this very code, not a re-implementation that could drift from it.

Input: one float matrix, the numeric features first (already standardised) and then one column per
categorical feature holding its integer code, -1 for missing or unseen. Each categorical column goes through
its own embedding (row 0 is "missing/unseen"), the embeddings are concatenated to the numeric features, and
the result passes through ``len(widths)`` blocks of Linear -> norm -> activation -> dropout, each with a
residual connection where it keeps the width, then a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}; use 'none', 'batch' or 'layer'")


class DenseBlock(nn.Module):
    """Linear -> norm -> activation -> dropout, plus the input when ``residual`` and the width is kept."""

    def __init__(self, fan_in: int, fan_out: int, activation: str, norm: str, dropout: float,
                 residual: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out)
        self.norm = _norm(norm, fan_out)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.residual = bool(residual) and fan_in == fan_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.activation(self.norm(self.linear(x))))
        return x + h if self.residual else h


class TabularMLP(nn.Module):
    def __init__(self, n_numeric: int, cardinalities: tuple[int, ...] | list[int], n_outputs: int,
                 widths: tuple[int, ...] | list[int], activation: str = "relu", norm: str = "none",
                 dropout: float = 0.0, residual: bool = False, embedding_dim: int = 8) -> None:
        super().__init__()
        self.n_numeric = int(n_numeric)
        # One extra row per embedding for code -1 (missing or unseen); a column with c categories gets
        # min(embedding_dim, c + 1) dimensions, as more could only memorise.
        self.rows = [int(c) + 1 for c in cardinalities]
        dims = [min(int(embedding_dim), rows) for rows in self.rows]
        self.embeddings = nn.ModuleList(nn.Embedding(rows, dim) for rows, dim in zip(self.rows, dims, strict=True))
        fan_in = self.n_numeric + sum(dims)
        blocks = []
        for width in widths:
            blocks.append(DenseBlock(fan_in, int(width), activation, norm, float(dropout), residual))
            fan_in = int(width)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(fan_in, int(n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[:, : self.n_numeric]]
        if len(self.embeddings):
            codes = x[:, self.n_numeric:].round().long() + 1  # -1 (missing/unseen) -> row 0
            for i, (embedding, rows) in enumerate(zip(self.embeddings, self.rows, strict=True)):
                parts.append(embedding(codes[:, i].clamp(0, rows - 1)))
        return self.head(self.blocks(torch.cat(parts, dim=1)))
