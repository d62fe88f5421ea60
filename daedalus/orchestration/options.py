"""The options of a build, checked once at the door (bad values are the user's mistake: ConfigError)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from daedalus.errors import ConfigError, RunError

VALIDATIONS = ("kfold", "holdout")
# The least --memory-limit a trial can run under. A worker is forked from the forkserver with the model libraries
# (LightGBM, XGBoost, CatBoost, torch, skops) already imported, and starts at about 270 MB resident (measured:
# tests/test_cli_errors.py checks that it stays under this floor); a trial on a small table adds ~100 MB. Below
# the floor every trial was killed as out of memory at once (520 failed trials and no model).
MIN_MEMORY_MB = 400.0
OBJECTIVES = ("metric", "fairness")


@dataclass(frozen=True)
class BuildOptions:
    target: str
    time_budget: float | None = 60.0  # seconds for the whole build; None: bounded by n_trials only
    n_trials: int | None = None
    seed: int = 0
    metric: str | None = None  # None: the AutoML Benchmark default for the task
    task: str | None = None  # None: inferred from the target
    families: tuple[str, ...] | None = None  # None: all that fit the task
    exclude: tuple[str, ...] = ()
    storage: str | None = None  # SQLAlchemy URL for the Optuna study; None: SQLite in the run directory
    keep: tuple[str, ...] = ()  # columns to keep although a check would drop them (e.g. a suspected leak)
    keep_leaks: bool = False  # report suspected leaks but keep them all
    drop: tuple[str, ...] = ()
    validation: str | None = None  # None: chosen from the data size
    trial_timeout: float | None = None  # per-trial cap in seconds; None: what the budget leaves
    memory_mb: float | None = None  # per-trial memory cap; None: 60% of the machine's memory
    n_threads: int = 2
    # Oversight (issue 4). Sensitive columns are audited for fairness and left out of the features unless
    # use_sensitive; fairness is a constraint such as "demographic_parity_difference<=0.05"; objectives
    # ("metric", "fairness") asks for the Pareto front; policy is a TOML file of approval gates; intended_use
    # goes into the model card.
    sensitive: tuple[str, ...] = ()
    use_sensitive: bool = False
    fairness: str | None = None
    objectives: tuple[str, ...] = ("metric",)
    policy: str | None = None
    intended_use: str | None = None
    explain: bool = True  # explanations.json at the end of the build (permutation importance, why this model...)

    def checked(self) -> BuildOptions:
        if self.time_budget is None and self.n_trials is None:
            raise ConfigError("no budget given; pass --time SECONDS or --trials N")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"--time must be a positive number of seconds, got {self.time_budget}; "
                              "e.g. --time 60")
        if self.n_trials is not None and self.n_trials <= 0:
            raise ConfigError(f"--trials must be a positive integer, got {self.n_trials}; e.g. --trials 20")
        if self.validation is not None and self.validation not in VALIDATIONS:
            raise ConfigError(f"unknown validation '{self.validation}'; choose one of {', '.join(VALIDATIONS)}")
        if self.trial_timeout is not None and not self.trial_timeout > 0:
            raise ConfigError(f"--trial-timeout must be positive, got {self.trial_timeout}")
        if self.memory_mb is not None and not self.memory_mb >= MIN_MEMORY_MB:
            raise ConfigError(f"--memory-limit {self.memory_mb:g} MB is below the {MIN_MEMORY_MB:g} MB a trial's "
                              f"worker needs (it starts at about 270 MB with the model libraries loaded); pass "
                              f"--memory-limit {MIN_MEMORY_MB:g} or more, or leave it out (60% of the memory)")
        if self.n_threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.n_threads}")
        self._check_fairness()
        return self

    def _check_fairness(self) -> None:
        from daedalus.oversight.fairness import parse_constraint  # oversight sits below orchestration

        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or "metric" not in self.objectives:
            raise ConfigError(f"unknown --objectives {','.join(self.objectives)}; use \"metric\" or "
                              "\"metric,fairness\"")
        if self.fairness is not None:
            parse_constraint(self.fairness)
        if (self.fairness is not None or "fairness" in self.objectives) and not self.sensitive:
            what = "--fairness" if self.fairness is not None else "--objectives metric,fairness"
            raise ConfigError(f"{what} needs the groups to be fair between; name them with --sensitive COLS")
        if self.use_sensitive and not self.sensitive:
            raise ConfigError("--use-sensitive needs --sensitive COLS (the columns to keep as features)")

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
