"""The plan of a batch, on hand-made batches and pools, without a model."""

from __future__ import annotations

import pytest
import torch

from nextlaw_task.pipeline.plan import Counts, Document, Pool, padded, plan_batch
from nextlaw_task.schema import TARGETS

TASKS = ("eq", "onehot", "prev", "nn", "held", "std")
#: pool 0 is the base of the flows 1 (previous) and 2 (next-next); 3 holds folds, 4 another normalization
POOLS = (
    Pool(("eq", "onehot"), TARGETS["next"], "initialized_ln", (0, 1, 2), ("id", "onehot"), derived=(1, 2)),
    Pool(("prev",), TARGETS["previous"], "initialized_ln", (0, 1, 2), base=0, column=0),
    Pool(("nn",), TARGETS["next_next"], "initialized_ln", (0, 1, 2), base=0, column=1),
    Pool(("held",), TARGETS["next"], "initialized_ln", (0, 1, 2), folds=2),
    Pool(("std",), TARGETS["next"], "standardize", (0, 1, 2)),
)


def doc(tokens: tuple[int, ...], doc_id: int, truncated: bool = False, tasks: tuple[str, ...] = TASKS) -> Document:
    return Document(tokens, tuple((task, doc_id) for task in tasks), truncated)


#: A (4 tokens), B (2 tokens), C: A's text again, a document of its own (truncated), D: one token
BATCH = [doc((10, 11, 12, 13), 0), doc((20, 21), 1), doc((10, 11, 12, 13), 2, truncated=True), doc((30,), 3)]


def feeds_of(plan, pool: int) -> dict[int, object]:
    return {f.sign: f for f in plan.feeds if f.pool == pool}


def test_padding_is_on_the_right_and_masked() -> None:
    ids, mask = padded(BATCH)
    assert ids.tolist() == [[10, 11, 12, 13], [20, 21, 0, 0], [10, 11, 12, 13], [30, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_base_rows_targets_documents_and_the_flows_extra_columns() -> None:
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=4)
    base = feeds_of(plan, 0)[1]
    # next token of positions 0..T-2; the repeated document C counts again, with its own index
    assert base.rows.tolist() == [0, 1, 2, 4, 8, 9, 10]
    assert base.targets.tolist() == [11, 12, 13, 21, 11, 12, 13]
    assert base.docs.tolist() == [0, 0, 0, 1, 2, 2, 2]
    # column 0: the previous token where the flow samples the row (positions 1..T-1), column 1: the
    # token after next where next-next samples it (positions 0..T-3); 0 elsewhere
    assert base.extra.tolist() == [[0, 12], [10, 13], [11, 0], [0, 0], [0, 12], [10, 13], [11, 0]]


def test_derived_flows_get_only_the_rows_where_they_differ_at_document_edges() -> None:
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=4)
    previous = feeds_of(plan, 1)
    assert previous[1].rows.tolist() == [3, 5, 11] and previous[1].targets.tolist() == [12, 20, 12]
    assert previous[-1].rows.tolist() == [0, 4, 8] and previous[-1].targets.tolist() == [0, 0, 0]
    next_next = feeds_of(plan, 2)
    assert set(next_next) == {-1}  # next-next samples a subset of the base's rows
    assert next_next[-1].rows.tolist() == [2, 4, 10]
    assert all(f.extra is None for f in plan.feeds if f.pool != 0)


def test_folds_and_another_normalization_get_the_base_rows() -> None:
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=4)
    for pool in (3, 4):
        (feed,) = feeds_of(plan, pool).values()
        assert feed.rows.tolist() == [0, 1, 2, 4, 8, 9, 10] and feed.docs.tolist() == [0, 0, 0, 1, 2, 2, 2]


def test_counts_per_pool() -> None:
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=4)
    assert plan.counts[0] == Counts(docs=4, truncated=1, too_short=1)
    assert plan.counts[2] == Counts(docs=4, truncated=1, too_short=2)  # next-next needs 3 tokens


@pytest.mark.parametrize("chunk_rows", [1, 3, 4, 1000])
def test_chunks_cover_every_feed_row_once_and_pick_the_right_rows(chunk_rows: int) -> None:
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=chunk_rows)
    by_normalization = {}
    for chunk in plan.chunks:
        assert 1 <= chunk.rows.numel() <= chunk_rows
        by_normalization.setdefault(chunk.normalize, []).append(chunk.rows)
    assert torch.cat(by_normalization["initialized_ln"]).tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11]
    assert torch.cat(by_normalization["standardize"]).tolist() == [0, 1, 2, 4, 8, 9, 10]
    covered = {k: [] for k in range(len(plan.feeds))}
    for chunk in plan.chunks:
        for share in chunk.shares:
            feed = plan.feeds[share.feed]
            assert POOLS[feed.pool].normalize == chunk.normalize
            taken = chunk.rows if share.pick is None else chunk.rows[share.pick]
            assert taken.tolist() == feed.rows[share.start : share.stop].tolist()
            covered[share.feed].append((share.start, share.stop))
    for k, feed in enumerate(plan.feeds):
        spans = sorted(covered[k])
        assert spans[0][0] == 0 and spans[-1][1] == feed.rows.numel()
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_shares_of_a_pool_with_cells_carry_their_rows_split_over_the_cells(chunk_rows: int) -> None:
    """Made once in the plan for every state: the cell of each row (document % cells), the rows in cell order
    and the rows per cell; a pool of one cell gets none."""
    plan = plan_batch(BATCH, POOLS, range(5), chunk_rows=chunk_rows)
    for chunk in plan.chunks:
        for share in chunk.shares:
            feed = plan.feeds[share.feed]
            if POOLS[feed.pool].folds == 0:
                assert share.cells is None
                continue
            docs = feed.docs[share.start : share.stop]
            assert share.cells.fold.tolist() == (docs % 2).tolist()
            assert share.cells.sizes == tuple(int((docs % 2 == k).sum()) for k in range(2))
            assert share.cells.counts.tolist() == list(share.cells.sizes)
            assert (docs % 2)[share.cells.order].tolist() == sorted((docs % 2).tolist())


def test_a_feed_equal_to_the_chunk_takes_it_whole() -> None:
    plan = plan_batch(BATCH, POOLS, [4], chunk_rows=100)
    (chunk,) = plan.chunks
    assert [s.pick for s in chunk.shares] == [None]


def test_inactive_pools_get_nothing() -> None:
    plan = plan_batch(BATCH, POOLS, [3], chunk_rows=4)
    assert {f.pool for f in plan.feeds} == {3} and set(plan.counts) == {3}


def test_documents_a_pool_does_not_own_add_no_rows() -> None:
    batch = [doc((1, 2, 3), 0), doc((4, 5, 6), 1, tasks=("held",))]
    plan = plan_batch(batch, POOLS, [0, 3], chunk_rows=4)
    assert feeds_of(plan, 0)[1].rows.tolist() == [0, 1]
    assert feeds_of(plan, 3)[1].rows.tolist() == [0, 1, 3, 4]
    assert plan.counts[0].docs == 1 and plan.counts[3].docs == 2


def test_tasks_of_one_pool_given_different_documents_are_refused() -> None:
    batch = [doc((1, 2, 3), 0, tasks=("eq",))]
    with pytest.raises(RuntimeError, match="tasks eq, onehot measure the same corpus but were given different"):
        plan_batch(batch, POOLS, [0], chunk_rows=4)


def test_a_batch_of_documents_too_short_to_sample_has_no_feeds() -> None:
    plan = plan_batch([doc((7,), 0), doc((8,), 1)], POOLS, [0, 3, 4], chunk_rows=4)
    assert plan.feeds == () and plan.chunks == () and plan.counts[0] == Counts(docs=2, truncated=0, too_short=2)
