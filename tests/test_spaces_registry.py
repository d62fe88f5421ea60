"""The family registry: names, order, lookup errors, include/exclude resolution."""

from __future__ import annotations

import pytest

from daedalus.data.schema import Task
from daedalus.errors import ConfigError
from daedalus.spaces.family import ModelFamily
from daedalus.spaces.registry import FAMILIES, get_family, resolve_families

ORDER = ["linear", "random_forest", "extra_trees", "hist_gb", "lightgbm", "xgboost", "catboost", "knn", "neural"]


def test_order_and_lookup() -> None:
    assert list(FAMILIES) == ORDER
    for name in ORDER:
        family = get_family(name)
        assert isinstance(family, ModelFamily) and family.name == name


@pytest.mark.parametrize(("typo", "suggestion"), [("lgbm", "lightgbm"), ("xgb", "xgboost"), ("rf", "random_forest"),
                                                  ("randomforest", "random_forest"), ("Linear", "linear"),
                                                  ("catbost", "catboost"), ("hist-gb", "hist_gb")])
def test_unknown_name_suggests_the_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_family(typo)
    message = str(err.value)
    assert message.startswith(f"unknown model family '{typo}'; did you mean '{suggestion}'? choose from ")
    assert ", ".join(ORDER) in message


def test_unknown_name_without_a_close_match() -> None:
    with pytest.raises(ConfigError, match=r"^unknown model family 'svm'; choose from linear, random_forest"):
        get_family("svm")


def test_resolve_all_include_exclude() -> None:
    assert resolve_families(None, None, Task.BINARY) == ORDER
    assert resolve_families([], [], Task.REGRESSION) == ORDER
    # Result follows the registry order, not the user's; duplicates collapse.
    assert resolve_families(["neural", "linear", "neural"], None, Task.MULTICLASS) == ["linear", "neural"]
    assert resolve_families(None, ["knn", "neural"], Task.BINARY) == ORDER[:-2]
    assert resolve_families(["lightgbm", "xgboost"], ["xgboost"], Task.BINARY) == ["lightgbm"]


@pytest.mark.parametrize(("include", "exclude"), [(["lgbm"], None), (None, ["catbost"]), (["linear", "nope"], [])])
def test_resolve_rejects_unknown_names(include: list[str] | None, exclude: list[str] | None) -> None:
    with pytest.raises(ConfigError, match="unknown model family"):
        resolve_families(include, exclude, Task.BINARY)


def test_resolve_rejects_an_empty_result() -> None:
    with pytest.raises(ConfigError, match="no model family left"):
        resolve_families(["knn"], ["knn"], Task.BINARY)
    with pytest.raises(ConfigError, match="no model family left"):
        resolve_families(None, ORDER, Task.REGRESSION)


def test_resolve_rejects_a_family_that_cannot_do_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FAMILIES["knn"], "tasks", frozenset({Task.REGRESSION}))
    assert "knn" not in resolve_families(None, None, Task.BINARY)
    with pytest.raises(ConfigError, match="knn cannot do binary"):
        resolve_families(["knn", "linear"], None, Task.BINARY)


def test_mitigations_wrap_the_catalogued_families_and_declare_their_defaults_once() -> None:
    """The mitigations wrap the families of ``spaces.catalog`` (the registry offers both, neither imports the
    other), their abstract parts are abstract, and ExponentiatedGradient's defaults are one declaration."""
    from daedalus.spaces.mitigation import (
        EXPGRAD_MAX_ITER,
        MITIGATIONS,
        ExpGradFamily,
        ExpGradMitigated,
        MitigationFamily,
        _Mitigated,
    )

    for name, mitigation in MITIGATIONS.items():
        assert get_family(name) is mitigation and all(get_family(base) is FAMILIES[base] for base in mitigation.bases)
    family = ExpGradFamily()
    assert family.own_defaults()["max_iter"] == ExpGradMitigated().max_iter == EXPGRAD_MAX_ITER
    wrapped = family.wrap(None, "demographic_parity", family.own_defaults())
    assert wrapped.get_params()["max_iter"] == EXPGRAD_MAX_ITER
    with pytest.raises(TypeError, match="abstract"):
        MitigationFamily()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="abstract"):
        _Mitigated()  # type: ignore[abstract]
    with pytest.raises(ConfigError, match="takes a base among"):
        family.base_space("knn", Task.BINARY, 100)
