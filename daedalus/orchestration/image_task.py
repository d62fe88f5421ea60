"""An image run's data and costs: the images split once into a training and a validation part
(``ImageTask``), how any network is trained on them, and what each candidate network costs
(``NetworkCosts``: parameters, FLOPs, measured latency and epoch time), which screens the search's proposals."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.data.images import ImageTable
from daedalus.designers.nas.base import Constraint
from daedalus.evaluation.nas_train import Trainer, count_params, measure_latency_ms
from daedalus.evaluation.nas_trial import MAX_FINAL_EPOCHS, NetworkData, train_to_deadline
from daedalus.orchestration.budget import BudgetClock
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.cnn import CNNSpace

VALIDATION_FRACTION = 0.2
LATENCY_BATCH = 32
TRAIN_TO_INFERENCE = 3.0  # a training step costs about three forward passes (forward + backward)


def _split(table: ImageTable, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(table.labels))
    counts = np.bincount(table.labels)
    stratify = table.labels if counts.min() >= 2 else None
    train, val = train_test_split(index, test_size=VALIDATION_FRACTION, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


class NetworkCosts:
    """What each genotype's network costs, computed once per genotype: parameters, forward FLOPs per image
    (counted on the meta device, so nothing is computed), and, only when asked for, milliseconds per batch of
    ``LATENCY_BATCH`` images measured on this machine (about a second each, too slow to screen candidates).

    The time of a training epoch is estimated as ``TRAIN_TO_INFERENCE x FLOPs x rows / throughput``, where the
    throughput (training FLOPs per second on this machine, now) is calibrated on a reference network before the
    search and then taken as the median of what the trained candidates achieved.
    """

    def __init__(self, space: CNNSpace, in_shape: tuple[int, int, int], n_outputs: int, n_threads: int) -> None:
        self.space, self.in_shape, self.n_outputs, self.n_threads = space, in_shape, n_outputs, n_threads
        self._params: dict[Genotype, int] = {}
        self._flops: dict[Genotype, float] = {}
        self._latency: dict[Genotype, float] = {}
        self._timed: dict[Genotype, float] = {}  # seconds per training row
        self.throughputs: list[float] = []

    def _net(self, genotype: Genotype) -> Any:
        return self.space.instantiate(genotype, in_shape=self.in_shape, n_outputs=self.n_outputs)

    def params(self, genotype: Genotype) -> int:
        if genotype not in self._params:
            self._params[genotype] = count_params(self._net(genotype))
        return self._params[genotype]

    def flops(self, genotype: Genotype) -> float:
        """Forward FLOPs of one image."""
        if genotype not in self._flops:
            import torch
            from torch.utils.flop_counter import FlopCounterMode

            with torch.device("meta"):
                net = self._net(genotype).eval()  # eval: batch norm accepts a batch of one 1x1 map
                with FlopCounterMode(display=False) as counter:
                    net(torch.zeros((1, *self.in_shape)))
            self._flops[genotype] = float(max(counter.get_total_flops(), 1))
        return self._flops[genotype]

    def latency_ms(self, genotype: Genotype) -> float:
        if genotype not in self._latency:
            import torch

            example = torch.zeros((LATENCY_BATCH, *self.in_shape))
            self._latency[genotype] = measure_latency_ms(self._net(genotype), example, n_threads=self.n_threads)
        return self._latency[genotype]

    def cost(self, objective: str) -> Callable[[Genotype], float]:
        return self.latency_ms if objective == "latency" else lambda g: float(self.params(g))

    # ----- time -----
    def step_seconds(self, genotype: Genotype, batch: int, steps: int = 2) -> float:
        """Seconds of one training step on ``batch`` images, timed after a warm-up step (which pays for
        allocation), with the build's thread count."""
        import torch

        from daedalus.evaluation.nas_train import torch_threads

        net = self._net(genotype)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
        x = torch.randn((batch, *self.in_shape))
        target = torch.zeros(batch, dtype=torch.long)
        with torch_threads(self.n_threads):
            for step in range(steps + 1):
                if step == 1:
                    started = time.perf_counter()
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x), target).backward()
                optimizer.step()
        return (time.perf_counter() - started) / steps

    def calibrate(self, batch: int = 64) -> None:
        """Learn this machine's training FLOPs per second on a mid-sized network (2 stages, 16 and 32 channels)."""
        reference = self.space.from_config({"n_stages": 2, "channels_1": 16, "channels_2": 32})
        seconds = self.step_seconds(reference, batch, steps=3)
        self.throughputs.append(TRAIN_TO_INFERENCE * self.flops(reference) * batch / max(seconds, 1e-6))

    def observe(self, genotype: Genotype, rows: int, epochs: int, seconds: float) -> None:
        """Learn the throughput from a candidate's measured training time."""
        if epochs > 0 and seconds > 0:
            self.throughputs.append(TRAIN_TO_INFERENCE * self.flops(genotype) * rows * epochs / seconds)

    def epoch_seconds(self, genotype: Genotype, rows: int) -> float:
        """A quick estimate from FLOPs; it misses memory-bound work such as batch norm on narrow layers."""
        throughput = float(np.median(self.throughputs)) if self.throughputs else 1e10
        return TRAIN_TO_INFERENCE * self.flops(genotype) * rows / throughput

    def timed_epoch_seconds(self, genotype: Genotype, rows: int, batch: int) -> float:
        """An epoch's seconds from timing real training steps of this network."""
        if genotype not in self._timed:
            self._timed[genotype] = self.step_seconds(genotype, batch) / batch
        return self._timed[genotype] * rows

    def constraint(self, max_params: int | None, max_latency_ms: float | None) -> Constraint | None:
        """The user's hard limits, checked by the designers before they propose."""
        if max_params is None and max_latency_ms is None:
            return None

        def allowed(genotype: Genotype) -> bool:
            if max_params is not None and self.params(genotype) > max_params:
                return False
            return max_latency_ms is None or self.latency_ms(genotype) <= max_latency_ms

        return allowed


class ImageTask:
    """The data of an image build, split once, and how any network is trained on it (search, final, baselines)."""

    def __init__(self, table: ImageTable, options: Any) -> None:
        self.table, self.options = table, options
        self.in_shape = table.shape
        self.n_classes = len(table.classes)
        train, val = _split(table, options.seed)
        self.val_index = val  # rows of the data that no network trains on
        self.X, self.y = table.images[train], table.labels[train]
        self.X_val, self.y_val = table.images[val], table.labels[val]

    @property
    def batch_size(self) -> int:
        # Small data sets get smaller batches, so that an epoch is still some 50 optimiser steps.
        return int(np.clip(len(self.y) // 50, 16, self.options.batch_size))

    @property
    def shift(self) -> int:
        """Pixels of random shift in training: a tenth of the shorter side (2 for MNIST, 3 for CIFAR-10) unless
        set. Shifting keeps small data sets from being memorised by the larger networks a search tries."""
        if self.options.shift is not None:
            return self.options.shift
        return min(self.in_shape[1:]) // 10

    @property
    def flip(self) -> bool:
        """Random left-right mirroring in training, unless set: on for colour images, off for grey ones. Colour
        images are mostly photographs, which mirror into photographs of the same class; grey ones are often
        digits, letters or scans, which mirror into other symbols (a mirrored 2 is no 2)."""
        if self.options.flip is not None:
            return self.options.flip
        return self.in_shape[0] == 3

    def trainer(self, build: Callable[[], Any], horizon_epochs: int) -> Trainer:
        return self.network_data(Path()).trainer(build, horizon_epochs, (self.X, self.y, self.X_val, self.y_val))

    def train_for(self, build: Callable[[], Any], seconds: float, epochs: int | None = None) -> Trainer:
        """A fresh network trained in this process for ``epochs``, or on a schedule sized to end when
        ``seconds`` (a share of the caller's clock) do (``nas_trial.train_to_deadline``)."""
        return train_to_deadline(self.trainer(build, epochs or MAX_FINAL_EPOCHS), BudgetClock(seconds), epochs)

    def arrays(self) -> dict[str, np.ndarray]:
        """The split images, as the workers read them (``nas_trial.ARRAYS``)."""
        return {"X": self.X, "y": self.y, "X_val": self.X_val, "y_val": self.y_val}

    def network_data(self, directory: Path) -> NetworkData:
        """How a worker trains a network of this task, on the images saved in ``directory``."""
        return NetworkData(directory, batch_size=self.batch_size, lr=self.options.learning_rate,
                           seed=self.options.seed, n_threads=self.options.threads, shift=self.shift,
                           flip=self.flip)
