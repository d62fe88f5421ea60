"""Saving and loading fitted estimators with skops, never with pickle.

A skops file names the type of every object it holds, and loading one builds those objects: it imports each
named type or function and calls its constructor, ``__setstate__`` or the function itself (skops'
``ConstructorFromReduceNode`` calls any callable the file names with arguments of the file's choosing). So
:func:`load_model` trusts a file only when every name in it is trusted by skops itself (its own reviewed
defaults: builtins containers, NumPy arrays and ufuncs, scikit-learn's public estimators) or is one of
:data:`DAEDALUS_TYPES`, the exact names Daedalus's own models hold. Names are compared whole: trusting a prefix
such as ``numpy.`` would trust ``numpy.testing._private.utils.runstring``, an ``exec``. A file that uses one of
skops' loaders that call or look up whatever the file names (:data:`REFUSED_LOADERS`) is refused as well, even
when every name in it is trusted: Daedalus's own files never use them.

The file's bytes are read once, and the same bytes are checked and loaded, so the file cannot be swapped between
the check and the load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from daedalus.errors import RunError

# The exact type and function names that Daedalus's saved models hold beyond skops' default trust. Derived by
# fitting every model family (registry and fairness mitigations) on binary, multiclass and regression data,
# with and without text and categorical columns and with every categorical hyperparameter choice, saving each
# with save_model and collecting skops.io.get_untrusted_types; tests/test_store_artifacts.py repeats that and
# fails when a library update adds a name. Add a name only after reading what loading it can call: a crafted
# file can call a listed class's constructor and ``__setstate__`` with arguments of its own (the classes below
# only build objects; the library boosters read their own model formats, never pickle), and a listed function
# is callable at load time, so functions are listed one by one, never by module.
DAEDALUS_TYPES: frozenset[str] = frozenset({
    "catboost.core.CatBoostClassifier",  # its state is CatBoost's own binary model format
    "catboost.core.CatBoostRegressor",
    "collections.OrderedDict",  # LightGBM's Booster.best_score
    "daedalus.spaces.families.boosting.ContiguousLabelClassifier",
    "daedalus.spaces.families.torch_mlp.TorchMLPClassifier",  # weights as NumPy arrays: no torch object saved
    "daedalus.spaces.families.torch_mlp.TorchMLPRegressor",
    "daedalus.spaces.mitigation.ExpGradMitigated",
    "daedalus.spaces.mitigation.ThresholdMitigated",
    "daedalus.spaces.preprocessing.CategoryStrings",
    "daedalus.spaces.preprocessing.EmptyColumnFiller",
    "daedalus.spaces.preprocessing.TextEmbedder",
    # HistGradientBoosting's numeric preprocessing is a FunctionTransformer of partial(check_array, ...). skops
    # rebuilds the partial itself (never a subclass) and checks the function it wraps as a name of its own.
    "functools.partial",
    "lightgbm.basic.Booster",  # its state is LightGBM's text model format
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "numpy.dtype",  # skops 0.16 reports the dtype of object arrays (the encoders' categories) as untrusted
    # skops leaves the next two out of its defaults: their node arrays are indexed without bounds checks, so a
    # crafted file could crash predict (not run code). Every tree model needs them; the file must be Daedalus's.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",  # k-NN's KD-tree (chosen on few columns), p=2
    "sklearn.metrics._dist_metrics.ManhattanDistance64",  # ... and p=1
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",  # a function: the one HistGradientBoosting's partial wraps
    "xgboost.core.Booster",  # its state is XGBoost's own (UBJSON) model format
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
})


# skops loaders that call what the file names with arguments the file gives (ConstructorFromReduceNode, for
# zoneinfo keys) or fetch the attribute it names (MethodNode, for bound methods). Daedalus's models never use
# them, so a file that does is refused even when every name in it is listed: a listed class's constructor can do
# more than build an object (lightgbm.basic.Booster(model_file=PATH) reads any file it is given).
REFUSED_LOADERS: frozenset[str] = frozenset({"ConstructorFromReduceNode", "MethodNode"})


def is_trusted_type(name: str) -> bool:
    """Whether ``name`` (a dotted type or function name that skops does not trust by default) is on
    :data:`DAEDALUS_TYPES`: exact names only."""
    return name in DAEDALUS_TYPES


def _loaders(schema: object) -> set[str]:
    """The skops loaders named anywhere in a parsed ``schema.json`` (walked without recursion: a crafted file
    can nest deeply)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("__loader__"), str):
                found.add(item["__loader__"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _one_line(text: object) -> str:
    return " ".join(str(text).split())  # library messages can span lines; ours are printed as one


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


def load_model(path: str | os.PathLike[str], sha256: str | None = None) -> Any:
    """Read an estimator saved by :func:`save_model`, refusing a file that names any type or function that
    neither skops nor :data:`DAEDALUS_TYPES` trusts, before anything in it is imported or built. With
    ``sha256`` (the hash recorded when the file was written), the bytes read must have that hash: the check
    and the load see the same bytes."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise RunError(f"model file {path} does not exist; the run directory is incomplete, so build the "
                       f"model again")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise RunError(f"model file {path} does not match the SHA-256 recorded in the audit log when it was "
                       "written (changed since); refusing to load it; restore the file, or rebuild the run")
    try:
        untrusted = sio.get_untrusted_types(data=data)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            loaders = _loaders(json.loads(zf.read("schema.json")))
    except Exception as exc:  # not a zip (a pickle, say), no schema, unreadable schema, an empty file...
        raise RunError(f"model file {path} is not a readable skops file ({type(exc).__name__}: "
                       f"{_one_line(exc)}); it is corrupt or was not written by Daedalus, so build the model "
                       f"again") from None
    refused = sorted(t for t in untrusted if not is_trusted_type(t))
    if refused:
        shown = ", ".join(refused[:5]) + (f" (and {len(refused) - 5} more)" if len(refused) > 5 else "")
        raise RunError(f"model file {path} contains untrusted type{'s' if len(refused) > 1 else ''} "
                       f"{_one_line(shown)}; refusing to load it, since loading would import and call "
                       f"{'them' if len(refused) > 1 else 'it'}. Daedalus loads only the exact types its own "
                       f"models hold, so the file was not written by Daedalus or was altered: rebuild the model "
                       f"with Daedalus")
    calling = sorted(loaders & REFUSED_LOADERS)
    if calling:
        raise RunError(f"model file {path} builds objects with skops' {', '.join(calling)}, which calls or looks "
                       f"up whatever the file names; refusing to load it. Daedalus's models never do, so the file "
                       f"was not written by Daedalus or was altered: rebuild the model with Daedalus")
    try:
        return sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise RunError(f"model file {path} could not be loaded ({type(exc).__name__}: {_one_line(exc)}); it "
                       f"is corrupt or was written by an incompatible version, so build the model again") from exc
