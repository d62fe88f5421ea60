"""The designer contract suite (``tests/designer_contract.py``) run against every designer: each architecture
designer of the registry on a toy space and on NAS-Bench-201 (scored by the bundled table), the ParEGO wrapper,
the Optuna designer of table runs on a small study, and the steering wrapper around both kinds.

A new designer or wrapper is one more entry of ``CASES`` (e.g. ``CASES.append(table_case("fair", wrap=...))``).
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from daedalus.data.schema import Task
from daedalus.designers.base import Designer, Proposal
from daedalus.designers.nas import DESIGNERS, make_designer
from daedalus.designers.nas.multi_objective import ParetoDesigner
from daedalus.designers.nas.pretrain import Pretrainable
from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
from daedalus.errors import ConfigError
from daedalus.evaluation.nas_table import BenchTable, load_table
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.fair_designer import MitigatingDesigner
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.steered import SteeredDesigner
from daedalus.oversight.steering import check_config, family_spaces, issue_command
from daedalus.spaces.nas.base import ArchSpace, Genotype
from daedalus.spaces.nas.nb201 import NB201Space
from daedalus.spaces.registry import get_family
from daedalus.store.run import RunStore
from tests.designer_contract import DesignerCase, DesignerContract
from tests.test_nas_designers import DepthSpace

TABLE = Path(__file__).parent / "data" / "nas" / "nb201_cifar10.csv.gz"
FAMILIES = ["linear", "knn"]
EXCLUDED = "knn"  # by steering, in the steered table case


@functools.cache
def nb201_table() -> BenchTable:
    return load_table(TABLE)


def not_zero_at_1(genotype: Genotype) -> bool:
    return genotype[1] != 0  # position 1 is used in both spaces; 0 is its commonest value in the toy space


# -- architecture designers ----------------------------------------------------------------------------------
def arch_case(name: str, space: ArchSpace, wrap: Callable[[Designer[Any], Path], Designer[Any]] | None = None,
              suffix: str = "") -> DesignerCase:
    def build(directory: Path, seed: int) -> Designer[Any]:
        if name == "pareto":
            designer: Designer[Any] = ParetoDesigner(space, seed=seed, constraint=not_zero_at_1, inner="evolution",
                                                     cost=lambda g: 1.0 + sum(g))
        else:
            designer = make_designer(name, space, seed=seed, constraint=not_zero_at_1)
        return wrap(designer, directory) if wrap else designer

    def score(proposal: Proposal[Any]) -> float:
        if isinstance(space, NB201Space):
            return float(nb201_table().val12[proposal.candidate])
        return float(sum(proposal.candidate))

    def allowed(proposal: Proposal[Any]) -> bool:
        genotype = proposal.candidate
        return proposal.family == space.name and space.validate(genotype) == genotype and not_zero_at_1(genotype)

    def foreign(rng: np.random.Generator, i: int) -> Proposal[Any]:
        return Proposal(10_000 + i, space.name, space.sample(rng), "a warm start's result", "warm-start")

    return DesignerCase(f"{name}-{space.name}{suffix}", build, score, allowed, foreign)


# -- the Optuna designer of table runs -----------------------------------------------------------------------
def table_case(suffix: str = "", wrap: Callable[[Designer[Any], Path], Designer[Any]] | None = None,
               allowed_families: tuple[str, ...] = tuple(FAMILIES)) -> DesignerCase:
    def build(directory: Path, seed: int) -> Designer[Any]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="contract", storage=f"sqlite:///{directory / 'study.db'}",
                                    direction="maximize", sampler=make_sampler(seed), load_if_exists=True)
        designer = OptunaDesigner(study, FAMILIES, Task.BINARY, 200)
        if not study.trials:  # a new study: queue the portfolio, as a build does
            designer.enqueue_portfolio()
        return wrap(designer, directory) if wrap else designer

    def score(proposal: Proposal[Any]) -> float:
        text = json.dumps([proposal.family, proposal.candidate], sort_keys=True, default=str)
        return zlib.crc32(text.encode()) / 2**32

    def allowed(proposal: Proposal[Any]) -> bool:
        try:  # the family is searched (and not excluded), every parameter within its space: as steering checks
            check_config({"family": proposal.family, "config": proposal.candidate}, FAMILIES,
                         set(FAMILIES) - set(allowed_families), family_spaces(Task.BINARY, 200))
        except ConfigError:
            return False
        return True

    def foreign(rng: np.random.Generator, i: int) -> Proposal[Any]:
        family = FAMILIES[i % len(FAMILIES)]
        return Proposal(10_000 + i, family, get_family(family).default_config(Task.BINARY, 200), "a warm start",
                        "warm-start")

    return DesignerCase(f"optuna{suffix}", build, score, allowed, foreign, steps=10)


# -- the steering wrapper ------------------------------------------------------------------------------------
def steered_table(designer: Designer[Any], directory: Path) -> Designer[Any]:
    root = directory / "run"
    if not (root / "run.json").exists():
        RunStore.create(root, {"status": "running", "families": FAMILIES, "task": "binary", "options": {}})
        issue_command(root, "exclude", EXCLUDED)
    return SteeredDesigner(designer, RunStore.open(root), BudgetClock(60.0), Reporter(), families=FAMILIES,
                           space_of=family_spaces(Task.BINARY, 200))


def steered_arch(designer: Designer[Any], directory: Path) -> Designer[Any]:
    root = directory / "run"
    if not (root / "run.json").exists():
        RunStore.create(root, {"status": "running", "kind": "image", "space": "toy-depth", "options": {}})
        issue_command(root, "add-time", "5")
    return SteeredDesigner(designer, RunStore.open(root), BudgetClock(60.0), Reporter())


def pretrained(space: ArchSpace) -> Callable[[Designer[Any], Path], Designer[Any]]:
    """Pretrain the designer on 40 other results first (another task's, as ``nas-bench --pretrain-table`` does):
    its state then carries what it learned from them."""
    rng = np.random.default_rng(7)
    examples = [(g, float(sum(g) * 3 + 1)) for g in (space.sample(rng) for _ in range(40))]

    def wrap(designer: Designer[Any], _: Path) -> Designer[Any]:
        assert isinstance(designer, Pretrainable)
        designer.pretrain(examples, {"classes": 10})
        return designer

    return wrap


TOY = DepthSpace()
CASES: list[DesignerCase] = [
    *(arch_case(name, space) for name in sorted(DESIGNERS) for space in (TOY, NB201Space())),
    arch_case("pareto", NB201Space()),
    table_case(),
    table_case("-steered", wrap=steered_table, allowed_families=tuple(f for f in FAMILIES if f != EXCLUDED)),
    table_case("-mitigating", wrap=lambda d, _: MitigatingDesigner(d, FAMILIES, "demographic_parity", lambda s: s)),
    arch_case("evolution", TOY, wrap=steered_arch, suffix="-steered"),
    *(arch_case(name, space, wrap=pretrained(space), suffix="-pretrained")
      for name in ("generative", "predictor") for space in (TOY, NB201Space())),
]


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> DesignerCase:
    return request.param  # type: ignore[no-any-return]


class TestDesignerContract(DesignerContract):
    pass
