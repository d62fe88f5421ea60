"""Data handling: reading tables, inferring the schema and task, checking the data, preparing features."""

from daedalus.data.checks import CheckReport, Finding, run_checks
from daedalus.data.infer import drop_missing_target, infer_kind, infer_schema, infer_task, prepare_target
from daedalus.data.io import DEMO_TARGET, NA_VALUES, demo_path, read_table
from daedalus.data.prepare import feature_layout, prepare_features
from daedalus.data.schema import MODEL_KINDS, ColumnInfo, ColumnKind, FeatureLayout, Schema, Task

__all__ = [
    "DEMO_TARGET",
    "MODEL_KINDS",
    "NA_VALUES",
    "CheckReport",
    "ColumnInfo",
    "ColumnKind",
    "FeatureLayout",
    "Finding",
    "Schema",
    "Task",
    "demo_path",
    "drop_missing_target",
    "feature_layout",
    "infer_kind",
    "infer_schema",
    "infer_task",
    "prepare_features",
    "prepare_target",
    "read_table",
    "run_checks",
]
