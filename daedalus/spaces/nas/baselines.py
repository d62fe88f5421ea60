"""Hand-designed reference networks, for "the network NAS found against a classic one, on the same budget".

* ``lenet5`` (LeCun et al., 1998) in its common modern form: ReLU and max pooling instead of tanh-like
  squashing and trainable subsampling, and a "same"-padded first conv so 28x28 MNIST gives the original
  16x5x5 feature map (the original padded the digits to 32x32 instead).
* ``small_resnet`` (He et al., 2016, section 4.2, the CIFAR ResNets): a 3x3 stem and three stages of
  ``n = (depth - 2) / 6`` basic blocks at 16, 32, 64 channels; depth 8 and 20 are the small ones. Shortcuts
  that change shape are 1x1 projections (option B) rather than zero padding (option A): one fewer block type,
  a few hundred more parameters.

Both are plans (see ``export.py``), so they build with the same code as the searched networks and export to
the same kind of standalone file with ``baseline_source``. torch is imported only when a network is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daedalus.spaces.nas.cnn import Stage, cnn_layers
from daedalus.spaces.nas.export import Layer, halve, image_shape, render

if TYPE_CHECKING:
    import torch


def lenet5_layers(in_shape: tuple[int, int, int], n_outputs: int) -> list[Layer]:
    c_in, h, w = image_shape(in_shape, n_outputs)
    layers = [Layer("conv1", "nn.Conv2d", (c_in, 6, 5), {"padding": 2}, comment="C1: 6 maps, 5x5, same padding"),
              Layer("relu1", "nn.ReLU")]
    h, w, stride = halve(h, w)
    if stride == 2:
        layers.append(Layer("pool1", "nn.MaxPool2d", (2,), {"ceil_mode": True}, comment="S2: 2x2 max pool"))
    # C3 is a valid (unpadded) conv as in the original, unless the map is already smaller than its kernel.
    padding = 0 if min(h, w) >= 5 else 2
    h, w = h + 2 * padding - 4, w + 2 * padding - 4
    layers += [Layer("conv2", "nn.Conv2d", (6, 16, 5), {"padding": padding}, comment="C3: 16 maps, 5x5"),
               Layer("relu2", "nn.ReLU")]
    h, w, stride = halve(h, w)
    if stride == 2:
        layers.append(Layer("pool2", "nn.MaxPool2d", (2,), {"ceil_mode": True}, comment="S4: 2x2 max pool"))
    layers += [Layer("flatten", "nn.Flatten", comment=f"C5, F6, output: fully connected on 16x{h}x{w}"),
               Layer("fc1", "nn.Linear", (16 * h * w, 120)),
               Layer("relu3", "nn.ReLU"),
               Layer("fc2", "nn.Linear", (120, 84)),
               Layer("relu4", "nn.ReLU"),
               Layer("fc3", "nn.Linear", (84, n_outputs))]
    return layers


def small_resnet_layers(in_shape: tuple[int, int, int], n_outputs: int, depth: int = 8,
                        channels: int = 16) -> list[Layer]:
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32...), got {depth}")
    n = (depth - 2) // 6
    stages = [Stage(n, channels * 2**i, 3) for i in range(3)]
    return cnn_layers(stages, in_shape, n_outputs, downsample="stride", skip=True, norm="batch")


_PLANS = {"lenet5": lenet5_layers, "small_resnet": small_resnet_layers}
BASELINES = tuple(_PLANS)


def _plan(name: str, in_shape: tuple[int, int, int], n_outputs: int, **options: Any) -> list[Layer]:
    if name not in _PLANS:
        raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
    return _PLANS[name](in_shape, n_outputs, **options)


def baseline(name: str, in_shape: tuple[int, int, int], n_outputs: int, **options: Any) -> torch.nn.Module:
    """The untrained baseline ``name`` (one of ``BASELINES``); ``options`` as the plan function takes them."""
    from daedalus.spaces.nas.cnn_torch import CNNNetwork

    return CNNNetwork(_plan(name, in_shape, n_outputs, **options))


def lenet5(in_shape: tuple[int, int, int], n_outputs: int) -> torch.nn.Module:
    return baseline("lenet5", in_shape, n_outputs)


def small_resnet(in_shape: tuple[int, int, int], n_outputs: int, depth: int = 8, channels: int = 16) -> torch.nn.Module:
    return baseline("small_resnet", in_shape, n_outputs, depth=depth, channels=channels)


def baseline_source(name: str, in_shape: tuple[int, int, int], n_outputs: int, **options: Any) -> str:
    """The standalone ``Net`` file of a baseline, like a searched network's ``to_source``."""
    from daedalus.spaces.nas.cnn_torch import BLOCKS

    titles = {"lenet5": "LeNet-5 (modern form: ReLU, max pooling).",
              "small_resnet": f"ResNet-{options.get('depth', 8)} for small images (He et al., 2016)."}
    return render(_plan(name, in_shape, n_outputs, **options), BLOCKS, titles[name],
                  ["Hand-designed baseline."], input_shape=tuple(in_shape))
