"""Contract suite: every model family x every task."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.base import clone, is_classifier, is_regressor

from daedalus.data.schema import FeatureLayout, Task
from daedalus.errors import ConfigError
from daedalus.spaces.family import ModelFamily
from daedalus.spaces.registry import FAMILIES
from daedalus.spaces.testing import toy_problem, with_unseen

N_ROWS = 80
CASES = [(name, task) for name in FAMILIES for task in Task]
IDS = [f"{name}-{task.value}" for name, task in CASES]
# Size knobs capped in tests so that the whole suite stays fast; everything else is as sampled.
CAPS = {"n_estimators": 40, "iterations": 40, "max_iter": 40}


@pytest.fixture(autouse=True)
def _fast_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FAMILIES["neural"], "max_epochs", 20)


def _capped(config: dict[str, Any]) -> dict[str, Any]:
    return {k: min(v, CAPS[k]) if k in CAPS else v for k, v in config.items()}


def _sample_configs(space: dict[str, BaseDistribution], n: int, seed: int) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = []
    for _ in range(n):
        trial = study.ask(space)
        configs.append(dict(trial.params))
        study.tell(trial, 0.0)
    return configs


def _predictions(est: Any, X: Any, task: Task) -> np.ndarray:
    return np.asarray(est.predict_proba(X) if task.is_classification else est.predict(X), dtype=np.float64)


def _check_predictions(est: Any, X: Any, y: np.ndarray, task: Task) -> np.ndarray:
    pred = _predictions(est, X, task)
    assert np.all(np.isfinite(pred))
    labels = np.asarray(est.predict(X))
    assert labels.shape == (len(X),)
    if task.is_classification:
        k = len(np.unique(y))
        assert pred.shape == (len(X), k)
        np.testing.assert_allclose(pred.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(pred >= 0)
        np.testing.assert_array_equal(np.asarray(est.classes_).astype(int), np.arange(k))
        assert set(np.unique(labels)) <= set(range(k))
    else:
        assert pred.shape == (len(X),)
    return pred


def _fit(family: ModelFamily, config: dict[str, Any], task: Task, seed: int = 0, n_threads: int = 1,
         **problem: Any) -> tuple[Any, Any, np.ndarray, FeatureLayout]:
    X, y, layout = toy_problem(task, N_ROWS, **problem)
    est = family.build(config, layout, task, seed, n_threads)
    est.fit(X, y)
    return est, X, y, layout


def test_registry_has_every_family() -> None:
    assert list(FAMILIES) == ["linear", "random_forest", "extra_trees", "hist_gb", "lightgbm", "xgboost",
                              "catboost", "knn", "neural"]
    for name, family in FAMILIES.items():
        assert family.name == name
        assert family.tasks == frozenset(Task)


@pytest.mark.parametrize(("name", "task"), CASES, ids=IDS)
@pytest.mark.parametrize("n_rows", [30, 10_000])
def test_default_config_lies_in_space(name: str, task: Task, n_rows: int) -> None:
    family = FAMILIES[name]
    space = family.space(task, n_rows)
    default = family.default_config(task, n_rows)
    assert space and set(default) <= set(space)
    for key, dist in space.items():
        assert isinstance(dist, (FloatDistribution, IntDistribution, CategoricalDistribution)), key
        assert not key.startswith(name + "."), "names are the family's own, without a prefix"
    for key, value in default.items():
        dist = space[key]
        assert dist._contains(dist.to_internal_repr(value)), f"{name}.{key}={value!r} is outside {dist}"


@pytest.mark.parametrize(("name", "task"), CASES, ids=IDS)
def test_default_and_sampled_configs_fit_and_predict(name: str, task: Task) -> None:
    family = FAMILIES[name]
    space = family.space(task, N_ROWS)
    configs = [family.default_config(task, N_ROWS), *_sample_configs(space, 2, seed=list(FAMILIES).index(name))]
    for config in configs:
        est, X, y, layout = _fit(family, _capped(config), task)
        assert is_classifier(est) if task.is_classification else is_regressor(est)
        _check_predictions(est, with_unseen(X, layout), y, task)


@pytest.mark.parametrize(("name", "task"), CASES, ids=IDS)
def test_same_seed_same_predictions(name: str, task: Task) -> None:
    family = FAMILIES[name]
    config = _capped(family.default_config(task, N_ROWS))
    preds = []
    for _ in range(2):
        est, X, y, layout = _fit(family, config, task, seed=7, n_threads=2)
        preds.append(_predictions(est, with_unseen(X, layout), task))
    # Forests sum their trees' probabilities from several threads in any order: equal up to rounding.
    np.testing.assert_allclose(preds[0], preds[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_learns_something(name: str) -> None:
    """On a clean signal, the default configuration beats the majority class on held-out rows."""
    family = FAMILIES[name]
    X, y, layout = toy_problem(Task.BINARY, 400, seed=3, text=False)
    est = family.build(_capped(family.default_config(Task.BINARY, 300)), layout, Task.BINARY, 0, 1)
    est.fit(X.iloc[:300], y[:300])
    accuracy = float(np.mean(est.predict(X.iloc[300:]) == y[300:]))
    assert accuracy > 0.75, accuracy


@pytest.mark.parametrize("name", list(FAMILIES))
def test_n_threads_and_seed_reach_the_model(name: str) -> None:
    family = FAMILIES[name]
    _, _, layout = toy_problem(Task.BINARY, 20)
    params = family.build(family.default_config(Task.BINARY, 1000), layout, Task.BINARY, 123, 3).get_params()
    model_keys = [k for k in params if k.startswith("model__")]
    thread_keys = [k for k in model_keys if k.rsplit("__", 1)[-1] in ("n_jobs", "thread_count", "n_threads")]
    seed_keys = [k for k in model_keys if k.rsplit("__", 1)[-1] in ("random_state", "random_seed", "seed")]
    if name in ("linear", "hist_gb"):
        # No per-estimator knob (lbfgs/saga are single-threaded; HistGradientBoosting uses OpenMP): the
        # evaluator caps BLAS/OpenMP threads with threadpoolctl around fit and predict.
        assert not [k for k in thread_keys if params[k] not in (None, 3)]
    else:
        assert thread_keys and all(params[k] == 3 for k in thread_keys), thread_keys
    if name != "knn":  # k-NN is deterministic and has no seed
        assert seed_keys and all(params[k] == 123 for k in seed_keys), seed_keys


@pytest.mark.parametrize("name", list(FAMILIES))
def test_built_estimator_is_an_unfitted_clonable_pipeline(name: str) -> None:
    family = FAMILIES[name]
    _, _, layout = toy_problem(Task.MULTICLASS, 20)
    est = family.build(family.default_config(Task.MULTICLASS, 1000), layout, Task.MULTICLASS, 0, 1)
    assert [s for s, _ in est.steps] == ["prep", "model"]
    clone(est)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_unknown_hyperparameter_is_a_config_error(name: str) -> None:
    family = FAMILIES[name]
    _, _, layout = toy_problem(Task.BINARY, 20)
    with pytest.raises(ConfigError, match=f"unknown hyperparameter.*'bogus'.*'{name}'"):
        family.build({**family.default_config(Task.BINARY, 100), "bogus": 1}, layout, Task.BINARY, 0, 1)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_partial_config_is_completed_from_defaults(name: str) -> None:
    family = FAMILIES[name]
    est, X, y, layout = _fit(family, {}, Task.REGRESSION) if name != "neural" else _fit(
        family, {"width_1": 16}, Task.REGRESSION)
    _check_predictions(est, X, y, Task.REGRESSION)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_fold_missing_a_class(name: str) -> None:
    """A cross-validation fold may lack a class: labels {0, 2} of a 3-class task."""
    family = FAMILIES[name]
    X, y, layout = toy_problem(Task.MULTICLASS, N_ROWS)
    keep = y != 1
    est = family.build(_capped(family.default_config(Task.MULTICLASS, N_ROWS)), layout, Task.MULTICLASS, 0, 1)
    est.fit(X[keep], y[keep])
    np.testing.assert_array_equal(np.asarray(est.classes_).astype(int), [0, 2])
    proba = est.predict_proba(X)
    assert proba.shape == (N_ROWS, 2)
    assert set(np.unique(est.predict(X))) <= {0, 2}


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("groups", [(1, 0, False), (0, 2, False), (0, 0, True), (2, 1, True)],
                         ids=["numeric-only", "categorical-only", "text-only", "all"])
def test_layout_groups_may_be_empty(name: str, groups: tuple[int, int, bool]) -> None:
    family = FAMILIES[name]
    n_numeric, n_categorical, text = groups
    est, X, y, layout = _fit(family, _capped(family.default_config(Task.BINARY, N_ROWS)), Task.BINARY,
                             n_numeric=n_numeric, n_categorical=n_categorical, text=text)
    _check_predictions(est, with_unseen(X, layout), y, Task.BINARY)


@pytest.mark.parametrize(("name", "task"), CASES, ids=IDS)
def test_degenerate_columns_single_rows_and_column_order(name: str, task: Task) -> None:
    """All-missing numeric and categorical columns, a constant column, blank text; then predictions for one
    row, and for a frame whose columns come in another order."""
    family = FAMILIES[name]
    X, y, layout = toy_problem(task, N_ROWS)
    X["num1"] = np.nan
    X["cat1"] = pd.Series([np.nan] * N_ROWS, dtype=object)
    X["num2"] = 1.0
    X["text0"] = ""
    est = family.build(_capped(family.default_config(task, N_ROWS)), layout, task, 0, 1).fit(X, y)
    one = _predictions(est, X.iloc[:1], task)
    assert one.shape[0] == 1 and np.all(np.isfinite(one))
    reordered = X[list(reversed(X.columns))]
    np.testing.assert_allclose(_predictions(est, reordered, task), _predictions(est, X, task), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "task"), CASES, ids=IDS)
def test_default_config_survives_an_optuna_enqueue(name: str, task: Task) -> None:
    """The search enqueues each default and asks for it back through the space: it must come back unchanged."""
    family = FAMILIES[name]
    space, default = family.space(task, 5000), family.default_config(task, 5000)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(default)
    trial = study.ask()
    for key, dist in space.items():
        if isinstance(dist, FloatDistribution):
            trial.suggest_float(key, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDistribution):
            trial.suggest_int(key, dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            assert isinstance(dist, CategoricalDistribution)
            trial.suggest_categorical(key, dist.choices)
    assert {k: trial.params[k] for k in default} == default
