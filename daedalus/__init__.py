"""Daedalus: AI that builds AI models.

    >>> from daedalus import AutoClassifier
    >>> model = AutoClassifier(time_budget=60).fit(X, y)
    >>> model.predict(X_new)

The estimators are imported on first use, so that ``import daedalus`` (and the CLI) starts fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AutoClassifier", "AutoRegressor", "load", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("AutoClassifier", "AutoRegressor", "load"):
        from daedalus.interfaces import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'daedalus' has no attribute {name!r}")
