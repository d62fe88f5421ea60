"""The fairness mitigation policy, as a designer that wraps the tabular designer (as FLAML's
``ConcurrencyLimiter`` wraps a searcher).

It proposes nothing of its own: ``ask`` is the inner designer's. What it adds is in ``tell``: after the inner
designer has learnt from a trial that breaks the fairness constraint (the search's per-trial evaluation put
``feasible: False`` in the Result's info) and is the best such trial so far, it queues Fairlearn's
ThresholdOptimizer around that trial's configuration through the inner designer's queue (``enqueue``). The
queued mitigation is then taken ahead of the portfolio by the inner designer's next ``ask``. Post-processing
keeps most of a strong model's skill and costs one more fit, so the best infeasible model is worth wrapping;
a weaker one is not (the better one's mitigation will be at least as good).

State: the utility of the best infeasible trial wrapped so far (``get_state``/``set_state``), next to the inner
designer's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from daedalus.designers.base import Designer, Proposal, Result
from daedalus.spaces.mitigation import BASE_PARAM, CONSTRAINT_PARAM, MITIGATIONS

Config = dict[str, Any]
FEASIBLE_ATTR = "feasible"  # in a Result's info: whether the trial meets the fairness constraint
MITIGATION_FAMILY = "fair_threshold"  # ThresholdOptimizer: post-processing, one cheap fit around any base


class EnqueuingDesigner(Protocol):
    """A tabular designer with a queue of configurations it proposes before its own (OptunaDesigner)."""

    def ask(self) -> Proposal[Config] | None: ...

    def tell(self, proposal: Proposal[Config], result: Result) -> None: ...

    def get_state(self) -> dict[str, Any]: ...

    def set_state(self, state: Mapping[str, Any]) -> None: ...

    def enqueue(self, family: str, candidate: Config, reason: str, by: str = "steering", *,
                skip_if_exists: bool = False) -> None: ...


class MitigatingDesigner(Designer[Config]):
    """Wraps ``inner``; queues a ThresholdOptimizer mitigation around the best trial so far that breaks the
    fairness constraint.

    ``families`` are the run's families (no mitigation when ``fair_threshold`` is not among them, e.g.
    ``--exclude fair_threshold``); ``constraint`` is Fairlearn's name of the constraint the mitigation enforces
    (``demographic_parity``); ``utility`` maps a score to higher-is-better (``Metric.utility``).
    """

    name = "mitigation"

    def __init__(self, inner: EnqueuingDesigner, families: Sequence[str], constraint: str,
                 utility: Callable[[float], float]) -> None:
        self.inner = inner
        self.families = tuple(families)
        self.constraint = constraint
        self.utility = utility
        self.best_unfair: float | None = None  # utility of the best infeasible trial wrapped so far

    def ask(self) -> Proposal[Config] | None:
        return self.inner.ask()

    def tell(self, proposal: Proposal[Config], result: Result) -> None:
        self.inner.tell(proposal, result)  # first: the mitigation is queued behind what the inner one learnt
        if result.ok and result.score is not None and not result.info.get(FEASIBLE_ATTR, True):
            self._mitigate(proposal, result.score)

    def enqueue(self, family: str, candidate: Config, reason: str, by: str = "steering", *,
                skip_if_exists: bool = False) -> None:
        """The inner designer's queue, passed through (a steering wrapper outside this one enqueues here)."""
        self.inner.enqueue(family, candidate, reason, by, skip_if_exists=skip_if_exists)

    def _mitigate(self, proposal: Proposal[Config], score: float) -> None:
        mitigation = MITIGATIONS[MITIGATION_FAMILY]
        if MITIGATION_FAMILY not in self.families or proposal.family not in mitigation.bases:
            return
        utility = self.utility(score)
        if self.best_unfair is not None and utility <= self.best_unfair:
            return
        self.best_unfair = utility
        config = {BASE_PARAM: proposal.family, CONSTRAINT_PARAM: self.constraint, **mitigation.own_defaults(),
                  **{f"{proposal.family}.{k}": v for k, v in proposal.candidate.items()}}
        # skip_if_exists: the same trial run again after a resume must not queue its mitigation twice.
        self.inner.enqueue(MITIGATION_FAMILY, config, f"Fairlearn's ThresholdOptimizer around trial "
                           f"{proposal.number}, the best model so far that breaks the fairness constraint",
                           by="mitigation", skip_if_exists=True)

    def get_state(self) -> dict[str, Any]:
        return {"inner": self.inner.get_state(), "best_unfair": self.best_unfair}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.inner.set_state(state.get("inner", {}))
        best = state.get("best_unfair")
        self.best_unfair = None if best is None else float(best)
