"""The NAS-Bench-201 network as a plan of layers: its operations, the cell's edges, and :func:`nb201_layers`,
the one description that ``NB201Network`` (``nb201_torch``) builds and ``NB201Space.to_source`` (``nb201``)
writes out. Both import it from here; it imports neither (nor torch).
"""

from __future__ import annotations

from daedalus.spaces.nas.export import Const, Layer, halve, image_shape

OPERATIONS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (target node, source node) of each edge, in the benchmark's order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def nb201_layers(ops: list[str] | tuple[str, ...], edges: tuple[tuple[int, int], ...],
                 in_shape: tuple[int, int, int], n_outputs: int, channels: int = 16, n_cells: int = 1,
                 n_stages: int = 3) -> list[Layer]:
    """The plan of an NB201 network (see ``nb201_torch``): stem, ``n_stages`` stages of ``n_cells`` cells with a
    reduction between stages, and the head."""
    c_in, h, w = image_shape(in_shape, n_outputs)
    if len(ops) != len(edges) or min(channels, n_cells, n_stages) < 1:
        raise ValueError("nb201: need one operation per edge and channels, n_cells, n_stages >= 1")
    cell = Const("CELL", tuple((dst, src, op) for (dst, src), op in zip(edges, ops, strict=True)),
                 "The searched cell: (target node, source node, operation) per edge; node 0 is the input.")
    c = channels
    layers = [Layer("stem_conv", "nn.Conv2d", (c_in, c, 3), {"padding": 1, "bias": False},
                    comment=f"stem: {c_in} -> {c} channels"),
              Layer("stem_bn", "nn.BatchNorm2d", (c,))]
    for stage in range(1, n_stages + 1):
        if stage > 1:
            h, w, stride = halve(h, w)
            layers.append(Layer(f"reduce{stage}", "ResidualReduction", (c, 2 * c), {"stride": stride},
                                comment=f"stage {stage}: {2 * c} channels at {h}x{w}"))
            c *= 2
        for i in range(1, n_cells + 1):
            layers.append(Layer(f"cell{stage}_{i}", "NB201Cell", (c, cell),
                                comment=f"stage 1: {c} channels at {h}x{w}" if stage == 1 and i == 1 else ""))
    layers += [Layer("head_bn", "nn.BatchNorm2d", (c,), comment="head: BN-ReLU, global average pool, linear"),
               Layer("head_relu", "nn.ReLU"),
               Layer("pool", "nn.AdaptiveAvgPool2d", (1,)),
               Layer("flatten", "nn.Flatten"),
               Layer("classifier", "nn.Linear", (c, n_outputs))]
    return layers
