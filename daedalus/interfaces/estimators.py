"""scikit-learn estimators over a whole Daedalus build.

They follow scikit-learn's contract: parameters are stored as given with no logic in ``__init__``, ``fit``
returns ``self``, and learned state ends in ``_``. Each ``fit`` is a full run in ``run_dir`` (a fresh temporary
directory when it is None), so a fitted estimator can also be reloaded later with :func:`load`, which (unlike
the estimator just fitted) goes through the approval gate, as ``daedalus predict`` does.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import assert_all_finite, check_array, check_is_fitted, column_or_1d

from daedalus.ensembles.predictor import Predictor
from daedalus.errors import RunError
from daedalus.orchestration.build import build
from daedalus.orchestration.option_spec import Declared, Names, comma_list, declarations
from daedalus.orchestration.options import BuildOptions
from daedalus.oversight.approval import authorize_use
from daedalus.store.run import RunStore

TARGET = "__target__"
# The build options the estimators take as parameters (declared ``python=True``), in declaration order.
PARAMETERS = tuple(d for d in declarations(BuildOptions) if d.spec.python)


def _option_value(d: Declared, value: Any) -> Any:
    """A parameter as the build option wants it: a list of names as a tuple (a string is read as the command line
    reads it, "linear,knn"), an empty one as the option's default (``families=[]``: every family)."""
    if not isinstance(d.spec.constraint, Names) or value is None:
        return value
    if not isinstance(value, Iterable):
        return value  # for the option's constraint to refuse
    names = comma_list(value) if isinstance(value, str) else tuple(value)
    return names or d.default


def _as_frame(X: Any, columns: list[str] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X.copy()
    # scikit-learn's own checks: 2-d, no complex numbers, no sparse matrices; missing values are allowed.
    arr = check_array(X, dtype=None, ensure_all_finite="allow-nan", ensure_min_samples=1)
    if arr.dtype == object:
        for value in arr.ravel():
            if not (value is None or isinstance(value, (str, int, float, bool, np.generic))):
                raise TypeError(f"argument must be a string or a number, got a {type(value).__name__} in X")
    names = columns if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=names)


class _AutoEstimator(BaseEstimator):
    _task: str | None = None

    # scikit-learn reads the parameters from this signature, so it is written out; each default is read from the
    # option's one declaration (BuildOptions), and tests/test_options.py checks names and defaults against it.
    def __init__(self, time_budget: float | None = BuildOptions.time_budget,
                 n_trials: int | None = BuildOptions.n_trials, seed: int = BuildOptions.seed,
                 metric: str | None = BuildOptions.metric, run_dir: str | Path | None = None,
                 families: tuple[str, ...] | None = BuildOptions.families,
                 exclude: tuple[str, ...] = BuildOptions.exclude, keep_leaks: bool = BuildOptions.keep_leaks,
                 workers: int | None = BuildOptions.workers, n_threads: int | None = BuildOptions.n_threads,
                 ray: str | None = BuildOptions.ray, search_rows: int | None = BuildOptions.search_rows,
                 sensitive: tuple[str, ...] = BuildOptions.sensitive,
                 fairness: str | None = BuildOptions.fairness, explain: bool = BuildOptions.explain,
                 knowledge: str | None = BuildOptions.knowledge) -> None:
        self.time_budget = time_budget
        self.n_trials = n_trials
        self.seed = seed
        self.metric = metric
        self.run_dir = run_dir  # not an option of the build: where it goes (None: a fresh temporary directory)
        self.families = families
        self.exclude = exclude
        self.keep_leaks = keep_leaks
        self.workers = workers  # trials at once
        self.n_threads = n_threads  # per trial (None: this machine's cores shared among the workers)
        self.ray = ray  # a Ray cluster's address: the trials run there
        self.search_rows = search_rows  # rows the search fits on (None: all up to 100,000, else sized to the budget)
        self.sensitive = sensitive  # columns of X audited for fairness, left out of the features
        self.fairness = fairness  # e.g. "demographic_parity_difference<=0.05" (needs sensitive)
        self.explain = explain  # explanations.json at the end of fit
        self.knowledge = knowledge  # the knowledge base the fit records into: None (the default file), a URL, "off"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are imputed by each family's preprocessing
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    def _options(self, task: str | None) -> BuildOptions:
        """The build's options: this estimator's parameters, checked against their declarations (a bad one is a
        ConfigError naming the parameter, e.g. ``time_budget must be a number > 0 or None, got -5``)."""
        values = {d.name: _option_value(d, getattr(self, d.name)) for d in PARAMETERS}
        return BuildOptions(target=TARGET, task=task, **values).checked(style="python")

    def fit(self, X: Any, y: Any) -> _AutoEstimator:
        self._options(self._task)  # parameters first, before the data is looked at
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        frame = _as_frame(X)
        y_arr = column_or_1d(y, warn=True)
        if y_arr.dtype.kind in "fc":
            assert_all_finite(y_arr, input_name="y")
        self._check_target(y_arr)
        if len(frame) != len(y_arr):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y_arr)}")
        frame[TARGET] = y_arr
        run_dir = Path(self.run_dir) if self.run_dir is not None else Path(tempfile.mkdtemp(prefix="daedalus-"))
        result = build(frame, self._options(self._task_for(y_arr.ravel())), run_dir)
        self._set_fitted(result.run_dir)
        self.feature_names_in_ = np.asarray(frame.columns[:-1], dtype=object)
        self.n_features_in_ = frame.shape[1] - 1
        return self

    def _task_for(self, y: np.ndarray) -> str | None:
        return self._task

    def _check_target(self, y: np.ndarray) -> None:
        """Reject targets the estimator cannot learn (scikit-learn's own checks)."""

    def _set_fitted(self, run_dir: Path) -> None:
        self.run_dir_ = Path(run_dir)
        self.predictor_ = Predictor.load(self.run_dir_)
        # (a run stopped before its end has no leaderboard yet; its best model so far is used, as by predict)
        self.leaderboard_ = pd.DataFrame(RunStore.open(self.run_dir_).read("leaderboard", []))

    def _frame(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "predictor_")
        if isinstance(X, pd.DataFrame):
            return X
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"Expected a 2D array, got a {arr.ndim}D array instead; Reshape your data")
        if arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return _as_frame(arr, list(self.feature_names_in_))

    def predict(self, X: Any) -> np.ndarray:
        frame = self._frame(X)
        return self.predictor_.predict(frame)


class AutoClassifier(ClassifierMixin, _AutoEstimator):
    """Binary or multiclass classification; the task follows the number of classes in ``y``."""

    def _task_for(self, y: np.ndarray) -> str | None:
        return "binary" if len(pd.unique(pd.Series(y).dropna())) <= 2 else "multiclass"

    def _check_target(self, y: np.ndarray) -> None:
        check_classification_targets(y)

    def _set_fitted(self, run_dir: Path) -> None:
        super()._set_fitted(run_dir)
        self.classes_ = np.asarray(self.predictor_.classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        frame = self._frame(X)
        return self.predictor_.predict_proba(frame)


class AutoRegressor(RegressorMixin, _AutoEstimator):
    _task = "regression"


def load(run_dir: str | Path, unapproved: bool = False) -> AutoClassifier | AutoRegressor:
    """The fitted estimator of a saved run, ready to predict: loading a model for use goes through the approval
    gate, as ``daedalus predict`` does. A model not approved (``daedalus approve RUN --by NAME --reason TEXT``)
    raises :class:`~daedalus.oversight.approval.NotApproved` (a ``DaedalusError``), unless ``unapproved=True``:
    then the use is recorded in the run's audit log (``unapproved_use``) and a ``UserWarning`` is issued.

    An estimator fitted in this process (``AutoClassifier().fit(X, y)``) is used without the gate: that is
    training, not deployment."""
    warning = authorize_use(Path(run_dir), unapproved, data="daedalus.load (Python API)", use="load")
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=2)
    store = RunStore.open(Path(run_dir))
    info = store.read("run")
    options = BuildOptions.from_dict(info["options"])
    cls = AutoRegressor if info.get("task") == "regression" else AutoClassifier
    est = cls(run_dir=str(run_dir), **{d.name: getattr(options, d.name) for d in PARAMETERS})  # every parameter
    est._set_fitted(Path(run_dir))
    schema = store.read("schema")
    names = [c for c in (col["name"] for col in schema["columns"]) if c != schema["target"]]
    if not names:
        raise RunError(f"run '{run_dir}' has no feature columns recorded")
    est.feature_names_in_ = np.asarray(names, dtype=object)
    est.n_features_in_ = len(names)
    return est
