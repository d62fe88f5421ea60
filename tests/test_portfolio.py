"""The matrix's compact form and the portfolio mined from it (issue 12.3), on small synthetic matrices."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import Matrix, packaged_path
from daedalus.designers.meta.portfolio import PACKAGED, Portfolio, select_portfolio
from daedalus.designers.meta.space_fit import fit_to_space
from daedalus.ensembles.meta import CaruanaEnsembler
from daedalus.evaluation.metrics import get_metric

AUC = get_metric(None, Task.BINARY)


def make_matrix(scores: dict[str, dict[str, float | None]], groups: dict[str, str] | None = None,
                metric: str = "roc_auc", task: str = "binary") -> Matrix:
    ids = sorted({c for row in scores.values() for c in row})
    return Matrix(configs=[{"id": c, "family": "linear", "config": None} for c in ids],
                  tasks=[{"name": t, "source": "meta", "group": (groups or {}).get(t, t), "task": task,
                          "metric": metric, "higher_is_better": get_metric(metric, Task(task)).greater_is_better,
                          "n_rows": 100, "n_features": 3,
                          "meta_features": {"rows": float(i), "cols": 1.0}} for i, t in enumerate(scores)],
                  scores=scores, fit_seconds={t: {c: 0.1 for c in row} for t, row in scores.items()})


def oracle(matrix: Matrix, size: int) -> tuple[float, set[str]]:
    """The best subset of ``size`` candidates by exhaustive search (best-member objective)."""
    norm = np.nan_to_num(matrix.normalised(), nan=-1.0)
    ids = matrix.config_ids
    best = max(itertools.combinations(range(len(ids)), size), key=lambda s: norm[:, list(s)].max(axis=1).mean())
    return float(norm[:, list(best)].max(axis=1).mean()), {ids[j] for j in best}


def objective(matrix: Matrix, members: list[str]) -> float:
    norm = np.nan_to_num(matrix.normalised(), nan=-1.0)
    cols = [matrix.config_ids.index(m) for m in members]
    return float(norm[:, cols].max(axis=1).mean())


def test_normalised_scores_put_best_at_one_and_median_at_zero_whatever_the_direction() -> None:
    m = make_matrix({"t": {"a": 1.0, "b": 2.0, "c": 4.0, "d": None}}, metric="rmse", task="regression")
    norm = m.normalised()[0]
    assert norm.tolist() == [1.0, 0.0, -1.0, -1.0]  # rmse: lowest is best; c clipped at -1; d failed


def test_greedy_equals_the_exhaustive_best_pair_when_the_best_single_is_in_it() -> None:
    # a: best everywhere but t3; b: the specialist of t3; c, d: fillers that set each task's median
    m = make_matrix({"t1": {"a": 0.9, "b": 0.6, "c": 0.7, "d": 0.65},
                     "t2": {"a": 0.8, "b": 0.5, "c": 0.7, "d": 0.6},
                     "t3": {"a": 0.6, "b": 0.95, "c": 0.7, "d": 0.65}})
    best, subset = oracle(m, 2)
    got = select_portfolio(m, 2)
    assert {x.config_id for x in got.members} == subset == {"a", "b"}
    assert got.trajectory[-1] == pytest.approx(best)
    assert got.mode == "best-member" and got.members[0].slot == 1 and "slot 2" in got.members[1].why


@pytest.mark.parametrize("seed", range(8))
def test_greedy_keeps_the_submodular_guarantee_against_the_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = {f"t{i}": {f"c{j}": float(rng.uniform(0.5, 1.0)) for j in range(6)} for i in range(7)}
    m = make_matrix(scores)
    for size in (2, 3):
        best, _ = oracle(m, size)
        got = objective(m, [x.config_id for x in select_portfolio(m, size).members])
        # mean-of-max is monotone submodular; shifted by +1 (scores >= -1) greedy is within 1 - 1/e of optimal
        assert got + 1 >= (1 - 1 / np.e) * (best + 1) - 1e-9
        assert got <= best + 1e-9


def complementary_oof() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """t1: ``a`` sees the signal on the first half of the rows only, ``b`` (weaker alone) on the second half
    only, ``c`` is a noisier copy of ``a``; t2: ``c`` edges ``a``. Fillers ``f*`` set the medians."""
    rng = np.random.default_rng(0)
    n = 600
    out = {}
    for task in ("t1", "t2"):
        y = rng.integers(0, 2, n)
        sig = (2 * y - 1).astype(float)
        first = np.arange(n) < n // 2


        def model(where: np.ndarray, strength: float, sig: np.ndarray = sig) -> np.ndarray:
            p = 1 / (1 + np.exp(-(np.where(where, strength * sig, 0.0) + rng.normal(0, 1.0, n))))
            return np.column_stack([1 - p, p])

        everywhere = np.ones(n, dtype=bool)
        if task == "t1":
            preds = {"a": model(first, 3.0), "b": model(~first, 1.6), "c": model(first, 2.6)}
        else:
            preds = {"a": model(everywhere, 1.0), "b": model(everywhere, 0.3), "c": model(everywhere, 1.15)}
        preds.update({f"f{k}": model(everywhere, 0.2 + 0.1 * k) for k in range(4)})
        out[task] = (y, preds)
    return out


def test_ensemble_aware_selection_picks_the_complementary_member_that_best_member_selection_skips() -> None:
    oof = complementary_oof()
    m = make_matrix({t: {c: AUC(y, p) for c, p in preds.items()} for t, (y, preds) in oof.items()})
    scores = m.scores["t1"]
    assert scores["b"] < scores["c"] < scores["a"]  # b is the weakest of the three alone
    blind = [x.config_id for x in select_portfolio(m, 2).members]
    aware = select_portfolio(m, 2, oof=oof, ensembler=CaruanaEnsembler(m))
    assert blind == ["a", "c"]
    assert [x.config_id for x in aware.members] == ["a", "b"] and aware.mode == "ensemble"
    assert "Caruana" in aware.members[1].why


def test_ensemble_aware_selection_needs_both_predictions_and_an_ensembler() -> None:
    m = make_matrix({"t1": {"a": 0.9, "b": 0.8}})
    with pytest.raises(ValueError, match="ensembler"):
        select_portfolio(m, 1, oof={})


def test_without_a_group_removes_every_task_of_it() -> None:
    m = make_matrix({"diamonds": {"a": 0.5}, "ggplot2_diamonds": {"a": 0.6}, "abalone": {"a": 0.7}},
                    groups={"diamonds": "diamonds", "ggplot2_diamonds": "diamonds"})
    left = m.without("diamonds")
    assert left.task_names == ["abalone"] and set(left.scores) == {"abalone"} and set(left.fit_seconds) == {"abalone"}
    assert m.task_names == ["diamonds", "ggplot2_diamonds", "abalone"]  # the original is untouched
    assert m.group_of("ggplot2_diamonds") == "diamonds" and m.group_of("not_in_it") == "not_in_it"


def test_matrix_and_portfolio_round_trip(tmp_path: Path) -> None:
    m = make_matrix({"t1": {"a": 0.9, "b": None}, "t2": {"a": 0.7, "b": 0.8}})
    m.configs[1] = {"id": "b", "family": "lightgbm", "config": {"num_leaves": 15, "learning_rate": 0.05}}
    m.save(tmp_path / "m.json.gz")
    back = Matrix.load(tmp_path / "m.json.gz")
    assert back.to_dict() == m.to_dict() and back.scores["t1"]["b"] is None
    p = select_portfolio(m, 2)
    p.save(tmp_path / "p.json")
    again = Portfolio.load(tmp_path / "p.json")
    assert again.to_dict() == p.to_dict()
    for member in again.members:
        assert member.config_for(Task.BINARY, 500) == fit_to_space(member.family, member.config, Task.BINARY, 500)


HOSTILE = {
    "not json": b"\x80\x04\x95 pickle bytes",
    "a list": b"[1, 2]",
    "wrong format": json.dumps({"format": 99, "mode": "ensemble", "members": [], "tasks": []}).encode(),
}


def _portfolio_file(member: dict) -> bytes:
    base = {"config_id": "x", "family": "lightgbm", "config": None, "why": "", "scores": {}, "slot": 1}
    return json.dumps({"format": 1, "mode": "ensemble", "members": [{**base, **member}], "tasks": []}).encode()


HOSTILE.update({
    "unknown family": _portfolio_file({"family": "os.system"}),
    "a mitigation": _portfolio_file({"family": "fair_threshold"}),
    "unknown hyperparameter": _portfolio_file({"config": {"__class__": "subprocess.Popen"}}),
    "out of range": _portfolio_file({"config": {"num_leaves": 10**9}}),
    "string for a number": _portfolio_file({"config": {"num_leaves": "__import__('os')"}}),
    "nan": _portfolio_file({"config": {"learning_rate": float("nan")}}),
    "bool for an int": _portfolio_file({"config": {"num_leaves": True}}),
    "config not an object": _portfolio_file({"config": [1, 2]}),
    "score not a number": _portfolio_file({"scores": {"t": "high"}}),
    # a member's cost orders the warm start: a zero, negative or infinite one would put it first or never
    "zero cost": _portfolio_file({"cost": 0}),
    "negative cost": _portfolio_file({"cost": -1.0}),
    "infinite cost": _portfolio_file({"cost": float("inf")}),
    "cost not a number": _portfolio_file({"cost": "cheap"}),
})


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_portfolio_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / "portfolio.json"
    path.write_bytes(HOSTILE[name])
    with pytest.raises(ValueError, match=str(path)):
        Portfolio.load(path)


def test_a_huge_portfolio_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "portfolio.json"
    path.write_bytes(b" " * 3_000_000)
    with pytest.raises(ValueError, match="more than a portfolio"):
        Portfolio.load(path)


def test_a_damaged_matrix_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "m.json.gz"
    path.write_bytes(gzip.compress(b'{"format": 1, "configs": "nope"}'))
    with pytest.raises(ValueError, match=str(path)):
        Matrix.load(path)
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="damaged"):
        Matrix.load(path)


def test_a_mined_configuration_is_projected_onto_another_tasks_space() -> None:
    cls_config = {"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 2, "bootstrap": True,
                  "criterion": "entropy"}
    reg = fit_to_space("random_forest", cls_config, Task.REGRESSION, 50_000)
    assert "criterion" not in reg  # regression forests have no such choice
    assert reg["n_estimators"] < 500  # fewer trees at most on a large table: clipped, not refused
    assert reg["min_samples_leaf"] == 2 and reg["bootstrap"] is True


def test_the_matrix_builder_cache_resumes_after_a_kill_mid_line(tmp_path: Path) -> None:
    """bench/meta_matrix.py's cache: every finished cell is one synced line; a line cut by a kill is skipped
    (that cell runs again), every whole line is a done cell."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from meta_matrix import Cache, config_id

    path = tmp_path / "cells.jsonl"
    cache = Cache(path)
    cache.append({"kind": "cell", "task": "t", "config_id": config_id("linear", {"C": 1.0}), "score": 0.7})
    cache.append({"kind": "task", "name": "t", "stage1_done": True})
    with open(path, "a") as f:
        f.write('{"kind": "cell", "task": "t", "config_id": "linear.de')  # killed mid-write
    again = Cache(path)
    assert list(again.cells) == [("t", config_id("linear", {"C": 1.0}))] and again.tasks["t"]["stage1_done"]
    again.append({"kind": "cell", "task": "t", "config_id": "knn.default", "score": 0.6})
    assert set(Cache(path).cells) == {("t", config_id("linear", {"C": 1.0})), ("t", "knn.default")}
    assert config_id("linear", {"C": 1.0}) == config_id("linear", {"C": 1.0}) != config_id("linear", {"C": 2.0})
    assert config_id("knn", None) == "knn.default"


def test_the_shipped_matrix_and_portfolio_load_and_agree() -> None:
    matrix, portfolio = Matrix.load(), Portfolio.load()
    assert len(portfolio.members) >= 8 and portfolio.mode == "ensemble"
    assert {m.config_id for m in portfolio.members} <= set(matrix.dense_configs())
    assert {t["name"] for t in portfolio.tasks} == set(matrix.task_names)
    sources = {t["source"] for t in matrix.tasks}
    assert sources <= {"meta", "datasets"}  # only the shared corpora are mined for what ships
    for member in portfolio.members:
        assert set(member.scores) == set(matrix.task_names)
        for task in Task:
            member.config_for(task, 5_000)  # every member runs on every kind of table


def test_relative_cost_is_each_configurations_time_against_the_tasks_median() -> None:
    m = make_matrix({"t1": {"a": 0.9, "b": 0.8, "c": 0.7, "d": None}, "t2": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}})
    m.fit_seconds = {"t1": {"a": 1.0, "b": 2.0, "c": 4.0, "d": None},
                     "t2": {"a": 10.0, "b": 20.0, "c": 40.0, "d": 80.0}}
    # t1's median of a, b, c and d (failed: costs t1's slowest, 4 s) is 3 s; t2's is 30 s
    expected = {"a": 1 / 3, "b": 2 / 3, "c": 4 / 3, "d": np.sqrt(4 / 3 * 80 / 30)}
    assert dict(zip(m.config_ids, m.relative_cost(), strict=True)) == pytest.approx(expected)


def test_cost_aware_selection_puts_a_fast_member_that_does_nearly_as_well_first() -> None:
    m = make_matrix({"t1": {"fast": 0.88, "slow": 0.9, "c": 0.5, "d": 0.4},
                     "t2": {"fast": 0.78, "slow": 0.8, "c": 0.5, "d": 0.4}})
    m.fit_seconds = {t: {"fast": 1.0, "slow": 10.0, "c": 2.0, "d": 2.0} for t in ("t1", "t2")}
    assert select_portfolio(m, 2).members[0].config_id == "slow"  # by score alone
    aware = select_portfolio(m, 2, cost_aware=True)
    assert [x.config_id for x in aware.members][0] == "fast" and "per unit of fit time" in aware.members[0].why
    assert aware.members[0].cost == pytest.approx(0.5)  # 1 s against the tasks' median of 2 s


def test_read_gives_the_sha256_of_the_bytes_it_parsed(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(packaged_path(PACKAGED).read_bytes())
    portfolio, digest = Portfolio.read(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert portfolio == Portfolio.load(path)
