"""The Optuna study as a queue of trials, and every use of Optuna's private API in Daedalus, in one place.

Optuna's public API enqueues a trial (``enqueue_trial``) and takes the *oldest* waiting one (``ask``). Daedalus
also takes a waiting trial by its mark (a steered configuration runs ahead of the portfolio), closes the trials a
killed run left RUNNING, and carries a sampler's random position across a resume. Those need the storage
(``study._storage``), a trial's storage id (``FrozenTrial._trial_id``) and a sampler's generators (``_rng``):
private names, which may change with any Optuna release, so they are used here only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

# Marks (user attributes) of queued trials, kept when an interrupted trial is queued again.
PORTFOLIO_ATTR = "portfolio"  # a family's default configuration, tried before the search proper
STEERED_ATTR = "steered"  # a configuration enqueued by 'daedalus steer enqueue': why, as the audit log says
ENQUEUED_BY_ATTR = "enqueued_by"  # who enqueued a steered trial, when not 'steering'
# A warm start's queued configuration (designers/warm_start.py): why it was chosen, and its source
# ("portfolio": the mined portfolio, "knowledge": the user's past runs). Marked PORTFOLIO_ATTR too: a queue entry.
WARM_REASON_ATTR = "warm_reason"
# A TPE proposal shaped by similar past trials (designers/tpe_prior.py), queued so that the study asks for it: why.
SHAPED_ATTR = "shaped_reason"
REQUEUE_KEEPS = (PORTFOLIO_ATTR, STEERED_ATTR, ENQUEUED_BY_ATTR, WARM_REASON_ATTR, SHAPED_ATTR)


def claim_waiting(study: optuna.Study, attr: str) -> optuna.trial.Trial | None:
    """The oldest waiting trial marked with ``attr``, taken out of the queue ahead of older unmarked ones, as
    Optuna's own ``ask`` takes a waiting trial: by moving it to RUNNING. A trial that another process claimed
    (the state was already RUNNING) or finished meanwhile (``UpdateFinishedTrialError``) is skipped."""
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if attr in waiting.user_attrs and _claim(study, waiting):
            return optuna.trial.Trial(study, waiting._trial_id)
    return None


def _claim(study: optuna.Study, waiting: optuna.trial.FrozenTrial) -> bool:
    """Move a waiting trial to RUNNING; False if another process claimed or finished it meanwhile."""
    try:
        return bool(study._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING))
    except UpdateFinishedTrialError:
        return False


def contains(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether ``value`` lies in ``dist`` (its range and step, or its choices): a value read from elsewhere (a past
    run, the corpus) is checked before it joins a study."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (TypeError, ValueError):
        return False


def draw_seed(sampler: optuna.samplers.BaseSampler) -> int:
    """A seed drawn from ``sampler``'s own generator (so a run's seed, and a resume, fix it), 0 if it has none."""
    generators = _generators(sampler)
    return int(generators[0].randint(2**31 - 1)) if generators else 0


def drop_waiting(study: optuna.Study, attr: str, status: str, reason: str,
                 keep: Callable[[dict[str, Any]], bool] = lambda attrs: False) -> list[int]:
    """Take every waiting trial marked with ``attr`` (and not kept by ``keep``, given its user attributes) out of
    the queue: each is claimed (as ``claim_waiting`` does, so one another process took meanwhile is left alone)
    and closed as failed with ``status`` and ``reason``. Optuna has no way to remove a waiting trial, and its
    ``ask`` takes any waiting one before sampling. Returns their numbers."""
    storage = study._storage
    numbers = []
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if attr not in waiting.user_attrs or keep(waiting.user_attrs) or not _claim(study, waiting):
            continue
        storage.set_trial_user_attr(waiting._trial_id, "status", status)
        storage.set_trial_user_attr(waiting._trial_id, "reason", reason)
        storage.set_trial_state_values(waiting._trial_id, TrialState.FAIL)
        numbers.append(waiting.number)
    return numbers


def running_trial(study: optuna.Study, number: int) -> optuna.trial.Trial | None:
    """A handle on trial ``number`` of ``study`` if it is still RUNNING (a designer continued from its state
    tells it), else None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number == number:
            return optuna.trial.Trial(study, trial._trial_id)
    return None


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a killed run are marked failed ('interrupted') and queued to run again, with their
    portfolio or steering marks; returns their numbers."""
    storage = study._storage
    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={k: v for k, v in t.user_attrs.items() if k in REQUEUE_KEEPS})
        numbers.append(t.number)
    return numbers


def _generators(sampler: optuna.samplers.BaseSampler) -> list[Any]:
    """The legacy numpy generators (``RandomState``) a sampler draws from, in a fixed order."""
    found = []
    for owner in (sampler, getattr(sampler, "_random_sampler", None)):
        lazy = getattr(owner, "_rng", None)
        if lazy is not None:
            found.append(lazy.rng)
    return found


def sampler_state(sampler: optuna.samplers.BaseSampler) -> list[list[Any]]:
    """The random position of ``sampler`` (TPE and random samplers), JSON-serialisable."""
    out = []
    for generator in _generators(sampler):
        name, keys, pos, has_gauss, gauss = generator.get_state()
        out.append([name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)])
    return out


def set_sampler_state(sampler: optuna.samplers.BaseSampler, state: list[list[Any]]) -> None:
    """Put ``sampler`` (built with the same arguments) back where ``sampler_state`` found it."""
    import numpy as np

    generators = _generators(sampler)
    if len(generators) != len(state):
        raise ValueError(f"a sampler state of {len(state)} generator(s) does not fit {type(sampler).__name__}")
    for generator, (name, keys, pos, has_gauss, gauss) in zip(generators, state, strict=True):
        generator.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
