"""The delete-one-group jackknife: exact replicates, invariance, and calibrated intervals.

Replicates equal a fresh accumulator fed every document but one group's; the standard error equals
a brute-force jackknife over such refits; neither depends on batching. A simulation with a known
population PR shows that the intervals cover the truth as often as they claim.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine_helpers import feed, make_stream, relative_error
from nextlaw_task.engine.jackknife import CellLayout, cell_count, jackknife_stderr
from nextlaw_task.engine.law import fit_law
from nextlaw_task.engine.metrics import task_metrics, task_stderrs
from nextlaw_task.engine.stats import ResidualStatistics

COUNTS = {"docs": 1, "truncated": 0}


def test_cells_hold_every_fold_and_group() -> None:
    assert (cell_count(0, 0), cell_count(5, 0), cell_count(0, 10), cell_count(5, 10), cell_count(3, 10)) == (
        1, 5, 10, 10, 30)
    layout = CellLayout(3, 4)
    assert {c % 3 for c in range(layout.n_cells)} == {0, 1, 2} and {c % 4 for c in range(layout.n_cells)} == set(range(4))


def test_jackknife_stderr_formula() -> None:
    values = [1.0, 2.0, 4.0, 5.0]
    mean = 3.0
    assert jackknife_stderr(values) == pytest.approx(math.sqrt(3 / 4 * sum((v - mean) ** 2 for v in values)))
    assert math.isnan(jackknife_stderr([1.0])) and math.isnan(jackknife_stderr([1.0, math.nan]))


@pytest.mark.parametrize(("n_folds", "measures"), [(0, ("id", "shuffled_id", "onehot", "separation_fuzziness")),
                                                   (3, ("id", "onehot"))])
def test_replicates_equal_refits_without_each_group(n_folds: int, measures: tuple[str, ...]) -> None:
    stream = make_stream(40, n=900, d=6, n_documents=37)
    groups = 5
    results = feed(ResidualStatistics([0, 2], measures, n_folds, 40, n_groups=groups), stream).compute()
    for g in range(groups):
        keep = stream.documents % groups != g
        alone = ResidualStatistics([0, 2], measures, n_folds, 40)
        alone.partial_fit(0, stream.features[keep], stream.targets[keep], stream.documents[keep])
        alone.partial_fit(2, stream.features[keep], stream.targets[keep], stream.documents[keep])
        refit = alone.compute()
        for m in measures:
            for state in (0, 2):
                assert relative_error(results[m].replicates[state][g], refit[m].values[state]) < 1e-9, (m, g)


def test_point_estimates_are_unchanged_and_errors_do_not_depend_on_batching() -> None:
    stream = make_stream(41, n=800, d=5, n_documents=29)
    off = feed(ResidualStatistics([1], ("id", "onehot"), vocab_size=40), stream).compute()
    on = feed(ResidualStatistics([1], ("id", "onehot"), vocab_size=40, n_groups=10), stream).compute()
    shuffled = feed(ResidualStatistics([1], ("id", "onehot"), vocab_size=40, n_groups=10), stream, batch=31,
                    order=list(reversed(range(26)))).compute()
    for m in ("id", "onehot"):
        assert relative_error(on[m].values[1], off[m].values[1]) < 1e-12
        assert set(on[m].replicates[1]) == set(range(10))
        errors = [jackknife_stderr(list(r.replicates[1].values())) for r in (on[m], shuffled[m])]
        assert errors[0] > 0 and relative_error(errors[1], errors[0]) < 1e-9


def test_law_errors_refit_the_law_on_each_replicate_series() -> None:
    stream = make_stream(42, n=1200, d=4, n_documents=40)
    states = [0, 1, 2, 3]
    acc = ResidualStatistics(states, n_groups=8)
    scale = {0: 1.0, 1: 0.6, 2: 0.35, 3: 0.2}  # noisier features deeper, so PR changes with the state
    noise = torch.as_tensor(np.random.default_rng(3).normal(size=stream.features.shape), dtype=torch.float32)
    for s in states:
        acc.partial_fit(s, stream.features * scale[s] + noise, stream.targets, stream.documents)
    result = acc.compute()["id"]
    errors = task_stderrs("id", result, states, 3, (1, -1))
    fits = [fit_law({s: result.replicates[s][g] for s in (1, 2, 3)}, 1, 3) for g in range(8)]
    assert errors["law_slope"] == pytest.approx(jackknife_stderr([f.slope for f in fits]), rel=1e-12)
    assert errors["pr_layer_02"] == pytest.approx(jackknife_stderr(list(result.replicates[2].values())), rel=1e-12)
    point = task_metrics("t", "id", result, states, 3, (1, -1), COUNTS)
    assert point["law_slope"] == fit_law(result.values, 1, 3).slope and set(errors) >= {"law_rho", "law_r2"}


# --- calibration: a known population PR --------------------------------------------------------

CLASSES = 8  # token ids 0..7, uniform: Var = (K^2 - 1) / 12
TOKENS, DOC_LEN, WIDTH = 4000, 10, 3
T_975 = {9: 2.2622, 39: 2.0227}  # Student t quantiles for G - 1 degrees of freedom


def population_slope(pr: float) -> float:
    """The feature loading that gives population PR ``pr``: x = a y + e with Var(e) = 1."""
    return math.sqrt((1.0 / pr - 1.0) / ((CLASSES**2 - 1) / 12))


def simulated_result(rng: np.random.Generator, prs: dict[int, float], groups: int):
    """One corpus of documents (tokens correlated within a document), measured with the jackknife."""
    docs = np.repeat(np.arange(TOKENS // DOC_LEN), DOC_LEN)
    y = rng.integers(0, CLASSES, TOKENS)
    acc = ResidualStatistics(sorted(prs), n_groups=groups)
    for state, pr in prs.items():
        x = rng.normal(size=(TOKENS, WIDTH))
        shared = rng.normal(size=TOKENS // DOC_LEN)[docs]  # a per-document part of the noise
        x[:, 0] = population_slope(pr) * y + math.sqrt(0.5) * shared + math.sqrt(0.5) * x[:, 0]
        acc.partial_fit(state, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(docs))
    return acc.compute()["id"]


def coverage(groups: int, half_width: float, law: bool, replications: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    prs = {s: 0.9 * 0.7 ** (s - 1) for s in range(1, 5)} if law else {1: 0.5}
    truth = math.log10(0.7) if law else 0.5
    hits = 0
    for _ in range(replications):
        result = simulated_result(rng, prs, groups)
        if law:
            estimate = task_metrics("t", "id", result, sorted(prs), 4, (1, -1), COUNTS)["law_slope"]
            error = task_stderrs("id", result, sorted(prs), 4, (1, -1))["law_slope"]
        else:
            estimate, error = result.values[1], jackknife_stderr(list(result.replicates[1].values()))
        hits += abs(estimate - truth) <= half_width * error
    return hits / replications


@pytest.mark.slow
@pytest.mark.parametrize("law", [False, True], ids=["one state's PR", "the law's slope"])
@pytest.mark.parametrize(("groups", "quantile"), [(40, 1.96), (10, T_975[9])],
                         ids=["40 groups, +-1.96 SE", "10 groups, +-t(9) SE"])
def test_95_percent_intervals_cover_the_population_value(law: bool, groups: int, quantile: float) -> None:
    """500 simulated corpora with a known population PR (and law): the interval covers 93-97% of them."""
    rate = coverage(groups, quantile, law, replications=500, seed=groups + 2 * law)
    assert 0.93 <= rate <= 0.97, rate
