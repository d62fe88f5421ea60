"""Predictor-guided search (in the manner of BANANAS, White et al. 2021): a surrogate ranks candidate mutations.

Each ask fits a surrogate to every result so far and proposes the unseen candidate with the best acquisition.

- **Targets are ranks.** Scores are replaced by their normal scores (the rank mapped through the inverse normal
  CDF), so the surrogate, its hyperparameters and the acquisition never see the scale of the metric: 94% vs 73%
  accuracy, or a few broken architectures at chance level, change nothing.
- **Surrogate.** A Gaussian process on ``space.encode`` with a categorical (Hamming) kernel: exp(-d / l), d the
  number of positions where two genotypes differ. It captures interactions of every order, its cost depends on
  the number of results, not the size of the space, and it gives an uncertainty for the acquisition. The
  lengthscale and noise are chosen by marginal likelihood over a small grid at every fit.
- **Candidates.** The unseen one-step neighbours of the best results (a surrogate-ranked local search, the
  strongest pattern on cell spaces), plus mutations and crossovers of them and a few uniform samples, so the
  space never has to be enumerated.
- **Acquisition.** Expected improvement over the best (transformed) result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import ndtr, ndtri
from threadpoolctl import ThreadpoolController

from daedalus.designers.nas.base import ArchDesigner, Constraint
from daedalus.spaces.nas.base import ArchSpace, Genotype

_THREADPOOLS: ThreadpoolController | None = None  # found once: finding the BLAS libraries takes ~2 ms

# Draws tried for an unseen genotype before a repeat is accepted.
MAX_DRAWS = 1000


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard normal quantiles (ties share their mean rank): a scale-free target."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # average the ranks of ties
        same = values == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    return np.asarray(ndtri((ranks + 0.5) / len(values)))


class HammingGP:
    """A GP regressor with kernel s^2 exp(-d / l), d = differing positions; hyperparameters by marginal likelihood."""

    def __init__(self, lengthscales: Sequence[float], noises: Sequence[float]) -> None:
        self.lengthscales = lengthscales
        self.noises = noises

    @staticmethod
    def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # Half the squared distance of one-hot rows: the positions where a and b differ (a position that only one
        # of them uses counts one half).
        sq_a = (a * a).sum(axis=1)[:, None]
        sq_b = (b * b).sum(axis=1)[None, :]
        return np.asarray(0.5 * (sq_a + sq_b) - a @ b.T)

    def fit(self, x: np.ndarray, y: np.ndarray) -> HammingGP:
        self.x = x
        self.mean = float(y.mean())
        centred = y - self.mean
        distance = self._distance(x, x)
        n = len(y)
        best = -math.inf
        for lengthscale in self.lengthscales:
            base = np.exp(-distance / lengthscale)
            for noise in self.noises:
                factor = cho_factor(base + noise * np.eye(n), lower=True)
                alpha = cho_solve(factor, centred)
                # The signal variance is profiled out: s^2 = y' K^-1 y / n maximises the likelihood.
                scale = max(float(centred @ alpha) / n, 1e-12)
                log_det = 2.0 * float(np.log(np.diag(factor[0])).sum())
                likelihood = -0.5 * (n * math.log(scale) + log_det)
                if likelihood > best:
                    best = likelihood
                    self.lengthscale, self.noise, self.scale = lengthscale, noise, scale
                    self.factor, self.alpha = factor, alpha
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the latent function at rows ``x``."""
        cross = np.exp(-self._distance(x, self.x) / self.lengthscale)
        mean = self.mean + cross @ self.alpha
        variance = self.scale * (1.0 - np.einsum("ij,ji->i", cross, cho_solve(self.factor, cross.T)))
        return mean, np.sqrt(np.maximum(variance, 1e-12))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / sd
    return np.asarray((mean - best) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))


class PredictorDesigner(ArchDesigner):
    name = "predictor"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None, *,
                 initial: int = 10, parents: int = 5, mutations: int = 50, crossovers: int = 20,
                 random_candidates: int = 50, lengthscales: Sequence[float] = (1.0, 2.0, 4.0, 8.0),
                 noises: Sequence[float] = (0.01, 0.1, 0.3), acquisition: str = "ei", kappa: float = 1.0,
                 **_: Any) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        self.initial = initial
        self.parents = parents
        self.mutations = mutations
        self.crossovers = crossovers
        self.random_candidates = random_candidates
        self.lengthscales = tuple(lengthscales)
        self.noises = tuple(noises)
        self.acquisition = acquisition
        self.kappa = kappa
        self.scores: dict[Genotype, float] = {}  # first result of each genotype told; failures as -inf
        self.pending: set[Genotype] = set()  # asked, not yet told
        self._codes: dict[Genotype, np.ndarray] = {}
        self._neighbour_cache: dict[Genotype, list[Genotype]] = {}

    # ----- the contract -----
    def ask(self) -> Genotype:
        if len(self.scores) < self.initial or not any(math.isfinite(s) for s in self.scores.values()):
            genotype = self._random_unseen()
        else:
            genotype = self._best_candidate()
        self.pending.add(genotype)
        return genotype

    def tell(self, genotype: Genotype, score: float | None) -> None:
        genotype = self.space.canonical(genotype)
        self.pending.discard(genotype)
        self.scores.setdefault(genotype, -math.inf if score is None or not math.isfinite(score) else float(score))

    # ----- internals -----
    def _unseen(self, genotype: Genotype) -> bool:
        return genotype not in self.scores and genotype not in self.pending

    def _random_unseen(self) -> Genotype:
        genotype = self.sample_allowed()
        for _ in range(MAX_DRAWS):
            if self._unseen(genotype):
                break
            genotype = self.sample_allowed()
        return genotype

    def _encode(self, genotype: Genotype) -> np.ndarray:
        code = self._codes.get(genotype)
        if code is None:
            code = self._codes[genotype] = self.space.encode(genotype)
        return code

    def _neighbours(self, genotype: Genotype) -> list[Genotype]:
        found = self._neighbour_cache.get(genotype)
        if found is None:
            found = self._neighbour_cache[genotype] = self.space.neighbours(genotype)
        return found

    def _walk(self, genotype: Genotype, steps: int) -> Genotype:
        """A random walk of ``steps`` one-position moves (``space.mutate`` on cached neighbour lists)."""
        for _ in range(steps):
            options = self._neighbours(genotype)
            if not options:
                break
            genotype = options[int(self.rng.integers(len(options)))]
        return genotype

    def _candidates(self, ranked: list[Genotype]) -> list[Genotype]:
        top = ranked[: self.parents]
        pool: list[Genotype] = []
        for parent in top:
            pool.extend(self._neighbours(parent))
        for _ in range(self.mutations):
            pool.append(self._walk(top[int(self.rng.integers(len(top)))], 2))
        for _ in range(self.crossovers if len(top) > 1 else 0):
            a, b = self.rng.choice(len(top), 2, replace=False)
            pool.append(self.space.crossover(top[a], top[b], self.rng))
        pool.extend(self.space.sample(self.rng) for _ in range(self.random_candidates))
        unique = list(dict.fromkeys(pool))
        return [g for g in unique if self._unseen(g) and self.allowed(g)]

    def _best_candidate(self) -> Genotype:
        # The matrices are small (one row per result): multi-threaded BLAS only adds overhead on them, ~5x here.
        global _THREADPOOLS
        if _THREADPOOLS is None:
            _THREADPOOLS = ThreadpoolController()
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return self._rank_candidates()

    def _rank_candidates(self) -> Genotype:
        told = [g for g, s in self.scores.items() if math.isfinite(s)]
        values = np.array([self.scores[g] for g in told])
        ranked = [told[i] for i in np.argsort(-values, kind="stable")]
        candidates = self._candidates(ranked)
        if not candidates:
            return self._random_unseen()
        targets = normal_scores(values)
        model = HammingGP(self.lengthscales, self.noises)
        model.fit(np.array([self._encode(g) for g in told]), targets)
        mean, sd = model.predict(np.array([self._encode(g) for g in candidates]))
        if self.acquisition == "ei":
            value = expected_improvement(mean, sd, float(targets.max()))
        elif self.acquisition == "ucb":
            value = mean + self.kappa * sd
        else:
            value = mean
        return candidates[int(np.argmax(value))]
