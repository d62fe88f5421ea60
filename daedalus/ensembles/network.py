"""A trained network of an architecture space, as a run hands it back: the genotype, the input layout and
the weights.

On disk it is a directory with ``model.json`` (``kind: "network"``, the space, genotype, image shape, classes,
pixel columns and scale) and ``weights.pt`` (a state dict, loaded with ``torch.load(weights_only=True)``, so
no pickled code runs). The network is rebuilt from the genotype by its space; ``export-arch`` writes the same
network as a standalone Python file instead.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data.images import pixels_to_images
from daedalus.errors import RunError
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.registry import get_space
from daedalus.store.atomic import write_json_atomic
from daedalus.store.integrity import directory_files
from daedalus.store.layout import MODEL_FILE, read_model_file
from daedalus.store.run import RunStore, replace_directory

WEIGHTS_FILE = "weights.pt"
NETWORK_KIND = "network"
_PREDICT_CHUNK = 512


@dataclass(frozen=True)
class NetworkSpec:
    space: str
    genotype: Genotype
    architecture: str
    image_shape: tuple[int, int, int]  # height, width, channels (as --image-shape)
    classes: tuple[Any, ...]
    pixel_columns: tuple[str, ...]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    validation_score: float | None
    epochs: int
    trial: int | None

    @property
    def in_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.image_shape
        return channels, height, width

    def to_dict(self) -> dict[str, Any]:
        return {"kind": NETWORK_KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        return cls(d["space"], tuple(d["genotype"]), d["architecture"], tuple(d["image_shape"]),  # type: ignore[arg-type]
                   tuple(d["classes"]), tuple(d["pixel_columns"]), float(d["scale"]), tuple(d["mean"]),
                   tuple(d["std"]), d.get("validation_score"),
                   int(d["epochs"]), d.get("trial"))


class NetworkModel:
    def __init__(self, spec: NetworkSpec, state: dict[str, Any]) -> None:
        self.spec = spec
        self.state = state  # the network's state dict (torch tensors)

    def module(self) -> Any:
        """The network in eval mode, with its trained weights."""
        net = get_space(self.spec.space).instantiate(self.spec.genotype, in_shape=self.spec.in_shape,
                                                     n_outputs=len(self.spec.classes))
        net.load_state_dict(self.state)
        return net.eval()

    def source(self) -> str:
        """The standalone PyTorch file of this network (see ``ArchSpace.to_source``)."""
        return get_space(self.spec.space).to_source(self.spec.genotype, in_shape=self.spec.in_shape,
                                                    n_outputs=len(self.spec.classes))

    def predict_images(self, images: np.ndarray, n_threads: int | None = None) -> np.ndarray:
        """Class probabilities for (N, C, H, W) images already scaled."""
        import torch

        from daedalus.spaces.families.torch_mlp import torch_threads

        net = self.module()
        with torch_threads(n_threads), torch.no_grad():
            chunks = [torch.softmax(net(torch.from_numpy(images[i:i + _PREDICT_CHUNK])), dim=1).numpy()
                      for i in range(0, len(images), _PREDICT_CHUNK)]
        return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, len(self.spec.classes)))

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Class probabilities for raw rows holding the pixel columns (extra columns are ignored)."""
        images = pixels_to_images(rows, self.spec.pixel_columns, self.spec.image_shape, self.spec.scale,
                                  self.spec.mean, self.spec.std)
        return self.predict_images(images)

    def save(self, directory: Path, store: RunStore) -> None:
        """Write atomically: into a temporary directory, then swapped in by rename; the files' hashes go to the
        run's audit log."""
        import torch

        directory = Path(directory)
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(self.state, tmp / WEIGHTS_FILE)
        write_json_atomic(tmp / MODEL_FILE, self.spec.to_dict())
        replace_directory(tmp, directory)
        store.record(directory_files(directory), model=directory.name)

    @classmethod
    def load(cls, directory: Path, store: RunStore) -> NetworkModel:
        """Load a network directory of ``store``'s run, its files first checked against their recorded hashes."""
        import torch

        directory = Path(directory)
        recorded = store.check(directory_files(directory), "load")
        spec = NetworkSpec.from_dict(read_model_file(directory))
        weights = (directory / WEIGHTS_FILE).read_bytes()  # checked and loaded as the same bytes
        if hashlib.sha256(weights).hexdigest() != recorded.get(directory / WEIGHTS_FILE):
            raise RunError(f"'{directory / WEIGHTS_FILE}' changed after its hash was checked; refusing to load it; "
                           "restore the file, or rebuild the run")
        state = torch.load(io.BytesIO(weights), weights_only=True)
        return cls(spec, state)


def is_network_dir(directory: Path) -> bool:
    path = Path(directory) / MODEL_FILE
    return path.exists() and read_model_file(directory).get("kind") == NETWORK_KIND
