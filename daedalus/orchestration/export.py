"""``daedalus export-arch RUN [--trial N] --out model.py``: a run's network as one readable PyTorch file.

(Image runs here; a table run's ``neural`` trials in ``export_tabular``.)

The file defines ``class Net(torch.nn.Module)`` (from the space's ``to_source``) and the weights go beside
it as ``model.pt``, a plain state dict: ``Net().load_state_dict(torch.load("model.pt"))`` rebuilds the
network that made the run's predictions, with nothing of Daedalus installed. The input is the images as the
run saw them: (N, C, H, W) floats, the raw pixels divided by the scale written in the file's header.
"""

from __future__ import annotations

from pathlib import Path

from daedalus.ensembles.network import NetworkModel, is_network_dir
from daedalus.errors import ConfigError, RunError
from daedalus.orchestration.export_tabular import export_tabular_network
from daedalus.store.run import RunStore


def network_dir(run_dir: Path, trial: int | None) -> Path:
    """The directory of the network to export: a trial's, or the run's final (else best-so-far) model."""
    store = RunStore.open(run_dir)
    if trial is not None:
        directory = store.network_dir(trial)
        if not is_network_dir(directory):
            raise ConfigError(f"run '{run_dir}' has no network for trial {trial}; pick a trial number from "
                              f"'daedalus leaderboard {run_dir}'")
        return directory
    found = store.usable_model()  # the final network, else the best so far
    if found is not None and is_network_dir(found[1]):
        return found[1]
    raise RunError(f"run '{run_dir}' has no trained network yet; continue or rebuild it")


def export_architecture(run_dir: Path, out: Path, trial: int | None = None) -> tuple[Path, Path]:
    """Write ``out`` (the module file) and ``out`` with suffix ``.pt`` (the weights); returns both paths."""
    import torch

    out = Path(out)
    if out.suffix != ".py":
        raise ConfigError(f"--out {str(out)!r} must name a .py file; e.g. --out model.py")
    if RunStore.open(Path(run_dir)).read("run").get("kind") != "image":
        return export_tabular_network(Path(run_dir), out, trial)
    model = NetworkModel.load(network_dir(Path(run_dir), trial), RunStore.open(Path(run_dir)))
    spec = model.spec
    header = (f"# Exported by `daedalus export-arch` from run {Path(run_dir).name}"
              f"{'' if trial is None else f', trial {trial}'}.\n"
              f"# Input: float tensor (N, {spec.in_shape[0]}, {spec.in_shape[1]}, {spec.in_shape[2]}): the pixel "
              f"columns as channel planes, x = (pixels / {spec.scale:g} - MEAN[c]) / STD[c] per channel c.\n"

              f"# Output: one logit per class, classes in this order: {list(spec.classes)}\n"
              f"# Validation accuracy in the run: {spec.validation_score}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    footer = (f"\n\n# The input normalisation of the run (see the header).\n"
              f"SCALE = {spec.scale!r}\nMEAN = {list(spec.mean)!r}\nSTD = {list(spec.std)!r}\n"
              f"CLASSES = {list(spec.classes)!r}\n")
    out.write_text(header + model.source().rstrip("\n") + footer, encoding="utf-8")
    weights = out.with_suffix(".pt")
    torch.save(model.state, weights)
    return out, weights
