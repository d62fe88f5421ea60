"""``daedalus export-arch RUN --trial N`` on a table run: a ``neural`` trial's network as one PyTorch file.

A table run's networks are architectures of the NAS MLP space (the ``neural`` family), each fitted inside a
scikit-learn pipeline: the run's preprocessing turns raw rows into a matrix (numeric columns first, then the
integer codes of categorical columns), and the estimator standardises the numeric part before the network.
The export writes:
- ``model.py``: ``class Net`` (``MLPSpace.to_source``, torch only), then the standardisation constants and the
  classes (or the target's scale), and a ``predict`` function from prepared matrix to probabilities/values;
- ``model.pt``: the network's state dict;
- ``model_preprocess.skops``: the fitted preprocessing (raw rows to the matrix), loadable with
  ``daedalus.store.artifacts.load_model`` (it holds Daedalus's own column transformers).

The network exported is the trial's model in the final ensemble (refit on all rows) when it is a member; else
the trial's first fold model, which is what it says in the file's header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from daedalus.ensembles.model import MODEL_FILE, REFIT_KINDS, ModelSpec
from daedalus.errors import ConfigError, RunError
from daedalus.spaces.nas.mlp import MLPSpace
from daedalus.store.artifacts import load_model, save_model
from daedalus.store.layout import FINAL_MODEL, is_member_file, read_model_file
from daedalus.store.run import RunStore

PREPROCESS_SUFFIX = "_preprocess.skops"
NEURAL = "neural"

_PREDICT = '''

def predict(X):
    """Class probabilities (or values) for ``X``, the prepared matrix (see the header), as float64."""
    from pathlib import Path

    import numpy as np

    state = torch.load(Path(__file__).with_name(WEIGHTS), weights_only=True)
    net = Net().double()
    net.load_state_dict({k: v.double() for k, v in state.items()})
    net.eval()
    X = np.array(X, dtype=np.float64)
    X[:, :N_NUMERIC] = (X[:, :N_NUMERIC] - np.asarray(X_MEAN)) / np.asarray(X_SCALE)
    with torch.no_grad():
        out = net(torch.from_numpy(X)).numpy()
    if CLASSES is None:
        return out[:, 0] * Y_SCALE + Y_MEAN
    out = np.exp(out - out.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)
'''


def _neural_trials(store: RunStore) -> dict[int, str]:
    """Trial number -> family, from the leaderboard."""
    board = store.read("leaderboard", default=[])
    return {int(r["trial"]): str(r.get("family")) for r in board if isinstance(r.get("trial"), int)}


def _final_member_files(store: RunStore, trial: int) -> tuple[Path, str] | None:
    directory = store.model_dir(FINAL_MODEL)
    if not (directory / MODEL_FILE).exists():
        return None
    spec = ModelSpec.from_dict(read_model_file(directory))
    for member in spec.members:
        if member.trial == trial and member.files:
            refit = spec.kind in REFIT_KINDS and len(member.files) == 1 and is_member_file(member.files[0])
            how = "refit on all rows" if refit else f"fold 1 of {len(member.files)} of its bag"
            return directory / member.files[0], f"the final ensemble's member (weight {member.weight:.3f}), {how}"
    return None


def pick_trial(store: RunStore) -> int:
    """The neural member of the final ensemble with the largest weight (the default of ``--trial``)."""
    directory = store.model_dir(FINAL_MODEL)
    families = _neural_trials(store)
    if (directory / MODEL_FILE).exists():
        spec = ModelSpec.from_dict(read_model_file(directory))
        neural = sorted((m for m in spec.members if m.family == NEURAL), key=lambda m: -m.weight)
        if neural:
            return neural[0].trial
    trials = sorted(t for t, family in families.items() if family == NEURAL)
    hint = f" (neural trials: {', '.join(map(str, trials[:10]))})" if trials else " (it has no neural trial)"
    raise ConfigError(f"run '{store.root}' hands back an ensemble with no neural member; export-arch writes "
                      f"networks: pass --trial N for a neural trial{hint}")


def _model_file(store: RunStore, trial: int) -> tuple[Path, str]:
    family = _neural_trials(store).get(trial)
    if family is None:
        raise ConfigError(f"run '{store.root}' has no trial {trial}; pick one from 'daedalus leaderboard "
                          f"{store.root}'")
    if family != NEURAL:
        raise ConfigError(f"trial {trial} is a {family} model, not a network; export-arch writes networks "
                          "(neural trials of a table run, or image runs)")
    found = _final_member_files(store, trial)
    if found is not None:
        return found
    fold = store.fold_model(trial, 0)
    if not fold.exists():
        raise RunError(f"trial {trial}'s fitted models were not kept (only the best trials keep theirs); export a "
                       "trial of the final ensemble or one near the top of the leaderboard")
    return fold, "the trial's first fold model (trained on that fold's training rows)"


def _constants(estimator: Any, labels: list[Any] | None) -> str:
    lines = [f"N_NUMERIC = {int(estimator.n_numeric_)}",
             f"X_MEAN = {np.asarray(estimator.x_mean_, dtype=float).tolist()!r}",
             f"X_SCALE = {np.asarray(estimator.x_scale_, dtype=float).tolist()!r}"]
    if hasattr(estimator, "classes_"):
        # The estimator saw the run's class codes 0..k-1; the file names the classes the codes stand for.
        codes = [int(c) for c in estimator.classes_]
        lines += [f"CLASSES = {[labels[c] if labels else c for c in codes]!r}  # one probability column each"]
    else:
        lines += ["CLASSES = None", f"Y_MEAN = {float(estimator.y_mean_)!r}",
                  f"Y_SCALE = {float(estimator.y_scale_)!r}"]
    return "\n".join(lines) + "\n"


def export_tabular_network(run_dir: Path, out: Path, trial: int | None = None) -> tuple[Path, Path]:
    """Write ``out`` (the module file), the weights beside it (``.pt``) and the preprocessing (``.skops``)."""
    import torch

    store = RunStore.open(Path(run_dir))
    trial = pick_trial(store) if trial is None else trial
    path, which = _model_file(store, trial)
    pipeline = load_model(path, store.check([path], "load")[path])
    prep, estimator = pipeline.named_steps["prep"], pipeline.named_steps["model"]
    space = MLPSpace()
    widths = tuple(int(w) for w in estimator.widths)
    genotype = space.from_config({"depth": len(widths), **{f"width_{i}": w for i, w in enumerate(widths, 1)},
                                  "activation": estimator.activation, "norm": estimator.norm,
                                  "dropout": estimator.dropout, "residual": bool(estimator.residual),
                                  "embedding_dim": int(estimator.embedding_dim)})
    source = space.to_source(genotype, n_numeric=estimator.n_numeric_, cardinalities=estimator.cardinalities_,
                             n_outputs=estimator.n_outputs_)
    weights, preprocess = out.with_suffix(".pt"), out.with_name(out.stem + PREPROCESS_SUFFIX)
    header = (f"# Exported by `daedalus export-arch` from run {store.root.name}, trial {trial}: {which}.\n"
              f"# Input of predict(): the prepared matrix, {estimator.n_numeric_} numeric column(s) then "
              f"{len(estimator.cardinalities_)} categorical code column(s) (-1: missing or unseen), which the\n"
              f"# run's preprocessing makes from raw rows: load_model('{preprocess.name}').transform(rows) with\n"
              f"# daedalus.store.artifacts.load_model. Net itself takes the numeric part standardised "
              f"((x - X_MEAN) / X_SCALE).\n")
    footer = (f"\n\n# The standardisation and outputs of the fitted estimator (see the header).\n"
              f"WEIGHTS = {weights.name!r}\n{_constants(estimator, store.read('schema', default={}).get('classes'))}"
              f"{_PREDICT}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + source.rstrip("\n") + footer, encoding="utf-8")
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in estimator.state_.items()}, weights)
    save_model(prep, preprocess)
    return out, weights
