"""The designer contract (``daedalus/designers/base.py``) as a reusable suite, run against every designer.

As Optuna's ``testing/pytest_storages.py`` runs one suite against every storage, :class:`DesignerContract` holds
the tests and a test module runs them by subclassing it and giving a ``case`` fixture: one :class:`DesignerCase`
per designer (``tests/test_designer_contract.py`` lists them all; a new designer or wrapper is one more case).

A case builds a fresh designer in a working directory (where it keeps what lives outside the designer: an Optuna
study's storage, a run's audit log), scores candidates, says what the designer may propose, and makes proposals
the designer did not make. What every designer must do:

- the same seed and the same tells give the same proposals;
- results told in any order, several proposals in flight, and results of proposals it did not make (a warm start)
  are all taken, and it goes on proposing;
- ``get_state`` is JSON-serialisable, and after ``set_state(get_state())`` on a fresh designer built with the same
  arguments (over a copy of its working directory, as a resumed run reopens its storage) the next asks are the
  original's next asks, a proposal in flight across the round trip included;
- it never proposes what its constraint (or a steering exclusion) rejects;
- its proposals' numbers are unique.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.designers.base import OK, Designer, Proposal, Result

STEPS = 30  # asks per run of a test: past the initial random phase of every designer built by the cases


@dataclass(frozen=True)
class DesignerCase:
    id: str
    build: Callable[[Path, int], Designer[Any]]  # a designer in a working directory, for a seed
    score: Callable[[Proposal[Any]], float]  # the result of evaluating a proposal (higher is better)
    allowed: Callable[[Proposal[Any]], bool]  # what the designer may propose (its space, constraint, steering)
    foreign: Callable[[np.random.Generator, int], Proposal[Any]]  # the i-th proposal it did not make
    steps: int = STEPS


def drive(designer: Designer[Any], case: DesignerCase, steps: int) -> list[Proposal[Any]]:
    """Ask and tell ``steps`` times, one at a time."""
    out = []
    for _ in range(steps):
        proposal = designer.ask()
        assert proposal is not None, f"{case.id} had nothing to propose"
        out.append(proposal)
        designer.tell(proposal, Result(OK, case.score(proposal)))
    return out


def continued(designer: Designer[Any], case: DesignerCase, directory: Path, seed: int, into: Path
              ) -> Designer[Any]:
    """A fresh designer built with the same arguments over a copy of ``directory``, continued from ``designer``'s
    state as a resumed run continues it (the state through JSON, as it is stored)."""
    state = json.loads(json.dumps(designer.get_state(), allow_nan=False))
    shutil.copytree(directory, into)
    fresh = case.build(into, seed)
    fresh.set_state(state)
    return fresh


def same(a: Proposal[Any], b: Proposal[Any]) -> bool:
    return (a.number, a.family, a.candidate, a.designer, a.reason) == (b.number, b.family, b.candidate,
                                                                         b.designer, b.reason)


class DesignerContract:
    """Subclass it in a test module with a ``case`` fixture returning a :class:`DesignerCase`."""

    def test_the_same_seed_gives_the_same_proposals(self, case: DesignerCase, tmp_path: Path) -> None:
        first = drive(case.build(_dir(tmp_path / "a"), 7), case, case.steps)
        second = drive(case.build(_dir(tmp_path / "b"), 7), case, case.steps)
        assert [p.candidate for p in first] == [p.candidate for p in second]
        assert all(same(a, b) for a, b in zip(first, second, strict=True))

    def test_results_in_any_order_and_foreign_results_are_taken(self, case: DesignerCase, tmp_path: Path) -> None:
        designer = case.build(_dir(tmp_path), 0)
        rng = np.random.default_rng(0)
        for i in range(4):  # a warm start: results of proposals it never made, one of them a failure
            designer.tell(case.foreign(rng, i), Result(OK, 0.5) if i else Result("error"))
        in_flight = [designer.ask() for _ in range(4)]
        assert all(p is not None for p in in_flight)
        for i, proposal in enumerate(reversed(in_flight)):  # out of order, a failure and a pruned one among them
            result = Result(OK, case.score(proposal)) if i > 1 else Result("error" if i else "pruned")
            designer.tell(proposal, result)  # type: ignore[arg-type]
        later = drive(designer, case, case.steps // 2)
        proposals = [*in_flight, *later]
        assert all(case.allowed(p) for p in proposals)  # type: ignore[arg-type]
        numbers = [p.number for p in proposals]  # type: ignore[union-attr]
        assert len(set(numbers)) == len(numbers), f"repeated proposal numbers: {numbers}"

    def test_get_state_then_set_state_continues_with_the_same_asks(self, case: DesignerCase, tmp_path: Path
                                                                   ) -> None:
        directory = _dir(tmp_path / "run")
        original = case.build(directory, 3)
        drive(original, case, case.steps // 2)
        pending = original.ask()  # in flight across the round trip
        assert pending is not None
        fresh = continued(original, case, directory, 3, tmp_path / "copy")
        for designer in (original, fresh):
            designer.tell(pending, Result(OK, case.score(pending)))
        after_original = drive(original, case, case.steps // 2)
        after_fresh = drive(fresh, case, case.steps // 2)
        assert [p.candidate for p in after_original] == [p.candidate for p in after_fresh]
        assert all(same(a, b) for a, b in zip(after_original, after_fresh, strict=True))

    def test_never_proposes_what_it_must_not(self, case: DesignerCase, tmp_path: Path) -> None:
        proposals = drive(case.build(_dir(tmp_path), 1), case, case.steps)
        rejected = [p.candidate for p in proposals if not case.allowed(p)]
        assert not rejected, f"{case.id} proposed {rejected}"
        numbers = [p.number for p in proposals]
        assert len(set(numbers)) == len(numbers), f"repeated proposal numbers: {numbers}"


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
