"""Predictor-guided search (in the manner of BANANAS, White et al. 2021): a surrogate ranks candidate mutations.

After a small uniform initial design, each ask fits a surrogate to every result so far and proposes the unseen
candidate with the highest expected improvement (EI).

- **Targets are ranks.** Scores are replaced by their normal scores (the rank mapped through the inverse normal
  CDF), so the search is invariant to any increasing transform of the metric: 94% vs 73% accuracy, a loss
  instead of an accuracy, or a few broken architectures at chance level change nothing. A failure ranks last.
- **Surrogate.** A Gaussian process on ``space.encode`` with a categorical (Hamming) kernel s^2 exp(-d / l), d the
  number of positions where two genotypes differ. It captures interactions of every order, its cost depends on
  the number of results, not on the size of the space, and its posterior gives the uncertainty that BANANAS
  gets from an ensemble, exactly and at the cost of one n x n factorisation. The lengthscale l and noise are
  chosen by marginal likelihood over a small grid (s^2 in closed form); they are chosen again whenever the
  results have grown by a tenth, since they move slowly and the choice is most of the cost.
- **Candidates.** The unseen one-step neighbours of the best results (a surrogate-ranked local search: local
  search is the strongest simple method on cell spaces), plus two-step mutations and crossovers of them and a
  few uniform samples. The space is never enumerated, so any space size works.
- **Regions and restarts.** EI alone keeps refining the basin it found first, since its neighbourhood always
  looks better than the unknown; on NAS-Bench-201 a fifth of the runs spent their last 50 queries around a
  deceptive local optimum. So the search works in regions, as a local search with restarts does: the
  candidates come from the best results of the current region and EI is measured against that region's best.
  When no candidate is more likely than not to beat it (probability of improvement below one half, a
  threshold on the model's belief, not on the metric), the region is left, and the next one starts at the
  uniform sample with the highest EI among those that differ from every region left in at least half the
  positions. The first region holds the initial design, so until the first restart this is plain EI.
- **Pretraining** (:class:`~daedalus.designers.nas.pretrain.Pretrainable`). Other tasks' results become a prior
  mean: each source's rank quantiles as normal scores, averaged over sources weighted by their similarity to
  the task searched (a genotype no source covers gets the mean of its covered neighbours, else 0). The GP then
  models the residual y - b * prior, b fitted to the task's own results by least squares shrunk towards 1 (the
  prior counts as PRIOR_STRENGTH results saying the tasks agree). A pretrained search has no uniform initial
  design: its first proposals are the prior's best cells, and the prior's best unseen cells join the candidates.
- **Initial design.** 20 uniform samples before the surrogate leads: the first good architecture decides which
  basin the first region climbs. 10 and 15 scored lower on both tables at 50 and 100 queries (200 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata
from threadpoolctl import ThreadpoolController

from daedalus.designers.nas.base import ArchDesigner, Constraint, genotypes_in, genotypes_out, scores_in, scores_out
from daedalus.designers.nas.pretrain import (
    Example,
    TaskInfo,
    normalised,
    task_out,
    task_similarity,
    weighted_in,
    weighted_out,
)
from daedalus.spaces.nas.base import ArchSpace, Genotype

# Draws tried for an unseen genotype before a repeat is accepted.
MAX_DRAWS = 1000
# The grid of the marginal likelihood: lengthscales in differing positions, noise variances relative to s^2.
LENGTHSCALES = (1.0, 2.0, 4.0, 8.0)
NOISES = (0.01, 0.1, 0.3)
# A region is left when no candidate is more likely than not to beat its best; a restart picks from this many samples.
RESTART_BELOW = 0.5
RESTART_POOL = 200
# The hyperparameters are chosen again once the number of results has grown by this fraction.
REFIT_GROWTH = 0.1
# Pretrained: the prior's slope b is shrunk towards 1 as if PRIOR_STRENGTH results agreed; the first proposals,
# until the GP has PRIOR_START results, are the prior's best; its PRIOR_CANDIDATES best unseen cells are candidates.
PRIOR_STRENGTH = 5.0
PRIOR_START = 2
PRIOR_CANDIDATES = 20

_THREADPOOLS: ThreadpoolController | None = None  # found once: looking up the BLAS libraries takes ~2 ms


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard normal quantiles (ties share their mean rank): a scale-free regression target."""
    return np.asarray(ndtri((rankdata(values) - 0.5) / len(values)))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise count of differing positions between rows of one-hot encodings (half the squared distance).

    A position that only one of the two genotypes uses counts one half.
    """
    sq_a = (a * a).sum(axis=1)[:, None]
    sq_b = (b * b).sum(axis=1)[None, :]
    return np.asarray(0.5 * (sq_a + sq_b) - a @ b.T)


def differing(a: Genotype, b: Genotype) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


class HammingGP:
    """A GP regressor with kernel s^2 exp(-d / l) plus noise, d = differing positions, on centred targets."""

    def __init__(self, lengthscale: float, noise: float) -> None:
        self.lengthscale = lengthscale
        self.noise = noise

    def fit(self, x: np.ndarray, y: np.ndarray, distance: np.ndarray | None = None) -> float:
        """Fit on rows ``x`` and targets ``y``; returns the log marginal likelihood (up to a constant)."""
        self.x = x
        self.mean = float(y.mean())
        centred = y - self.mean
        if distance is None:
            distance = hamming(x, x)
        n = len(y)
        self.factor = cho_factor(np.exp(-distance / self.lengthscale) + self.noise * np.eye(n), lower=True)
        self.alpha = cho_solve(self.factor, centred)
        # The signal variance s^2 = y' K^-1 y / n maximises the likelihood for the other two.
        self.scale = max(float(centred @ self.alpha) / n, 1e-12)
        log_det = 2.0 * float(np.log(np.diag(self.factor[0])).sum())
        return -0.5 * (n * math.log(self.scale) + log_det)

    @classmethod
    def select(cls, x: np.ndarray, y: np.ndarray) -> HammingGP:
        """The model of the grid with the highest marginal likelihood, fitted."""
        distance = hamming(x, x)
        best, best_likelihood = None, -math.inf
        for lengthscale in LENGTHSCALES:
            for noise in NOISES:
                model = cls(lengthscale, noise)
                likelihood = model.fit(x, y, distance)
                if likelihood > best_likelihood:
                    best, best_likelihood = model, likelihood
        assert best is not None
        return best

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the latent function at rows ``x``."""
        cross = np.exp(-hamming(x, self.x) / self.lengthscale)
        mean = self.mean + cross @ self.alpha
        variance = self.scale * (1.0 - np.einsum("ij,ji->i", cross, cho_solve(self.factor, cross.T)))
        return mean, np.sqrt(np.maximum(variance, 1e-12))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / sd
    return np.asarray((mean - best) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))


class PredictorDesigner(ArchDesigner):
    name = "predictor"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None, *,
                 initial: int = 20, parents: int = 5, mutations: int = 50, crossovers: int = 20,
                 random_candidates: int = 50, task: TaskInfo | None = None) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        self.task = task_out(task)  # what the designer is told about the task it searches
        # The prior: per genotype, the similarity-weighted sum of the sources' normal scores and of their weights.
        self.prior_sum: dict[Genotype, float] = {}
        self.prior_weight: dict[Genotype, float] = {}
        self._prior_ranked: list[Genotype] = []  # covered genotypes, best prior first (a cache)
        self.initial = initial  # uniform samples before the surrogate leads
        self.parents = parents  # best results whose neighbours, mutations and crossovers are candidates
        self.mutations = mutations
        self.crossovers = crossovers
        self.random_candidates = random_candidates
        self.scores: dict[Genotype, float] = {}  # first result of each genotype told; failures as -inf
        self.pending: set[Genotype] = set()  # asked, not yet told
        self._codes: dict[Genotype, np.ndarray] = {}
        self._neighbour_lists: dict[Genotype, list[Genotype]] = {}
        # The current region: the results told since the last restart (None: all of them, before any restart).
        self.region: set[Genotype] | None = None
        self.exhausted: list[Genotype] = []  # the best result of each region left
        self._hyperparameters: tuple[float, float] | None = None
        self._chosen_at = 0  # the number of results when the hyperparameters were last chosen

    # ----- the contract -----
    def propose(self) -> Genotype:
        finite = sum(math.isfinite(s) for s in self.scores.values())
        if self.prior_sum and finite < PRIOR_START:
            genotype = next((g for g in self._ranked_prior() if self._unseen(g) and self.allowed(g)), None) \
                or self._random_unseen()
        elif not self.prior_sum and (len(self.scores) < self.initial or not finite):
            genotype = self._random_unseen()
        else:
            global _THREADPOOLS
            if _THREADPOOLS is None:
                _THREADPOOLS = ThreadpoolController()
            # The matrices are small (one row per result): multi-threaded BLAS only adds overhead on them (5x here).
            with _THREADPOOLS.limit(limits=1, user_api="blas"):
                genotype = self._best_candidate()
        self.pending.add(genotype)
        return genotype

    def learn(self, genotype: Genotype, score: float | None) -> None:
        genotype = self.space.canonical(genotype)
        self.pending.discard(genotype)
        self.scores.setdefault(genotype, -math.inf if score is None or not math.isfinite(score) else float(score))
        if self.region is not None:
            self.region.add(genotype)

    def pretrain(self, examples: Sequence[Example], task: TaskInfo | None = None) -> None:
        """Add ``examples`` (one source, described by ``task``) to the prior mean: the
        :class:`~daedalus.designers.nas.pretrain.Pretrainable` capability. Call before the first ask."""
        if self.next_number or self.scores:  # the prior would change what the search has been deciding on
            raise ValueError("pretrain a designer before its first ask or tell")
        similarity = task_similarity(task, self.task)
        rows = normalised(self.space, examples)
        # Quantiles kept off 0 and 1 so the normal scores stay finite (a single example is at the median).
        count = len(rows)
        for genotype, quantile in rows:
            value = float(ndtri((quantile * (count - 1) + 0.5) / count)) if count > 1 else 0.0
            self.prior_sum[genotype] = self.prior_sum.get(genotype, 0.0) + similarity * value
            self.prior_weight[genotype] = self.prior_weight.get(genotype, 0.0) + similarity
        self._prior_ranked = []

    def learned_state(self) -> dict[str, Any]:
        # Regions and the surrogate's hyperparameters change in asks too: kept as they stand. The caches are not.
        return {"scores": scores_out(self.scores), "pending": genotypes_out(self.pending),
                "region": None if self.region is None else genotypes_out(self.region),
                "exhausted": [list(g) for g in self.exhausted],
                "hyperparameters": None if self._hyperparameters is None else list(self._hyperparameters),
                "chosen_at": self._chosen_at, "prior": weighted_out(self.prior_sum.items()),
                "prior_weight": weighted_out(self.prior_weight.items())}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        self.scores = {g: -math.inf if s is None else s for g, s in scores_in(state["scores"]).items()}
        self.pending = set(genotypes_in(state["pending"]))
        self.region = None if state["region"] is None else set(genotypes_in(state["region"]))
        self.exhausted = genotypes_in(state["exhausted"])
        hyperparameters = state["hyperparameters"]
        self._hyperparameters = None if hyperparameters is None else (float(hyperparameters[0]),
                                                                      float(hyperparameters[1]))
        self._chosen_at = int(state["chosen_at"])
        self.prior_sum = dict(weighted_in(state.get("prior", [])))  # absent from states saved before pretraining
        self.prior_weight = dict(weighted_in(state.get("prior_weight", [])))
        self._prior_ranked = []

    # ----- internals -----
    def _unseen(self, genotype: Genotype) -> bool:
        return genotype not in self.scores and genotype not in self.pending

    def _random_unseen(self) -> Genotype:
        return self.sample_unseen(self._unseen, MAX_DRAWS)

    def _prior(self, genotype: Genotype) -> float:
        """The prior mean (0 without pretraining): the sources' mean normal score, or its covered neighbours'."""
        if not self.prior_weight:
            return 0.0
        if genotype in self.prior_weight:
            return self.prior_sum[genotype] / self.prior_weight[genotype]
        near = [n for n in self._neighbours(genotype) if n in self.prior_weight]
        return float(np.mean([self.prior_sum[n] / self.prior_weight[n] for n in near])) if near else 0.0

    def _ranked_prior(self) -> list[Genotype]:
        if not self._prior_ranked:
            self._prior_ranked = sorted(self.prior_weight, key=lambda g: (-self._prior(g), g))
        return self._prior_ranked

    def _slope(self, prior: np.ndarray, targets: np.ndarray) -> float:
        """Least squares b of targets ~ b * prior, shrunk towards 1 by PRIOR_STRENGTH results; 0 unpretrained."""
        if not self.prior_sum:
            return 0.0
        return float((prior @ targets + PRIOR_STRENGTH) / (prior @ prior + PRIOR_STRENGTH))

    def _encode(self, genotype: Genotype) -> np.ndarray:
        code = self._codes.get(genotype)
        if code is None:
            code = self._codes[genotype] = self.space.encode(genotype)
        return code

    def _neighbours(self, genotype: Genotype) -> list[Genotype]:
        found = self._neighbour_lists.get(genotype)
        if found is None:
            found = self._neighbour_lists[genotype] = self.space.neighbours(genotype)
        return found

    def _walk(self, genotype: Genotype, steps: int) -> Genotype:
        """A random walk of ``steps`` one-position moves (``space.mutate``, on cached neighbour lists)."""
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
        if self.prior_sum:
            pool.extend([g for g in self._ranked_prior() if self._unseen(g)][:PRIOR_CANDIDATES])
        return [g for g in dict.fromkeys(pool) if self._unseen(g) and self.allowed(g)]

    def _surrogate(self, x: np.ndarray, y: np.ndarray) -> HammingGP:
        if self._hyperparameters is None or len(y) >= self._chosen_at * (1 + REFIT_GROWTH):
            model = HammingGP.select(x, y)
            self._hyperparameters, self._chosen_at = (model.lengthscale, model.noise), len(y)
        else:
            model = HammingGP(*self._hyperparameters)
            model.fit(x, y)
        return model

    def _best_candidate(self) -> Genotype:
        told = list(self.scores)
        values = np.array([self.scores[g] for g in told])
        targets = normal_scores(values)
        prior = np.array([self._prior(g) for g in told])
        slope = self._slope(prior, targets)
        model = self._surrogate(np.array([self._encode(g) for g in told]), targets - slope * prior)
        target_of = dict(zip(told, targets.tolist(), strict=True))
        region = [g for g in told if math.isfinite(self.scores[g]) and (self.region is None or g in self.region)]
        if region:
            ranked = sorted(region, key=lambda g: -self.scores[g])  # stable: the first told wins a tie
            candidates = self._candidates(ranked)
            if candidates:
                mean, sd = model.predict(np.array([self._encode(g) for g in candidates]))
                mean = mean + slope * np.array([self._prior(g) for g in candidates])
                reference = target_of[ranked[0]]
                if float(ndtr((mean - reference) / sd).max()) >= RESTART_BELOW:
                    return candidates[int(np.argmax(expected_improvement(mean, sd, reference)))]
            self.exhausted.append(ranked[0])
        return self._restart(model, float(targets.max()), slope)

    def _restart(self, model: HammingGP, best: float, slope: float = 0.0) -> Genotype:
        """Start a new region at the uniform sample with the best expected improvement, away from exhausted ones."""
        pool = [g for g in dict.fromkeys(self.space.sample(self.rng) for _ in range(RESTART_POOL))
                if self._unseen(g) and self.allowed(g)]
        # Far: differing from every exhausted region's best in at least half the positions.
        far = [g for g in pool if all(2 * differing(g, e) >= len(g) for e in self.exhausted)]
        pool = far or pool
        self.region = set()  # filled by the tells from now on
        if not pool:
            return self._random_unseen()
        mean, sd = model.predict(np.array([self._encode(g) for g in pool]))
        mean = mean + slope * np.array([self._prior(g) for g in pool])
        return pool[int(np.argmax(expected_improvement(mean, sd, best)))]
