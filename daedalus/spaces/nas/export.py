"""One description of a network, two uses: build it as a module, and write it out as a standalone Python file.

A network of a space is a *plan*: an ordered list of :class:`Layer` (attribute name, layer class, arguments).
``build_layers`` turns the plan into modules (the space's ``instantiate`` wraps them in an ``nn.Sequential``);
``render`` writes the same plan as a file defining ``class Net(torch.nn.Module)``, one layer per line, with the
source of the building blocks it uses copied in by ``inspect.getsource``. Because both come from the same plan
and the same block classes, ``Net()`` has the instantiated module's state_dict keys and computes the same
function, so ``Net().load_state_dict(torch.load("weights.pt"))`` restores a trained network exactly. Writing
the network by hand in each space's exporter would be a second copy that could drift from ``instantiate``.

The macro structure of every network here is sequential (stem, stages, head); skips and branches live inside
the blocks, so "apply each layer in turn" is the whole of the exported ``forward``.

This module imports torch only inside ``build_layers`` (the CLI starts without it); ``render`` reads the source
of block classes that the caller's torch module defines.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The exported file's imports, and the names a building block may use: a block needs nothing else.
_IMPORTS = "import torch\nfrom torch import nn\n"


@dataclass(frozen=True)
class Const:
    """A named module-level constant of the exported file (a cell's operations, say), written once and referred
    to by name in the layer lines instead of repeating a long literal."""

    name: str
    value: Any
    comment: str = ""

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Layer:
    """One attribute of the network: ``self.<name> = <kind>(*args, **kwargs)``.

    ``kind`` is ``"nn.<Class>"`` for a torch layer or the name of one of the space's building blocks. ``comment``
    is written on the line above the layer (a stage header, say).
    """

    name: str
    kind: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    comment: str = ""

    def call(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.kind}({', '.join(parts)})"


def _value(arg: Any) -> Any:
    return arg.value if isinstance(arg, Const) else arg


def build_layers(layers: Sequence[Layer], blocks: Iterable[type]) -> OrderedDict[str, torch.nn.Module]:
    """The plan's modules, by attribute name, in order (for ``nn.Sequential``)."""
    from torch import nn

    by_name = {b.__name__: b for b in blocks}
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in layers:
        if layer.kind.startswith("nn."):
            factory = getattr(nn, layer.kind[3:])
        elif layer.kind in by_name:
            factory = by_name[layer.kind]
        else:
            raise ValueError(f"layer {layer.name!r}: unknown kind {layer.kind!r}")
        if layer.name in out:
            raise ValueError(f"layer name {layer.name!r} is used twice")
        out[layer.name] = factory(*(_value(a) for a in layer.args),
                                  **{k: _value(v) for k, v in layer.kwargs.items()})
    return out


def _blocks_used(layers: Sequence[Layer], blocks: Sequence[type]) -> list[type]:
    """The blocks the plan names, plus those their source refers to, in the order the space lists them."""
    sources = {b.__name__: inspect.getsource(b) for b in blocks}
    needed: set[str] = set()
    todo = [layer.kind for layer in layers if layer.kind in sources]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo += [other for other in sources if other != name and re.search(rf"\b{other}\b", sources[name])]
    return [b for b in blocks if b.__name__ in needed]


def _constants(layers: Sequence[Layer]) -> list[Const]:
    found: dict[str, Const] = {}
    for layer in layers:
        for arg in (*layer.args, *layer.kwargs.values()):
            if isinstance(arg, Const):
                if arg.name in found and found[arg.name].value != arg.value:
                    raise ValueError(f"constant {arg.name!r} has two values")
                found[arg.name] = arg
    return list(found.values())


def _literal(value: Any) -> str:
    """A constant's Python literal: a long tuple or list one item per line, anything else as ``repr``."""
    text = repr(value)
    if len(text) <= 100 or not isinstance(value, tuple | list) or not value:
        return text
    open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    return "\n".join([open_, *(f"    {item!r}," for item in value), close])


def render(layers: Sequence[Layer], blocks: Sequence[type], title: str, notes: Sequence[str] = (),
           input_shape: tuple[int, ...] | None = None) -> str:
    """The standalone file for ``layers``. ``title`` names the architecture (first line of the docstring),
    ``notes`` are further docstring lines (the space, the genotype), ``input_shape`` the per-example shape."""
    shape = f"(batch, {', '.join(map(str, input_shape))})" if input_shape is not None else "(batch, ...)"
    header = [f'"""{title}', ""]
    for note in notes:  # wrapped: a generated file should read like a written one
        header += textwrap.wrap(note, 116, break_long_words=False, break_on_hyphens=False)
    header += ["", f"Input: a float tensor of shape {shape}. Exported by Daedalus; needs only PyTorch.",
               "", "Usage:", "    net = Net()", '    net.load_state_dict(torch.load("weights.pt"))',
               "    net.eval()", '"""', "", _IMPORTS]
    # Top-level parts, two blank lines apart as PEP 8 has them.
    parts = ["\n\n".join((f"# {c.comment}\n" if c.comment else "") + f"{c.name} = {_literal(c.value)}"
                          for c in _constants(layers))]
    used = _blocks_used(layers, blocks)
    if used:
        parts.append("# ----- building blocks -----")
        parts += [inspect.getsource(block).rstrip() for block in used]
    net = ["# ----- the network -----", "", "", "class Net(nn.Module):", f'    """{title}"""', "",
           "    def __init__(self) -> None:", "        super().__init__()"]
    for layer in layers:
        if layer.comment:
            net.append(f"        # {layer.comment}")
        net.append(f"        self.{layer.name} = {layer.call()}")
    net += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    net += [f"        x = self.{layer.name}(x)" for layer in layers]
    net += ["        return x", ""]
    parts.append("\n".join(net))
    return "\n".join(header) + "\n" + "\n\n\n".join(part for part in parts if part)


# ----- shape helpers shared by the image spaces -----
def image_shape(in_shape: Sequence[int], n_outputs: int) -> tuple[int, int, int]:
    """Check an image input shape (C, H, W) and an output count; a bad one is a caller's mistake."""
    if len(in_shape) != 3 or min(int(v) for v in in_shape) < 1:
        raise ValueError(f"in_shape must be (channels, height, width) of positive sizes, got {tuple(in_shape)}")
    if int(n_outputs) < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    c, h, w = (int(v) for v in in_shape)
    return c, h, w


def halve(h: int, w: int) -> tuple[int, int, int]:
    """Size after a stride-2 downsampling (a 3x3 or 5x5 conv with same padding, or a ceil-mode 2x2 pool): the
    new height, width, and the stride to use. A map already 1 pixel high or wide is not downsampled any
    further (stride 1): that lets tiny or one-row inputs go through every stage."""
    if min(h, w) < 2:
        return h, w, 1
    return (h + 1) // 2, (w + 1) // 2, 2
