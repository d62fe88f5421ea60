"""The steering wrapper: a designer that applies 'daedalus steer' commands around another designer.

As FLAML's ``ConcurrencyLimiter`` wraps a searcher, :class:`SteeredDesigner` wraps any
:class:`~daedalus.designers.base.Designer` (the tabular Optuna designer, an architecture designer) and is one
itself, so the search loop neither knows nor cares that a run is steered. What the commands mean, how they are
checked and how a resumed run replays them is ``oversight/steering.py``'s; this module applies them:

- ``apply_commands()`` reads the commands issued since it last looked, through the audit log's own reader
  (``AuditLog.records_after``), applies each and records ``steer_applied``. ``ask`` calls it first; the loop also
  calls it before each budget check, so time added by ``add-time`` counts at once.
- ``ask()`` returns None while the search is paused: the loop waits a moment (``POLL_SECONDS``), checks its
  budget and asks again. When ``out_of_time`` says the search's time ran out during the pause,
  ``apply_commands`` records ``pause_expired`` (a resumed run is then no longer paused) and the loop ends on its
  budget check.
- Every proposal the inner designer makes is recorded as ``trial_proposed``. One of an excluded family is not
  handed on: it is told to the inner designer as PRUNED (so TPE learns to leave the family) and recorded as
  ``trial_pruned``; after ``MAX_PRUNED_IN_A_ROW`` such proposals in a row an allowed family is enqueued (when the
  inner designer ``Enqueues``), so the search goes on.
- ``enqueue`` hands a configuration to the inner designer's ``enqueue`` (the ``Enqueues`` capability, which the
  Optuna designer has). Exclude and enqueue need ``families`` (and ``space_of`` for enqueue): a search without
  model families (an image run) records them as not applied; ``daedalus steer`` refuses them for such runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from daedalus.designers.base import PRUNED, C, Designer, Enqueues, Proposal, Result
from daedalus.errors import ConfigError
from daedalus.oversight.steering import SpaceOf, check_config, check_exclusion, steering_state
from daedalus.store.run import RunStore

POLL_SECONDS = 0.25  # how often a paused search asks again
MAX_PRUNED_IN_A_ROW = 25  # proposals of excluded families in a row before one is steered to an allowed family


class Clock(Protocol):
    seconds: float | None

    def add(self, seconds: float) -> None: ...


class Messages(Protocol):
    def message(self, text: str, **fields: Any) -> None: ...


class SteeredDesigner(Designer[C]):
    """``inner`` under the steering commands of the run in ``store`` (see the module docstring)."""

    def __init__(self, inner: Designer[C], store: RunStore, clock: Clock, reporter: Messages, *,
                 families: Sequence[str] | None = None, space_of: SpaceOf | None = None,
                 out_of_time: Callable[[], bool] = lambda: False) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.clock = clock
        self.reporter = reporter
        self.families = list(families) if families is not None else None
        self.space_of = space_of
        self.out_of_time = out_of_time
        self._seen = -1  # the audit seq read up to
        state = steering_state(self._new_records())  # what earlier sessions left in force
        self.paused = state.paused_by is not None
        self._carried_pause = state.paused_by
        self._announced = False  # the pause in force was reported
        self._expired = False  # pause_expired was recorded
        self.excluded: set[str] = set(state.excluded)
        self._pending = list(state.pending)  # e.g. issued while the run was stopped: applied before any trial

    # -- the designer contract -------------------------------------------------------------------------------
    def ask(self) -> Proposal[C] | None:
        self.apply_commands()
        if self.paused:
            self._while_paused()
            return None
        pruned = 0
        while True:  # a loop, not recursion: an excluded family may be proposed many times in a row
            proposal = self.inner.ask()
            if proposal is None:
                return None
            self.store.audit.append("trial_proposed", trial=proposal.number, family=proposal.family,
                                    config=proposal.candidate, designer=proposal.designer, reason=proposal.reason)
            if proposal.family not in self.excluded:
                return proposal
            reason = f"family {proposal.family} excluded by 'daedalus steer'"
            self.inner.tell(proposal, Result(PRUNED, None, {"reason": reason, "designer": proposal.designer}))
            self.store.audit.append("trial_pruned", trial=proposal.number, family=proposal.family, reason=reason)
            pruned += 1
            if pruned % MAX_PRUNED_IN_A_ROW == 0:
                self._steer_to_allowed(proposal.number)

    def tell(self, proposal: Proposal[C], result: Result) -> None:
        self.inner.tell(proposal, result)

    def enqueue(self, family: str, candidate: C, reason: str, by: str = "steering") -> None:
        """Passed on to the inner designer, so that wrappers compose (``Enqueues``)."""
        if not isinstance(self.inner, Enqueues):
            raise ValueError(f"the {self.inner.name} designer takes no enqueued candidates")
        self.inner.enqueue(family, candidate, reason, by)

    def get_state(self) -> dict[str, Any]:
        # The steering itself is replayed from the audit log (steering_state), not kept here.
        return {"inner": self.inner.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.inner.set_state(state["inner"])

    # -- pause -----------------------------------------------------------------------------------------------
    def _while_paused(self) -> None:
        if not self._announced:
            if self._carried_pause is not None:
                self.reporter.message(f"search paused by 'daedalus steer' (audit record {self._carried_pause}) "
                                      f"before the run stopped; it stays paused after the resume: 'daedalus steer "
                                      f"{self.store.root} resume' continues it")
            else:
                self.reporter.message("search paused by 'daedalus steer'; 'steer RUN resume' continues it")
            self._announced, self._carried_pause = True, None

    def _steer_to_allowed(self, number: int) -> None:
        """The inner designer keeps proposing excluded families (TPE still samples at random): enqueue an allowed
        family, its parameters left to the designer."""
        allowed = [f for f in self.families or [] if f not in self.excluded]
        if allowed and isinstance(self.inner, Enqueues):
            family = allowed[number % len(allowed)]
            self.inner.enqueue(family, {}, f"{MAX_PRUNED_IN_A_ROW} proposals in a row were of excluded families, "
                                           f"so {family} is tried, its parameters sampled")

    # -- commands --------------------------------------------------------------------------------------------
    def _new_records(self) -> list[dict[str, Any]]:
        records = self.store.audit.records_after(self._seen)
        if records:
            self._seen = records[-1]["seq"]
        return records

    def apply_commands(self) -> None:
        """Apply the commands issued since the last call, each recorded as ``steer_applied``; record
        ``pause_expired`` when the search is paused and its time has run out."""
        commands = self._pending + [r for r in self._new_records() if r.get("event") == "steer"]
        self._pending = []
        for command in commands:
            applied, effect = self._apply(command)
            extra = {"family": command["family"]} if command.get("command") == "exclude" else {}
            self.store.audit.append("steer_applied", command_seq=command["seq"], command=command.get("command"),
                                    applied=applied, effect=effect, **extra)
            self.reporter.message(f"steering: {command.get('command')}: {effect}")
        if self.paused and not self._expired and self.out_of_time():  # here: the loop's budget check comes next
            self._expired = True
            self.store.audit.append("pause_expired", reason="the search's time ran out while paused; "
                                    "the build finishes with the models it has")

    def _apply(self, command: dict[str, Any]) -> tuple[bool, str]:
        action = command.get("command")
        if action in ("pause", "resume"):
            self._carried_pause = None  # a pause or resume applied in this session supersedes the carried one
            self._announced = False
        if action == "pause":
            self.paused = True
            return True, "the search waits before its next trial (the budget clock keeps running)"
        if action == "resume":
            was_paused, self.paused = self.paused, False
            return was_paused, "the search continues" if was_paused else "the search was not paused"
        if action == "add-time":
            if self.clock.seconds is None:
                return False, "this session has no time budget (--trials only), so there is no time to add"
            self.clock.add(float(command["seconds"]))
            return True, f"the budget is now {self.clock.seconds:.1f} s"
        if action in ("exclude", "enqueue") and self.families is None:
            return False, f"not applied: this search has no model families to {action} (it searches architectures)"
        try:
            if action == "exclude":
                assert self.families is not None
                family = check_exclusion(str(command.get("family")), self.families, self.excluded)
                self.excluded.add(family)
                left = [f for f in self.families if f not in self.excluded]
                return True, f"no further trial of {family}; families left: {', '.join(left)}"
            if action == "enqueue":
                return self._enqueue(command)
        except ConfigError as exc:  # e.g. a family excluded after the configuration was enqueued
            return False, f"not applied: {exc}"
        return False, f"unknown command {action!r}"

    def _enqueue(self, command: dict[str, Any]) -> tuple[bool, str]:
        if self.space_of is None or not isinstance(self.inner, Enqueues):
            return False, f"not applied: the {self.inner.name} designer takes no enqueued configurations"
        assert self.families is not None
        family, config = check_config({"family": command.get("family"), "config": command.get("config")},
                                      self.families, self.excluded, self.space_of)
        self.inner.enqueue(family, config, f"enqueued by 'daedalus steer' (audit record {command['seq']})")
        return True, f"the next trial runs this {family} configuration"
