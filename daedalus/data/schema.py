"""The data schema: what each column is, what the task is, and which columns the models see.

The schema is inferred once at build time (``daedalus.data.infer``), saved with the run as JSON, and enforced
at predict time. It is a frozen record: nothing mutates it after inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from daedalus.errors import RunError


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not Task.REGRESSION


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    TEXT = "text"
    ID = "id"  # unique-per-row identifiers: dropped
    CONSTANT = "constant"  # a single value: dropped


# Kinds whose columns are fed to models (after ``prepare_features`` expands them).
MODEL_KINDS = frozenset({ColumnKind.NUMERIC, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN,
                         ColumnKind.DATETIME, ColumnKind.TEXT})


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    kind: ColumnKind
    n_unique: int
    missing_share: float
    # A numeric column's cells that were not numbers in the training data (e.g. "n/a"), read as missing there;
    # at predict time only these may stand in a numeric column (any other text is refused, see prepare.py).
    missing_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureLayout:
    """The columns of a *prepared* feature frame, grouped by how models must treat them.

    ``prepare_features`` returns a frame whose columns are exactly ``numeric + categorical + text``:
    numeric columns are float64 with NaN for missing (booleans become 0/1, datetimes are expanded into
    numeric parts), categorical columns are object dtype holding strings with NaN for missing, and text
    columns are object dtype strings ("" for missing).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    text: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + self.text


@dataclass(frozen=True)
class Schema:
    target: str
    task: Task
    columns: tuple[ColumnInfo, ...]
    classes: tuple[Any, ...] | None  # sorted class labels for classification, None for regression
    dropped: dict[str, str] = field(default_factory=dict)  # column -> reason (id-like, constant, leak, sensitive)
    # Columns the user told us to keep although a check would drop them (e.g. --keep-leak).
    kept: tuple[str, ...] = ()
    # Columns declared sensitive (--sensitive): audited for fairness; in ``dropped`` unless --use-sensitive.
    sensitive: tuple[str, ...] = ()

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Raw input columns the model needs at predict time, in file order."""
        return tuple(c.name for c in self.columns if c.kind in MODEL_KINDS and c.name not in self.dropped)

    def kind_of(self, name: str) -> ColumnKind:
        for c in self.columns:
            if c.name == name:
                return c.kind
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task"] = self.task.value
        d["columns"] = [{**asdict(c), "kind": c.kind.value, "missing_words": list(c.missing_words)}
                        for c in self.columns]
        d["classes"] = list(self.classes) if self.classes is not None else None
        d["kept"] = list(self.kept)
        d["sensitive"] = list(self.sensitive)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        """The schema saved in a run's ``schema.json``; a damaged one (missing keys, unknown kinds, wrong
        types) is a RunError naming the problem, not a KeyError from deep inside a command."""
        try:
            return cls._from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise RunError(f"the run's schema.json is damaged ({problem}); restore it from a backup or build the "
                           "run again") from None

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Schema:
        return cls(
            target=d["target"],
            task=Task(d["task"]),
            columns=tuple(ColumnInfo(c["name"], ColumnKind(c["kind"]), c["n_unique"], c["missing_share"],
                                     tuple(c.get("missing_words", ())))
                          for c in d["columns"]),
            classes=tuple(d["classes"]) if d["classes"] is not None else None,
            dropped=dict(d.get("dropped", {})),
            kept=tuple(d.get("kept", ())),
            sensitive=tuple(d.get("sensitive", ())),
        )
