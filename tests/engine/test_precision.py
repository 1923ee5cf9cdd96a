"""The fast precision: float32 (or split TF32) products and the check of what they cost in PR."""

from __future__ import annotations

import pytest
import torch

from engine_helpers import make_stream
from nextlaw_task.engine import precision
from nextlaw_task.engine.precision import FAST_TOLERANCE, split_tf32
from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import Sums

N, D = 20000, 96


def _features(kind: str, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden-state-like features of ``kind`` with a signal for the token id, their targets and documents."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 1000, (N,), generator=generator)
    x = torch.randn(N, D, generator=generator)
    x[:, 0] += targets.float() / 300
    if kind == "offset":  # a large common offset: the shift must cancel it before any rounding
        x += 1e4
    elif kind == "massive":  # one dimension 10^4 times the others, as in many LLMs
        x[:, 3] *= 1e4
    elif kind.startswith("collinear"):  # a column equal to another up to a tiny difference
        x[:, 1] = x[:, 0] + float(kind.split(":")[1]) * torch.randn(N, generator=generator)
    return x, targets, torch.arange(N) // 20


def _fit(x: torch.Tensor, targets: torch.Tensor, documents: torch.Tensor, precision: str) -> ResidualStatistics:
    stats = ResidualStatistics([0], ("id", "shuffled_id"), vocab_size=1000, precision=precision)
    for rows in torch.arange(N).split(700):
        stats.partial_fit(0, x[rows], targets[rows], documents[rows])
    return stats


@pytest.mark.parametrize("kind", ["plain", "offset", "massive", "collinear:1e-3", "collinear:1e-5"])
def test_the_checked_deviation_covers_the_actual_one(kind: str) -> None:
    """Against float64 sums of the same rows: the check reports at least the deviation the fast sums make,
    keeps benign features (well within 1e-6) and refuses near-collinear ones it cannot keep."""
    data = _features(kind)
    exact, fast = _fit(*data, "float64").compute(), _fit(*data, "fast")
    values = fast.compute()
    checked = fast.checked_deviations(values)[0]
    actual = max(abs(values[m].values[0] - exact[m].values[0]) for m in ("id", "shuffled_id"))
    assert actual <= checked
    if kind in ("plain", "offset", "massive"):
        assert checked <= FAST_TOLERANCE / 10
    else:
        assert checked > FAST_TOLERANCE


@pytest.mark.parametrize("kind", ["plain", "offset", "massive"])
def test_gathered_fast_rows_keep_the_check(kind: str) -> None:
    """With jackknife cells and rows gathered per state (as on a GPU), the fast Gram updates take long row
    blocks, and the check still covers the actual deviation, per cell replicates included."""
    x, targets, documents = _features(kind)
    kwargs = {"measures": ("id", "shuffled_id"), "vocab_size": 1000, "n_groups": 10}
    exact = ResidualStatistics([0], **kwargs)
    fast = ResidualStatistics([0], **kwargs, precision="fast", gather_rows=D // 2)
    batches = torch.arange(N).split(100)  # about 10 rows a cell and batch
    for rows in batches:
        exact.partial_fit(0, x[rows], targets[rows], documents[rows])
        fast.partial_fit(0, x[rows], targets[rows], documents[rows])
    gram = fast._stats[0].fast
    assert gram.rows == N - sum(fast._stats[0].filled)  # rows still pending are not yet multiplied
    assert gram.chunks < len(batches) * 10 / 4  # blocks of up to D / 2 rows, not one update a cell and batch
    values, expected = fast.compute(), exact.compute()
    checked = fast.checked_deviations(values)[0]
    actual = max(abs(values[m].values[0] - expected[m].values[0]) for m in ("id", "shuffled_id"))
    assert actual <= checked <= FAST_TOLERANCE / 10
    for m in ("id", "shuffled_id"):
        assert values[m].replicates[0] == pytest.approx(expected[m].replicates[0], abs=FAST_TOLERANCE)


def test_the_check_reads_all_cells_summed_once() -> None:
    """``StateSums.total`` (the check's input) equals the sum of the cells' full sums."""
    x, targets, documents = _features("massive")
    stats = ResidualStatistics([0], ("id", "shuffled_id"), vocab_size=1000, n_groups=10, gather_rows=30)
    for rows in torch.arange(5000).split(100):
        stats.partial_fit(0, x[rows], targets[rows], documents[rows])
    entry = stats._stats[0]
    assert any(entry.filled)  # rows still pending: the total adds them first
    total, cells = entry.total(D), Sums.total(stats.cell_sums(0))
    assert total.n == cells.n == 5000 and total.hidden_size == D
    assert torch.allclose(total.z, cells.z, rtol=1e-12, atol=1e-6)
    assert torch.allclose(total.zz, cells.zz, rtol=1e-12, atol=1e-3)
    assert torch.equal(total.zz, total.zz.T)


def test_split_tf32_parts_are_exact_and_short() -> None:
    x = torch.randn(1000, dtype=torch.float32) * torch.logspace(-20, 20, 1000)
    hi, lo = split_tf32(x)
    assert torch.equal(hi + lo, x)
    assert not bool((hi.view(torch.int32) & ((1 << 13) - 1)).any())  # 10 stored significand bits, as TF32 keeps
    assert bool((lo.abs() <= x.abs() * 2.0**-10).all())
    a, b = torch.randn(300, 40), torch.randn(300, 40)
    (a_hi, a_lo), (b_hi, b_lo) = split_tf32(a), split_tf32(b)
    three = a_hi.T @ b_hi + (a_hi.T @ b_lo + a_lo.T @ b_hi)
    assert torch.allclose(three.double(), a.double().T @ b.double(), rtol=0, atol=1e-4)


def test_fast_precision_refuses_what_it_cannot_check() -> None:
    with pytest.raises(ValueError, match="precision must be one of float64, fast"):
        ResidualStatistics([0], precision="half")
    with pytest.raises(ValueError, match="in-sample id and shuffled_id"):
        ResidualStatistics([0], ("onehot",), precision="fast")
    with pytest.raises(ValueError, match="in-sample id and shuffled_id"):
        ResidualStatistics([0], n_folds=3, precision="fast")
    stream = make_stream(3, n=200, d=5)
    one = ResidualStatistics([0], precision="fast").partial_fit(0, stream.features, stream.targets)
    with pytest.raises(ValueError, match="cannot be merged"):
        one.merge(ResidualStatistics([0], precision="fast"))
    assert ResidualStatistics([0]).checked_deviations({}) == {}


def test_the_memory_estimate_counts_the_check_and_the_open_chunks() -> None:
    """Fast precision adds the check's sample (float64, one (d + 1)^2 matrix a state) and, rows not gathered,
    a float32 open chunk a cell; what the accumulator allocates is what the estimate says."""
    def extra(**kwargs) -> int:
        return (ResidualStatistics.memory_bytes(1, 5, ("id",), 0, precision="fast", **kwargs)
                - ResidualStatistics.memory_bytes(1, 5, ("id",), 0, **kwargs))

    assert extra() == 8 * 6 * 6 + 4 * 6 * 6
    assert extra(n_groups=3) == 8 * 6 * 6 + 3 * 4 * 6 * 6
    assert extra(n_groups=3, gather_rows=4) == 8 * 6 * 6
    stream = make_stream(3, n=200, d=5)
    for gather_rows in (0, 4):
        stats = ResidualStatistics([0, 1], n_groups=3, gather_rows=gather_rows, precision="fast")
        for state in (0, 1):
            for rows in torch.arange(200).split(10):  # batches that fit among the gathered rows
                stats.partial_fit(state, stream.features[rows], stream.targets[rows], rows // 7)
        allocated = sum(t.numel() * t.element_size() for e in stats._stats.values()
                        for t in (e.shift, e.n, e.z, e.zz, e.pending, e.pending_cells, e.fast.shadow, e.fast.partial)
                        if t is not None)
        assert allocated == ResidualStatistics.memory_bytes(2, 5, ("id",), 0, n_groups=3, gather_rows=gather_rows,
                                                            precision="fast")


@pytest.mark.parametrize("gather_rows", [0, 30])
def test_every_fast_product_is_checked_against_float64_when_every_chunk_is_sampled(monkeypatch, gather_rows: int) -> None:
    """With every chunk sampled, the fast sums plus the error sample are the float64 Gram matrices: each
    product that reached the sums is in the sample, open chunks included once the sums are read; a
    float32 chunk never holds more than FAST_CHUNK_ROWS rows."""
    monkeypatch.setattr(precision, "SHADOW_EVERY", 1)
    monkeypatch.setattr(precision, "FAST_CHUNK_ROWS", 64)
    x, targets, documents = _features("offset")
    kwargs = {"measures": ("id", "shuffled_id"), "vocab_size": 1000, "n_groups": 4, "gather_rows": gather_rows}
    exact, fast = ResidualStatistics([0], **kwargs), ResidualStatistics([0], **kwargs, precision="fast")
    for rows in torch.arange(3000).split(90):
        exact.partial_fit(0, x[rows], targets[rows], documents[rows])
        fast.partial_fit(0, x[rows], targets[rows], documents[rows])
        assert max(fast._stats[0].fast.filled) <= 64
    gram = fast._stats[0].fast
    assert (gram.partial is None) == bool(gather_rows)
    assert gather_rows or any(gram.filled)  # open chunks, closed by the read below
    total = fast._stats[0].total(D)
    assert gram.rows == gram.shadow_rows == 3000 and not any(gram.filled)
    expected = exact._stats[0].total(D).zz
    assert torch.allclose(total.zz + gram.error_estimate(), expected, rtol=1e-12, atol=1e-6 * float(expected.abs().max()) * 1e-6)
    assert not torch.allclose(total.zz, expected, rtol=1e-12, atol=0)  # the float32 products did round
