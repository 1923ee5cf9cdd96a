"""One task's metrics: non-results are NaN and flagged, the law names the states it was fitted over."""

from __future__ import annotations

import math

import pytest

from nextlaw_task.engine.measures import MeasureResult
from nextlaw_task.engine.metrics import HeldoutError, task_metrics
from nextlaw_task.errors import NextlawError

COUNTS = {"docs": 7, "truncated": 1}


def result(values: dict[int, float], ill_posed: dict[int, str], fold_std: dict[int, float] | None = None,
           measure: str = "id") -> MeasureResult:
    return MeasureResult(measure, values, fold_std, 120, 32, (), ill_posed)


def test_a_state_that_is_not_a_result_is_nan_flagged_and_left_out_of_the_law() -> None:
    values = {s: 0.9 * 0.8**s for s in range(6)}
    values[1] = 1e-13  # what an interpolating fit computes
    metrics = task_metrics("t", "id", result(values, {1: "state 1: 20 samples <= hidden size 32 + 1"}), range(6), 5,
                           (1, -1), COUNTS)
    assert math.isnan(metrics["pr_layer_01"]) and metrics["ill_posed_layer_01"] == 1.0
    assert not any(key.startswith("ill_posed_layer_") for key in metrics if key != "ill_posed_layer_01")
    assert metrics["pr_layer_02"] == values[2] and metrics["ill_posed_states"] == 1.0
    assert (metrics["law_first_state"], metrics["law_last_state"], metrics["law_n_states"]) == (2.0, 5.0, 4.0)
    assert metrics["law_rho"] == pytest.approx(0.8)
    assert all(type(v) is float for v in metrics.values())


def test_negative_law_bounds_count_back_from_the_last_state() -> None:
    values = {s: 0.9 * 0.8**s for s in range(9)}
    metrics = task_metrics("t", "id", result(values, {}), range(9), 8, (-5, -2), COUNTS)
    assert (metrics["law_first_state"], metrics["law_last_state"], metrics["law_n_states"]) == (4.0, 7.0, 4.0)


def test_a_law_not_fitted_names_no_states() -> None:
    metrics = task_metrics("t", "id", result({0: 0.9, 1: 0.8}, {}), (0, 1), 1, (1, -1), COUNTS)
    assert math.isnan(metrics["law_slope"]) and math.isnan(metrics["law_first_state"]) and metrics["law_n_states"] == 0


def test_fuzziness_is_named_for_what_it_is() -> None:
    metrics = task_metrics("t", "separation_fuzziness", result({0: 900.0, 1: 400.0, 2: 200.0}, {}), range(3), 2,
                           (0, -1), COUNTS)
    assert metrics["fuzziness_layer_01"] == 400.0 and not any(k.startswith("pr_layer") for k in metrics)


def test_held_out_folds_that_interpolate_everywhere_stop_the_run_with_the_fix() -> None:
    flags = {s: f"state {s}, fold 1: 12 training samples <= hidden size 32 + 1" for s in (0, 1)}
    folded = result({0: 0.5, 1: 0.4}, flags, {0: 0.1, 1: 0.1})
    with pytest.raises(HeldoutError, match="not a result for any of the 2 states .* more tokens") as info:
        task_metrics("t", "id", folded, (0, 1), 1, (1, -1), COUNTS)
    assert isinstance(info.value, NextlawError)


def test_a_held_out_state_that_is_not_a_result_is_nan_and_flagged() -> None:
    values = {s: 0.9 * 0.8**s for s in range(5)}
    values[0] = 7.4  # a training fit undetermined where the held-out samples lie
    folded = result(values, {0: "state 0, fold 1: the training folds determine the fit in only 9 of 32"},
                    {s: 0.01 for s in range(5)})
    metrics = task_metrics("t", "id", folded, range(5), 4, (0, -1), COUNTS)
    assert math.isnan(metrics["pr_layer_00"]) and metrics["ill_posed_layer_00"] == 1.0
    assert metrics["pr_layer_01"] == values[1] and metrics["law_first_state"] == 1.0
    assert metrics["law_rho"] == pytest.approx(0.8)
