"""``daedalus build images.csv --target label --image-shape 28x28x1``: architecture search for image data.

The flow, under one clock (the same search loop as a table run; what differs is in the space, the evaluator and
the final stage):
1. The pixels are folded into images (``data.images``) and split once, stratified by class, into a training
   part and a validation part (``image_task.VALIDATION_FRACTION``); every candidate is scored on the same
   validation part. The split images are saved in the run (``images/*.npy``), where the workers read them.
2. **Search** (``SEARCH_SHARE`` of the budget, a child clock of the run's): the one search loop
   (``loop.SearchLoop``) asks the designer, and the image evaluator (``image_search``) trains each proposal in a
   worker, by successive halving on epochs (brackets of 9 at 1 epoch, the best third at 3); the designer is told
   each candidate's validation accuracy once its evaluation is over, and its state is stored with the run after
   each tell (``designer.json``), so a resumed run continues it. Every candidate is a trial in the run store
   (its record and its weights in its trial directory), and the best network so far is saved to ``best/``.
3. **Final training** (``image_final``): the winning architecture is trained again from scratch, in a worker, for
   as many epochs as the time left allows.

A candidate that breaks a hard constraint (``--max-params``, ``--max-latency-ms``) is never proposed: the
designers check it before proposing.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from daedalus.data.images import parse_image_shape, read_images
from daedalus.data.io import read_table
from daedalus.designers.nas.base import ArchDesigner
from daedalus.designers.nas.multi_objective import ParetoDesigner
from daedalus.designers.nas.pretrain import Pretrainable
from daedalus.designers.nas.registry import designer_class, make_designer, resolve_designer
from daedalus.ensembles.network import NetworkModel
from daedalus.errors import DataError
from daedalus.evaluation.nas_trial import ARRAYS, save_arrays
from daedalus.evaluation.runner import LocalRunner, TrialRunner
from daedalus.evaluation.worker import start_early, wait_ready
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.image_final import FINAL_DESIGNER, finish_image_run
from daedalus.orchestration.image_search import BRACKET, ImageEvaluator, load_trials
from daedalus.orchestration.image_task import VALIDATION_FRACTION, ImageTask, NetworkCosts
from daedalus.orchestration.image_warm import PastImageRun, image_task, past_image_runs, warm_image_designer
from daedalus.orchestration.loop import MIN_TRIAL_SECONDS, Limits, SearchLoop, TrialRecord, default_memory_mb
from daedalus.orchestration.options import ImageBuildOptions
from daedalus.orchestration.parallel import Parallelism, machine_cores
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.steered import SteeredDesigner
from daedalus.spaces.nas.cnn import CNNSpace
from daedalus.store.layout import DESIGNER_RECORD, IMAGES_DIR
from daedalus.store.run import RunStore

__all__ = ["ImageBuildOptions", "ImageBuildResult", "ImageTask", "build_images", "resume_images"]

SEARCH_SHARE = 0.4  # of the time left after reading the data; the rest trains the winner (a full schedule)
METRIC = "accuracy"
CALIBRATION_WAIT_SHARE = 0.1  # of the time left, at most, waited for the worker pool before measuring the machine
# The workers of an image run need torch and the trial function, not the table run's model libraries.
IMAGE_PRELOAD = ("daedalus.evaluation.lifeline", "daedalus.evaluation.nas_trial", "daedalus.spaces.nas.cnn",
                 "daedalus.orchestration.budget")
# A search on a CPU evaluates a few dozen networks, the portfolio's among them: the predictor's surrogate takes
# the lead after one bracket rather than after its default 20 uniform samples (set for table benchmarks).
DESIGNER_OPTIONS: dict[str, dict[str, Any]] = {"predictor": {"initial": BRACKET}}




@dataclass(frozen=True)
class ImageBuildResult:
    run_dir: Path
    leaderboard: list[dict[str, Any]]
    final: NetworkModel | None


def make_image_designer(options: ImageBuildOptions, space: CNNSpace, costs: NetworkCosts,
                        past: Sequence[PastImageRun] = (), task: Mapping[str, float] | None = None,
                        warm: list[dict[str, Any]] | None = None) -> ArchDesigner:
    """The run's designer: pretrained on the ``past`` image runs most like ``task`` and their best networks
    queued first (what was done is appended to ``warm``), then the space's hand-designed networks (those the
    constraint allows)."""
    constraint = costs.constraint(options.max_params, options.max_latency_ms)
    designer: ArchDesigner
    if options.cost_objective is None:
        name = resolve_designer(options.designer)
        told = {"task": dict(task)} if task is not None and issubclass(designer_class(name), Pretrainable) else {}
        designer = make_designer(options.designer, space, seed=options.seed, constraint=constraint,
                                 **DESIGNER_OPTIONS.get(name, {}), **told)
    else:  # accuracy against a cost: one inner designer per trade-off weight (ParEGO)
        designer = ParetoDesigner(space, seed=options.seed, constraint=constraint,
                                  inner=resolve_designer(options.designer), cost=costs.cost(options.cost_objective))
    if past and task is not None:
        done = warm_image_designer(designer, space, past, task)
        if warm is not None:
            warm.extend(done)
    for genotype in space.portfolio():
        if designer.allowed(genotype):
            designer.enqueue(space.name, genotype, "a hand-designed starting point of the space, its result told "
                             f"to the {designer.name} designer", "portfolio")
    return designer


class _RunAndSearchClocks:
    """'daedalus steer add-time' on an image run: the seconds go to the search's share and to the run's clock."""

    def __init__(self, run: BudgetClock, search: BudgetClock) -> None:
        self.run, self.search = run, search
        self.seconds = run.seconds

    def add(self, seconds: float) -> None:
        self.run.add(seconds)
        self.search.add(seconds)
        self.seconds = self.run.seconds


def _with_threads(options: ImageBuildOptions) -> ImageBuildOptions:
    """``--threads`` resolved: this machine's cores shared among the candidates trained at once (at least 1)."""
    if options.n_threads is not None:
        return options
    return replace(options, n_threads=max(1, machine_cores() // (options.workers or 1)))


def build_images(data: Any, options: ImageBuildOptions, run_dir: Path, reporter: Reporter | None = None,
                 started: float | None = None) -> ImageBuildResult:
    """Search the CNN space on image data and train the winner; everything lands in ``run_dir``."""
    options = _with_threads(options.checked())
    clock = BudgetClock(options.time_budget, started)
    reporter = reporter or Reporter()
    start_early(preload=IMAGE_PRELOAD)  # the workers' torch import, while the data is read
    frame = read_table(data)
    table = read_images(frame, options.target, parse_image_shape(options.image_shape))
    if len(table.labels) < 10:
        raise DataError(f"only {len(table.labels)} images; image search needs at least 10 labelled images")
    info = {"kind": "image", "options": asdict(options), "status": "running", "created": time.time(),
            "data_source": data if isinstance(data, (str, Path)) else "<DataFrame>", "metric": METRIC,
            "task": "image", "classes": list(table.classes), "space": "cnn",
            "validation": f"holdout {VALIDATION_FRACTION:.0%}, stratified"}
    task = ImageTask(table, options)
    # Complete or absent, as a table run (RunStore.creating): the store keeps the run's writer lock.
    with RunStore.creating(run_dir, info) as store:
        frame.to_parquet(store.data_path, index=False)  # so that resume does not need the original file
        store.record([store.data_path, *save_arrays(store.root / IMAGES_DIR, task.arrays())])
    try:
        reporter.message(f"run directory: {store.root}")
        store.audit.append("image_data", rows=len(table.labels), shape=list(table.shape),
                           classes=len(table.classes), scale=table.scale, shift=task.shift, flip=task.flip)
        return _search_and_finish(store, task, options, clock, reporter, resumed=False)
    finally:
        store.unlock()


def resume_images(run_dir: Path, time_budget: float | None = None, reporter: Reporter | None = None,
                  started: float | None = None) -> ImageBuildResult:
    """Continue an image run stopped by Ctrl-C or a kill: the designer continues from its stored state, the
    search goes on after the trials recorded, and the winner is trained. ``time_budget`` defaults to the
    original one."""
    import pandas as pd

    store = RunStore.open(run_dir)
    store.lock()  # one writer per run (released below, or by the kernel if this process dies)
    try:
        info = store.read("run")
        saved = dict(info["options"])
        if time_budget is not None:
            saved["time_budget"] = time_budget
        options = _with_threads(ImageBuildOptions(**saved).checked())
        clock = BudgetClock(options.time_budget, started)
        reporter = reporter or Reporter()
        start_early(preload=IMAGE_PRELOAD)
        table = read_images(pd.read_parquet(store.data_path), options.target, parse_image_shape(options.image_shape))
        task = ImageTask(table, options)
        arrays = [store.root / IMAGES_DIR / f"{name}.npy" for name in ARRAYS]
        if all(path.exists() for path in arrays):
            store.check(arrays, "resume from")  # the images the workers read, as written
        else:  # (a run made before the images were saved with it)
            store.record(save_arrays(store.root / IMAGES_DIR, task.arrays()))
        store.update_run(status="running")
        return _search_and_finish(store, task, options, clock, reporter, resumed=True)
    finally:
        store.unlock()


def _search_and_finish(store: RunStore, task: ImageTask, options: ImageBuildOptions, clock: BudgetClock,
                       reporter: Reporter, resumed: bool, runner: TrialRunner | None = None) -> ImageBuildResult:
    space = CNNSpace()
    costs = NetworkCosts(space, task.in_shape, task.n_classes, options.threads)
    search_seconds = SEARCH_SHARE * clock.remaining
    # The machine's throughput is measured on a quiet machine: after the worker pool's imports (started with the
    # run, they overlap the data's reading), which would otherwise slow the measurement several times over and
    # screen out every proposal as too slow.
    wait_ready(CALIBRATION_WAIT_SHARE * clock.remaining)
    costs.calibrate()
    search_clock = clock.child(SEARCH_SHARE * clock.remaining)  # the search's share, from now
    # 'daedalus steer' pause, resume and add-time act on an image run too (exclude and enqueue name families).
    warnings: list[str] = []
    past = [] if resumed or options.warm_start == "off" else past_image_runs(options.knowledge, space, warnings)
    task_info = image_task(task.n_classes, task.in_shape, len(task.table.labels))
    warm: list[dict[str, Any]] = []
    designer = SteeredDesigner(make_image_designer(options, space, costs, past, task_info, warm), store,
                               _RunAndSearchClocks(clock, search_clock), reporter,
                               out_of_time=lambda: loop.search_time_left() < MIN_TRIAL_SECONDS)
    if not resumed:
        store.audit.append("warm_start", warm_start=options.warm_start, task=task_info, done=warm, warnings=warnings)
        for warning in warnings:
            reporter.message(f"warm start: {warning}")
    records = _searched_trials(store)
    if resumed:
        state = store.read(DESIGNER_RECORD, default={})
        if state:
            designer.set_state(state)
        store.audit.append("resumed", time_budget=options.time_budget, trials_restored=len(records))
    data = task.network_data(store.root / IMAGES_DIR)
    latency = options.cost_objective == "latency" or options.max_latency_ms is not None
    memory_mb = default_memory_mb()
    workers = options.workers or 1
    split = Parallelism(workers=workers, threads_per_trial=options.threads, memory_mb_per_trial=memory_mb / workers,
                        cores=machine_cores(),
                        reason=f"{workers} candidate(s) trained at once, {options.threads} thread(s) each")
    store.audit.append("parallelism", **split.to_record())
    to_run = None if options.n_candidates is None else max(0, options.n_candidates - len(records))
    evaluator = ImageEvaluator(store, task, space, costs, data, records, search_seconds, options.n_candidates,
                               latency, search_clock)
    # Not ordered: a bracket tells the designer its trials together, in proposal order, once it is over, and
    # asks for the next bracket only then, so candidates trained side by side change nothing it learns.
    loop = SearchLoop(evaluator, designer, search_clock, reporter, to_run, Limits(memory_mb / workers, math.inf),
                      runner or LocalRunner(capacity=workers), before_budget_check=[designer.apply_commands],
                      after_tell=[lambda: store.write(DESIGNER_RECORD, designer.get_state())], ordered=False)
    loop.run()
    board, final = finish_image_run(evaluator, clock, options, memory_mb, reporter)
    reporter.close()
    return ImageBuildResult(store.root, board, final)


def _searched_trials(store: RunStore) -> list[TrialRecord]:
    """The searched trials of a run so far; a final network of an earlier session is trained again."""
    records = load_trials(store)
    for stale in (r for r in records if r.designer == FINAL_DESIGNER):
        shutil.rmtree(store.trial_dir(stale.number), ignore_errors=True)
    return [r for r in records if r.designer != FINAL_DESIGNER]
