"""fit_law against exact synthetic laws and numpy brute force."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from nextlaw_task.engine.law import METRIC_KEYS, LawFit, fit_law


def _geometric(states, pr_first: float = 0.8, rho: float = 0.9, first: int = 1) -> dict[int, float]:
    return {s: pr_first * rho ** (s - first) for s in states}


def test_recovers_an_exact_geometric_law() -> None:
    fit = fit_law(_geometric(range(0, 13)))
    assert fit.ok and fit.reason is None and fit.states_used == tuple(range(1, 13))
    assert fit.slope == pytest.approx(math.log10(0.9), rel=1e-12)
    assert fit.rho == pytest.approx(0.9, rel=1e-12)
    assert fit.intercept == pytest.approx(math.log10(0.8 / 0.9), rel=1e-12)
    assert fit.pearson_r == pytest.approx(-1.0, rel=1e-12) and fit.r2 == pytest.approx(1.0, rel=1e-12)
    assert fit.ratio_last_first == pytest.approx(0.9**11, rel=1e-12)
    assert fit.decrements == pytest.approx([-math.log10(0.9)] * 11, rel=1e-10)
    assert fit.equilearning_deviation < 1e-12


def test_subset_of_states_fits_against_state_labels() -> None:
    fit = fit_law(_geometric([0, 4, 8, 12, 16, 20, 24]))
    assert fit.states_used == (4, 8, 12, 16, 20, 24)
    assert fit.rho == pytest.approx(0.9, rel=1e-12)
    assert fit.decrements == pytest.approx([-math.log10(0.9)] * 5, rel=1e-10)
    assert fit.equilearning_deviation < 1e-12


def test_range_selection() -> None:
    values = _geometric(range(0, 10))
    values[9] = 5.0
    fit = fit_law(values, first=2, last=8)
    assert fit.states_used == tuple(range(2, 9)) and fit.rho == pytest.approx(0.9, rel=1e-12)


def test_pearson_r2_and_deviation_match_numpy_brute_force() -> None:
    rng = np.random.default_rng(0)
    states = np.arange(1, 25)
    values = {int(s): float(10 ** (-0.05 * s + 0.3 * rng.normal() * 0.1)) for s in states}
    fit = fit_law(values)
    x, y = states.astype(float), np.log10([values[int(s)] for s in states])
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (intercept + slope * x)
    assert fit.slope == pytest.approx(slope, rel=1e-12) and fit.intercept == pytest.approx(intercept, rel=1e-12)
    assert fit.pearson_r == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert fit.r2 == pytest.approx(1 - (residuals**2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-12)
    expected = np.sqrt(np.mean(residuals**2)) / abs(slope * (x[-1] - x[0]))
    assert fit.equilearning_deviation == pytest.approx(expected, rel=1e-12)
    assert fit.decrements == pytest.approx(list(-np.diff(y)), rel=1e-12)


def test_equilearning_deviation_is_scale_free_and_zero_only_for_equal_cuts() -> None:
    equal = {s: 0.5 * 0.8**s for s in range(1, 9)}
    uneven = dict(equal)
    uneven[4] *= 1.3
    base = fit_law(uneven).equilearning_deviation
    assert fit_law(equal).equilearning_deviation < 1e-12 and base > 0.01
    assert fit_law({s: 7.0 * v for s, v in uneven.items()}).equilearning_deviation == pytest.approx(base, rel=1e-12)
    assert fit_law({s: v**2 for s, v in uneven.items()}).equilearning_deviation == pytest.approx(base, rel=1e-12)
    relabelled = {2 * s: v for s, v in uneven.items()}
    assert fit_law(relabelled, first=2).equilearning_deviation == pytest.approx(base, rel=1e-12)


def test_flat_pr_is_equal_learning_with_undefined_correlation() -> None:
    fit = fit_law({s: 0.4 for s in range(1, 6)})
    assert fit.ok and fit.slope == 0.0 and fit.equilearning_deviation == 0.0
    assert math.isnan(fit.pearson_r) and math.isnan(fit.r2)


def test_not_enough_layers(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        fit = fit_law({0: 0.9, 1: 0.5, 2: float("nan"), 3: 0.0, 4: 0.2}, last=3)
    assert not fit.ok and fit.reason.startswith("not enough layers: 1 usable states in 1..3")
    assert set(fit.dropped) == {2, 3} and "state 2" in fit.reason
    assert all(math.isnan(v) for v in fit.as_metrics().values())
    assert any("not enough layers" in r.getMessage() for r in caplog.records)
    assert not fit_law({}).ok and not fit_law({1: 0.5, 2: 0.4}).ok


def test_dropped_states_are_reported_and_skipped() -> None:
    values = _geometric(range(1, 8))
    values[3] = -1.0
    fit = fit_law(values)
    assert fit.ok and fit.states_used == (1, 2, 4, 5, 6, 7) and 3 in fit.dropped
    assert fit.rho == pytest.approx(0.9, rel=1e-12)


def test_as_metrics_keys_and_types() -> None:
    metrics = fit_law(_geometric(range(0, 6))).as_metrics()
    assert tuple(metrics) == METRIC_KEYS == (
        "law_slope",
        "law_intercept",
        "law_rho",
        "law_pearson_r",
        "law_r2",
        "pr_ratio_last_first",
        "equilearning_deviation",
    )
    assert all(type(v) is float for v in metrics.values())
    assert isinstance(fit_law(_geometric(range(0, 6))), LawFit)
