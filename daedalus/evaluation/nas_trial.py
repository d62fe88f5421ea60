"""The image trial function: train one network of an architecture space in a worker (``runner.py``), on one
rung of successive halving or on the final schedule, and hand back its score and weights.

A rung continues from the candidate's checkpoint in its trial directory (``Trainer.state_dict``: weights,
optimizer, schedule position, data order, RNG), so a promoted candidate trains only the epochs between rungs,
bit for bit as if it had never stopped, though each rung runs in a fresh worker. The images are read from the
run's ``.npy`` files (memory-mapped), not sent through the worker's pipe.

Time comes from a :class:`Deadline` handed over by the run (a share of its one clock): training stops after the
epoch during which it runs out, and the final schedule is sized to end with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daedalus.evaluation.halving import Deadline
from daedalus.evaluation.nas_train import Trainer
from daedalus.spaces.nas.base import Genotype

MAX_FINAL_EPOCHS = 200
ARRAYS = ("X", "y", "X_val", "y_val")  # the split images, one .npy file each


@dataclass(frozen=True)
class NetworkData:
    """Where a worker finds the images (``ARRAYS`` as ``.npy`` files in ``directory``), and how it trains."""

    directory: Path
    batch_size: int
    lr: float
    seed: int
    n_threads: int
    shift: int
    flip: bool

    def load(self) -> tuple[np.ndarray, ...]:
        return tuple(np.load(self.directory / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS)

    def trainer(self, build: Callable[[], torch.nn.Module], horizon_epochs: int,
                arrays: tuple[np.ndarray, ...] | None = None) -> Trainer:
        # Read into memory (the files are mapped read-only; a tensor must not alias them).
        X, y, X_val, y_val = arrays if arrays is not None else (np.array(a) for a in self.load())
        return Trainer(build, X, y, X_val, y_val,
                       horizon_epochs=horizon_epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                       n_threads=self.n_threads, shift=self.shift, flip=self.flip)


def save_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> list[Path]:
    """Write the split images (each file to a temporary name, then renamed); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ARRAYS:
        path, tmp = directory / f"{name}.npy", directory / f"{name}.tmp.npy"
        np.save(tmp, np.ascontiguousarray(arrays[name]), allow_pickle=False)
        os.replace(tmp, path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class NetworkJob:
    space: Any  # an ArchSpace (picklable: its options)
    genotype: Genotype
    in_shape: tuple[int, int, int]
    n_outputs: int
    horizon_epochs: int  # the schedule's length (the top rung's epochs; the final: its epochs or the maximum)
    epochs: int | None  # a rung: until this many epochs in all; the final: this many (None: sized to the deadline)
    deadline: Deadline
    checkpoint: Path | None = None  # continue from it when it exists; written after training
    final: bool = False  # a fresh network on its full schedule (``train_to_deadline``), not a rung


@dataclass(frozen=True)
class NetworkOutcome:
    score: float  # validation accuracy after the last epoch (-inf if the loss diverged)
    epochs: int  # in all, over every rung
    seconds: float  # of training, over every rung
    params: int
    # As arrays: a tensor sent through the worker's pipe would be shared by a file descriptor that dies with the
    # worker (torch's multiprocessing reductions).
    weights: dict[str, np.ndarray]


def train_network(data: NetworkData, job: NetworkJob) -> NetworkOutcome:
    """Train ``job``'s network (a rung, or the final schedule); the function a worker runs."""

    def build() -> torch.nn.Module:
        return job.space.instantiate(job.genotype, in_shape=job.in_shape, n_outputs=job.n_outputs)

    trainer = data.trainer(build, job.horizon_epochs)
    if job.checkpoint is not None and job.checkpoint.exists():
        trainer.load_state_dict(torch.load(job.checkpoint, weights_only=True))
    if job.final:
        train_to_deadline(trainer, job.deadline, job.epochs)
    elif job.epochs is not None and job.epochs > trainer.epochs_done:
        trainer.train(job.epochs - trainer.epochs_done, max(job.deadline.remaining, 0.0))
    if job.checkpoint is not None:
        tmp = job.checkpoint.with_name(job.checkpoint.name + ".tmp")
        torch.save(trainer.state_dict(), tmp)
        os.replace(tmp, job.checkpoint)
    return NetworkOutcome(score=trainer.score, epochs=trainer.epochs_done, seconds=trainer.seconds,
                          params=trainer.params,
                          weights={k: v.detach().cpu().numpy().copy() for k, v in trainer.module.state_dict().items()})


def train_to_deadline(trainer: Trainer, deadline: Deadline, epochs: int | None = None) -> Trainer:
    """Train for ``epochs`` (the trainer's horizon), or, when None, on a schedule sized to end with the
    deadline: its length is re-estimated after every epoch from the mean epoch time so far (the cosine schedule
    reads its horizon at every step), so it ends on time however fast this machine is right now; no separate
    timing run is spent. At least one epoch is trained."""
    if epochs is not None:
        trainer.horizon_epochs = epochs
    while trainer.epochs_done < trainer.horizon_epochs:
        trainer.train(1)
        if epochs is None:
            per_epoch = trainer.seconds / trainer.epochs_done
            left = deadline.remaining
            trainer.horizon_epochs = int(min(MAX_FINAL_EPOCHS, trainer.epochs_done + max(0, left // per_epoch)))
    return trainer
