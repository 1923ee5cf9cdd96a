"""ResidualStatistics: streaming, merging, distributed reduction, validation, memory estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from torch.overrides import TorchFunctionMode

from engine_helpers import (
    ALL_MEASURES,
    Stream,
    allreduce_worker,
    distributed_stream,
    feed,
    make_stream,
    ols_pr,
    relative_error,
    results_close,
)
from nextlaw_task.engine.jackknife import CellSplit
from nextlaw_task.engine.reduce import all_reduce_statistics
from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import add_gram, gather_rows_for, gram_blocks, symmetric


def _split(stream: Stream, parts: list[np.ndarray]) -> list[Stream]:
    return [Stream(stream.features[p], stream.targets[p], stream.documents[p]) for p in parts]


def _accumulator(n_folds: int = 0) -> ResidualStatistics:
    return ResidualStatistics([0, 2], ALL_MEASURES, n_folds=n_folds, vocab_size=40)


@pytest.mark.parametrize("n_folds", [0, 3])
def test_permuted_batch_order_gives_the_same_result(n_folds: int) -> None:
    stream = make_stream(30)
    reference = feed(_accumulator(n_folds), stream).compute()
    order = np.random.default_rng(0).permutation(math.ceil(600 / 97))
    results_close(feed(_accumulator(n_folds), stream, order=order).compute(), reference)


@pytest.mark.parametrize("n_parts", [2, 3, 4])
@pytest.mark.parametrize("n_folds", [0, 4])
def test_stream_split_over_merged_accumulators(n_parts: int, n_folds: int) -> None:
    stream = make_stream(31 + n_parts)
    reference = feed(_accumulator(n_folds), stream).compute()
    labels = np.random.default_rng(n_parts).integers(0, n_parts, size=600)
    parts = [feed(_accumulator(n_folds), s, batch=53) for s in _split(stream, [np.flatnonzero(labels == i) for i in range(n_parts)])]
    merged = parts[0]
    for part in parts[1:]:
        assert merged.merge(part) is merged
    assert merged.n_tokens == 600 and merged.hidden_size == 12
    results_close(merged.compute(), reference)


def test_merge_into_empty_and_of_empty() -> None:
    stream = make_stream(35)
    reference = feed(_accumulator(), stream).compute()
    empty_first = _accumulator().merge(feed(_accumulator(), stream))
    results_close(empty_first.compute(), reference)
    results_close(feed(_accumulator(), stream).merge(_accumulator()).compute(), reference)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    labels=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    n_folds=st.sampled_from([0, 2]),
)
def test_merge_is_associative_and_order_free(seed: int, labels: list[int], n_folds: int) -> None:
    stream = make_stream(seed, n=300, d=5, vocab=25)
    batches = np.array_split(np.arange(300), 6)
    shares = [np.concatenate([b for b, l in zip(batches, labels) if l == i] or [np.empty(0, int)]) for i in range(3)]

    def part(i: int) -> ResidualStatistics:
        return feed(_accumulator(n_folds), _split(stream, [shares[i]])[0], batch=31)

    left = part(0).merge(part(1)).merge(part(2)).compute()
    right = part(0).merge(part(1).merge(part(2))).compute()
    shuffled = part(2).merge(part(0)).merge(part(1)).compute()
    results_close(left, right)
    results_close(shuffled, right)
    results_close(right, feed(_accumulator(n_folds), stream).compute())


def test_all_reduce_is_a_no_op_without_a_process_group() -> None:
    acc = feed(_accumulator(), make_stream(36, n=200))
    before = acc.compute()
    assert not dist.is_initialized()
    results_close(all_reduce_statistics(acc).compute(), before)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.distributed
def test_all_reduce_over_two_gloo_ranks(tmp_path) -> None:
    """Ranks see different class sets and rank 0 never feeds state 2; in-sample and 3-fold held-out."""
    init_file, out_file = tmp_path / "init", tmp_path / "rank0.pt"
    mp.spawn(allreduce_worker, args=(2, str(init_file), str(out_file), (0, 3)), nprocs=2, join=True)
    saved = torch.load(out_file)
    for n_folds, got in saved.items():
        reference = ResidualStatistics([0, 1, 2], ALL_MEASURES, n_folds=n_folds, vocab_size=60)
        feed(reference, distributed_stream(0), states=[0, 1])
        feed(reference, distributed_stream(1), states=[0, 1, 2])
        assert got["counts"] == reference.counts == {0: 800, 1: 800, 2: 400}
        for name, result in reference.compute().items():
            for state, value in result.values.items():
                assert relative_error(got["values"][name][state], value) < 1e-9, (n_folds, name, state)
            if result.fold_std is not None:
                for state, value in result.fold_std.items():
                    assert abs(got["fold_std"][name][state] - value) < 1e-9, (n_folds, name, state)


def test_huge_offset_float64_features_match_the_centered_reference() -> None:
    """With an offset of 1e6 (3e7 on one column) lstsq on raw columns loses digits; the shifted stream does not."""
    stream = make_stream(37, dtype=torch.float64, offset=1e6)
    value = feed(ResidualStatistics([0]), stream).compute()["id"].values[0]
    x, y = stream.x, stream.t.astype(float)
    assert relative_error(value, ols_pr(x - x.mean(0), y)) < 1e-9
    assert relative_error(value, 1.0 - LinearRegression().fit(x, y).score(x, y)) < 1e-9


def test_int32_targets_and_numpy_inputs_are_accepted() -> None:
    stream = make_stream(38, n=200)
    reference = feed(ResidualStatistics([0]), stream).compute()
    acc = ResidualStatistics([0]).partial_fit(0, stream.features.numpy(), stream.targets.to(torch.int32))
    results_close(acc.compute(), reference)


def test_properties_and_counts() -> None:
    acc = ResidualStatistics([0, 4, 8])
    assert acc.hidden_size is None and acc.n_tokens == 0
    stream = make_stream(39, n=100, d=7)
    acc.partial_fit(4, stream.features, stream.targets)
    assert acc.hidden_size == 7 and acc.n_tokens == 100 and acc.counts == {0: 0, 4: 100, 8: 0}
    assert acc.partial_fit(4, stream.features[:0], stream.targets[:0]) is acc


def test_memory_estimate_matches_allocated_statistics() -> None:
    stream = make_stream(40, n=300, d=9, vocab=17)
    acc = feed(ResidualStatistics([0, 1], ALL_MEASURES, n_folds=3, vocab_size=40), stream)
    n_classes = len(acc._classes)
    for entry in acc._stats.values():
        entry.grow(n_classes)
        entry.counts, entry.class_x = entry.counts[:, :n_classes], entry.class_x[:, :n_classes]
    allocated = sum(
        t.numel() * t.element_size()
        for e in acc._stats.values()
        for t in (e.shift, e.n, e.z, e.zz, e.counts, e.class_x)
    )
    assert ResidualStatistics.memory_bytes(2, 9, ALL_MEASURES, 3, n_classes) == allocated
    assert ResidualStatistics.memory_bytes(33, 4096, ("id",), 0) == 8 * 33 * (1 + 4097 + 4097**2 + 4097)


def test_non_finite_features_raise_and_leave_the_accumulator_unchanged() -> None:
    stream = make_stream(41, n=100, d=4, dtype=torch.float16, offset=0.0)
    acc = ResidualStatistics([3]).partial_fit(3, stream.features, stream.targets)
    before = acc.compute()
    bad = stream.features.clone()
    bad[5, 2] = float("inf")
    with pytest.raises(ValueError, match=r"state 3: 1 feature values are NaN or infinite.*float16.*wider dtype"):
        acc.partial_fit(3, bad, stream.targets)
    assert acc.n_tokens == 100
    results_close(acc.compute(), before)


def test_non_finite_first_batch_leaves_nothing_behind() -> None:
    acc = ResidualStatistics([0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        acc.partial_fit(0, torch.tensor([[float("nan"), 1.0]]), torch.tensor([1]))
    assert acc.hidden_size is None and acc.n_tokens == 0


def test_unchecked_batches_defer_the_finiteness_check_to_one_call_for_all_states() -> None:
    stream = make_stream(42, n=120, d=4, dtype=torch.float16, offset=0.0)
    checked = ResidualStatistics([0, 1, 2])
    unchecked = ResidualStatistics([0, 1, 2], check_values=False)
    bad = stream.features.clone()
    bad[7, 1] = float("nan")
    for state in (0, 1, 2):
        checked.partial_fit(state, stream.features, stream.targets)
        unchecked.partial_fit(state, bad if state == 1 else stream.features, stream.targets)
    assert checked.non_finite_states() == [] and unchecked.non_finite_states() == [1]
    with pytest.raises(ValueError, match=r"states \[1\]: the statistics hold NaN or infinite sums.*wider dtype"):
        unchecked.compute()
    clean = ResidualStatistics([0], check_values=False).partial_fit(0, stream.features, stream.targets)
    results_close(clean.compute(), ResidualStatistics([0]).partial_fit(0, stream.features, stream.targets).compute())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.partial_fit(9, torch.ones(3, 2), torch.ones(3, dtype=torch.int64)), "state 9 is not measured"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2, 2), torch.ones(3, dtype=torch.int64)), "must be 2-D"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2, dtype=torch.int64), torch.ones(3, dtype=torch.int64)), "floating point"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2), torch.ones(3)), "integer token ids"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2), torch.ones(4, dtype=torch.int64)), r"shape \(3,\)"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2), -torch.ones(3, dtype=torch.int64)), "must be >= 0"),
        (lambda a: a.partial_fit(0, torch.ones(3, 2), torch.full((3,), 50)), "vocab_size 50"),
    ],
)
def test_invalid_batches_raise_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(ResidualStatistics([0], vocab_size=50))


def test_hidden_size_mismatch_and_missing_documents() -> None:
    acc = ResidualStatistics([0, 1], n_folds=2).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64), torch.arange(3))
    with pytest.raises(ValueError, match="state 1: features have hidden size 5, earlier batches had 2"):
        acc.partial_fit(1, torch.ones(3, 5), torch.ones(3, dtype=torch.int64), torch.arange(3))
    with pytest.raises(ValueError, match="needs documents"):
        acc.partial_fit(1, torch.ones(3, 2), torch.ones(3, dtype=torch.int64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"measures": ("shuffled_id",)}, "pass vocab_size"),
        ({"measures": ("pr",)}, "measures must be distinct names"),
        ({"n_folds": 1}, "n_folds must be 0"),
        ({"states": []}, "non-empty sequence"),
        ({"states": [1, 1]}, "distinct ints"),
    ],
)
def test_invalid_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResidualStatistics(**{"states": [0], **kwargs})


def test_merge_rejects_incompatible_accumulators() -> None:
    with pytest.raises(ValueError, match="different configurations"):
        ResidualStatistics([0]).merge(ResidualStatistics([0], n_folds=2))
    small = ResidualStatistics([0]).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64))
    large = ResidualStatistics([0]).partial_fit(0, torch.ones(3, 4), torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="hidden size 4 into hidden size 2"):
        small.merge(large)
    with pytest.raises(ValueError, match="call partial_fit"):
        ResidualStatistics([0]).compute()


def test_shuffled_id_uses_the_documented_permutation() -> None:
    stream = make_stream(42, n=300, d=5)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(123))
    value = feed(ResidualStatistics([0], ("shuffled_id",), vocab_size=40, seed=123), stream).compute()
    expected = ols_pr(stream.x, perm[stream.targets].double().numpy())
    assert relative_error(value["shuffled_id"].values[0], expected) < 1e-9


@pytest.mark.parametrize(("size", "blocks"), [(5, None), (256, None), (700, None), (1100, None), (700, 3), (9, 16)])
def test_blocked_gram_update_holds_the_exact_upper_triangle(size: int, blocks: int | None) -> None:
    rng = np.random.default_rng(size)
    parts = [torch.tensor(rng.normal(size=(n, size))) for n in (50, 31)]
    zz = torch.zeros(size, size, dtype=torch.float64)
    for z in parts:
        add_gram(zz, z, blocks)
    stacked = torch.cat(parts)
    expected = stacked.T @ stacked
    assert torch.allclose(symmetric(zz), expected, rtol=1e-12, atol=1e-10)
    if size >= 256:
        assert not torch.any(torch.tril(zz, -size // 2)), "blocks below the diagonal are not computed"


def test_the_mirror_copies_the_upper_triangle_and_ignores_what_lies_below() -> None:
    upper = torch.randn(7, 7, dtype=torch.float64).triu()
    below = torch.randn(7, 7, dtype=torch.float64).tril(-1)  # what a diagonal block's GEMM leaves below it
    full = symmetric(upper + below)
    assert torch.equal(full, upper + upper.triu(1).T) and torch.equal(full, full.T)


def test_gram_blocks_are_wider_on_a_gpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [gram_blocks(d, cpu) for d in (5, 130, 578, 4098)] == [1, 1, 4, 8]
    assert [gram_blocks(d, cuda) for d in (5, 578, 2050, 4098)] == [1, 1, 4, 8]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ResidualStatistics([0]).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64), sign=2), "sign must be 1"),
        (lambda: ResidualStatistics([0], ("onehot",)).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64), sign=-1),
         "scalar statistics only"),
        (lambda: ResidualStatistics([0], extra_columns=2).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64)),
         "keeps 2 extra columns"),
        (lambda: ResidualStatistics([0], extra_columns=2).partial_fit(0, torch.ones(3, 2), torch.ones(3, dtype=torch.int64),
                                                                      extra=torch.ones(3, 1)), r"shape \(3, 2\)"),
        (lambda: ResidualStatistics([0], extra_columns=-1), "extra_columns must be an int >= 0"),
    ],
)
def test_signed_rows_and_extra_columns_refuse_bad_use(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_memory_estimate_counts_extra_columns() -> None:
    assert ResidualStatistics.memory_bytes(2, 10, ("id",), 0, extra_columns=3) == 8 * 2 * (1 + 14 + 14**2 + 14)


@pytest.mark.parametrize(("n_folds", "n_groups"), [(0, 0), (3, 0), (0, 4), (3, 4)])
def test_gathered_rows_give_the_sums_of_updates_at_once(n_folds: int, n_groups: int) -> None:
    """Rows gathered before their Gram update (some batches fit, some do not, sums read mid-stream)
    give the same sums, measures and jackknife replicates as updates at every batch."""
    stream = make_stream(51, n=700, d=9)
    kwargs = {"measures": ALL_MEASURES, "n_folds": n_folds, "n_groups": n_groups, "vocab_size": 40}
    at_once = ResidualStatistics([0, 1], **kwargs)
    gathered = ResidualStatistics([0, 1], **kwargs, gather_rows=12)
    for start, stop in [(0, 5), (5, 60), (60, 64), (64, 300), (300, 310), (310, 700)]:
        part = Stream(stream.features[start:stop], stream.targets[start:stop], stream.documents[start:stop])
        feed(at_once, part)
        feed(gathered, part, batch=7)
        if stop == 300:  # reading flushes the pending rows; gathering then goes on
            assert torch.allclose(gathered.sums(0)[0].zz, at_once.sums(0)[0].zz, rtol=1e-12, atol=1e-9)
    assert any(any(e.filled) for e in gathered._stats.values())  # rows still wait for their update
    for state in (0, 1):
        for mine, theirs in zip(gathered.cell_sums(state), at_once.cell_sums(state)):
            assert mine.n == theirs.n
            assert torch.allclose(mine.zz, theirs.zz, rtol=1e-12, atol=1e-9)
    results_close(gathered.compute(), at_once.compute(), rtol=1e-10)
    if n_groups:
        expected = at_once.compute()["id"].replicates
        for state, replicates in gathered.compute()["id"].replicates.items():
            assert replicates == pytest.approx(expected[state], rel=1e-10)


@pytest.mark.parametrize("gather_rows", [0, 40])
def test_a_cell_split_made_once_gives_the_sums_of_the_documents(gather_rows: int) -> None:
    """``partial_fit`` with a :class:`CellSplit` of the documents (what the runner makes once a batch for
    every state) gives the very sums that the documents give; a split over other cells is refused."""
    stream = make_stream(53, n=400, d=6)
    kwargs = {"measures": ALL_MEASURES, "n_folds": 2, "n_groups": 3, "vocab_size": 40, "gather_rows": gather_rows}
    by_documents, by_split = ResidualStatistics([0, 1], **kwargs), ResidualStatistics([0, 1], **kwargs)
    for rows in torch.arange(400).split(50):
        split = CellSplit.of(stream.documents[rows], 6)
        for state in (0, 1):
            by_documents.partial_fit(state, stream.features[rows], stream.targets[rows], stream.documents[rows])
            by_split.partial_fit(state, stream.features[rows], stream.targets[rows], split)
    for state in (0, 1):
        for mine, theirs in zip(by_split.cell_sums(state), by_documents.cell_sums(state)):
            assert mine.n == theirs.n and torch.equal(mine.zz, theirs.zz) and torch.equal(mine.class_x, theirs.class_x)
    with pytest.raises(ValueError, match=r"over 3 cells, the accumulator keeps 6: make it with CellSplit.of\(documents, 6\)"):
        by_split.partial_fit(0, stream.features[:50], stream.targets[:50], CellSplit.of(stream.documents[:50], 3))
    with pytest.raises(ValueError, match=r"documents must be integer document indices of shape \(49,\)"):
        by_split.partial_fit(0, stream.features[:49], stream.targets[:49], CellSplit.of(stream.documents[:50], 6))


class _CountCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called (each a kernel launch or more on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_a_gathered_batch_costs_the_same_calls_however_many_cells() -> None:
    """Gathered rows are written once and summed per cell in one product: a batch's update makes as many
    torch calls with 20 cells as with 2 (a copy, a sum and a launch per cell would grow with them)."""
    stream = make_stream(54, n=200, d=6)
    calls = []
    for groups in (2, 20):
        stats = ResidualStatistics([0], ("id",), n_groups=groups, gather_rows=100)
        stats.partial_fit(0, stream.features[:100], stream.targets[:100], stream.documents[:100])
        split = CellSplit.of(stream.documents[100:], groups)
        with _CountCalls() as counted:
            stats.partial_fit(0, stream.features[100:], stream.targets[100:], split)
        assert sum(stats._stats[0].filled) == 100  # gathered, not yet added to the Gram matrices
        calls.append(counted.calls)
    assert calls[0] == calls[1]


def test_gathered_rows_reach_merges_and_the_memory_estimate() -> None:
    stream = make_stream(52, n=300, d=6)
    halves = [Stream(stream.features[p], stream.targets[p], stream.documents[p])
              for p in (slice(0, 150), slice(150, 300))]
    whole = feed(ResidualStatistics([0], ("id",), n_groups=3), stream)
    first, second = (feed(ResidualStatistics([0], ("id",), n_groups=3, gather_rows=40), h, batch=9) for h in halves)
    assert any(first._stats[0].filled) and any(second._stats[0].filled)
    results_close(first.merge(second).compute(), whole.compute(), rtol=1e-10)
    planned = ResidualStatistics.memory_bytes(1, 6, ("id",), 0, n_groups=3, gather_rows=40)
    assert planned == 8 * (3 * (1 + 7 + 49 + 40 * (7 + 1)) + 7)  # each cell's room: 40 rows and their cells
    entry = first._stats[0]
    held = [entry.shift, entry.n, entry.z, entry.zz, entry.pending, entry.pending_cells]
    assert sum(t.numel() * t.element_size() for t in held) == planned
    with pytest.raises(ValueError, match="gather_rows must be an int >= 0"):
        ResidualStatistics([0], gather_rows=-1)


def test_rows_are_gathered_on_a_gpu_only() -> None:
    """d / 2 rows on a GPU, at most 1024 (enough for a GEMM bound by arithmetic), none on a CPU."""
    assert [gather_rows_for(576, device) for device in ("cuda", "cuda:3", "cpu", None)] == [288, 288, 0, 0]
    assert [gather_rows_for(d, "cuda") for d in (2048, 4096, 8192)] == [1024, 1024, 1024]
