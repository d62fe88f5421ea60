"""A run's usable model: the saved schema plus the final model (or the best so far while a run is young).

It takes raw rows, as a user has them: extra columns are ignored, a missing needed column is a clear error,
and unseen categories and missing values are handled by the models' own preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data import prepare_features
from daedalus.data.schema import Schema
from daedalus.data.sensitive import carry_for_prediction
from daedalus.ensembles.model import EnsembleModel
from daedalus.ensembles.network import NetworkModel, is_network_dir
from daedalus.errors import DataError, RunError
from daedalus.spaces.mitigation import needs_groups_to_predict
from daedalus.store.run import RunStore


class Predictor:
    def __init__(self, schema: Schema, model: EnsembleModel, source: str) -> None:
        self.schema = schema
        self.model = model
        self.source = source  # "model" (final) or "best" (best so far)
        # A fairness mitigation with per-group thresholds reads each row's group when it predicts.
        self.needs_groups = any(needs_groups_to_predict(m.family) for m in model.spec.members)
        # New rows with text in a numeric column are refused (see prepare_features); False reads it as missing.
        self.strict_numbers = True

    @classmethod
    def load(cls, run_dir: Path) -> Predictor | NetworkPredictor:
        """The run's final model (or the best so far): a :class:`Predictor` for a table run, a
        :class:`NetworkPredictor` for an image run."""
        run_dir = Path(run_dir)
        store = RunStore(run_dir)
        found = store.usable_model()  # the final model, else the best so far
        if found is not None and is_network_dir(found[1]):
            return NetworkPredictor(NetworkModel.load(found[1], store), found[0])
        if not store.path("schema").exists():
            raise RunError(f"'{run_dir}' is not a Daedalus run with a model (no schema.json); "
                           "pass the directory that 'daedalus build' created")
        store.check([store.path("schema")], "load")  # the classes and columns every prediction depends on
        schema = Schema.from_dict(store.read("schema"))
        if found is not None:
            return cls(schema, EnsembleModel.load(found[1], store), found[0])
        raise RunError(f"run '{run_dir}' has no model yet (no trial has finished); "
                       f"continue it with 'daedalus resume {run_dir}'")

    @property
    def classes(self) -> list[Any] | None:
        return list(self.schema.classes) if self.schema.classes is not None else None

    def features(self, data: pd.DataFrame) -> pd.DataFrame:
        """Raw rows as the model takes them (what ``predict_matrix`` feeds it; explanations need it too)."""
        features = prepare_features(data, self.schema, strict_numbers=self.strict_numbers)
        if self.schema.sensitive:
            features = carry_for_prediction(features, data, self.schema.sensitive, self.needs_groups)
        return features

    def predict_matrix(self, data: pd.DataFrame) -> np.ndarray:
        features = self.features(data)
        try:
            with np.errstate(over="ignore"):  # a value near 1e308 may scale to inf; the models say so below
                return self.model.predict_matrix(features)
        except ValueError as exc:  # scikit-learn refuses inputs that scaled to inf (found by the fuzz test)
            if "infinity" not in str(exc):
                raise
            numeric = features.select_dtypes("number").abs()
            column = str(numeric.max().idxmax())
            raise DataError(f"column '{column}' holds a number too large for the model ({numeric[column].max():.3g}); "
                            "check that value, or leave the cell empty to predict it as missing") from None

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        pred = self.predict_matrix(data)
        if self.schema.classes is None:
            return pred
        return np.asarray(self.schema.classes)[pred.argmax(axis=1)]

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        if self.schema.classes is None:
            raise RunError("this run is a regression; class probabilities do not apply; drop --proba")
        return self.predict_matrix(data)


class NetworkPredictor:
    """The same interface as :class:`Predictor`, for a run whose model is one network on image pixels."""

    def __init__(self, model: NetworkModel, source: str) -> None:
        self.model = model
        self.source = source

    @property
    def classes(self) -> list[Any]:
        return list(self.model.spec.classes)

    def predict_matrix(self, data: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(data)

    def predict_proba(self, data: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(data)

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes)[self.predict_proba(data).argmax(axis=1)]
