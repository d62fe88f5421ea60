"""Approval policies: a TOML file whose ``[gates]`` a model must meet before a reviewer may approve it.

    intended_use = "Pre-screening of credit applications; a human decides every case."   # for the model card

    [gates]
    min_metric = 0.75          # the final model's validation score must be at least this (higher-is-better metrics)
    max_metric = 0.5           # ... at most this (lower-is-better metrics: rmse, mae, log_loss)
    metric = "roc_auc"         # optional: the metric the thresholds mean; a run scored on another one fails
    max_fairness_gap = 0.1     # largest group difference in the run's fairness.json (build with --sensitive)
    max_latency_ms = 50        # one row predicted by the final model, median, measured on this machine
    max_model_mb = 200         # size of the model directory on disk, in megabytes (10^6 bytes)
    reviewers = 2              # approvals by distinct reviewers needed before the model may be used

    [reviewers]                # optional: the only keys whose signed approvals count for a run with this policy
    alice = "base64 Ed25519 public key"   # as 'daedalus keys new alice' prints it

Every gate is optional; ``reviewers`` defaults to 1 and must be at least 1, since a human approval stands before
any model is used. A run without a policy is held to :data:`DEFAULT_POLICY`: one approval, no other gate.
Unknown keys and wrong types are refused, so a typo cannot silently switch a gate off. Without a ``[reviewers]``
table, the keys trusted on the machine (``daedalus keys list``) count; with one, only the keys it lists.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daedalus.errors import ConfigError
from daedalus.evaluation.metrics import METRICS
from daedalus.store.signing import KEY_NAME, parse_public_key

POLICY_FILE = "policy.toml"  # the copy attached to a run by 'build --policy'

_NUMBER_GATES = ("min_metric", "max_metric", "max_fairness_gap", "max_latency_ms", "max_model_mb")
_GATE_KEYS = (*_NUMBER_GATES, "metric", "reviewers")
_TOP_KEYS = ("gates", "intended_use", "reviewers")


@dataclass(frozen=True)
class Policy:
    min_metric: float | None = None
    max_metric: float | None = None
    metric: str | None = None
    max_fairness_gap: float | None = None
    max_latency_ms: float | None = None
    max_model_mb: float | None = None
    reviewers: int = 1
    intended_use: str | None = None
    source: str = "default (no policy file)"  # where the policy came from, for messages and the audit log
    sha256: str | None = None  # of the file's bytes
    reviewer_keys: tuple[tuple[str, str], ...] = ()  # [reviewers]: (name, base64 public key)

    def trusted_keys(self) -> dict[str, str]:
        """The reviewer keys the policy lists, by name (empty: the machine's trusted keys apply)."""
        return dict(self.reviewer_keys)

    def gates(self) -> dict[str, Any]:
        """The gates that are set, by name."""
        return {k: v for k, v in asdict(self).items() if k in _GATE_KEYS and v is not None}


DEFAULT_POLICY = Policy()


def parse_policy(text: str, source: str) -> Policy:
    """A policy from TOML text; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy {source} is not valid TOML ({exc}); fix the file") from exc
    _no_unknown(doc, _TOP_KEYS, source, "top level")
    gates = doc.get("gates", {})
    if not isinstance(gates, dict):
        raise ConfigError(f"policy {source}: 'gates' must be a table ([gates]); fix the file")
    _no_unknown(gates, _GATE_KEYS, source, "[gates]")
    values: dict[str, Any] = {}
    for key in _NUMBER_GATES:
        if key in gates:
            values[key] = _non_negative_number(gates[key], key, source)
    if "reviewers" in gates:
        reviewers = gates["reviewers"]
        if isinstance(reviewers, bool) or not isinstance(reviewers, int) or reviewers < 1:
            raise ConfigError(f"policy {source}: [gates] reviewers must be a whole number of at least 1, got "
                              f"{reviewers!r}; a human approval is always needed")
        values["reviewers"] = reviewers
    if "metric" in gates:
        if not isinstance(gates["metric"], str) or gates["metric"] not in METRICS:
            raise ConfigError(f"policy {source}: [gates] metric must be one of {', '.join(METRICS)}, got "
                              f"{gates['metric']!r}")
        values["metric"] = gates["metric"]
    intended_use = doc.get("intended_use")
    if intended_use is not None and not isinstance(intended_use, str):
        raise ConfigError(f"policy {source}: intended_use must be a string, got {intended_use!r}")
    return Policy(**values, intended_use=intended_use, source=source, reviewer_keys=_reviewer_keys(doc, source),
                  sha256=hashlib.sha256(text.encode()).hexdigest())


def _reviewer_keys(doc: dict[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    table = doc.get("reviewers", {})
    if not isinstance(table, dict):
        raise ConfigError(f"policy {source}: 'reviewers' must be a table ([reviewers], NAME = \"BASE64 KEY\"); "
                          "fix the file")
    keys = []
    for name, value in table.items():
        if not KEY_NAME.match(name):
            raise ConfigError(f"policy {source}: [reviewers] name {name!r} is not a reviewer name (letters, digits, "
                              "'.', '_', '-'); fix the file")
        try:
            parse_public_key(value if isinstance(value, str) else "")
        except ValueError as exc:
            raise ConfigError(f"policy {source}: [reviewers] {name} must be a base64 Ed25519 public key as "
                              f"'daedalus keys list' prints it, got {value!r} ({exc})") from None
        keys.append((name, value))
    return tuple(sorted(keys))


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"policy file '{path}' not found; pass an existing TOML file to --policy") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy file '{path}' ({exc}); pass a readable UTF-8 TOML file") from exc
    return parse_policy(text, f"'{path}'")


def attached_policy(run_dir: Path) -> Policy | None:
    """The policy attached to a run at build time, if any."""
    path = Path(run_dir) / POLICY_FILE
    return parse_policy(path.read_text(encoding="utf-8"), f"'{path}' (attached at build)") if path.exists() else None


def _no_unknown(table: dict[str, Any], allowed: tuple[str, ...], source: str, where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"policy {source}: unknown key {', '.join(repr(k) for k in unknown)} in {where}; "
                          f"allowed: {', '.join(allowed)}")


def _non_negative_number(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"policy {source}: [gates] {key} must be a non-negative number, got {value!r}")
    return float(value)
