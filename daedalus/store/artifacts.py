"""Saving and loading fitted estimators with skops, never with pickle.

A skops file lists the type of every object it holds. :func:`load_model` refuses a file that holds a type
outside an allowlist (scikit-learn, NumPy, SciPy, LightGBM, XGBoost, CatBoost, Daedalus, and a few standard-
library containers), so loading a model file cannot run arbitrary code the way unpickling can.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from daedalus.errors import RunError

# A type is allowed when its dotted name starts with one of these prefixes...
TRUSTED_PREFIXES: tuple[str, ...] = (
    "sklearn.", "numpy.", "scipy.", "lightgbm.", "xgboost.", "catboost.", "daedalus.",
)
# ...or is one of these exactly.
TRUSTED_NAMES: frozenset[str] = frozenset({
    "collections.OrderedDict",  # LightGBM's Booster.best_score
    "collections.defaultdict",
    "functools.partial",  # HistGradientBoosting's preprocessor (a partial of sklearn's check_array)
})


def is_trusted_type(name: str) -> bool:
    return name in TRUSTED_NAMES or name.startswith(TRUSTED_PREFIXES)


def save_model(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` to ``path`` as a compressed skops file, atomically (a temporary file, then a rename),
    creating the parent directory if needed."""
    import skops.io as sio  # imported on use: it takes over a second, and the search process never saves

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sio.dump(obj, f, compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_model(path: str | os.PathLike[str]) -> Any:
    """Read an estimator saved by :func:`save_model`, refusing files that hold a type outside the allowlist."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise RunError(f"model file {path} does not exist; the run directory is incomplete, so build the "
                       f"model again")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip, no schema, unreadable schema...
        raise RunError(f"model file {path} is not a readable skops file ({type(exc).__name__}: {exc}); it is "
                       f"corrupt or was not written by Daedalus, so build the model again") from None
    refused = sorted(t for t in untrusted if not is_trusted_type(t))
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise RunError(f"model file {path} contains untrusted type {refused[0]}{more}; refusing to load it. "
                       f"Only scikit-learn, NumPy, SciPy, LightGBM, XGBoost, CatBoost and Daedalus types are "
                       f"loaded; rebuild the model with Daedalus")
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise RunError(f"model file {path} could not be loaded ({type(exc).__name__}: {exc}); it is corrupt "
                       f"or was written by an incompatible version, so build the model again") from exc
