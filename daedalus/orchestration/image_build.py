"""``daedalus build images.csv --target label --image-shape 28x28x1``: architecture search for image data.

The flow, under one clock:
1. The pixels are folded into images (``data.images``) and split once, stratified by class, into a training
   part and a validation part (``VALIDATION_FRACTION``); every candidate is scored on the same validation part.
2. **Search** (``SEARCH_SHARE`` of the budget): the designer proposes a bracket of ``BRACKET`` CNNs of the macro
   space (``spaces.nas.cnn``), which successive halving trains on epochs (1 epoch each, the best third 3 epochs);
   the designer is told each candidate's validation accuracy, and proposes the next bracket. Every candidate is
   a trial in the run store, with its weights, and the best network so far is saved to ``best/``.
3. **Final training**: the winning architecture is trained again from scratch, for as many epochs as the time
   left allows (its epoch time was measured in the search), on a schedule that ends when the time does. A
   network trained on its full schedule beats one stopped at a low rung of the search.

A candidate that breaks a hard constraint (``--max-params``, ``--max-latency-ms``) is never proposed: the
designers check it before proposing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.data.images import ImageTable, parse_image_shape, read_images
from daedalus.data.io import read_table
from daedalus.designers.base import OK, Proposal, Result
from daedalus.designers.nas.base import ArchDesigner, Constraint
from daedalus.designers.nas.multi_objective import ParetoDesigner
from daedalus.designers.nas.registry import DEFAULT_DESIGNER, make_designer
from daedalus.designers.pareto import pareto_front
from daedalus.ensembles.network import NetworkModel, NetworkSpec
from daedalus.errors import DataError
from daedalus.evaluation.halving import successive_halving
from daedalus.evaluation.nas_train import Trainer, count_params, measure_latency_ms
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.options import ImageBuildOptions
from daedalus.orchestration.reporter import Progress, Reporter
from daedalus.oversight.final_predictions import save_image_holdout
from daedalus.oversight.model_card import write_model_card
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.cnn import CNNSpace
from daedalus.store.run import RunStore

VALIDATION_FRACTION = 0.2
SEARCH_SHARE = 0.4  # of the time left after reading the data; the rest trains the winner (a full schedule)
BRACKET = 9  # candidates per bracket of successive halving
ETA = 3
TOP_RUNG_EPOCHS = 3  # rungs of 1 and 3 epochs
MIN_FINAL_SECONDS = 5.0
MAX_FINAL_EPOCHS = 200
METRIC = "accuracy"
# A search on a CPU evaluates a few dozen networks, the portfolio's among them: the predictor's surrogate takes
# the lead after one bracket rather than after its default 20 uniform samples (set for table benchmarks).
DESIGNER_OPTIONS: dict[str, dict[str, Any]] = {"predictor": {"initial": BRACKET}}


LATENCY_BATCH = 32
MAX_ASKS_PER_CANDIDATE = 30  # asks per wanted candidate before a bracket settles for fewer
TRAIN_TO_INFERENCE = 3.0  # a training step costs about three forward passes (forward + backward)
FLOP_SCREEN_SLACK = 2.0  # the FLOP estimate may be this optimistic before a candidate's steps are timed


@dataclass
class NetworkTrial:
    number: int
    genotype: Genotype
    architecture: str
    score: float | None
    epochs: int
    params: int
    seconds: float
    status: str
    reason: str
    designer: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageBuildResult:
    run_dir: Path
    leaderboard: list[dict[str, Any]]
    final: NetworkModel | None


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

    def __init__(self, table: ImageTable, options: ImageBuildOptions) -> None:
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
        return Trainer(build, self.X, self.y, self.X_val, self.y_val, horizon_epochs=horizon_epochs,
                       batch_size=self.batch_size, lr=self.options.learning_rate, seed=self.options.seed,
                       n_threads=self.options.n_threads, shift=self.shift, flip=self.flip)

    def train_for(self, build: Callable[[], Any], seconds: float, epochs: int | None = None) -> Trainer:
        """A fresh network trained for ``epochs``, or on a schedule sized to end when ``seconds`` do.

        The schedule's length is re-estimated after every epoch from the mean epoch time so far (the cosine
        schedule reads its horizon at every step), so it ends on time however fast this machine is right now;
        no separate timing run is spent.
        """
        started = time.perf_counter()
        trainer = self.trainer(build, epochs or MAX_FINAL_EPOCHS)
        while trainer.epochs_done < trainer.horizon_epochs:
            trainer.train(1)
            if epochs is None:
                left = seconds - (time.perf_counter() - started)
                per_epoch = trainer.seconds / trainer.epochs_done
                trainer.horizon_epochs = int(min(MAX_FINAL_EPOCHS, trainer.epochs_done + max(0, left // per_epoch)))
        return trainer


class ImageSearch:
    """The search state of one image build: the task, space, designer, trials, and the run store."""

    def __init__(self, store: RunStore, table: ImageTable, options: ImageBuildOptions, clock: BudgetClock,
                 reporter: Reporter) -> None:
        self.store, self.table, self.options, self.clock, self.reporter = store, table, options, clock, reporter
        self.task = ImageTask(table, options)
        self.space = CNNSpace()
        self.costs = NetworkCosts(self.space, self.task.in_shape, self.task.n_classes, options.n_threads)
        # A network whose estimated epoch would eat more than its share of the search is not trained: on a CPU
        # the largest networks of the space take minutes an epoch, and one of them could spend the whole search.
        self.epoch_allowance = SEARCH_SHARE * clock.remaining / (2 * BRACKET)
        self.costs.calibrate()
        constraint = self.costs.constraint(options.max_params, options.max_latency_ms)
        self.cost_objective = options.cost_objective
        self.designer: ArchDesigner
        if self.cost_objective is None:
            self.designer = make_designer(options.designer, self.space, seed=options.seed, constraint=constraint,
                                          **DESIGNER_OPTIONS.get(designer_name(options.designer), {}))
        else:  # accuracy against a cost: one inner designer per trade-off weight (ParEGO)
            self.designer = ParetoDesigner(self.space, seed=options.seed, constraint=constraint,
                                           inner=designer_name(options.designer),
                                           cost=self.costs.cost(self.cost_objective))
        self.trials: list[NetworkTrial] = []
        self.best: NetworkTrial | None = None
        # The space's hand-designed starting points come first (those the constraints allow); the designer is
        # told their results like those of its own proposals.
        self.portfolio = frozenset(self.space.portfolio())
        self.warm_start = [g for g in self.space.portfolio() if self.designer.allowed(g)]
        self._asked: dict[Genotype, list[Proposal[Genotype]]] = {}  # the designer's proposals not yet told

    def build_fn(self, genotype: Genotype) -> Callable[[], Any]:
        def build() -> Any:
            return self.space.instantiate(genotype, in_shape=self.task.in_shape, n_outputs=self.task.n_classes)

        return build

    def _propose(self, n: int, seconds: float) -> list[Genotype]:
        """Up to ``n`` distinct genotypes, not evaluated before, whose estimated epoch fits the budget.

        A proposal too slow for the budget is told to the designer as a failure (so a learning designer moves
        away from such networks) and is not trained; if every proposal was too slow, the cheapest one is taken
        so that the search goes on. Timing proposals costs time too: no more are asked once ``seconds`` (the
        bracket's time) are spent on it.
        """
        deadline = time.perf_counter() + seconds
        scores = {t.genotype: t.score for t in self.trials}
        out: list[Genotype] = []
        slow: dict[Genotype, float] = {}
        for _ in range(MAX_ASKS_PER_CANDIDATE * n):
            if len(out) == n or time.perf_counter() > deadline:
                break
            genotype = self._next_proposal(scores)
            if genotype in scores or genotype in out:
                self._tell(genotype, scores.get(genotype))
                continue
            # Two screens: FLOPs (instant, optimistic for memory-bound networks), then a few timed steps.
            estimate = self.costs.epoch_seconds(genotype, len(self.task.y))
            if estimate <= FLOP_SCREEN_SLACK * self.epoch_allowance:
                estimate = self.costs.timed_epoch_seconds(genotype, len(self.task.y), self.task.batch_size)
            if estimate > self.epoch_allowance:
                slow[genotype] = estimate
                self._tell(genotype, None)
                continue
            out.append(genotype)
        if slow:
            self.store.audit.append("candidates_too_slow", count=len(slow), allowance_seconds=round(
                self.epoch_allowance, 2), cheapest_estimate_seconds=round(min(slow.values()), 2))
        if not out and slow:
            out.append(min(slow, key=lambda g: slow[g]))
        return out

    def _next_proposal(self, evaluated: dict[Genotype, float | None]) -> Genotype:
        """The next starting point of the portfolio not evaluated yet, else the designer's proposal."""
        while self.warm_start:
            genotype = self.warm_start.pop(0)
            if genotype not in evaluated:
                return genotype
        proposal = self.designer.ask()
        self._asked.setdefault(proposal.candidate, []).append(proposal)
        return proposal.candidate

    def _tell(self, genotype: Genotype, score: float | None) -> None:
        """Tell the designer a result: of its own proposal of ``genotype`` when one waits, else of a foreign one
        (a portfolio's starting point, a restored trial)."""
        asked = self._asked.get(genotype)
        proposal = asked.pop(0) if asked else self.designer.proposal_for(genotype, "a result told", "portfolio")
        self.designer.tell(proposal, Result(OK, score) if score is not None else Result("failed"))

    def _origin(self, genotype: Genotype) -> str:
        return "portfolio" if genotype in self.portfolio else self.designer.name

    def _origin_text(self, genotype: Genotype) -> str:
        if self._origin(genotype) == "portfolio":
            return f"a hand-designed starting point of the space, its result told to the {self.designer.name} designer"
        return f"proposed by the {self.designer.name} designer"

    def next_number(self) -> int:
        return max((t.number for t in self.trials), default=-1) + 1

    def restore(self) -> int:
        """Read the trials a stopped run recorded, tell them to the designer, and return how many there were.
        A trial directory without its ``trial.json`` (killed while training) is discarded."""
        import json

        for path in sorted(self.store.root.glob("trials/*/trial.json")):
            record = json.loads(path.read_text())
            if record["designer"] == "final":
                continue
            trial = NetworkTrial(**{**record, "genotype": tuple(record["genotype"])})
            self.trials.append(trial)
            self._tell(trial.genotype, trial.score)
            if trial.score is not None and (self.best is None or _better(trial, self.best)):
                self.best = trial
        return len(self.trials)

    def run_bracket(self, seconds: float, size: int = BRACKET) -> int:
        """One bracket of successive halving; returns how many candidates were evaluated."""
        started = time.perf_counter()
        candidates = self._propose(size, seconds)
        seconds -= time.perf_counter() - started
        if not candidates:
            return 0
        if self.best is None:  # a run hands back a network: the first one trains an epoch even past the time
            seconds = max(seconds, 1e-3)
        trainers: dict[Genotype, Trainer] = {}

        def make_trainer(genotype: Genotype) -> Trainer:
            trainers[genotype] = self.task.trainer(self.build_fn(genotype), TOP_RUNG_EPOCHS)
            return trainers[genotype]

        self._progress(f"bracket of {len(candidates)} candidates")
        result = successive_halving(candidates, make_trainer, min_epochs=1, eta=ETA, max_epochs=TOP_RUNG_EPOCHS,
                                    seconds=seconds)
        evaluated = 0
        for entry in result.entries:
            if entry.epochs == 0:
                continue  # never started: out of time
            evaluated += 1
            trainer = trainers[entry.candidate]
            score = entry.score if math.isfinite(entry.score) else None
            trial = NetworkTrial(number=self.next_number(), genotype=entry.candidate,
                                 architecture=self.space.to_string(entry.candidate), score=score,
                                 epochs=entry.epochs, params=trainer.params, seconds=round(entry.seconds, 3),
                                 status="ok" if score is not None else "failed",
                                 reason=f"{self._origin_text(entry.candidate)}; trained {entry.epochs} "
                                        "epoch(s) by successive halving",
                                 designer=self._origin(entry.candidate))
            trial.extra["mflops"] = round(self.costs.flops(entry.candidate) / 1e6, 3)
            if self.cost_objective == "latency" or self.options.max_latency_ms is not None:
                trial.extra["latency_ms"] = round(self.costs.latency_ms(entry.candidate), 3)
            self.costs.observe(entry.candidate, len(self.task.y), entry.epochs, entry.seconds)
            self._record(trial, trainer)
            self._tell(entry.candidate, score)
        return evaluated

    def _record(self, trial: NetworkTrial, trainer: Trainer) -> None:
        self.trials.append(trial)
        directory = self.store.trial_dir(trial.number)
        directory.mkdir(parents=True, exist_ok=True)
        self.network_model(trial, trainer).save(directory / "network", self.store)
        (directory / "trial.json").write_text(_json(asdict(trial)))
        self.store.audit.append("trial_result", trial=trial.number, family="cnn", architecture=trial.architecture,
                                score=trial.score, epochs=trial.epochs, params=trial.params, status=trial.status,
                                designer=trial.designer, reason=trial.reason)
        if trial.score is not None and (self.best is None or _better(trial, self.best)):
            self.best = trial
            self.network_model(trial, trainer).save(self.store.root / "best", self.store)
            self.store.audit.append("best_model_saved", trial=trial.number, score=trial.score)
        self._progress(f"trial {trial.number}: {trial.architecture[:60]}")

    def network_model(self, trial: NetworkTrial, trainer: Trainer) -> NetworkModel:
        spec = NetworkSpec(self.space.name, trial.genotype, trial.architecture, parse_image_shape(
            self.options.image_shape), self.table.classes, self.table.pixel_columns, self.table.scale,
            self.table.mean, self.table.std, trial.score, trial.epochs, trial.number)
        return NetworkModel(spec, {k: v.detach().clone() for k, v in trainer.module.state_dict().items()})

    def _progress(self, running: str) -> None:
        self.reporter.update(Progress(trials_done=len(self.trials),
                                      trials_failed=sum(t.status != "ok" for t in self.trials),
                                      best_score=self.best.score if self.best else None,
                                      best_family="cnn" if self.best else None, metric=METRIC,
                                      time_left=self.clock.remaining, running=running))

    # ----- final training -----
    def train_final(self, winner: NetworkTrial, seconds: float) -> tuple[NetworkTrial, Trainer]:
        """Train ``winner``'s architecture from scratch for the epochs that ``seconds`` allow."""
        self._progress(f"final training of trial {winner.number}'s architecture")
        started = time.perf_counter()
        trainer = self.task.train_for(self.build_fn(winner.genotype), seconds, self.options.final_epochs)
        result = trainer.result()
        score = result.score if math.isfinite(result.score) else None
        trial = NetworkTrial(number=self.next_number(), genotype=winner.genotype, architecture=winner.architecture,
                             score=score, epochs=result.epochs, params=result.params,
                             seconds=round(time.perf_counter() - started, 3), status="ok" if score else "failed",
                             reason=f"final training of trial {winner.number}'s architecture: {result.epochs} "
                                    f"epochs from scratch", designer="final")
        return trial, trainer


def designer_name(name: str) -> str:
    return DEFAULT_DESIGNER if name == "best" else name


def _better(a: NetworkTrial, b: NetworkTrial) -> bool:
    """Rank by fidelity reached, then score: a 3-epoch score is not comparable with a 1-epoch one."""
    return (a.epochs, a.score or -math.inf) > (b.epochs, b.score or -math.inf)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1, default=str)


def _cost(trial: NetworkTrial, cost: str) -> float:
    return float(trial.extra["latency_ms"]) if cost == "latency" else float(trial.params)


def pareto_rows(trials: list[NetworkTrial], cost: str) -> list[dict[str, Any]]:
    """The searched networks no other beats on both accuracy and ``cost`` ("params" or "latency")."""
    front = pareto_front((t, t.score, _cost(t, cost)) for t in trials if t.designer != "final")
    return [{"trial": t.number, "score": score, cost: value, "architecture": t.architecture}
            for t, score, value in front]


def _leaderboard(trials: list[NetworkTrial], final: NetworkTrial | None, cost: str) -> list[dict[str, Any]]:
    on_front = {row["trial"] for row in pareto_rows(trials, cost)}
    rows = [{"trial": t.number, "family": "cnn" if t.designer != "final" else "cnn (final)", "score": t.score,
             "metric": METRIC, "fit_seconds": t.seconds, "status": t.status, "designer": t.designer,
             "reason": t.reason, "architecture": t.architecture, "epochs": t.epochs, "params": t.params,
             "mflops": t.extra.get("mflops"), "latency_ms": t.extra.get("latency_ms"),
             "pareto": t.number in on_front}
            for t in [*trials, *([final] if final else [])]]
    final_number = final.number if final else None

    def key(row: dict[str, Any]) -> tuple[bool, bool, float, int]:
        # The final network first (it is what the run hands back), then trials best first, failures last.
        score = row["score"] if row["score"] is not None else -math.inf
        return (row["status"] != "ok", row["trial"] != final_number, -float(score), int(row["trial"]))

    rows.sort(key=key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _keep_holdout_predictions(search: ImageSearch, model: NetworkModel, source: str) -> None:
    """The handed-back network's probabilities on the held-out images, for the report's ROC and calibration
    plots and the model card's per-class results (the same images scored every candidate)."""
    task = search.task
    proba = model.predict_images(task.X_val, n_threads=search.options.n_threads)
    trial = model.spec.trial if model.spec.trial is not None else -1
    save_image_holdout(search.store.root, proba, task.y_val, task.val_index, trial, source)
    accuracy = float((proba.argmax(axis=1) == task.y_val).mean()) if len(proba) else None
    search.store.audit.append("holdout_predictions", images=len(task.y_val), accuracy=accuracy, source=source)


def build_images(data: Any, options: ImageBuildOptions, run_dir: Path, reporter: Reporter | None = None,
                 started: float | None = None) -> ImageBuildResult:
    """Search the CNN space on image data and train the winner; everything lands in ``run_dir``."""
    options = options.checked()
    clock = BudgetClock(options.time_budget, started)
    reporter = reporter or Reporter()
    frame = read_table(data)
    table = read_images(frame, options.target, parse_image_shape(options.image_shape))
    if len(table.labels) < 10:
        raise DataError(f"only {len(table.labels)} images; image search needs at least 10 labelled images")
    info = {"kind": "image", "options": asdict(options), "status": "running", "created": time.time(),
            "data_source": data if isinstance(data, (str, Path)) else "<DataFrame>", "metric": METRIC,
            "task": "image", "classes": list(table.classes), "space": "cnn",
            "validation": f"holdout {VALIDATION_FRACTION:.0%}, stratified"}
    # Complete or absent, as a table run (RunStore.creating): the store keeps the run's writer lock.
    with RunStore.creating(run_dir, info) as store:
        frame.to_parquet(store.data_path, index=False)  # so that resume does not need the original file
        store.record([store.data_path])
    reporter.message(f"run directory: {store.root}")
    search = ImageSearch(store, table, options, clock, reporter)
    store.audit.append("image_data", rows=len(table.labels), shape=list(table.shape), classes=len(table.classes),
                       scale=table.scale, shift=search.task.shift, flip=search.task.flip)
    return _search_and_finish(search, clock)


def resume_images(run_dir: Path, time_budget: float | None = None, reporter: Reporter | None = None,
                  started: float | None = None) -> ImageBuildResult:
    """Continue an image run stopped by Ctrl-C or a kill: the trials already recorded are told to a fresh
    designer (same seed), the search goes on, and the winner is trained. ``time_budget`` defaults to the
    original one."""
    import pandas as pd

    store = RunStore.open(run_dir)
    store.lock()  # one writer per run (released by _search_and_finish, or by the kernel if this process dies)
    info = store.read("run")
    saved = dict(info["options"])
    if time_budget is not None:
        saved["time_budget"] = time_budget
    options = ImageBuildOptions(**saved).checked()
    clock = BudgetClock(options.time_budget, started)
    reporter = reporter or Reporter()
    table = read_images(pd.read_parquet(store.data_path), options.target, parse_image_shape(options.image_shape))
    store.update_run(status="running")
    search = ImageSearch(store, table, options, clock, reporter)
    restored = search.restore()
    store.audit.append("resumed", time_budget=options.time_budget, trials_restored=restored)
    return _search_and_finish(search, clock)


def _search_and_finish(search: ImageSearch, clock: BudgetClock) -> ImageBuildResult:
    try:
        return _search_and_train(search, clock)
    finally:
        search.store.unlock()


def _search_and_train(search: ImageSearch, clock: BudgetClock) -> ImageBuildResult:
    store, options = search.store, search.options
    search_until = clock.elapsed + SEARCH_SHARE * clock.remaining
    while clock.elapsed < search_until - 1.0:
        size = BRACKET
        if options.n_candidates is not None:
            size = min(BRACKET, options.n_candidates - len(search.trials))
            if size <= 0:
                break
        if search.run_bracket(search_until - clock.elapsed, size) == 0:
            break
    cost = options.cost_objective or "params"
    store.write("leaderboard", _leaderboard(search.trials, None, cost))
    final_trial, final_model = None, None
    winner = search.best
    if winner is not None and (clock.remaining > MIN_FINAL_SECONDS or options.final_epochs):
        final_trial, trainer = search.train_final(winner, clock.remaining - 2.0)
        if final_trial.score is not None:
            final_model = search.network_model(final_trial, trainer)
            final_model.save(store.root / "model", store)
            store.audit.append("final_model_saved", trial=final_trial.number, score=final_trial.score,
                               epochs=final_trial.epochs, architecture=final_trial.architecture)
    if final_model is None and winner is not None:  # no time for a final training: the best trial is the model
        final_model = NetworkModel.load(store.root / "best", store)
    if final_model is not None:
        _keep_holdout_predictions(search, final_model, "model" if final_trial is not None else "best")
    board = _leaderboard(search.trials, final_trial, cost)
    store.write("leaderboard", board)
    store.write("pareto", {"objectives": ["accuracy", cost], "front": pareto_rows(search.trials, cost)})
    store.update_run(status="finished" if final_model else "no-model", elapsed_seconds=round(clock.elapsed, 3))
    md, js = write_model_card(store.root)  # milliseconds: written whatever the time left
    store.audit.append("model_card", files=[md.name, js.name])
    store.audit.append("build_finished", trials=len(search.trials), seconds=round(clock.elapsed, 3))
    search.reporter.close()
    return ImageBuildResult(store.root, board, final_model)

