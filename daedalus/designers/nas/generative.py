"""A generative designer: a small recurrent policy emits an architecture token by token (Zoph & Le, ICLR 2017).

The policy is a GRU cell that reads the previous token's embedding and, at each position of ``space.choices``,
a softmax head sized to that choice picks the next token. It is trained with REINFORCE: after each result the
log-probability of that genotype is pushed up or down by its advantage, the reward minus a moving-average
baseline. Every result told trains it, its own samples and foreign genotypes alike (both are valid experience).

- **Reward.** The reward is the result's quantile among the distinct results so far (0 = worst, 1 = best), so
  neither the scale of the metric (94% vs 73% accuracy) nor a broken architecture at chance level sets the step
  size. A failed evaluation gets 0.
- **Unseen first.** Each ask samples a small batch and proposes the first sample not yet told, so the budget
  (distinct evaluations) is not spent on repeats. Once the policy has concentrated on architectures already
  read, it proposes an unseen neighbour of one of its samples instead: the search keeps going around the
  policy's choice rather than stalling on repeats.
- **Constraint.** Rejected samples are resampled, and the policy is trained on them with the worst reward so it
  learns to stop proposing them.
- **Pretraining** (:class:`~daedalus.designers.nas.pretrain.Pretrainable`). Other tasks' results, each source's
  scores as rank quantiles, are turned into a target distribution focused on each source's top (weight
  exp(-(1 - quantile) / PRIOR_FOCUS), times the source's similarity to the task searched), and the policy is
  fitted to it by weighted maximum likelihood before the search: its first samples are the other tasks' good
  cells and their like; the very first proposal is the policy's likeliest cell (greedy decoding), its best
  guess. The search then goes on learning from the task's own results, by REINFORCE as above.
- **Refinement** (pretrained only). Every other ask, once there are results, the designer proposes the unseen
  one-step neighbour of its best results that the pretrained policy finds likeliest: a local search steered by
  what the other tasks favour (local search is the strongest simple method on cell spaces); the policy's own
  samples keep exploring between the refinements. Cold, the policy's likelihood says nothing yet, and the
  designer is plain REINFORCE as before (it scored lower with an untrained policy's refinement).
- **Determinism.** The network is initialised under a forked global torch RNG seeded from ``seed`` (the caller's
  torch random state is left as it was) and tokens are drawn with the designer's numpy generator.
"""

from __future__ import annotations

import base64
import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

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

# Samples drawn per batch, and batches tried, for an unseen allowed genotype before falling back on a neighbour.
BATCH = 8
BATCHES = 2
# Uniform draws tried for an unseen genotype before a repeat is accepted (a nearly exhausted space).
MAX_DRAWS = 1000
# Pretraining: a source's example at rank quantile q weighs exp(-(1 - q) / PRIOR_FOCUS), so the policy is fitted to
# roughly the top half percent of each source (on a 15,625-cell table, its best ~80 cells), and examples weighing
# under PRIOR_KEEP are dropped (the top 3%). Fitted by PRETRAIN_STEPS full-batch Adam steps at PRETRAIN_LR.
# The same for every source and every task searched: chosen a priori, not tuned to a table.
PRIOR_FOCUS = 0.005
PRIOR_MIN_TOP = 3.0  # ...but the focus spans at least this many examples (it does on a table: 0.005 x 15,625 = 78)
PRIOR_KEEP = math.exp(-6.0)
PRETRAIN_STEPS = 100
PRETRAIN_LR = 0.05
# Refinement: one ask in REFINE_EVERY proposes a neighbour of the best REFINE_PARENTS results.
REFINE_EVERY = 2
REFINE_PARENTS = 3


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    The policy's tensors are tiny: with two threads every operation waits on a thread handoff, and on a busy
    2-core machine a 500-query search took 200 s instead of 1.5 s. The setting is process-wide, so it is changed
    only for the duration of one ask or tell.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Policy(nn.Module):
    """An autoregressive policy over genotypes: GRU over previous-token embeddings, one softmax head per position."""

    def __init__(self, sizes: tuple[int, ...], hidden: int) -> None:
        super().__init__()
        self.sizes = sizes
        # Token 0 starts the sequence; value v of position i is token 1 + offsets[i] + v.
        self.offsets = tuple(int(x) for x in np.cumsum((0, *sizes[:-1])))
        self.embed = nn.Embedding(1 + sum(sizes), hidden)
        self.cell = nn.GRUCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, size) for size in sizes)
        self.hidden = hidden

    def _token(self, position: int, values: torch.Tensor) -> torch.Tensor:
        return values + 1 + self.offsets[position]

    @torch.no_grad()
    def sample(self, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """``count`` genotypes drawn from the policy (values per position, not yet canonical)."""
        state = torch.zeros(count, self.hidden)
        token = torch.zeros(count, dtype=torch.long)
        columns = []
        for position, head in enumerate(self.heads):
            state = self.cell(self.embed(token), state)
            probabilities = torch.softmax(head(state), dim=-1).double().numpy()
            # Inverse-CDF draws with the designer's generator: reproducible without touching torch's RNG.
            cumulative = probabilities.cumsum(axis=1)
            draws = rng.random((count, 1)) * cumulative[:, -1:]
            values = np.minimum((cumulative < draws).sum(axis=1), self.sizes[position] - 1)
            columns.append(values)
            token = self._token(position, torch.from_numpy(values))
        return [tuple(int(v) for v in row) for row in np.stack(columns, axis=1)]

    @torch.no_grad()
    def mode(self) -> tuple[int, ...]:
        """The likeliest token at each position in turn (greedy decoding): the policy's best guess."""
        state = torch.zeros(1, self.hidden)
        token = torch.zeros(1, dtype=torch.long)
        values = []
        for position, head in enumerate(self.heads):
            state = self.cell(self.embed(token), state)
            value = int(head(state).argmax(dim=-1)[0])
            values.append(value)
            token = self._token(position, torch.tensor([value]))
        return tuple(values)

    def log_prob(self, genotypes: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
        """Log-probability of each row of ``genotypes`` (teacher forcing), summed over its ``used`` positions."""
        count = genotypes.shape[0]
        state = torch.zeros(count, self.hidden)
        token = torch.zeros(count, dtype=torch.long)
        total = torch.zeros(count)
        for position, head in enumerate(self.heads):
            state = self.cell(self.embed(token), state)
            log_p = torch.log_softmax(head(state), dim=-1)
            values = genotypes[:, position]
            total = total + log_p.gather(1, values[:, None])[:, 0] * used[:, position]
            token = self._token(position, values)
        return total


class GenerativeDesigner(ArchDesigner):
    name = "generative"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None, *,
                 hidden: int = 32, lr: float = 0.01, momentum: float = 0.9, task: TaskInfo | None = None,
                 **_: Any) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        self.hidden, self.lr = hidden, lr
        self._new_policy()
        self.momentum = momentum
        self.task = task_out(task)  # what the designer is told about the task it searches
        self.prior: list[tuple[Genotype, float]] = []  # pretraining examples kept, with their weights
        self.proposed = 0  # the designer's own proposals so far (every REFINE_EVERY-th refines)
        self.baseline: float | None = None
        self.scores: dict[Genotype, float] = {}  # first result of each genotype told; failures as -inf
        self.sorted_scores: list[float] = []  # the same values, sorted, for quantiles
        self.pending: set[Genotype] = set()  # asked, not yet told

    # ----- the contract -----
    def propose(self) -> Genotype:
        with one_thread():
            self.proposed += 1
            if self.proposed == 1 and self.prior:  # a pretrained policy's best guess comes first
                guess = self.space.canonical(self.policy.mode())
                if self.allowed(guess) and self._unseen(guess):
                    return self._propose(guess, [])
            if self.prior and self.proposed % REFINE_EVERY == 0:
                refined = self._refine()
                if refined is not None:
                    return self._propose(refined, [])
            return self._ask()

    def pretrain(self, examples: Sequence[Example], task: TaskInfo | None = None) -> None:
        """Fit the policy to the top of ``examples`` (one source, described by ``task``) and of every source given
        before: the :class:`~daedalus.designers.nas.pretrain.Pretrainable` capability. Call before the first ask."""
        if self.next_number or self.scores:  # refitting would throw away what the search has learned
            raise ValueError("pretrain a designer before its first ask or tell")
        similarity = task_similarity(task, self.task)
        rows = normalised(self.space, examples)
        # A small source (a past image run's dozen networks) keeps its best few, not only its best one.
        focus = max(PRIOR_FOCUS, PRIOR_MIN_TOP / max(len(rows), 1))
        for genotype, quantile in rows:
            weight = math.exp(-(1.0 - quantile) / focus)
            if weight >= PRIOR_KEEP:  # before the similarity: a source's top is kept whatever its weight
                self.prior.append((genotype, similarity * weight))
        with one_thread():
            self._fit_prior()

    def learn(self, genotype: Genotype, score: float | None) -> None:
        with one_thread():
            self._tell(genotype, score)

    def learned_state(self) -> dict[str, Any]:
        # The policy is trained in asks too (rejected samples), so its weights are kept, not its tells replayed.
        optimizer = self.optimizer.state_dict()["state"]
        return {"policy": {k: tensor_out(v) for k, v in self.policy.state_dict().items()},
                "optimizer": [[int(i), {k: tensor_out(v) for k, v in state.items()}] for i, state in optimizer.items()],
                "baseline": self.baseline, "scores": scores_out(self.scores), "pending": genotypes_out(self.pending),
                "prior": weighted_out(self.prior), "proposed": self.proposed}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict({k: tensor_in(v) for k, v in state["policy"].items()})
        optimizer = self.optimizer.state_dict()
        optimizer["state"] = {int(i): {k: tensor_in(v) for k, v in s.items()} for i, s in state["optimizer"]}
        self.optimizer.load_state_dict(optimizer)
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.scores = {g: -math.inf if s is None else s for g, s in scores_in(state["scores"]).items()}
        self.sorted_scores = sorted(self.scores.values())
        self.pending = set(genotypes_in(state["pending"]))
        self.prior = weighted_in(state.get("prior", []))  # absent from states saved before pretraining existed
        self.proposed = int(state.get("proposed", 0))

    # ----- internals -----
    def _new_policy(self) -> None:
        """The policy as initialised for this seed, and a fresh optimizer for the search."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.policy = Policy(tuple(c.size for c in self.space.choices), self.hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)

    def _fit_prior(self) -> None:
        """Weighted maximum likelihood of the kept pretraining examples, from the seed's initial policy (so several
        sources give the same policy whatever the order of the calls that brought them)."""
        self._new_policy()
        if not self.prior:
            return
        genotypes = sorted(self.prior)
        values = torch.tensor([g for g, _ in genotypes], dtype=torch.long)
        used = torch.tensor([self.space.active(g) for g, _ in genotypes], dtype=torch.float32)
        weights = torch.tensor([w for _, w in genotypes], dtype=torch.float32)
        weights = weights / weights.sum()
        optimizer = torch.optim.Adam(self.policy.parameters(), lr=PRETRAIN_LR)
        for _ in range(PRETRAIN_STEPS):
            loss = -(weights * self.policy.log_prob(values, used)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def _refine(self) -> Genotype | None:
        """The unseen allowed neighbour of the best results that the policy finds likeliest (None before any
        successful result, or when every neighbour has been read)."""
        best = sorted((g for g, s in self.scores.items() if math.isfinite(s)), key=lambda g: -self.scores[g])
        candidates = [n for g in best[:REFINE_PARENTS] for n in self.space.neighbours(g)]
        candidates = [g for g in dict.fromkeys(candidates) if self._unseen(g) and self.allowed(g)]
        if not candidates:
            return None
        values = torch.tensor(candidates, dtype=torch.long)
        used = torch.tensor([self.space.active(g) for g in candidates], dtype=torch.float32)
        with torch.no_grad():
            likelihood = self.policy.log_prob(values, used).numpy()
        return candidates[int(np.argmax(likelihood))]  # the first of equals: deterministic

    def _ask(self) -> Genotype:
        rejected: list[Genotype] = []
        read: list[Genotype] = []  # allowed samples already told or in flight
        for _ in range(BATCHES):
            for raw in self.policy.sample(BATCH, self.rng):
                genotype = self.space.canonical(raw)
                if not self.allowed(genotype):
                    rejected.append(genotype)
                elif self._unseen(genotype):
                    return self._propose(genotype, rejected)
                else:
                    read.append(genotype)
        # The policy has concentrated on genotypes already read: spend the query on an unseen neighbour of what it
        # samples (the nearest new architecture to its choice), or else on a uniform sample.
        for genotype in dict.fromkeys(read):
            neighbours = self.space.neighbours(genotype)
            for i in self.rng.permutation(len(neighbours)):
                if self._unseen(neighbours[i]) and self.allowed(neighbours[i]):
                    return self._propose(neighbours[i], rejected)
        return self._propose(self._random_unseen(), rejected)

    def _tell(self, genotype: Genotype, score: float | None) -> None:
        genotype = self.space.canonical(genotype)
        self.pending.discard(genotype)
        value = -math.inf if score is None or not math.isfinite(score) else float(score)
        if genotype not in self.scores:
            self.scores[genotype] = value
            bisect.insort(self.sorted_scores, value)
        reward = self._quantile(value)
        baseline = reward if self.baseline is None else self.baseline
        self._reinforce([genotype], reward - baseline)
        self.baseline = self.momentum * baseline + (1 - self.momentum) * reward

    def _quantile(self, value: float) -> float:
        """The share of distinct results below ``value`` (ties count half): the scale-free reward."""
        if value == -math.inf or not self.sorted_scores:
            return 0.0
        below = bisect.bisect_left(self.sorted_scores, value)
        equal = bisect.bisect_right(self.sorted_scores, value) - below
        return (below + 0.5 * (equal - 1)) / max(len(self.sorted_scores) - 1, 1)

    def _unseen(self, genotype: Genotype) -> bool:
        return genotype not in self.scores and genotype not in self.pending

    def _random_unseen(self) -> Genotype:
        return self.sample_unseen(self._unseen, MAX_DRAWS)

    def _propose(self, genotype: Genotype, rejected: list[Genotype]) -> Genotype:
        if rejected:  # the worst reward, so the policy learns to stop proposing what the constraint rejects
            self._reinforce(list(dict.fromkeys(rejected)), 0.0 - (0.5 if self.baseline is None else self.baseline))
        self.pending.add(genotype)
        return genotype

    def _reinforce(self, genotypes: list[Genotype], advantage: float) -> None:
        """One REINFORCE step: move the log-probability of each genotype by ``advantage``."""
        if advantage == 0.0:
            return
        values = torch.tensor(genotypes, dtype=torch.long)
        used = torch.tensor([self.space.active(g) for g in genotypes], dtype=torch.float32)
        loss = -advantage * self.policy.log_prob(values, used).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def tensor_out(tensor: torch.Tensor) -> dict[str, Any]:
    """A tensor as JSON, bit for bit (its bytes in base64)."""
    array = tensor.detach().cpu().numpy()
    return {"dtype": str(array.dtype), "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def tensor_in(form: Mapping[str, Any]) -> torch.Tensor:
    array = np.frombuffer(base64.b64decode(form["data"]), dtype=form["dtype"]).reshape(form["shape"])
    return torch.from_numpy(array.copy())
