"""Fairness mitigations as model families: Fairlearn's ThresholdOptimizer and ExponentiatedGradient, each
wrapped around a base family's configuration.

They enter the search only when a build asks for fairness (``--fairness`` or ``--objectives metric,fairness``),
and only for binary classification. A mitigation's configuration is its own parameters, the fairness
constraint it enforces, the base family, and the base family's hyperparameters prefixed with the base's name::

    {"base": "lightgbm", "constraint": "demographic_parity", "objective": "accuracy_score",
     "lightgbm.num_leaves": 31, ...}

Base hyperparameters left out take the base family's defaults.

**Sensitive features.** Both mitigations need each row's group when they are fit; ThresholdOptimizer needs
it when it predicts too (its thresholds are per group), ExponentiatedGradient does not (its mixture of
classifiers sees only the features). The groups travel in the feature frame as carried columns
(``data.sensitive.with_sensitive_columns``), which the base pipeline's preprocessing ignores. So a run whose
model holds a ``fair_threshold`` member needs the sensitive columns in the rows given to ``daedalus predict``.

**Small groups are pooled for fitting.** Groups with fewer than ``MIN_FIT_ROWS`` (30) rows in the rows a
mitigation is fit on (Asian and Native American defendants in COMPAS: 32 and 18 rows in the whole file) are
merged into one pooled group (``data.sensitive.pool_small_groups``): ThresholdOptimizer fits one threshold
rule for them together, and ExponentiatedGradient constrains their pooled rate, instead of fitting the noise of
a handful of rows. ThresholdOptimizer needs both labels in a group to draw its ROC curve (Fairlearn raises
"Degenerate labels" otherwise, and the trial failed), so it also pools groups whose rows all have one label; a
pooled group that still has one label is fit as part of the largest group. ThresholdOptimizer applies the rule
the pooled groups were fit under (``fallback_``) to them at prediction, and to groups never seen in fitting;
when nothing was pooled, an unseen group keeps the base model's probability.

**Saved form.** After fitting, the wrappers keep only scikit-learn estimators and NumPy arrays (the base
pipeline and the per-group threshold rules; the preprocessing, the classifiers of the mixture and their
weights), so they are saved with skops under the usual allowlist, without pickling Fairlearn's pandas state.

**Randomized classifiers, made reproducible.** Both mitigations are randomized classifiers: for each row
Fairlearn gives the probability that the fair classifier predicts 1 (its probability mass function), and
their fairness guarantee holds for decisions *drawn* from it. Taking the argmax instead can undo it (measured:
an ExponentiatedGradient mixture of two logistic regressions, fair in expectation with selection rates 0.49
and 0.47, gave 0.66 and 0.31 under argmax, the base model's own bias). So Daedalus draws: each row's uniform
number is a hash of its feature values (not of its position, batch or the sensitive columns), and the row is
predicted 1 when its probability exceeds the draw. The same row always gets the same decision, and the
decisions keep Fairlearn's guarantee in expectation. ``predict_proba`` returns that decision as a 0/1
probability, so ensembles, metrics and ``predict`` (argmax) all see the decision that is actually made.
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from daedalus.data.schema import FeatureLayout, Task
from daedalus.data.sensitive import POOLED_GROUP, SENSITIVE_PREFIX, carried_groups, pool_small_groups
from daedalus.errors import ConfigError
from daedalus.spaces.catalog import FAMILIES
from daedalus.spaces.family import Config, ModelFamily

# What a run's workers should import up front when mitigations are searched (evaluation.worker.start_early).
PRELOAD_MODULES = ("daedalus.spaces.mitigation", "fairlearn.postprocessing", "fairlearn.reductions")
BASE_PARAM = "base"
CONSTRAINT_PARAM = "constraint"
# Fairlearn's names for the constraints the mitigations enforce.
MITIGATION_CONSTRAINTS = ("demographic_parity", "equalized_odds")
# ExponentiatedGradient's defaults, declared once: the estimator's and the family's default configuration.
EXPGRAD_DIFFERENCE_BOUND = 0.01
EXPGRAD_MAX_ITER = 15  # oracle calls (refits of the base) at most


def _groups_or_fail(X: pd.DataFrame, what: str) -> np.ndarray:
    groups = carried_groups(X) if isinstance(X, pd.DataFrame) else None
    if groups is None:
        raise ValueError(f"{what} needs the sensitive columns (carried as __sensitive__<column>); pass rows "
                         f"that hold them")
    return groups


def row_draws(X: pd.DataFrame) -> np.ndarray:
    """One uniform number in [0, 1) per row, a hash of the row's feature values (carried sensitive columns
    left out, so that a model that does not need them at predict time draws the same with or without them)."""
    features = [c for c in X.columns if not (isinstance(c, str) and c.startswith(SENSITIVE_PREFIX))]
    hashed = pd.util.hash_pandas_object(X[features], index=False).to_numpy(dtype=np.uint64)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def _decisions(positive: np.ndarray, X: pd.DataFrame) -> np.ndarray:
    """The randomized classifier's decisions as (n, 2) probabilities of 0 and 1 (see the module docstring)."""
    decided = (np.asarray(positive, dtype=float) > row_draws(X)).astype(float)
    return np.column_stack([1.0 - decided, decided])


class _GivenScores(BaseEstimator):
    """An 'estimator' whose score for a row is the row's only column: lets Fairlearn's ThresholdOptimizer
    (prefit) choose thresholds on scores computed elsewhere (cross-fitted ones)."""

    def fit(self, X: Any, y: Any = None) -> _GivenScores:
        self.fitted_ = True
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        s = np.asarray(X, dtype=float)[:, 0]
        return np.column_stack([1.0 - s, s])


def _cross_fitted(estimator: Any, X: pd.DataFrame, y: np.ndarray,
                  folds: int) -> tuple[np.ndarray, list[Any]] | None:
    """Each row's positive-class score from the copy of ``estimator`` fit without it (``folds``-fold), and
    the copies; None when a class has too few rows for that many folds."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2 or np.bincount(y, minlength=2).min() < folds:
        return None
    scores = np.zeros(len(y))
    models = []
    for train, held in StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
        model = clone(estimator).fit(X.iloc[train], y[train])
        scores[held] = np.asarray(model.predict_proba(X.iloc[held]), dtype=float)[:, 1]
        models.append(model)
    return scores, models


@dataclass(eq=False, repr=False)
class _Mitigated(ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """What both mitigations share: the base ``estimator`` and Fairlearn's ``constraint``, and predict.

    The parameters are dataclass fields, here and in the subclasses: the generated ``__init__`` takes each as a
    keyword with its default and stores it as given, without logic, as scikit-learn's estimator contract asks
    (``get_params``, ``clone`` and ``set_params`` read that signature). ``eq=False, repr=False`` keep
    scikit-learn's identity hashing and repr."""

    estimator: Any = None
    constraint: str = "demographic_parity"

    @abstractmethod
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Mitigated:
        """Fit the mitigation on rows that carry the sensitive columns."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]

    @abstractmethod
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The randomized classifier's decisions as (n, 2) probabilities (see the module docstring)."""


@dataclass(eq=False, repr=False)
class ThresholdMitigated(_Mitigated):
    """Fairlearn's ThresholdOptimizer: the base pipeline's scores thresholded per group so that the groups
    meet ``constraint`` ("demographic_parity" or "equalized_odds") while maximising ``objective``.

    The thresholds are chosen on *cross-fitted* scores (``cv`` folds: each training row scored by the copy of
    the base fit without it), and the copies are the model: a new row's probability of a positive decision is
    the average, over the copies, of the group's rule applied to that copy's score. So the thresholds are
    applied to exactly the kind of score they were chosen on (a model's score for a row it did not see), and
    the groups' expected rates on new rows are the rates the thresholds equalised. Fairlearn's default,
    thresholds on the base's scores for its own training rows, equalises the rates on those rows only: a
    boosted base scores its training rows far more confidently than new ones (measured on COMPAS, race
    binarised: rates equal on the training rows, 0.05 to 0.10 apart on the test rows for each of three fold
    models of a LightGBM base); refitting the base on all rows after choosing thresholds on cross-fitted scores
    still left fold models 0.08 to 0.13 apart on new rows. ``cv=0`` (or too few rows of a class) keeps
    Fairlearn's default: one base fit on all rows, thresholds on its own scores.
    """

    objective: str = "accuracy_score"
    grid_size: int = 1000
    cv: int = 3

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ThresholdMitigated:
        from fairlearn.postprocessing import ThresholdOptimizer

        y = np.asarray(y)
        groups, self.pooled_ = pool_small_groups(_groups_or_fail(X, "ThresholdOptimizer"), y=y)
        self.fallback_ = POOLED_GROUP if self.pooled_ else None
        pooled = groups == POOLED_GROUP
        if pooled.any() and len(np.unique(y[pooled])) < 2:  # still one label: fit with the largest group
            names, counts = np.unique(groups[~pooled].astype(str), return_counts=True)
            if len(names):
                self.fallback_ = str(names[counts.argmax()])
                groups = np.where(pooled, self.fallback_, groups)
        crossed = _cross_fitted(self.estimator, X, y, int(self.cv))
        if crossed is None:  # thresholds on the base's scores for its own training rows (Fairlearn's default)
            optimizer = ThresholdOptimizer(estimator=self.estimator, constraints=self.constraint,
                                           objective=self.objective, grid_size=self.grid_size,
                                           predict_method="predict_proba", prefit=False)
            optimizer.fit(X, y, sensitive_features=groups)
            self.estimators_ = [optimizer.estimator_]
        else:
            scores, self.estimators_ = crossed
            optimizer = ThresholdOptimizer(estimator=_GivenScores().fit(None), constraints=self.constraint,
                                           objective=self.objective, grid_size=self.grid_size,
                                           predict_method="predict_proba", prefit=True)
            optimizer.fit(pd.DataFrame({"score": scores}), y, sensitive_features=groups)
        rules = optimizer.interpolated_thresholder_.interpolation_dict
        self.groups_ = [str(g) for g in rules]
        # One row per group: p0, sign0, t0, p1, sign1, t1, p_ignore, constant (sign +1 is ">", -1 is "<").
        self.rules_ = np.array([_rule_row(rules[g]) for g in rules], dtype=float)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "rules_")
        groups = _groups_or_fail(X, "this ThresholdOptimizer model")
        fallback = getattr(self, "fallback_", None)
        if fallback is not None:  # pooled small groups, and groups unseen in fitting, share one rule
            groups = np.where(np.isin(groups.astype(str), self.groups_), groups, fallback)
        positive = np.zeros(len(groups))
        for model in self.estimators_:  # the average over the cross-fitted copies of their rules' decisions
            scores = np.asarray(model.predict_proba(X), dtype=float)[:, 1]
            part = scores.copy()  # without a pooled rule, an unseen group keeps the base model's probability
            for group, rule in zip(self.groups_, self.rules_, strict=True):
                rows = groups == group
                p0, sign0, t0, p1, sign1, t1, p_ignore, constant = rule
                s = scores[rows]
                mixed = p0 * _apply(sign0, t0, s) + p1 * _apply(sign1, t1, s)
                part[rows] = p_ignore * constant + (1.0 - p_ignore) * mixed
            positive += part / len(self.estimators_)
        return _decisions(positive, X)


def _rule_row(b: Any) -> list[float]:
    def sign(op: Any) -> float:
        return 1.0 if op.operator == ">" else -1.0
    p_ignore = float(b["p_ignore"]) if "p_ignore" in b else 0.0
    constant = float(b["prediction_constant"]) if "prediction_constant" in b else 0.0
    return [float(b.p0), sign(b.operation0), float(b.operation0.threshold),
            float(b.p1), sign(b.operation1), float(b.operation1.threshold), p_ignore, constant]


def _apply(sign: float, threshold: float, scores: np.ndarray) -> np.ndarray:
    return (scores > threshold if sign > 0 else scores < threshold).astype(float)


@dataclass(eq=False, repr=False)
class ExpGradMitigated(_Mitigated):
    """Fairlearn's ExponentiatedGradient (Agarwal et al. 2018): a weighted mixture of the base model refit on
    reweighted rows, meeting ``constraint`` within ``difference_bound``. The base pipeline's preprocessing is
    fit once; only its final model is refit by the reduction (``max_iter`` oracle calls at most)."""

    difference_bound: float = EXPGRAD_DIFFERENCE_BOUND
    max_iter: int = EXPGRAD_MAX_ITER
    eps: float = 0.01

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> ExpGradMitigated:
        from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient

        groups, self.pooled_ = pool_small_groups(_groups_or_fail(X, "ExponentiatedGradient"))
        if not isinstance(self.estimator, Pipeline) or len(self.estimator.steps) < 2:
            raise ValueError("ExpGradMitigated wraps a Pipeline of preprocessing and a final model")
        self.prep_ = clone(Pipeline(self.estimator.steps[:-1])).fit(X, y)
        Xt = self.prep_.transform(X)
        moment_cls = DemographicParity if self.constraint == "demographic_parity" else EqualizedOdds
        reduction = ExponentiatedGradient(clone(self.estimator.steps[-1][1]),
                                          constraints=moment_cls(difference_bound=self.difference_bound),
                                          eps=self.eps, max_iter=int(self.max_iter))
        with warnings.catch_warnings():  # Fairlearn 0.15 sets Series items the way pandas 3 deprecates
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*Setting a value on a Series via .at.*")
            reduction.fit(Xt, np.asarray(y), sensitive_features=groups)
        weights = reduction.weights_[reduction.weights_ > 0]
        self.members_ = [reduction.predictors_[i] for i in weights.index]
        self.weights_ = weights.to_numpy(dtype=float) / float(weights.sum())
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "members_")
        Xt = self.prep_.transform(X)
        positive = sum(w * np.asarray(m.predict(Xt), dtype=float) for w, m in zip(self.weights_, self.members_,
                                                                                   strict=True))
        return _decisions(np.asarray(positive), X)


class MitigationFamily(ModelFamily):
    """A mitigation around a base family. ``bases`` are the families it may wrap; ``needs_groups_to_predict``
    says whether its fitted model needs the sensitive columns at predict time."""

    tasks = frozenset({Task.BINARY})
    bases: tuple[str, ...]
    needs_groups_to_predict: bool

    @abstractmethod
    def own_space(self) -> dict[str, BaseDistribution]:
        """The mitigation's own hyperparameters (besides the base and the constraint)."""

    @abstractmethod
    def own_defaults(self) -> Config:
        """A default for each of :meth:`own_space`'s hyperparameters."""

    @abstractmethod
    def wrap(self, pipeline: Any, constraint: str, own: Config) -> BaseEstimator:
        """The unfitted mitigation around the base family's ``pipeline``, with its ``own`` hyperparameters."""

    def _base(self, name: str) -> ModelFamily:
        if name not in self.bases:
            raise ConfigError(f"mitigation '{self.name}' takes a base among {', '.join(self.bases)}; got {name!r}")
        return FAMILIES[name]

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {BASE_PARAM: CategoricalDistribution(self.bases),
                CONSTRAINT_PARAM: CategoricalDistribution(MITIGATION_CONSTRAINTS), **self.own_space()}

    def base_space(self, base: str, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        """The base family's hyperparameters, named ``<base>.<param>`` (conditional on the base chosen)."""
        return {f"{base}.{k}": d for k, d in self._base(base).space(task, n_rows).items()}

    def default_config(self, task: Task, n_rows: int) -> Config:
        """The mitigation's defaults around the first base's default configuration (spelled out, so that a
        search enqueuing it does not sample the base's hyperparameters)."""
        base = self.bases[0]
        base_config = {f"{base}.{k}": v for k, v in self._base(base).default_config(task, n_rows).items()}
        return {BASE_PARAM: base, CONSTRAINT_PARAM: MITIGATION_CONSTRAINTS[0], **self.own_defaults(), **base_config}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        base = str(config.get(BASE_PARAM, self.bases[0]))
        constraint = str(config.get(CONSTRAINT_PARAM, MITIGATION_CONSTRAINTS[0]))
        if base not in self.bases or constraint not in MITIGATION_CONSTRAINTS:
            raise ConfigError(f"mitigation '{self.name}' takes a base among {', '.join(self.bases)} and a "
                              f"constraint among {', '.join(MITIGATION_CONSTRAINTS)}; got {base!r}, {constraint!r}")
        base_config = {k[len(base) + 1:]: v for k, v in config.items() if k.startswith(base + ".")}
        own = {**self.own_defaults(),
               **{k: v for k, v in config.items() if "." not in k and k not in (BASE_PARAM, CONSTRAINT_PARAM)}}
        unknown = sorted(set(own) - set(self.own_defaults()))
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for mitigation "
                              f"'{self.name}'; its own are {', '.join(sorted(self.own_defaults()))}")
        pipeline = self._base(base).build(base_config, layout, task, seed, n_threads)
        return self.wrap(pipeline, constraint, own)


class ThresholdFamily(MitigationFamily):
    name = "fair_threshold"
    bases = ("linear", "lightgbm", "hist_gb", "xgboost", "random_forest", "extra_trees", "catboost")
    needs_groups_to_predict = True

    def own_space(self) -> dict[str, BaseDistribution]:
        return {"objective": CategoricalDistribution(["accuracy_score", "balanced_accuracy_score"])}

    def own_defaults(self) -> Config:
        return {"objective": "accuracy_score"}

    def wrap(self, pipeline: Any, constraint: str, own: Config) -> BaseEstimator:
        return ThresholdMitigated(pipeline, constraint=constraint, objective=str(own["objective"]))


class ExpGradFamily(MitigationFamily):
    name = "fair_expgrad"
    # The reduction refits the base up to max_iter times with sample weights: cheap, weight-aware bases only.
    bases = ("linear", "lightgbm", "hist_gb")
    needs_groups_to_predict = False

    def own_space(self) -> dict[str, BaseDistribution]:
        return {"difference_bound": FloatDistribution(0.002, 0.05, log=True),
                "max_iter": IntDistribution(5, 30)}

    def own_defaults(self) -> Config:
        return {"difference_bound": EXPGRAD_DIFFERENCE_BOUND, "max_iter": EXPGRAD_MAX_ITER}

    def wrap(self, pipeline: Any, constraint: str, own: Config) -> BaseEstimator:
        return ExpGradMitigated(pipeline, constraint=constraint, difference_bound=float(own["difference_bound"]),
                                max_iter=int(own["max_iter"]))


MITIGATIONS: dict[str, MitigationFamily] = {f.name: f for f in (ThresholdFamily(), ExpGradFamily())}


def needs_groups_to_predict(family: str) -> bool:
    """True when a fitted model of ``family`` needs the sensitive columns to predict."""
    mitigation = MITIGATIONS.get(family)
    return bool(mitigation and mitigation.needs_groups_to_predict)
