"""SHAP values of the final ensemble's predictions for single rows, in terms of the raw input columns.

The ensemble's output is a weighted average of its members (each the average of its bag of fitted
pipelines), and SHAP values add up the same way, so each member is explained on its own and the results are
weighted and summed:

* **Tree members** (random forest, extra trees, HistGradientBoosting, LightGBM, XGBoost, CatBoost) get
  ``shap.TreeExplainer`` (path-dependent: exact, and no background data needed) on the pipeline's encoded
  columns; the encoded columns made from one raw column (a date's parts, a text's SVD components) are summed.
  Forests explain class probabilities directly. Boosters explain the log-odds of a binary task; their values
  are rescaled so that they sum to the change in *probability* (the logistic link is monotone, so every value
  keeps its sign and its share), which is what the ensemble averages.
* **Every other member** (linear, k-NN, neural, and a tree member that TreeExplainer cannot explain exactly,
  e.g. a multiclass booster) is explained together with the others like it by ``shap.PermutationExplainer``
  over the raw columns, with an independent masker on a background sample of at most
  :data:`BACKGROUND_ROWS` training rows, so the cost is bounded: about ``permutations x (2p + 1) x 100``
  predictions per explained row. A raw column is masked as a whole (all its prepared columns together).

For every row, ``base_value + sum(contributions) == prediction`` up to floating point; the largest
deviation is reported as ``additivity_error``. What is explained: the probability of the positive class
(binary), of each row's predicted class (multiclass), or the predicted value (regression).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data.schema import Schema, Task
from daedalus.ensembles.model import EnsembleModel
from daedalus.evaluation.predict import predict_matrix
from daedalus.oversight.heldout import raw_column_groups

BACKGROUND_ROWS = 100
PERMUTATIONS = 5
TREE_FAMILIES = frozenset({"random_forest", "extra_trees", "hist_gb", "lightgbm", "xgboost", "catboost"})
ADDITIVITY_TOLERANCE = 1e-4


@dataclass
class RowExplanations:
    features: list[str]  # raw input columns, in file order
    output: str  # what is explained, in words
    prediction: np.ndarray  # (n,) the explained output per row
    base_value: np.ndarray  # (n,)
    contributions: np.ndarray  # (n, p), in the order of ``features``
    predicted_class: list[Any] | None  # per row, for classification
    methods: list[dict[str, Any]] = field(default_factory=list)  # per member: trial, family, weight, method
    background_rows: int = 0
    additivity_error: float = 0.0

    def to_dict(self, rows: pd.DataFrame | None = None) -> dict[str, Any]:
        out = []
        for i in range(len(self.prediction)):
            item: dict[str, Any] = {"row": i, "prediction": float(self.prediction[i]),
                                    "base_value": float(self.base_value[i]),
                                    "contributions": {f: float(v) for f, v in
                                                      zip(self.features, self.contributions[i], strict=True)}}
            if self.predicted_class is not None:
                item["predicted_class"] = self.predicted_class[i]
            if rows is not None:
                item["values"] = {f: _plain(rows.iloc[i][f]) for f in self.features if f in rows.columns}
            out.append(item)
        return {"output": self.output, "features": self.features, "methods": self.methods,
                "background_rows": self.background_rows, "additivity_error": self.additivity_error, "rows": out}


def _plain(value: Any) -> Any:
    """A JSON-friendly cell value (NaN as None, NumPy scalars as Python ones)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def _shap() -> Any:
    """``import shap``, with Numba's JIT off unless the user chose otherwise: compiling shap's masking helpers
    takes 5 to 20 seconds per process (measured: 3 rows of a permutation explanation took 23 s with the JIT and
    3.7 s without), far more than running them as plain Python on a bounded background sample. The setting
    only takes effect when Numba is not imported yet, and it changes no result."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
    import shap

    return shap


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _encoded_to_raw(pipeline: Any, groups: dict[str, list[str]], text: set[str]) -> np.ndarray | None:
    """An (encoded columns x raw columns) 0/1 matrix from the preprocessor's output names, or None."""
    raw_of: dict[str, int] = {}
    for j, prepared in enumerate(groups.values()):
        for col in prepared:
            raw_of[col] = j
    try:
        names = [str(n).split("__", 1)[1] for n in pipeline.named_steps["prep"].get_feature_names_out()]
    except (AttributeError, IndexError, KeyError, ValueError):
        return None
    mapping = np.zeros((len(names), len(groups)))
    for i, name in enumerate(names):
        col = name if name in raw_of else name.rsplit("_svd", 1)[0]
        if col not in raw_of or (col != name and col not in text):
            return None
        mapping[i, raw_of[col]] = 1.0
    return mapping


def _tree_values(pipeline: Any, X: pd.DataFrame, task: Task, n_classes: int, groups: dict[str, list[str]],
                 text: set[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(values (n, p, k), base (n, k)) in the ensemble's output units (k = 1 for regression), or None when
    TreeExplainer cannot explain this model exactly in those units."""
    shap = _shap()
    steps = getattr(pipeline, "named_steps", {})
    if "prep" not in steps or "model" not in steps:
        return None
    model = steps["model"]
    if task.is_classification:
        if not np.array_equal(np.asarray(model.classes_).astype(int), np.arange(n_classes)):
            return None  # a fold without some class: its columns would need remapping; explain it otherwise
        model = getattr(model, "estimator_", None) if type(model).__name__ == "ContiguousLabelClassifier" else model
    mapping = _encoded_to_raw(pipeline, groups, text)
    if model is None or mapping is None:
        return None
    encoded = steps["prep"].transform(X)
    target = predict_matrix(pipeline, X, task, n_classes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explanation = shap.TreeExplainer(model)(encoded)
    except Exception:  # noqa: BLE001 - any model TreeExplainer does not support falls back to the permutation explainer
        return None
    values = np.asarray(explanation.values, dtype=float)
    base = np.asarray(explanation.base_values, dtype=float).reshape(len(X), -1)
    if values.ndim == 2:
        values = values[:, :, None]
    total = base + values.sum(axis=1)
    if not task.is_classification:
        ok = np.allclose(total[:, 0], target, atol=1e-6, rtol=1e-4)
    elif values.shape[2] == n_classes:  # forests: probabilities
        ok = np.allclose(total, target, atol=1e-6, rtol=1e-4)
    elif values.shape[2] == 1 and n_classes == 2:  # binary boosters: log-odds of class 1
        p1 = target[:, 1]
        ok = np.allclose(_sigmoid(total[:, 0]), p1, atol=1e-5)
        if ok:
            base_p = _sigmoid(base[:, 0])
            margin = total[:, 0] - base[:, 0]
            scale = np.divide(p1 - base_p, margin, out=np.zeros_like(margin), where=np.abs(margin) > 1e-12)
            pos = values[:, :, 0] * scale[:, None]
            values = np.stack([-pos, pos], axis=2)
            base = np.stack([1 - base_p, base_p], axis=1)
    else:
        ok = False
    if not ok:
        return None
    return np.einsum("nmk,mp->npk", values, mapping), base


def _permutation_values(members: list[tuple[float, list[Any]]], X: pd.DataFrame, background: pd.DataFrame,
                        task: Task, n_classes: int, groups: dict[str, list[str]], seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Permutation SHAP of the weighted members over raw columns. Rows are coded as indices into a table of
    reference rows (the background, then the rows explained), one index per raw column, so that the masker
    swaps whole raw columns and a prediction needs no re-parsing of the data."""
    shap = _shap()
    reference = pd.concat([background, X], ignore_index=True)
    columns = {c: reference[c].to_numpy() for c in reference.columns}
    names = list(groups)

    def decode(codes: np.ndarray) -> pd.DataFrame:
        idx = codes.astype(int)
        parts = {}
        for j, name in enumerate(names):
            for col in groups[name]:
                parts[col] = columns[col][idx[:, j]]
        return pd.DataFrame(parts)[list(reference.columns)]

    def predict(codes: np.ndarray) -> np.ndarray:
        frame = decode(codes)
        total = sum(w * np.mean([predict_matrix(m, frame, task, n_classes) for m in bag], axis=0)
                    for w, bag in members)
        return np.asarray(total)

    n_bg = len(background)
    codes_bg = np.repeat(np.arange(n_bg, dtype=float)[:, None], len(names), axis=1)
    codes_x = np.repeat(np.arange(n_bg, n_bg + len(X), dtype=float)[:, None], len(names), axis=1)
    masker = shap.maskers.Independent(codes_bg, max_samples=n_bg)
    explainer = shap.explainers.Permutation(predict, masker, seed=seed)
    max_evals = PERMUTATIONS * (2 * len(names) + 1)
    explanation = explainer(codes_x, max_evals=max_evals, silent=True)
    values = np.asarray(explanation.values, dtype=float)
    base = np.asarray(explanation.base_values, dtype=float).reshape(len(X), -1)
    if values.ndim == 2:
        values = values[:, :, None]
    return values, base


def explain_rows(model: EnsembleModel, schema: Schema, X: pd.DataFrame, background: pd.DataFrame,
                 seed: int = 0) -> RowExplanations:
    """SHAP values of ``model``'s output for each row of ``X``. ``X`` and ``background`` are frames as the
    model takes them (``Predictor.features`` of raw rows); background rows beyond :data:`BACKGROUND_ROWS` are
    subsampled. A column the model reads besides the schema's features (a fairness mitigation reads each
    row's sensitive group) is explained as a column of its own."""
    task, n_classes = model.spec.task, model.spec.n_classes
    groups = raw_column_groups(schema)
    covered = {c for cols in groups.values() for c in cols}
    groups.update({str(c): [c] for c in X.columns if c not in covered})
    text = {c.name for c in schema.columns if c.kind.value == "text"}
    X = X.reset_index(drop=True)
    if len(background) > BACKGROUND_ROWS:
        background = background.sample(BACKGROUND_ROWS, random_state=seed)
    background = background.reset_index(drop=True)
    k = n_classes if task.is_classification else 1
    values = np.zeros((len(X), len(groups), k))
    base = np.zeros((len(X), k))
    methods, others = [], []
    for member, bag in zip(model.spec.members, model.estimators, strict=True):
        explained = ([_tree_values(m, X, task, n_classes, groups, text) for m in bag]
                     if member.family in TREE_FAMILIES else [None])
        info = {"trial": member.trial, "family": member.family, "weight": member.weight}
        if all(e is not None for e in explained):
            values += member.weight * np.mean([e[0] for e in explained if e is not None], axis=0)
            base += member.weight * np.mean([e[1] for e in explained if e is not None], axis=0)
            methods.append({**info, "method": "tree"})
        else:
            others.append((member.weight, bag))
            methods.append({**info, "method": "permutation"})
    if others:
        v, b = _permutation_values(others, X, background, task, n_classes, groups, seed)
        values += v
        base += b
    target = model.predict_matrix(X).reshape(len(X), k)
    if not task.is_classification:
        pick = np.zeros(len(X), dtype=int)
        output, predicted = "the predicted value", None
    elif n_classes == 2:
        pick = np.ones(len(X), dtype=int)
        output = f"the probability of class '{schema.classes[1]}'"  # type: ignore[index]
        predicted = [schema.classes[j] for j in target.argmax(axis=1)]  # type: ignore[index]
    else:
        pick = target.argmax(axis=1)
        output = "the probability of each row's predicted class"
        predicted = [schema.classes[j] for j in pick]  # type: ignore[index]
    at = np.arange(len(X))
    contributions, base_value, prediction = values[at, :, pick], base[at, pick], target[at, pick]
    error = float(np.max(np.abs(base_value + contributions.sum(axis=1) - prediction))) if len(X) else 0.0
    return RowExplanations(list(groups), output, prediction, base_value, contributions, predicted, methods,
                           len(background) if others else 0, error)
