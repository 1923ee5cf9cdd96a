"""GramSolver and pseudo-inverse traces against numpy on materialised matrices."""

from __future__ import annotations

import numpy as np
import torch

from nextlaw_task.engine.solve import GramSolver, trace_pinv, trace_pinv_factored


def _centered(rng: np.random.Generator, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    x = rng.normal(size=(n, d)) * rng.uniform(0.01, 100.0, size=d) + offset
    return x - x.mean(0)


def _solve(x: np.ndarray, y: np.ndarray) -> tuple[GramSolver, np.ndarray]:
    gram = torch.tensor(x.T @ x)
    solver = GramSolver(gram, gram.diagonal().clone())
    return solver, solver.solve(torch.tensor(x.T @ y)).numpy()


def test_well_conditioned_matches_lstsq() -> None:
    rng = np.random.default_rng(0)
    x = _centered(rng, 300, 10)
    y = x @ rng.normal(size=10) + rng.normal(size=300)
    solver, coef = _solve(x, y)
    assert solver.method == "cholesky" and solver.rank == 10
    np.testing.assert_allclose(coef, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-10)


def test_multi_output_rhs() -> None:
    rng = np.random.default_rng(1)
    x = _centered(rng, 200, 6)
    y = rng.normal(size=(200, 4))
    _, coef = _solve(x, y)
    assert coef.shape == (6, 4)
    np.testing.assert_allclose(coef, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-10)


def test_fewer_samples_than_features_gives_scaled_minimum_norm() -> None:
    rng = np.random.default_rng(2)
    x = _centered(rng, 12, 30)
    y = rng.normal(size=12)
    solver, coef = _solve(x, y)
    scale = np.sqrt((x**2).sum(0))
    expected = np.linalg.pinv(x / scale, rcond=1e-10) @ y / scale
    assert solver.method == "eigh" and solver.rank == 11
    np.testing.assert_allclose(coef, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(x @ coef, y - y.mean(), atol=1e-9)


def test_constant_column_gets_zero_coefficient() -> None:
    rng = np.random.default_rng(3)
    x = _centered(rng, 100, 5)
    x[:, 2] = 0.0
    y = rng.normal(size=100)
    solver, coef = _solve(x, y)
    assert solver.n_constant == 1 and coef[2] == 0.0
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(coef[keep], np.linalg.lstsq(x[:, keep], y, rcond=None)[0], rtol=1e-10)


def test_constant_column_with_rounding_noise_is_dropped() -> None:
    gram = torch.tensor([[4.0, 1e-7], [1e-7, 1e-14]], dtype=torch.float64)
    solver = GramSolver(gram, torch.tensor([4.0, 1e3], dtype=torch.float64))
    assert solver.n_constant == 1 and solver.method == "cholesky"
    assert solver.solve(torch.tensor([2.0, 0.0], dtype=torch.float64)).tolist() == [0.5, 0.0]


def test_exact_duplicate_columns_give_lstsq_fitted_values() -> None:
    rng = np.random.default_rng(4)
    x = _centered(rng, 150, 6)
    x = np.column_stack([x, 3.0 * x[:, 1]])
    y = rng.normal(size=150)
    solver, coef = _solve(x, y)
    assert solver.method == "eigh" and solver.rank == 6
    expected = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(x @ coef, expected, rtol=1e-9, atol=1e-12)


def test_all_constant_features() -> None:
    solver = GramSolver(torch.zeros(3, 3, dtype=torch.float64))
    assert solver.method == "none" and solver.rank == 0 and solver.n_constant == 3
    assert solver.solve(torch.ones(3, dtype=torch.float64)).tolist() == [0.0, 0.0, 0.0]


def test_trace_pinv_full_rank_and_singular() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(8, 8))
    a = a @ a.T
    f = rng.normal(size=(20, 8)) * np.logspace(0, 2, 8)
    b = f.T @ f
    assert abs(trace_pinv(torch.tensor(a), torch.tensor(b)) - np.trace(a @ np.linalg.inv(b))) < 1e-10 * np.trace(
        a @ np.linalg.inv(b)
    )
    g = rng.normal(size=(3, 8))
    singular = g.T @ g
    expected = np.trace(a @ np.linalg.pinv(singular, rcond=1e-10, hermitian=True))
    assert abs(trace_pinv(torch.tensor(a), torch.tensor(singular)) - expected) < 1e-9 * expected
    assert abs(trace_pinv_factored(torch.tensor(a), torch.tensor(g)) - expected) < 1e-9 * expected


def test_trace_pinv_factored_with_dependent_rows() -> None:
    rng = np.random.default_rng(6)
    a = rng.normal(size=(10, 10))
    a = a @ a.T
    g = rng.normal(size=(4, 10))
    rows = np.vstack([g, g[0] - 2.0 * g[2]])
    expected = np.trace(a @ np.linalg.pinv(rows.T @ rows, rcond=1e-10, hermitian=True))
    assert abs(trace_pinv_factored(torch.tensor(a), torch.tensor(rows)) - expected) < 1e-9 * expected


def _scatter(x: np.ndarray, about: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    centered = x - about
    return torch.tensor(centered.T @ centered), torch.tensor((x**2).sum(0))


def test_undetermined_share_of_new_samples() -> None:
    rng = np.random.default_rng(8)
    basis = rng.normal(size=(3, 6))
    train = rng.normal(size=(200, 3)) @ basis + 5.0  # rank 3 of 6 after centering
    solver = GramSolver(torch.tensor((train - train.mean(0)).T @ (train - train.mean(0))), torch.tensor((train**2).sum(0)))
    assert solver.method == "eigh" and solver.rank == 3
    inside = rng.normal(size=(50, 3)) @ basis + 5.0
    assert solver.undetermined(*_scatter(inside, train.mean(0))) < 1e-12
    outside = rng.normal(size=(50, 6)) + 5.0
    share = solver.undetermined(*_scatter(outside, train.mean(0)))
    assert 0.2 < share < 0.9


def test_undetermined_counts_a_column_constant_only_in_the_fit() -> None:
    rng = np.random.default_rng(9)
    train = rng.normal(size=(100, 4))
    train[:, 2] = 3.0
    solver = GramSolver(torch.tensor((train - train.mean(0)).T @ (train - train.mean(0))), torch.tensor((train**2).sum(0)))
    same = rng.normal(size=(30, 4))
    same[:, 2] = 3.0
    assert solver.method == "cholesky" and solver.undetermined(*_scatter(same, train.mean(0))) == 0.0
    moved = same.copy()
    moved[:, 2] = 4.0
    assert solver.undetermined(*_scatter(moved, train.mean(0))) == 1.0
