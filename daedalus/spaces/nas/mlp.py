"""The tabular MLP search space: depth 1-6, a width per layer, activation, normalisation, dropout, residual
connections, and the embedding size of categorical columns.

The genotype holds the depth, then six width slots (slots beyond the depth are unused and zeroed by
``canonical``, so two genotypes that differ only there are one network), then the shared choices. The
network itself is :class:`~daedalus.spaces.nas.mlp_torch.TabularMLP`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daedalus.spaces.nas.base import ArchSpace, Choice, Genotype

MAX_DEPTH = 6
DEPTHS = tuple(range(1, MAX_DEPTH + 1))
WIDTHS = (16, 32, 64, 128, 256, 512)
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
NORMS = ("none", "batch", "layer")
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.5)
RESIDUAL = (False, True)
EMBEDDING_DIMS = (4, 8, 16)


class MLPSpace(ArchSpace):
    name = "mlp"

    @property
    def choices(self) -> tuple[Choice, ...]:
        return (Choice("depth", DEPTHS),
                *(Choice(f"width_{i}", WIDTHS) for i in range(1, MAX_DEPTH + 1)),
                Choice("activation", ACTIVATIONS), Choice("norm", NORMS), Choice("dropout", DROPOUTS),
                Choice("residual", RESIDUAL), Choice("embedding_dim", EMBEDDING_DIMS))

    def active(self, genotype: Genotype) -> tuple[bool, ...]:
        depth = DEPTHS[genotype[0]]
        return (True, *(i < depth for i in range(MAX_DEPTH)), True, True, True, True, True)

    def canonical(self, genotype: Genotype) -> Genotype:
        return tuple(int(v) if used else 0 for v, used in zip(genotype, self.active(genotype), strict=True))

    def network_arguments(self, genotype: Genotype) -> dict[str, Any]:
        """The keyword arguments of :class:`TabularMLP` that the genotype fixes."""
        d = self.describe(genotype)
        return {"widths": tuple(d[f"width_{i}"] for i in range(1, d["depth"] + 1)), "activation": d["activation"],
                "norm": d["norm"], "dropout": d["dropout"], "residual": d["residual"],
                "embedding_dim": d["embedding_dim"]}

    def instantiate(self, genotype: Genotype, **shape: Any) -> Any:
        """``shape``: ``n_numeric``, ``n_outputs`` and optionally ``cardinalities`` (one per categorical column)."""
        from daedalus.spaces.nas.mlp_torch import TabularMLP

        return TabularMLP(int(shape["n_numeric"]), tuple(shape.get("cardinalities", ())), int(shape["n_outputs"]),
                          **self.network_arguments(self.validate(genotype)))

    def to_source(self, genotype: Genotype, **shape: Any) -> str:
        from daedalus.spaces.nas import mlp_torch

        arguments = {"n_numeric": int(shape["n_numeric"]),
                     "cardinalities": tuple(int(c) for c in shape.get("cardinalities", ())),
                     "n_outputs": int(shape["n_outputs"]), **self.network_arguments(self.validate(genotype))}
        body = ",\n".join(f"            {k}={v!r}" for k, v in arguments.items())
        library = Path(mlp_torch.__file__).read_text()
        return (f'"""A tabular MLP found by Daedalus\' architecture search ({self.to_string(genotype)}).\n\n'
                f'Load it with: net = Net(); net.load_state_dict(torch.load("weights.pt")); net.eval()\n"""\n'
                f"# ---- the network's building blocks (daedalus/spaces/nas/mlp_torch.py, verbatim) ----\n"
                f"{library.split('from __future__ import annotations', 1)[1].lstrip()}\n\n"
                f"class Net(TabularMLP):\n"
                f"    def __init__(self) -> None:\n"
                f"        super().__init__(\n{body},\n        )\n")
