"""A PyTorch multi-layer perceptron as scikit-learn estimators: :class:`TorchMLPClassifier`, :class:`TorchMLPRegressor`.

The network is :class:`~daedalus.spaces.nas.mlp_torch.TabularMLP`, any architecture of the NAS MLP space
(widths per layer, activation, normalisation, dropout, residual connections, categorical embeddings): the
``neural`` model family searches that space jointly with the training hyperparameters. The last
``n_categorical`` input columns are integer codes (-1 for missing/unseen) fed to embeddings.

Training: AdamW on mini-batches, early stopping on the loss of a small internal validation split (the best
epoch's weights are kept), and a wall-clock cap (``max_seconds``). Numeric inputs are standardised
internally; the regressor also standardises its target.

Persistence: the fitted weights live in ``state_`` as a dict of NumPy arrays and the shapes in ``n_numeric_``,
``cardinalities_`` and ``n_outputs_``, so skops saves the estimator without any torch object. The torch
module is rebuilt (in float64) for each prediction call; training runs in float32.

Reproducibility: ``random_state`` seeds a forked torch RNG (the global torch RNG is left as it was), and
``n_threads`` sets torch's intra-op threads for the duration of ``fit``/``predict`` only.
"""

from __future__ import annotations

import time
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
from torch import nn

from daedalus.spaces.nas.mlp_torch import ACTIVATIONS, TabularMLP

_PREDICT_CHUNK = 8192


@contextmanager
def torch_threads(n_threads: int | None) -> Any:
    """Use ``n_threads`` intra-op threads inside the block (None: leave as is), then restore the previous count."""
    previous = torch.get_num_threads()
    if n_threads is not None and n_threads > 0:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)




class _TorchMLPBase(BaseEstimator, metaclass=ABCMeta):
    """Shared hyperparameters, training loop and prediction. Subclasses define the loss and target handling."""

    def __init__(self, widths: tuple[int, ...] = (128, 128), activation: str = "relu", norm: str = "none",
                 dropout: float = 0.1, residual: bool = False, embedding_dim: int = 8, n_categorical: int = 0,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-5, batch_size: int = 256,
                 max_epochs: int = 200, patience: int = 10, validation_fraction: float = 0.1,
                 max_seconds: float | None = None, random_state: int | None = None,
                 n_threads: int | None = None) -> None:
        self.widths = widths
        self.activation = activation
        self.norm = norm
        self.dropout = dropout
        self.residual = residual
        self.embedding_dim = embedding_dim
        self.n_categorical = n_categorical
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_seconds = max_seconds
        self.random_state = random_state
        self.n_threads = n_threads

    # -- subclass hooks ------------------------------------------------------------------------------------
    @abstractmethod
    def _loss(self) -> nn.Module:
        """The training loss."""

    @abstractmethod
    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        """The encoded target as the loss takes it."""

    # -- training ------------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if len(self.widths) < 1 or min(int(w) for w in self.widths) < 1:
            raise ValueError(f"widths must be one or more positive layer widths, got {self.widths}")
        if self.activation not in ACTIVATIONS or self.norm not in ("none", "batch", "layer"):
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} and norm one of none, batch, "
                             f"layer; got {self.activation!r} and {self.norm!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= float(self.validation_fraction) < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if int(self.batch_size) < 1 or int(self.max_epochs) < 1 or int(self.patience) < 1:
            raise ValueError("batch_size, max_epochs and patience must be >= 1")

    def _module(self) -> nn.Module:
        return TabularMLP(self.n_numeric_, self.cardinalities_, self.n_outputs_, tuple(int(w) for w in self.widths),
                          self.activation, self.norm, float(self.dropout), bool(self.residual),
                          int(self.embedding_dim))

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        """Numeric columns standardised; categorical code columns left as they are."""
        out = np.array(X, dtype=np.float64)
        out[:, : self.n_numeric_] = (out[:, : self.n_numeric_] - self.x_mean_) / self.x_scale_
        return out

    def _fit_network(self, X: np.ndarray, y: np.ndarray, n_outputs: int) -> None:
        """Standardise X, train, and store the best weights in ``state_`` (NumPy arrays)."""
        self._check_params()
        t0 = time.perf_counter()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        n_categorical = int(self.n_categorical)
        if not 0 <= n_categorical <= X.shape[1]:
            raise ValueError(f"n_categorical={n_categorical} but X has {X.shape[1]} columns")
        self.n_numeric_ = X.shape[1] - n_categorical
        self.n_outputs_ = int(n_outputs)
        # Codes are 0..c-1 with -1 for missing; unseen codes at prediction time are clamped by the module.
        self.cardinalities_ = tuple(int(max(X[:, j].max(initial=-1), -1)) + 1
                                    for j in range(self.n_numeric_, X.shape[1]))
        numeric = X[:, : self.n_numeric_]
        self.x_mean_ = numeric.mean(axis=0)
        scale = numeric.std(axis=0)
        self.x_scale_ = np.where(scale > 0, scale, 1.0)
        Xs = self._standardise(X).astype(np.float32)
        n = Xs.shape[0]
        n_val = int(round(float(self.validation_fraction) * n))
        perm = rng.permutation(n)
        if n_val >= 5 and n - n_val >= 5:
            val_idx, train_idx = perm[:n_val], perm[n_val:]
        else:  # too few rows to hold some out: early-stop on the training loss
            val_idx, train_idx = perm[:0], perm
        with torch_threads(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            module = self._module()
            loss_fn = self._loss()
            opt = torch.optim.AdamW(module.parameters(), lr=float(self.learning_rate),
                                    weight_decay=float(self.weight_decay))
            X_train = torch.from_numpy(Xs[train_idx])
            y_train = self._target_tensor(y[train_idx])
            X_val, y_val = (torch.from_numpy(Xs[val_idx]), self._target_tensor(y[val_idx])) if len(val_idx) else (
                X_train, y_train)
            batch = max(1, min(int(self.batch_size), len(train_idx)))
            best_loss, best_state, best_epoch, epoch = np.inf, None, 0, 0
            for epoch in range(1, int(self.max_epochs) + 1):
                module.train()
                order = torch.randperm(len(train_idx), generator=generator)
                for start in range(0, len(order), batch):
                    idx = order[start:start + batch]
                    if len(idx) < 2 and len(order) > 1:  # batch norm cannot train on a batch of one row
                        continue
                    opt.zero_grad()
                    loss = loss_fn(module(X_train[idx]), y_train[idx])
                    loss.backward()
                    opt.step()
                module.eval()
                with torch.no_grad():
                    val_loss = float(loss_fn(module(X_val), y_val))
                if not np.isfinite(val_loss):
                    break
                if val_loss < best_loss - 1e-6 * abs(best_loss) or best_state is None:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
                elif epoch - best_epoch >= int(self.patience):
                    break
                if self.max_seconds is not None and time.perf_counter() - t0 >= float(self.max_seconds):
                    break
            if best_state is None:  # diverged in the first epoch: keep what there is
                best_state = module.state_dict()
        self.state_ = {k: v.detach().cpu().numpy().copy() for k, v in best_state.items()}
        self.n_epochs_ = epoch
        self.best_epoch_ = best_epoch
        self.best_loss_ = float(best_loss)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        """Raw network outputs for already-validated X, in float64."""
        module = self._module().double()
        module.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in self.state_.items()})
        module.eval()
        Xs = self._standardise(X)
        outs = []
        with torch_threads(self.n_threads), torch.no_grad():
            for start in range(0, Xs.shape[0], _PREDICT_CHUNK):
                outs.append(module(torch.from_numpy(np.ascontiguousarray(Xs[start:start + _PREDICT_CHUNK]))).numpy())
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, self.n_outputs_))


class TorchMLPClassifier(ClassifierMixin, _TorchMLPBase):
    """MLP classifier (softmax + cross-entropy). ``classes_`` are the sorted labels seen in ``fit``."""

    def _loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.int64))

    def fit(self, X: Any, y: Any) -> TorchMLPClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._fit_network(X, codes, len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "state_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])


class TorchMLPRegressor(RegressorMixin, _TorchMLPBase):
    """MLP regressor (mean squared error on the standardised target)."""

    def _loss(self) -> nn.Module:
        return nn.MSELoss()

    def _target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(-1, 1))

    def fit(self, X: Any, y: Any) -> TorchMLPRegressor:
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        y_std = float(y.std())
        self.y_scale_ = y_std if y_std > 0 else 1.0
        self._fit_network(X, (y - self.y_mean_) / self.y_scale_, 1)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "state_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(self._forward(X)[:, 0] * self.y_scale_ + self.y_mean_)
