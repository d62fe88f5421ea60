"""An image CNN *macro* space: how many stages, and per stage how many blocks, how wide, which kernel.

The network is a stem conv, then 1-4 stages of blocks, then global average pooling and a linear classifier.
Each block is two convolutions (a VGG pair, or a ResNet basic block when ``skip`` is on); every stage after
the first halves the resolution, by a strided first block or a 2x2 max pool before it. This is the AnyNet
design space of Radosavovic et al. (2020) cut down to what trains on a CPU; ResNet-8/20 for CIFAR (He et al.,
2016) are points of it (see ``baselines.small_resnet``).

Genotype: ``n_stages, downsample, skip, norm``, then ``blocks, channels, kernel`` for each of the 4 stage slots,
then ``stem`` (a plain stem conv, or the conv followed by a 2x2 max pool) and ``head`` (global average pooling,
or a LeNet-like fully connected head).
Slots beyond ``n_stages`` are unused, and so is ``downsample`` when there is one stage (nothing is
downsampled): ``canonical`` zeroes them and ``active`` marks them, so two genotypes that build the same
network compare equal and designers do not waste mutations on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daedalus.spaces.nas.base import ArchSpace, Choice, Genotype
from daedalus.spaces.nas.export import Layer, halve, image_shape, render

MAX_STAGES = 4
N_STAGES = (1, 2, 3, 4)
DOWNSAMPLE = ("stride", "pool")
SKIP = (False, True)
NORM = ("batch", "none")
BLOCKS_PER_STAGE = (1, 2, 3)
CHANNELS = (8, 16, 32, 64)
KERNELS = (3, 5)
# "conv_pool" halves the resolution right after the stem: 4x fewer FLOPs in every stage, which is what makes
# networks of this space trainable within minutes on a CPU (LeNet-5 owes its speed to the same early pooling).
STEMS = ("conv", "conv_pool")
# "gap": global average pooling then a linear classifier (ResNet); "fc": average pooling to 4x4, then a hidden
# fully connected layer of FC_WIDTH units (LeNet), which lets a narrow, cheap network still classify well.
HEADS = ("gap", "fc")
FC_GRID = 4
FC_WIDTH = 128
# Hand-designed starting points of a search (``CNNSpace.portfolio``), cheapest first: classic designs and the
# early-pooling variants that make them affordable on a CPU. A short search on a CPU evaluates a few dozen
# networks, so where it starts matters; these bound how badly it can do. (Chosen by design, not tuned: on
# the CIFAR-10 training part, 120 s on one core, the early-pooling ResNet-8 reached 66% validation accuracy
# against 58% for ResNet-8 itself, the same parameters trained 2.5x more epochs.)
PORTFOLIO: tuple[dict[str, Any], ...] = (
    # LeNet-like: two narrow 5x5 stages, no normalisation, a fully connected head.
    {"n_stages": 2, "downsample": "pool", "skip": False, "norm": "none", "channels_1": 8, "kernel_1": 5,
     "channels_2": 16, "kernel_2": 5, "stem": "conv_pool", "head": "fc"},
    # ResNet-8 (He et al., 2016): three stages of one basic block, 16/32/64 channels, strided.
    {"n_stages": 3, "downsample": "stride", "skip": True, "norm": "batch", "channels_1": 16, "channels_2": 32,
     "channels_3": 64},
    # ResNet-8 with an early pool and pooled stages (the ImageNet ResNets' stem idea): 4x fewer FLOPs.
    {"n_stages": 3, "downsample": "pool", "skip": True, "norm": "batch", "channels_1": 16, "channels_2": 32,
     "channels_3": 64, "stem": "conv_pool"},
    # Two wider residual stages with early pooling and a fully connected head.
    {"n_stages": 2, "downsample": "pool", "skip": True, "norm": "batch", "channels_1": 32, "channels_2": 64,
     "stem": "conv_pool", "head": "fc"},
)
_SHARED = 4  # positions before the stage slots
_PER_STAGE = 3  # blocks, channels, kernel


@dataclass(frozen=True)
class Stage:
    blocks: int
    channels: int
    kernel: int


def cnn_layers(stages: Sequence[Stage], in_shape: tuple[int, int, int], n_outputs: int, downsample: str = "stride",
               skip: bool = True, norm: str = "batch", stem: str = "conv", head: str = "gap") -> list[Layer]:
    """The plan of a CNN (see ``cnn_torch.ConvBlock``), from readable settings rather than a genotype, so that
    hand-designed baselines outside the space's option lists (ResNet-32, say) use the same code."""
    c_in, h, w = image_shape(in_shape, n_outputs)
    if not stages or min(min(s.blocks, s.channels) for s in stages) < 1 or any(s.kernel % 2 == 0 for s in stages):
        raise ValueError(f"cnn: need >= 1 stage, blocks and channels >= 1 and odd kernels, got {list(stages)}")
    if downsample not in DOWNSAMPLE or norm not in NORM or stem not in STEMS or head not in HEADS:
        raise ValueError(f"cnn: downsample must be one of {DOWNSAMPLE}, norm one of {NORM}, stem one of {STEMS} "
                         f"and head one of {HEADS}")
    batch_norm = norm == "batch"
    c = stages[0].channels
    layers = [Layer("stem_conv", "nn.Conv2d", (c_in, c, 3), {"padding": 1, "bias": not batch_norm},
                    comment=f"stem: 3x3 conv, {c_in} -> {c} channels"),
              Layer("stem_norm", "nn.BatchNorm2d" if batch_norm else "nn.Identity", (c,) if batch_norm else ()),
              Layer("stem_relu", "nn.ReLU")]
    if stem == "conv_pool":
        h, w, _ = halve(h, w)
        layers.append(Layer("stem_pool", "nn.MaxPool2d", (2,), {"ceil_mode": True},
                            comment=f"stem: 2x2 max pool to {h}x{w}"))
    for number, stage in enumerate(stages, start=1):
        stride = 1
        if number > 1:
            h, w, stride = halve(h, w)
        header = (f"stage {number}: {stage.blocks} x {'residual' if skip else 'plain'} block, {stage.channels} "
                  f"channels, {stage.kernel}x{stage.kernel} kernels, {h}x{w}")
        if downsample == "pool" and stride == 2:
            layers.append(Layer(f"pool{number}", "nn.MaxPool2d", (2,), {"ceil_mode": True}, comment=header))
            stride, header = 1, ""
        for block in range(1, stage.blocks + 1):
            layers.append(Layer(f"stage{number}_block{block}", "ConvBlock", (c, stage.channels, stage.kernel),
                                {"stride": stride if block == 1 else 1, "norm": batch_norm, "residual": skip},
                                comment=header if block == 1 else ""))
            c = stage.channels
    if head == "gap":
        layers += [Layer("pool", "nn.AdaptiveAvgPool2d", (1,), comment="head: global average pool, linear classifier"),
                   Layer("flatten", "nn.Flatten"),
                   Layer("classifier", "nn.Linear", (c, n_outputs))]
    else:
        layers += [Layer("pool", "nn.AdaptiveAvgPool2d", (FC_GRID,),
                         comment=f"head: average pool to {FC_GRID}x{FC_GRID}, a hidden layer, linear classifier"),
                   Layer("flatten", "nn.Flatten"),
                   Layer("hidden", "nn.Linear", (c * FC_GRID * FC_GRID, FC_WIDTH)),
                   Layer("hidden_relu", "nn.ReLU"),
                   Layer("classifier", "nn.Linear", (FC_WIDTH, n_outputs))]
    return layers


class CNNSpace(ArchSpace):
    name = "cnn"

    @property
    def choices(self) -> tuple[Choice, ...]:
        shared = (Choice("n_stages", N_STAGES), Choice("downsample", DOWNSAMPLE), Choice("skip", SKIP),
                  Choice("norm", NORM))
        per_stage = tuple(choice for i in range(1, MAX_STAGES + 1)
                          for choice in (Choice(f"blocks_{i}", BLOCKS_PER_STAGE), Choice(f"channels_{i}", CHANNELS),
                                         Choice(f"kernel_{i}", KERNELS)))
        return shared + per_stage + (Choice("stem", STEMS), Choice("head", HEADS))

    def active(self, genotype: Genotype) -> tuple[bool, ...]:
        n_stages = N_STAGES[genotype[0]]
        stage_used = tuple(i < n_stages for i in range(MAX_STAGES) for _ in range(_PER_STAGE))
        return (True, n_stages > 1, True, True, *stage_used, True, True)

    def canonical(self, genotype: Genotype) -> Genotype:
        return tuple(int(v) if used else 0 for v, used in zip(genotype, self.active(genotype), strict=True))

    def settings(self, genotype: Genotype) -> dict[str, Any]:
        """The keyword arguments of :func:`cnn_layers` that the genotype fixes."""
        d = self.describe(self.validate(genotype))
        stages = [Stage(d[f"blocks_{i}"], d[f"channels_{i}"], d[f"kernel_{i}"]) for i in range(1, d["n_stages"] + 1)]
        return {"stages": stages, "downsample": d.get("downsample", DOWNSAMPLE[0]), "skip": d["skip"],
                "norm": d["norm"], "stem": d["stem"], "head": d["head"]}

    def portfolio(self) -> list[Genotype]:
        return [self.from_config(config) for config in PORTFOLIO]

    def instantiate(self, genotype: Genotype, **shape: Any) -> Any:
        """``shape``: ``in_shape`` (C, H, W) and ``n_outputs``."""
        from daedalus.spaces.nas.cnn_torch import CNNNetwork

        return CNNNetwork(cnn_layers(**self.settings(genotype), **shape))

    def to_source(self, genotype: Genotype, **shape: Any) -> str:
        from daedalus.spaces.nas.cnn_torch import BLOCKS

        genotype = self.validate(genotype)
        notes = [f"Architecture: {', '.join(f'{k}={v}' for k, v in self.describe(genotype).items())}",
                 f"(search space {self.name}, genotype {genotype})."]
        return render(cnn_layers(**self.settings(genotype), **shape), BLOCKS, "CNN found by architecture search.",
                      notes, input_shape=tuple(shape["in_shape"]))
