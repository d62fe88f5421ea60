"""Data checks run once before the search: duplicates, dropped columns, missing values, class balance,
missing targets and target leaks.

Each check adds :class:`Finding` records to a :class:`CheckReport`. Severity says what the user should do:
"info" (nothing), "warning" (look at it), "action" (Daedalus changed something, e.g. dropped a column).
The only check that changes the schema is the leak check, which drops likely leaks unless told not to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import pandas as pd

from daedalus.data.infer import DROP_REASONS, require_columns
from daedalus.data.leaks import single_column_scores
from daedalus.data.schema import Schema, Task
from daedalus.data.values import canonical_strings, missing_share
from daedalus.errors import DataError

Severity = Literal["info", "warning", "action"]

# Scores this close below the leak threshold earn a warning, keyed by "is classification". R² runs higher
# than AUC for honest features (diamonds: carat alone has |Spearman| 0.96 with price), hence the narrower band.
STRONG_MARGIN = {True: 0.05, False: 0.02}
MOSTLY_MISSING = 0.5
IMBALANCE_SHARE = 0.10
FEW_ROWS_PER_CLASS = 10


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    message: str
    columns: tuple[str, ...] = ()
    value: float | None = None


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]

    def by_check(self, check: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.check == check)

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [{**asdict(f), "columns": list(f.columns)} for f in self.findings]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckReport:
        return cls(tuple(Finding(f["check"], f["severity"], f["message"], tuple(f["columns"]), f["value"])
                         for f in d["findings"]))


def run_checks(df: pd.DataFrame, schema: Schema, *, leak_threshold: float = 0.99, keep_leaks: bool = False,
               seed: int = 0) -> tuple[Schema, CheckReport]:
    """Check ``df`` (the training frame, target included) against ``schema``.

    Returns the schema with likely leaks added to ``dropped`` (unless ``keep_leaks`` or the column is in
    ``schema.kept``) and the report of all findings.
    """
    require_columns(df, [schema.target], what="target column", hint="pass --target with one of the file's columns")
    require_columns(df, schema.feature_columns, what="feature column(s)", hint="check with the schema's data")
    findings: list[Finding] = []
    findings += _missing_target(df, schema)
    findings += _duplicates(df, schema)
    findings += _dropped_columns(schema)
    findings += _missing_values(df, schema)
    if schema.task.is_classification:
        findings += _class_balance(df, schema)
    leak_findings, leaks = _leaks(df, schema, leak_threshold=leak_threshold, keep_leaks=keep_leaks, seed=seed)
    findings += leak_findings
    if leaks:
        schema = replace(schema, dropped={**schema.dropped, **leaks})
        if not schema.feature_columns:
            raise DataError(f"every feature column looks like a leak of target '{schema.target}'; check the "
                            f"target, or pass --keep COL for columns that are known at prediction time")
    return schema, CheckReport(tuple(findings))


# ------------------------------------------------------------------------------------- simple checks


def _missing_target(df: pd.DataFrame, schema: Schema) -> list[Finding]:
    n = int(df[schema.target].isna().sum())
    if n == 0:
        return []
    return [Finding("missing_target", "warning",
                    f"{n} rows ({n / len(df):.1%}) have no value in target '{schema.target}'; they are left out "
                    f"of training", (schema.target,), float(n))]


def _duplicates(df: pd.DataFrame, schema: Schema) -> list[Finding]:
    features = list(schema.feature_columns)
    if not features:
        return []
    n_rows = len(df)
    # Hash each row once (64-bit; collisions are negligible): much faster than DataFrame.duplicated on wide
    # data, and the feature hash is reused for the feature+target test.
    row_hash = pd.util.hash_pandas_object(df[features], index=False)
    target_hash = pd.util.hash_pandas_object(df[schema.target], index=False)
    repeated_rows = int(pd.DataFrame({"x": row_hash, "y": target_hash}).duplicated().sum())
    # Rows whose features repeat an earlier row but whose target differs: noise no model can remove.
    conflicts = int(row_hash.duplicated().sum()) - repeated_rows
    share = repeated_rows / n_rows
    severity: Severity = "warning" if share >= 0.05 else "info"
    message = f"{repeated_rows} duplicate rows ({share:.1%}, comparing the feature columns and the target)"
    if repeated_rows:
        message += "; cross-validation scores may be optimistic when copies land in both train and test folds"
    if conflicts:
        message += f"; {conflicts} more rows repeat the features of another row with a different target"
    return [Finding("duplicates", severity, message, (), float(repeated_rows))]


def _dropped_columns(schema: Schema) -> list[Finding]:
    findings = []
    for check, reason in (("id_columns", DROP_REASONS["id"]), ("constant_columns", DROP_REASONS["constant"])):
        cols = tuple(c for c, r in schema.dropped.items() if r == reason)
        if cols:
            findings.append(Finding(check, "action", f"dropped {len(cols)} {reason} column(s): {_list(cols)}", cols,
                                    float(len(cols))))
    user = tuple(c for c, r in schema.dropped.items() if r == DROP_REASONS["user"])
    if user:
        findings.append(Finding("user_dropped", "info", f"dropped as asked: {_list(user)}", user, float(len(user))))
    return findings


def _missing_values(df: pd.DataFrame, schema: Schema) -> list[Finding]:
    features = list(schema.feature_columns)
    if not features:
        return []
    kinds = {c.name: c.kind for c in schema.columns}
    shares = pd.Series({name: missing_share(df[name], kinds[name]) for name in features}, dtype="float64")
    overall = float(shares.mean())  # same as missing cells / all cells, since every column has len(df) rows
    with_missing = shares[shares > 0].sort_values(ascending=False)
    findings = [Finding(
        "missing_values", "info",
        f"{overall:.1%} of feature cells are missing" + (
            f"; most in {_list([f'{c} ({s:.0%})' for c, s in with_missing.items()])}" if len(with_missing) else ""),
        tuple(str(c) for c in with_missing.index), overall)]
    mostly = with_missing[with_missing > MOSTLY_MISSING]
    if len(mostly):
        findings.append(Finding(
            "mostly_missing", "warning",
            f"{len(mostly)} column(s) are more than {MOSTLY_MISSING:.0%} empty: "
            f"{_list([f'{c} ({s:.0%})' for c, s in mostly.items()])}; check they are filled in at prediction time too",
            tuple(str(c) for c in mostly.index), float(mostly.max())))
    return findings


def _class_balance(df: pd.DataFrame, schema: Schema) -> list[Finding]:
    counts = canonical_strings(df[schema.target].dropna()).value_counts()
    minority, n_min = str(counts.index[-1]), int(counts.iloc[-1])
    share = n_min / int(counts.sum())
    rare = [str(c) for c, n in counts.items() if n < FEW_ROWS_PER_CLASS]
    severity: Severity = "warning" if share < IMBALANCE_SHARE or rare else "info"
    message = f"smallest class '{minority}' has {n_min} rows ({share:.1%} of {int(counts.sum())})"
    if share < IMBALANCE_SHARE:
        message += "; classes are imbalanced: accuracy is a poor guide (prefer ROC AUC, log loss, balanced accuracy)"
    if rare:
        message += f"; class(es) {_list(rare)} have under {FEW_ROWS_PER_CLASS} rows and may be absent from some folds"
    return [Finding("class_balance", severity, message, (schema.target,), share)]


def _list(items: Any, limit: int = 8) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------- leaks


def _leaks(df: pd.DataFrame, schema: Schema, *, leak_threshold: float, keep_leaks: bool,
           seed: int) -> tuple[list[Finding], dict[str, str]]:
    """Score each feature column alone (see ``leaks``); near-perfect scores are likely leaks."""
    result = single_column_scores(df, schema, seed=seed)
    if result is None:
        n = int(df[schema.target].notna().sum())
        return [Finding("target_leak", "info", f"leak check skipped: only {n} rows have a target")], {}
    scores, scorer = result
    metric = {Task.BINARY: "ROC AUC", Task.MULTICLASS: "accuracy", Task.REGRESSION: "R² or |Spearman|"}[schema.task]
    strong = leak_threshold - STRONG_MARGIN[schema.task.is_classification]
    findings: list[Finding] = []
    leaks: dict[str, str] = {}
    for name, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        alone = f"column '{name}' alone predicts '{schema.target}' with {metric} {score:.3f} (3-fold CV)"
        if scorer.is_leak(score, leak_threshold):
            if keep_leaks or name in schema.kept:
                findings.append(Finding("target_leak", "warning", f"{alone}: a likely target leak, kept as asked",
                                        (name,), score))
            else:
                leaks[name] = f"likely target leak (single-column score {score:.3f}); pass --keep {name} to keep it"
                findings.append(Finding("target_leak", "action", f"{alone}: a likely target leak, dropped; pass "
                                        f"--keep {name} if it is known at prediction time", (name,), score))
        elif scorer.is_leak(score, strong):  # (multiclass: also well above the majority-class baseline)
            findings.append(Finding("strong_feature", "warning", f"{alone}: check that it is known at prediction "
                                    f"time and not computed from the target", (name,), score))
    return findings, leaks
