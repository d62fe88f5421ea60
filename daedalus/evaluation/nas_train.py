"""Training a searched network on tensors, in budgets that can be resumed (for successive halving).

A :class:`Trainer` owns one module, its AdamW optimizer, its place on the learning-rate schedule, its
data-order generator and its own torch RNG state. ``train(epochs, seconds)`` continues from where the last
call stopped, so training 2 epochs and then 3 more is the same computation, bit for bit, as training 5 at
once, even when other trainers ran in between (each trainer restores its RNG state and gives the global one
back afterwards). That is what lets successive halving promote a candidate without retraining it.

The schedule is a function of progress through ``horizon_epochs``, fixed when the trainer is made: under
successive halving the horizon is the top rung's budget, so a candidate that reaches the top has had exactly
the schedule of a full run; one evaluated at a lower rung has been scored mid-schedule (at a higher learning
rate), which is the usual price of multi-fidelity search. Past the horizon the rate stays at its final value.

Scores are "higher is better": accuracy for classification, R^2 for regression (MSE loss for training).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from daedalus.spaces.families.torch_mlp import torch_threads

TaskKind = Literal["classification", "regression"]
Schedule = Literal["cosine", "onecycle"]
_EVAL_CHUNK = 1024


def count_params(module: nn.Module) -> int:
    """The number of parameters (trainable or not; buffers such as BN statistics are not parameters)."""
    return sum(p.numel() for p in module.parameters())


def measure_latency_ms(module: nn.Module, example_batch: torch.Tensor, repeats: int = 7, warmup: int = 2,
                       n_threads: int | None = None) -> float:
    """Median milliseconds of one inference forward pass on ``example_batch``, on this machine, in eval mode.

    The median of a few repeats, after warm-up calls (allocations, lazy initialisation), is robust to the
    occasional stall of a shared machine; the module's train/eval mode is restored afterwards.
    """
    was_training = module.training
    module.eval()
    times = []
    try:
        with torch_threads(n_threads), torch.no_grad():
            for i in range(warmup + max(1, repeats)):
                start = time.perf_counter()
                module(example_batch)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000.0)
    finally:
        module.train(was_training)
    return float(statistics.median(times))


def learning_rate(schedule: Schedule, peak: float, progress: float) -> float:
    """The rate at ``progress`` (0..1, clipped) through the horizon.

    * ``cosine``: from ``peak`` down to 0 along half a cosine (Loshchilov & Hutter, 2017, without restarts).
    * ``onecycle``: 30% warm-up from peak/25 to ``peak``, then cosine down to peak/25e4 (Smith's one-cycle,
      with the defaults of ``torch.optim.lr_scheduler.OneCycleLR``; AdamW's momentum is not cycled).
    """
    p = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "onecycle":
        start, end, warm = peak / 25.0, peak / 25.0 / 1e4, 0.3
        if p < warm:
            return start + (peak - start) * 0.5 * (1.0 - math.cos(math.pi * p / warm))
        return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * (p - warm) / (1.0 - warm)))
    raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'onecycle'")


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of an (N, C, H, W) batch moved by its own random offset of up to ``pixels`` in each direction,
    the border repeated into the space it leaves (a digit's background stays background, unlike zero padding
    of normalised pixels). Translation is the augmentation that suits every kind of image: flips would turn
    digits and text into other symbols."""
    n, _, h, w = images.shape
    padded = nn.functional.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n, 1), generator=generator)
    rows = (torch.arange(h) + dy)[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w) + dx)[:, None, None, :]  # (N, 1, 1, W)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None], rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of an (N, C, H, W) batch mirrored left-right with probability 1/2: the standard augmentation
    for photographs (a mirrored cat is a cat), wrong for digits and text (see ``ImageTask.flip``)."""
    mirrored = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(mirrored[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class TrainResult:
    """Where a trainer stands after a ``train`` call. ``epochs`` and ``seconds`` are totals over all calls."""

    score: float  # validation score after the last epoch (accuracy or R^2; -inf if the loss diverged)
    best_score: float  # the best validation score after any epoch so far
    val_loss: float
    epochs: int
    seconds: float
    params: int
    stopped_by_time: bool  # this call ended on its time budget rather than its epoch count


class Trainer:
    """Trains ``module`` (or the module that ``module()`` builds, under the seed, so that its initial weights
    are reproducible too) on ``(X, y)`` and scores it on ``(X_val, y_val)`` after every epoch.

    ``y`` holds class indices 0..k-1 for classification, targets of the output's shape (or 1-d for one
    output) for regression. ``n_threads`` is the torch thread count while training (None: unchanged).
    """

    def __init__(self, module: nn.Module | Callable[[], nn.Module], X: Any, y: Any, X_val: Any, y_val: Any, *,
                 task: TaskKind = "classification", horizon_epochs: int = 10, batch_size: int = 64,
                 lr: float = 3e-3, weight_decay: float = 1e-2, schedule: Schedule = "cosine", seed: int = 0,
                 n_threads: int | None = None, shift: int = 0, flip: bool = False) -> None:
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        if horizon_epochs < 1 or batch_size < 1:
            raise ValueError("horizon_epochs and batch_size must be >= 1")
        learning_rate(schedule, lr, 0.0)  # rejects an unknown schedule now rather than after the first epoch
        if shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {shift}")
        self.task, self.horizon_epochs, self.lr, self.schedule = task, int(horizon_epochs), float(lr), schedule
        self.n_threads, self.shift, self.flip = n_threads, int(shift), bool(flip)
        self.X, self.y = self._tensors(X, y)
        self.X_val, self.y_val = self._tensors(X_val, y_val)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = module if isinstance(module, nn.Module) else module()
            self._rng_state = torch.get_rng_state()
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=self.lr, weight_decay=weight_decay)
        # The sampler's generator lives as long as the trainer: epoch k+1 of a resumed run draws the order that
        # epoch k+1 of an uninterrupted run would. A last batch of one row is dropped (BatchNorm cannot train on it).
        self._generator = torch.Generator().manual_seed(seed)
        n = len(self.X)
        batch = min(int(batch_size), n)
        sampler = BatchSampler(RandomSampler(range(n), generator=self._generator), batch,
                               drop_last=n > 1 and n % batch == 1)
        self._loader = DataLoader(TensorDataset(self.X, self.y), sampler=sampler, batch_size=None,
                                  generator=self._generator)
        self.steps_per_epoch = len(sampler)
        self.params = count_params(self.module)
        self.epochs_done, self.seconds, self.step = 0, 0.0, 0
        self.score, self.best_score, self.val_loss = -math.inf, -math.inf, math.inf
        self.diverged = False

    def _tensors(self, X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.as_tensor(X, dtype=torch.float32)
        if self.task == "classification":
            y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
        else:
            y = torch.as_tensor(y, dtype=torch.float32)
            y = y.reshape(-1, 1) if y.dim() == 1 else y
        if len(X) != len(y) or len(X) == 0:
            raise ValueError(f"X and y need the same, non-zero number of rows, got {len(X)} and {len(y)}")
        return X, y

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(output, target)
        return nn.functional.mse_loss(output, target.reshape(output.shape))

    def evaluate(self, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """(score, mean loss) of the module in eval mode; the train/eval mode is restored afterwards."""
        was_training = self.module.training
        self.module.eval()
        with torch.no_grad():
            outputs = torch.cat([self.module(X[i:i + _EVAL_CHUNK]) for i in range(0, len(X), _EVAL_CHUNK)])
        self.module.train(was_training)
        loss = float(self._loss(outputs, y))
        if self.task == "classification":
            score = float((outputs.argmax(dim=1) == y).float().mean())
        else:
            target = y.reshape(outputs.shape)
            sse = float(((outputs - target) ** 2).sum())
            sst = float(((target - target.mean(dim=0)) ** 2).sum())
            score = 1.0 - sse / sst if sst > 0 else -sse / target.numel()
        return (score if math.isfinite(score) and math.isfinite(loss) else -math.inf), loss

    def _epoch(self) -> None:
        self.module.train()
        total_steps = self.horizon_epochs * self.steps_per_epoch
        for xb, yb in self._loader:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.schedule, self.lr, self.step / total_steps)
            if self.shift:
                xb = random_shift(xb, self.shift, self._generator)
            if self.flip:
                xb = random_flip(xb, self._generator)
            self.optimizer.zero_grad()
            loss = self._loss(self.module(xb), yb)
            if not torch.isfinite(loss):
                self.diverged = True
                return
            loss.backward()
            self.optimizer.step()
            self.step += 1

    def train(self, epochs: int | None = None, seconds: float | None = None) -> TrainResult:
        """Train ``epochs`` more epochs (None: up to the horizon), stopping after the epoch during which
        ``seconds`` ran out (so at least one epoch runs). A diverged trainer trains no further."""
        todo = self.horizon_epochs - self.epochs_done if epochs is None else int(epochs)
        start = time.perf_counter()
        done, stopped_by_time = 0, False
        with torch_threads(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            while done < todo and not self.diverged:
                self._epoch()
                done += 1
                self.epochs_done += 1
                self.score, self.val_loss = self.evaluate(self.X_val, self.y_val)
                if self.diverged:
                    self.score = -math.inf
                self.best_score = max(self.best_score, self.score)
                if seconds is not None and time.perf_counter() - start >= seconds and done < todo:
                    stopped_by_time = True
                    break
            self._rng_state = torch.get_rng_state()
        self.seconds += time.perf_counter() - start
        return self.result(stopped_by_time)

    def state_dict(self) -> dict[str, Any]:
        """Everything ``train`` continues from (tensors and numbers only: ``torch.load(weights_only=True)``
        reads it back), so that a trainer rebuilt in another process with the same arguments and given this
        state trains on exactly as this one would have."""
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self._rng_state, "generator": self._generator.get_state(),
                "progress": torch.tensor([self.epochs_done, self.step], dtype=torch.long),
                "scores": torch.tensor([self.seconds, self.score, self.best_score, self.val_loss],
                                       dtype=torch.float64),
                "diverged": torch.tensor(self.diverged)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._rng_state = state["rng"]
        self._generator.set_state(state["generator"])
        self.epochs_done, self.step = (int(v) for v in state["progress"].tolist())
        self.seconds, self.score, self.best_score, self.val_loss = (float(v) for v in state["scores"].tolist())
        self.diverged = bool(state["diverged"])

    def result(self, stopped_by_time: bool = False) -> TrainResult:
        return TrainResult(score=self.score, best_score=self.best_score, val_loss=self.val_loss,
                           epochs=self.epochs_done, seconds=self.seconds, params=self.params,
                           stopped_by_time=stopped_by_time)


def train_module(module: nn.Module | Callable[[], nn.Module], X: Any, y: Any, X_val: Any, y_val: Any,
                 epochs: int, seconds: float | None = None, **options: Any) -> TrainResult:
    """Train once for ``epochs`` (the schedule's horizon) or until ``seconds`` run out; ``options`` as
    :class:`Trainer` takes them. The module is trained in place."""
    trainer = Trainer(module, X, y, X_val, y_val, horizon_epochs=epochs, **options)
    return trainer.train(epochs, seconds)
