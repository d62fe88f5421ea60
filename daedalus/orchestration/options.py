"""The options of a build, declared once and checked once at the door (bad values are the user's mistake:
ConfigError).

Each field is an option's whole declaration (``option_spec.option``): name, type and default, and beside them
the constraint, help text and command-line flag. The ``daedalus build`` flags, the estimators' parameters and
every refusal's message derive from these two dataclasses; nothing else restates a default.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from daedalus.errors import ConfigError, RunError
from daedalus.orchestration.option_spec import (
    Boolean,
    Interval,
    ListOptions,
    Names,
    Parsed,
    StrOptions,
    Style,
    Text,
    declared,
    option,
    required,
    validate,
)
from daedalus.store.home import KNOWLEDGE_OFF

TASKS = ("binary", "multiclass", "regression")  # data.schema.Task's values (a test keeps them equal)
VALIDATIONS = ("kfold", "holdout")
# The least --memory-limit a trial can run under. A worker is forked from the forkserver with the model libraries
# (LightGBM, XGBoost, CatBoost, torch, skops) already imported, and starts at about 270 MB resident (measured:
# tests/test_bad_inputs.py checks that it stays under this floor); a trial on a small table adds ~100 MB. Below
# the floor every trial was killed as out of memory at once (520 failed trials and no model).
MIN_MEMORY_MB = 400.0
OBJECTIVES = ("metric", "fairness")
WARM_STARTS = ("on", "off")
ZERO_SHOT_TRIALS = 3  # --zero-shot: the first configurations of the portfolio's order for the table
LEARNING = "learning from earlier tasks"
IMAGE_OBJECTIVES = ("accuracy", "accuracy,params", "accuracy,latency")
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32)

_POSITIVE_SECONDS = Interval(float, 0, closed="neither")
_COUNT = Interval(int, 1)
_SEED = Interval(int, 0, MAX_SEED)
_THREADS = Interval(int, 1)
_FAMILIES = Names("model families")
_COLUMNS = Names("column names")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://")
OVERSIGHT, IMAGE = "oversight", "image data (architecture search over CNNs)"  # --help sections


def _parse_fairness(text: str) -> object:
    from daedalus.oversight.fairness import parse_constraint  # oversight sits below orchestration

    return parse_constraint(text)


def _parse_image_shape(text: str) -> object:
    from daedalus.data.images import parse_image_shape  # numpy and pandas: not while the command line is read

    return parse_image_shape(text)


@dataclass(frozen=True)
class _KnowledgeURL(Text):
    """'off' or something shaped like a SQLAlchemy URL (``dialect[+driver]://...``). Whether it opens is learnt
    at the end of the build, where a base that does not is a warning, never a failed build."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and (value == KNOWLEDGE_OFF or _URL.match(value) is not None)


# Both kinds of build record into the knowledge base (store/knowledge.py); one constraint and help text for both.
_KNOWLEDGE = _KnowledgeURL("'off' or a SQLAlchemy URL")
_KNOWLEDGE_HELP = ("where the finished run records its meta-features and trials, for later runs to learn from: a "
                   "SQLAlchemy URL (a team can share a PostgreSQL database) or 'off' (default: "
                   "$DAEDALUS_KNOWLEDGE, else knowledge.db in the data directory)")


def _designer_names() -> tuple[str, ...]:
    from daedalus.designers.nas.registry import BEST, DESIGNERS  # imports the designers' base: torch-free, slow

    return (*DESIGNERS, BEST)


@dataclass(frozen=True)
class BuildOptions:
    """The options of a table build."""

    target: str = required(Text("a column name"), "the column to predict", flag="--target", example="label")
    time_budget: float | None = option(
        60.0, _POSITIVE_SECONDS, "seconds for the whole build, ensembling and refit included; with --trials alone, "
        "no time limit", flag="--time", metavar="S", python=True)
    n_trials: int | None = option(None, _COUNT, "stop after N trials", flag="--trials", metavar="N", example=20,
                                  python=True)
    seed: int = option(0, _SEED, "seed of the search and the validation split", flag="--seed", python=True)
    metric: str | None = option(
        None, Text("a metric name"), "roc_auc, log_loss, accuracy, balanced_accuracy, f1, rmse, mae or r2 (default: "
        "roc_auc for binary, log_loss for multiclass, rmse for regression)", flag="--metric", example="roc_auc",
        python=True)
    task: str | None = option(None, StrOptions(TASKS), "override the task inferred from the target", flag="--task",
                              example="binary")
    families: tuple[str, ...] | None = option(
        None, _FAMILIES, "comma-separated model families to search (default: all that fit the task)",
        flag="--families", example=("linear", "lightgbm"), python=True)
    exclude: tuple[str, ...] = option((), _FAMILIES, "comma-separated model families to leave out",
                                      flag="--exclude", example=("knn",), python=True)
    storage: str | None = option(
        None, Text("a SQLAlchemy URL"), "SQLAlchemy URL of the Optuna storage (default: SQLite inside the run "
        "directory)", flag="--storage", metavar="URL", example="postgresql://user@host/db")
    keep: tuple[str, ...] = option((), _COLUMNS, "columns to keep although a check flags them (e.g. a suspected "
                                   "leak)", flag="--keep", metavar="COLS", example=("id",))
    keep_leaks: bool = option(False, Boolean(), "report suspected target leaks but keep them", flag="--keep-leaks",
                              python=True)
    drop: tuple[str, ...] = option((), _COLUMNS, "columns to leave out", flag="--drop", metavar="COLS",
                                   example=("id",))
    validation: str | None = option(None, StrOptions(VALIDATIONS), "override the validation chosen from the data "
                                    "size", flag="--validation", example="kfold")
    trial_timeout: float | None = option(None, _POSITIVE_SECONDS, "per-trial time limit (default: what the budget "
                                         "leaves)", flag="--trial-timeout", metavar="S", example=60.0)
    memory_mb: float | None = option(
        None, Interval(float, MIN_MEMORY_MB, closed="left", unit="MB"), "memory limit of the trials running at "
        "once, shared equally among the --workers (default: 60% of the machine's memory)", flag="--memory-limit",
        metavar="MB", example=MIN_MEMORY_MB,
        hint="a trial's worker starts at about 270 MB with the model libraries loaded; left out, it is 60% "
             "of the memory")
    # Scale (issue 13): trials side by side, in worker processes of this machine or as tasks of a Ray cluster
    # (orchestration/parallel.py decides the split).
    workers: int | None = option(None, _COUNT, "trials run at once (default: 1 on this machine; on a Ray cluster, "
                                 "as many as its CPUs allow)", flag="--workers", metavar="N", example=2, python=True)
    n_threads: int | None = option(None, _THREADS, "threads per trial (default: this machine's cores shared among "
                                   "the --workers; 1 on a Ray cluster)", flag="--threads", example=2, python=True)
    ray: str | None = option(None, Text("a Ray address or 'off'"), "run the trials as tasks of the Ray cluster at "
                             "this address ('auto': the one this machine belongs to; 'local': one started on this "
                             "machine for the build; 'off': this machine's workers; "
                             "default: $RAY_ADDRESS if set, else off)", flag="--ray", metavar="ADDRESS",
                             example="auto", python=True)
    search_rows: int | None = option(
        None, Interval(int, 1000), "rows the search fits its trials on; the ensemble is refit on all rows (default: "
        "all rows up to 100,000, above that a stratified subsample sized to the budget and the memory limit)",
        flag="--search-rows", metavar="N", example=200_000, python=True)
    # Learning to build (issue 12): the search starts from what earlier tasks taught.
    warm_start: str = option(
        "on", StrOptions(WARM_STARTS), "on: start from the mined portfolio, ordered for this table by the nearest "
        "known tasks, and from the best configurations of similar past runs; off: each family's default, then TPE "
        "(the cold start, for comparison)", flag="--warm-start", group=LEARNING)
    zero_shot: bool = option(False, Boolean(), f"fit only the first {ZERO_SHOT_TRIALS} configurations of the "
                             "portfolio's order for this table (as the budget allows), then ensemble them: an "
                             "answer in seconds",
                             flag="--zero-shot", group=LEARNING)
    portfolio: str | None = option(None, Text("a file name"), "a portfolio file to warm start from (default: the "
                                   "one shipped with Daedalus, or the one 'daedalus learn' wrote)",
                                   flag="--portfolio", metavar="FILE", example="portfolio.json", group=LEARNING)
    # Oversight (issue 4). Sensitive columns are audited for fairness and left out of the features unless
    # use_sensitive; fairness is a constraint such as "demographic_parity_difference<=0.05"; objectives
    # ("metric", "fairness") asks for the Pareto front; policy is a TOML file of approval gates; intended_use
    # goes into the model card.
    sensitive: tuple[str, ...] = option(
        (), _COLUMNS, "comma-separated sensitive columns: audited for fairness, left out of the features",
        flag="--sensitive", metavar="COLS", example=("sex",), group=OVERSIGHT, python=True)
    use_sensitive: bool = option(False, Boolean(), "keep the sensitive columns as features", flag="--use-sensitive",
                                 group=OVERSIGHT)
    fairness: str | None = option(
        None, Parsed("a constraint METRIC<=LIMIT", _parse_fairness), 'a hard constraint of the search, e.g. '
        '"demographic_parity_difference<=0.05" or "equalized_odds_difference<=0.1" (needs --sensitive)',
        flag="--fairness", metavar="CONSTRAINT", example="demographic_parity_difference<=0.05", group=OVERSIGHT,
        python=True)
    objectives: tuple[str, ...] = option(
        ("metric",), ListOptions((("metric",), OBJECTIVES)), '"metric" or "metric,fairness" for the Pareto front '
        "of both", flag="--objectives", metavar="LIST", group=OVERSIGHT)
    policy: str | None = option(None, Text("a file name"), "TOML policy whose [gates] approval checks",
                                flag="--policy", metavar="FILE", example="policy.toml", group=OVERSIGHT)
    intended_use: str | None = option(None, Text(), "the intended use, for the model card", flag="--intended-use",
                                      metavar="TEXT", example="credit pre-screening", group=OVERSIGHT)
    explain: bool = option(True, Boolean(), "skip the end-of-build explanations (permutation importance, why this "
                           "model)", flag="--no-explain", group=OVERSIGHT, python=True)
    knowledge: str | None = option(None, _KNOWLEDGE, _KNOWLEDGE_HELP, flag="--knowledge", metavar="URL",
                                   example="postgresql://user@host/db", python=True)

    def checked(self, style: Style = "cli") -> BuildOptions:
        """These options, once every one meets its declared constraint and they fit together; else a ConfigError
        naming the option as ``style`` spells it (``--time`` on the command line, ``time_budget`` in Python)."""
        def name(option: str) -> str:
            return declared(BuildOptions, option).shown(style)

        if self.time_budget is None and self.n_trials is None:
            if style == "cli":
                raise ConfigError("no budget given; pass --time SECONDS or --trials N")
            raise ConfigError("no budget given; pass time_budget=SECONDS or n_trials=N")
        validate(self, style)
        if (self.fairness is not None or "fairness" in self.objectives) and not self.sensitive:
            what = name("fairness") if self.fairness is not None else f"{name('objectives')} metric,fairness"
            raise ConfigError(f"{what} needs the groups to be fair between; name them with "
                              f"{name('sensitive')} COLS")
        if self.zero_shot and self.warm_start == "off":
            raise ConfigError(f"{name('zero_shot')} predicts the best configuration from earlier tasks, which "
                              f"{name('warm_start')} off turns off; drop one of them")
        workers = self.workers or 1
        if self.memory_mb is not None and self.memory_mb / workers < MIN_MEMORY_MB:
            raise ConfigError(f"{name('memory_mb')} {self.memory_mb:g} shared among {name('workers')} "
                              f"{workers} leaves {self.memory_mb / workers:.0f} MB per trial, below the "
                              f"{MIN_MEMORY_MB:.0f} MB a trial needs; raise {name('memory_mb')} to at least "
                              f"{MIN_MEMORY_MB * workers:.0f} or run fewer {name('workers')}")
        if self.use_sensitive and not self.sensitive:
            raise ConfigError(f"{name('use_sensitive')} needs {name('sensitive')} COLS (the columns to keep as "
                              "features)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildOptions:
        """The options saved in a run's ``run.json``; damaged ones (not a mapping, no target) are a RunError."""
        if not isinstance(d, dict) or not isinstance(d.get("target"), str):
            raise RunError("the run's run.json is damaged (its 'options' lack the target); restore it from a "
                           "backup or build the run again")
        names = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kwargs)


@dataclass(frozen=True)
class ImageBuildOptions:
    """The options of an image build (``--image-shape``): architecture search over CNNs."""

    target: str = required(Text("a column name"), "the column to predict", flag="--target", example="label")
    image_shape: str = required(
        Parsed("HEIGHTxWIDTHxCHANNELS", _parse_image_shape), "the pixel columns are images of this shape, channel "
        "planes one after another (e.g. 28x28x1 for MNIST, 32x32x3 for CIFAR-10); turns on architecture search",
        flag="--image-shape", metavar="HxWxC", example="28x28x1", group=IMAGE)
    time_budget: float = option(600.0, _POSITIVE_SECONDS, "seconds for the whole build, the winner's final "
                                "training included", flag="--time", metavar="S")
    seed: int = option(0, _SEED, "seed of the search and the validation split", flag="--seed")
    designer: str = option("best", StrOptions(_designer_names), "architecture designer: random, evolution, local, "
                           "tpe, generative, predictor or best", flag="--designer", group=IMAGE)
    max_params: int | None = option(None, _COUNT, "hard limit on network parameters", flag="--max-params",
                                    metavar="N", example=100000, group=IMAGE)
    max_latency_ms: float | None = option(  # per batch of LATENCY_BATCH images, on this machine
        None, Interval(float, 0, closed="neither", unit="ms"), "hard limit on milliseconds per batch of 32 images "
        "on this machine", flag="--max-latency-ms", metavar="MS", example=5.0, group=IMAGE)
    n_threads: int | None = option(None, _THREADS, "threads per candidate's training (default: this machine's cores "
                                   "shared among the --workers)", flag="--threads")
    workers: int | None = option(None, _COUNT, "candidates trained at once on this machine, a bracket's rung in "
                                 "parallel (default: 1)", flag="--workers", metavar="N", example=2)
    batch_size: int = option(128, _COUNT, "images per training batch")
    learning_rate: float = option(3e-3, Interval(float, 0, closed="neither"), "the trainer's learning rate")
    objective: str = option(
        "accuracy", StrOptions(IMAGE_OBJECTIVES), "search for accuracy alone, or for the Pareto front of accuracy "
        "against parameters or latency (written to pareto.json; export any front member with export-arch "
        "--trial)", flag="--objective", group=IMAGE)
    n_candidates: int | None = option(None, _COUNT, "stop the search after N candidates (default: when its time "
                                      "is up)", flag="--trials", metavar="N", example=20)
    final_epochs: int | None = option(None, _COUNT, "epochs of the winner's final training (default: as many as "
                                      "the time left allows)", flag="--final-epochs", metavar="N", example=10,
                                      group=IMAGE)
    shift: int | None = option(
        None, Interval(int, 0, unit="pixels"), "augment training images by random shifts of up to PX pixels "
        "(default: a tenth of the shorter side; 0 turns it off)", flag="--shift", metavar="PX", example=2,
        group=IMAGE)
    flip: bool | None = option(
        None, Boolean(), "augment training images by random left-right mirroring (default: on for colour images, "
        "off for grey ones, whose digits and letters mirror into other symbols)", flag="--flip", group=IMAGE)
    warm_start: str = option(
        "on", StrOptions(WARM_STARTS), "on: pretrain the designer on the networks of similar past image runs (the "
        "knowledge base) and try their best first; off: start from nothing", flag="--warm-start", group=LEARNING)
    knowledge: str | None = option(None, _KNOWLEDGE, _KNOWLEDGE_HELP, flag="--knowledge", metavar="URL",
                                   example="postgresql://user@host/db")

    def checked(self, style: Style = "cli") -> ImageBuildOptions:
        validate(self, style)
        return self

    @property
    def threads(self) -> int:
        """Threads of each candidate's training (``image_build`` resolves an unset ``n_threads`` when the build
        starts, from the machine's cores and the workers)."""
        return self.n_threads or 1

    @property
    def cost_objective(self) -> str | None:
        """"params" or "latency" when the search trades accuracy against it, else None."""
        return self.objective.split(",")[1] if "," in self.objective else None
