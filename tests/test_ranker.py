"""The learned ranker (issue 12.7): its training table, a ranker fitted by Daedalus's own AutoRegressor on a
synthetic matrix whose answer is known, the packaged form (hash-checked), and a damaged ranker never failing a
build."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daedalus.data.metafeatures import META_FEATURE_NAMES, MetaFeatures
from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import Matrix
from daedalus.designers.meta.ranker import (
    FAMILY,
    META_COLUMNS,
    NEAREST,
    SIMILAR_COLUMNS,
    TASK_KIND,
    Ranker,
    meta_columns,
    training_table,
)
from daedalus.designers.meta.space_fit import fit_to_space
from daedalus.interfaces.estimators import AutoRegressor
from daedalus.orchestration.ranker_model import (
    MANIFEST,
    RankerUnavailable,
    load_ranker,
    package_run,
    read_manifest,
)
from daedalus.spaces.registry import get_family
from daedalus.store.layout import FINAL_MODEL, json_file

LGB = {"num_leaves": 15, "learning_rate": 0.05, "subsample": 0.7}


def _meta(linear_gain: float, n_rows: float = 500.0) -> dict[str, float | None]:
    """Meta-features where ``linear_gain`` is how much the linear landmarker beats the stump."""
    values: dict[str, float | None] = dict.fromkeys(META_FEATURE_NAMES, None)
    values.update(n_rows=n_rows, n_features=8.0, n_numeric=8.0, n_categorical=0.0, landmark_stump=0.5,
                  landmark_linear=0.5 + linear_gain, landmark_1nn=0.55, landmark_naive_bayes=0.5)
    return values


def _synthetic(n_tasks: int = 40, seed: int = 0) -> Matrix:
    """linear wins exactly where the linear landmarker beats the stump, lightgbm elsewhere, knn in between."""
    rng = np.random.default_rng(seed)
    configs = [{"id": "linear.default", "family": "linear", "config": None},
               {"id": "lightgbm.x", "family": "lightgbm", "config": LGB},
               {"id": "knn.default", "family": "knn", "config": None}]
    tasks, scores = [], {}
    for i in range(n_tasks):
        gain = float(rng.uniform(-0.3, 0.3))
        name = f"t{i}"
        tasks.append({"name": name, "source": "test", "group": f"g{i // 2}", "task": "regression", "metric": "rmse",
                      "higher_is_better": False, "n_rows": 500, "n_features": 8, "meta_features": _meta(gain)})
        linear, lgb = (1.0, 3.0) if gain > 0 else (3.0, 1.0)  # rmse: lower is better
        scores[name] = {"linear.default": linear, "lightgbm.x": lgb, "knn.default": 2.0}
    return Matrix(configs=configs, tasks=tasks, scores=scores)


def test_training_table_shape_and_encoding():
    matrix = _synthetic(4)
    matrix.scores["t0"]["knn.default"] = None  # failed: a row scored -1
    del matrix.scores["t1"]["knn.default"]  # never run: no row
    matrix.tasks[3]["meta_features"] = {}  # no meta-features: the task has no rows
    table = training_table(matrix)
    assert len(table.y) == len(table.X) == 3 * 3 - 1  # 4 tasks, one without meta-features; one cell never run
    assert list(table.X.columns[: len(META_COLUMNS) + len(SIMILAR_COLUMNS)]) == [*META_COLUMNS, *SIMILAR_COLUMNS]
    assert {TASK_KIND, FAMILY} <= set(table.X.columns)
    assert table.y[(table.tasks == "t0") & (table.config_ids == "knn.default")].tolist() == [-1.0]
    assert set(table.y[table.config_ids == "linear.default"]) | set(table.y[table.config_ids == "lightgbm.x"]) == \
        {1.0, -1.0}
    lgb = table.X[table.config_ids == "lightgbm.x"].iloc[0]
    assert lgb[FAMILY] == "lightgbm" and lgb[TASK_KIND] == "regression"
    assert lgb["lightgbm.learning_rate"] == pytest.approx(math.log10(0.05))  # sampled on a log scale
    assert lgb["lightgbm.num_leaves"] == pytest.approx(math.log10(15))
    assert lgb["lightgbm.subsample"] == pytest.approx(0.7)  # sampled on a linear scale
    assert lgb["lightgbm.extra_trees"] == "False"  # a choice is a category
    assert math.isnan(lgb["linear.alpha"])  # another family's hyperparameter
    linear = table.X[table.config_ids == "linear.default"].iloc[0]
    default = fit_to_space("linear", None, Task.REGRESSION, 500)
    assert linear["linear.alpha"] == pytest.approx(math.log10(default["alpha"]))  # a default as it runs
    # The nearest-task estimate never looks at the task's own group (t0, t1): for t0 the only other task is t2.
    t2 = table.y[(table.tasks == "t2") & (table.config_ids == "linear.default")][0]
    assert table.X[NEAREST][(table.tasks == "t0") & (table.config_ids == "linear.default")].tolist() == [t2]
    row = table.X.iloc[0]
    meta = MetaFeatures.from_dict({"values": _meta(float(matrix.tasks[0]["meta_features"]["landmark_linear"]) - 0.5),
                                   "seconds": 0.0})
    assert row[list(META_COLUMNS + SIMILAR_COLUMNS)].astype(float).tolist() == \
        pytest.approx(list(meta_columns(meta).values()), nan_ok=True)


class _Cfg:
    def __init__(self, family: str, config: dict | None) -> None:
        self.family, self.config = family, config


def _features(gain: float) -> MetaFeatures:
    return MetaFeatures.from_dict({"values": _meta(gain), "seconds": 0.0})


def test_ranker_frame_follows_the_training_columns():
    """A hyperparameter the model never saw is dropped; one it knows that the member lacks is NaN."""
    seen: list = []
    ranker = Ranker(lambda frame: seen.append(frame) or np.zeros(len(frame)), ["meta.n_rows", FAMILY, "knn.p"])
    out = ranker.predict(_features(0.1), [_Cfg("linear", None), _Cfg("knn", None)], Task.REGRESSION)
    assert out.shape == (2,)
    frame = seen[0]
    assert list(frame.columns) == ["meta.n_rows", FAMILY, "knn.p"]
    assert frame[FAMILY].tolist() == ["linear", "knn"] and math.isnan(frame["knn.p"][0])
    ranker.columns.append(NEAREST)
    ranker.predict(_features(0.1), [_Cfg("linear", None), _Cfg("knn", None)], Task.REGRESSION, [0.5, -math.inf])
    assert seen[1][NEAREST].tolist()[0] == 0.5 and math.isnan(seen[1][NEAREST].tolist()[1])  # unknown: NaN
    assert ranker.predict(_features(0.1), [], Task.REGRESSION).shape == (0,)


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    """A ranker fitted by AutoRegressor (lightgbm, 3 trials) on the synthetic matrix, packaged."""
    root = tmp_path_factory.mktemp("ranker")
    table = training_table(_synthetic())
    est = AutoRegressor(n_trials=3, families=("lightgbm",), n_threads=1, explain=False, knowledge="off",
                        keep_leaks=True, run_dir=root / "run")
    est.fit(table.X, table.y)
    package_run(est.run_dir_, root / "ranker", list(table.X.columns), {"description": "test ranker"})
    return root / "ranker"


@pytest.mark.slow
def test_fitted_ranker_ranks_the_known_winner_first(packaged: Path):
    ranker = load_ranker(packaged)
    members = [_Cfg("linear", None), _Cfg("lightgbm", LGB), _Cfg("knn", None)]
    assert ranker.order(_features(0.25), members, Task.REGRESSION)[0] == 0  # linear beats the stump: linear
    assert ranker.order(_features(-0.25), members, Task.REGRESSION)[0] == 1  # it does not: lightgbm
    kept = {p.relative_to(packaged).as_posix() for p in packaged.rglob("*") if p.is_file()}
    assert {MANIFEST, json_file("leaderboard"), json_file("schema"), "audit.jsonl"} <= kept  # kept like any run's
    assert read_manifest(packaged)["description"] == "test ranker"


def _copy(packaged: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(packaged, tmp_path / "copy"))


@pytest.mark.slow
def test_a_changed_model_file_is_refused(packaged: Path, tmp_path: Path):
    copy = _copy(packaged, tmp_path)
    model_file = next((copy / FINAL_MODEL).glob("*.skops"))
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RankerUnavailable, match="does not match the SHA-256"):
        load_ranker(copy)


@pytest.mark.slow
def test_a_hostile_manifest_is_refused(packaged: Path, tmp_path: Path):
    copy = _copy(packaged, tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    manifest["files"]["../elsewhere.txt"] = "0" * 64
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RankerUnavailable, match="outside"):
        load_ranker(copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(RankerUnavailable, match="damaged"):
        load_ranker(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(RankerUnavailable, match="missing"):
        load_ranker(copy)


@pytest.mark.slow
def test_a_model_file_the_manifest_does_not_list_is_refused(packaged: Path, tmp_path: Path):
    """An attacker who adds a file and rewrites model.json to load it gets nothing: only listed files load."""
    copy = _copy(packaged, tmp_path)
    model_dir = copy / FINAL_MODEL
    spec_file = next(p for p in model_dir.iterdir() if p.suffix == ".json")
    spec = json.loads(spec_file.read_text())
    shutil.copyfile(model_dir / spec["members"][0]["files"][0], model_dir / "extra.skops")
    spec["members"][0]["files"] = ["extra.skops"]
    spec_file.write_text(json.dumps(spec))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"][spec_file.relative_to(copy).as_posix()] = __import__("hashlib").sha256(
        spec_file.read_bytes()).hexdigest()
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RankerUnavailable, match="does not list"):
        load_ranker(copy)


def test_a_run_without_a_final_model_is_not_packaged(tmp_path: Path):
    with pytest.raises(RankerUnavailable, match="no final model"):
        package_run(tmp_path, tmp_path / "ranker", [], {})


def test_a_default_family_config_encodes_like_its_explicit_values():
    """A family default and a mined configuration with the same values are the same row."""
    from daedalus.designers.meta.ranker import config_columns

    default = get_family("knn").default_config(Task.BINARY, 300)
    assert config_columns("knn", None, Task.BINARY, 300) == config_columns("knn", default, Task.BINARY, 300)


def _candidates() -> list:
    from daedalus.designers.warm_start import Candidate

    return [Candidate("linear", fit_to_space("linear", None, Task.REGRESSION, 500), "portfolio slot 1"),
            Candidate("lightgbm", fit_to_space("lightgbm", LGB, Task.REGRESSION, 500), "portfolio slot 2")]


def _enabled(packaged: Path, tmp_path: Path, use: bool = True) -> Path:
    copy = _copy(packaged, tmp_path)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "use_in_builds": use}))
    return copy


@pytest.mark.slow
def test_a_build_asks_the_ranker_in_a_worker_only_when_it_is_enabled(packaged: Path, tmp_path: Path):
    from daedalus.orchestration.warm import ranked_scores

    warnings: list[str] = []
    enabled = _enabled(packaged, tmp_path)
    scores = ranked_scores(_features(0.25), Task.REGRESSION, _candidates(), warnings, None, directory=enabled)
    assert scores is not None and scores[0] > scores[1] and warnings == []
    shutil.rmtree(enabled)
    off = _enabled(packaged, tmp_path, use=False)  # shipped for the record: the nearest tasks order
    assert ranked_scores(_features(0.25), Task.REGRESSION, _candidates(), warnings, None, directory=off) is None
    missing = tmp_path / "none"
    assert ranked_scores(_features(0.25), Task.REGRESSION, _candidates(), warnings, None, directory=missing) is None
    assert warnings == []  # none shipped, or not enabled: nothing to warn about


@pytest.mark.slow
def test_a_damaged_ranker_is_a_warning(packaged: Path, tmp_path: Path):
    from daedalus.orchestration.warm import ranked_scores

    copy = _enabled(packaged, tmp_path)
    next((copy / FINAL_MODEL).glob("*.skops")).write_bytes(b"PK\x03\x04 not a model")
    warnings: list[str] = []
    assert ranked_scores(_features(0.25), Task.REGRESSION, _candidates(), warnings, None, directory=copy) is None
    assert len(warnings) == 1 and "does not match the SHA-256" in warnings[0] and "nearest corpus" in warnings[0]


@pytest.mark.slow
def test_a_damaged_shipped_ranker_never_fails_a_build(packaged: Path, tmp_path: Path, monkeypatch):
    """A whole build with the shipped ranker's model file damaged: the build finishes, the audit log says the
    ranker was not used, and the portfolio is ordered by the nearest tasks."""
    from daedalus.orchestration import ranker_model

    copy = _enabled(packaged, tmp_path)
    spec_file = next(p for p in (copy / FINAL_MODEL).iterdir() if p.suffix == ".json")
    spec_file.write_text("{")  # a damaged model.json: hash and parse both fail
    monkeypatch.setattr(ranker_model, "packaged_ranker_dir", lambda: copy)
    from daedalus.designers.meta.portfolio import Member, Portfolio
    from daedalus.orchestration.build import build
    from daedalus.orchestration.options import BuildOptions

    members = [Member(1, "linear.default", "linear", None, "slot 1", {"t0": 1.0, "t1": 0.0}),
               Member(2, "linear.strong", "linear", {"alpha": 10.0}, "slot 2", {"t0": 0.0, "t1": 1.0})]
    tasks = [{"name": t, "task": "regression", "group": t, "meta_features": _meta(g)}
             for t, g in (("t0", 0.2), ("t1", -0.2))]
    Portfolio(members=members, tasks=tasks, mode="best-member").save(tmp_path / "portfolio.json")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    frame["y"] = frame["a"] + rng.normal(scale=0.1, size=120)
    options = BuildOptions(target="y", n_trials=2, families=("linear",), n_threads=1, explain=False,
                           knowledge="off", portfolio=str(tmp_path / "portfolio.json")).checked()
    result = build(frame, options, tmp_path / "run")
    records = [json.loads(line) for line in (result.run_dir / "audit.jsonl").read_text().splitlines()]
    warned = [w for r in records for w in r.get("warnings", []) if isinstance(w, str) and "learned ranker" in w]
    assert len(warned) == 1 and "nearest corpus tasks" in warned[0]
    proposals = [p for r in records if isinstance(r.get("warm_start"), dict) for p in r["warm_start"]["proposals"]]
    assert proposals and all("nearest corpus tasks" in p["reason"] and not p.get("ranker") for p in proposals)
    assert (result.run_dir / "leaderboard.json").is_file()


def test_the_plan_follows_the_ranker_scores():
    """Given the ranker's scores, they order the portfolio (the nearest task, which prefers slot 1, is only named)."""
    from daedalus.designers.warm_start import PastTask, plan_warm_start

    past = [PastTask("near", "regression", _features(0.1).similarity_vector(), [1.0, 0.0])]
    target = _features(0.1).similarity_vector()
    nearest = plan_warm_start(target, Task.REGRESSION, 500, ["linear", "lightgbm"], _candidates(), past)
    ranked = plan_warm_start(target, Task.REGRESSION, 500, ["linear", "lightgbm"], _candidates(), past,
                             predicted=[0.1, 0.9])
    assert [p.detail["slot"] for p in nearest.proposals] == ["portfolio slot 1", "portfolio slot 2"]
    assert [p.detail["slot"] for p in ranked.proposals] == ["portfolio slot 2", "portfolio slot 1"]
    assert all("by the learned ranker" in p.reason and p.detail["ranker"] for p in ranked.proposals)
    assert "near" in ranked.proposals[0].reason  # the nearest task still named, for the reader


def test_the_shipped_ranker_loads_and_ranks_the_shipped_portfolio():
    """The packaged run (bench/train_ranker.py --package) passes its hash check and scores every member; its
    manifest keeps how it was measured and whether builds use it (only if it beat the nearest-task order)."""
    from daedalus.designers.meta.portfolio import Portfolio
    from daedalus.orchestration.ranker_model import packaged_ranker_dir

    manifest = read_manifest(packaged_ranker_dir())
    evaluation = manifest["evaluation"]
    beat = all(evaluation["ranker"][k] > evaluation["nearest"][k] for k in ("first", "best_of_3"))
    assert manifest["use_in_builds"] is beat
    members = [m for m in Portfolio.load().members if Task.BINARY in get_family(m.family).tasks]
    scores = load_ranker().predict(_features(0.1), members, Task.BINARY)
    assert scores.shape == (len(members),) and np.isfinite(scores).all()
