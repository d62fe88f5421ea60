import numpy as np
import pytest
from sklearn import metrics as skm

from daedalus.data.schema import Task
from daedalus.errors import ConfigError
from daedalus.evaluation.metrics import METRICS, get_metric
from daedalus.evaluation.validation import make_plan


def test_defaults_are_the_automl_benchmark_ones():
    assert get_metric(None, Task.BINARY).name == "roc_auc"
    assert get_metric(None, Task.MULTICLASS).name == "log_loss"
    assert get_metric(None, Task.REGRESSION).name == "rmse"


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = rng.dirichlet(np.ones(3), 200)
    assert get_metric("log_loss", Task.MULTICLASS)(y, p) == pytest.approx(skm.log_loss(y, p))
    assert get_metric("accuracy", Task.MULTICLASS)(y, p) == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert get_metric("auc", Task.MULTICLASS)(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    yr, pr = rng.normal(size=50), rng.normal(size=50)
    assert get_metric("rmse", Task.REGRESSION)(yr, pr) == pytest.approx(np.sqrt(skm.mean_squared_error(yr, pr)))
    assert get_metric("r2", Task.REGRESSION)(yr, pr) == pytest.approx(skm.r2_score(yr, pr))


def test_all_named_metrics_exist():
    for name in ["accuracy", "balanced_accuracy", "f1", "log_loss", "roc_auc", "rmse", "mae", "r2"]:
        assert name in METRICS


def test_unknown_and_mismatched_metrics_are_config_errors():
    with pytest.raises(ConfigError, match="unknown metric 'foo'"):
        get_metric("foo", Task.BINARY)
    with pytest.raises(ConfigError, match="does not apply to a regression"):
        get_metric("accuracy", Task.REGRESSION)


def test_plan_follows_data_size_and_stratifies():
    small = np.array([0] * 80 + [1] * 20)
    plan = make_plan(small, Task.BINARY, seed=0)
    assert plan.kind == "kfold" and len(plan.folds) == 5
    for _, val in plan.folds:
        assert small[val].mean() == pytest.approx(0.2)
    assert np.array_equal(plan.scored_index, np.arange(100))
    large = np.zeros(20_000, dtype=int)
    large[::4] = 1
    plan = make_plan(large, Task.BINARY, seed=0)
    assert plan.kind == "holdout" and len(plan.scored_index) == 4000


def test_plan_is_fixed_by_its_seed():
    y = np.arange(300) % 3
    a, b = make_plan(y, Task.MULTICLASS, seed=3), make_plan(y, Task.MULTICLASS, seed=3)
    assert all(np.array_equal(x[1], z[1]) for x, z in zip(a.folds, b.folds, strict=True))


def test_every_metric_can_travel_to_a_worker():
    # Trials run in forkserver workers, which receive the metric by pickle (a lambda would not pickle).
    import pickle

    from daedalus.evaluation.metrics import METRICS

    for metric in METRICS.values():
        assert pickle.loads(pickle.dumps(metric)).name == metric.name
