"""What one batch of documents feeds to which accumulator: a pure function of the batch and the pools.

Tasks that sample the same positions the same way share one accumulator: a :class:`Pool`. A pool
whose positions differ from another in-sample pool's (its *base*) only at document edges is
*derived* from it: its targets on the base's rows ride in one of the base's extra columns, and its
own accumulator gets only the rows where the two differ (added rows with sign +1, missing rows with
sign -1). :func:`plan_batch` turns a batch and the pools into a :class:`BatchPlan`: per pool, the
rows of the flattened (document x position) states, their targets, documents, extra columns and
sign (:class:`Feed`), and, per normalization, the chunks of rows normalized at once with each
feed's share of every chunk (:class:`Chunk`, :class:`Share`). Carrying it out is the runner's job;
nothing here sees a model or a hidden state, so the plan is tested on hand-made batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from nextlaw_task.engine.jackknife import CellSplit, cell_count
from nextlaw_task.schema import Target


@dataclass(frozen=True, eq=False)
class Document:
    """One document's token ids and the (task, doc_id) requests that share it (one per task at most).

    The ids are kept compactly: a numpy int32 array (4 bytes a token), or any sequence of ints.
    """

    tokens: Sequence[int] | np.ndarray
    owners: tuple[tuple[str, int], ...]
    truncated: bool = False


@dataclass(frozen=True)
class Pool:
    """Frozen settings of the tasks that share one accumulator: its members, what they sample
    (target, normalization, states), the measures kept for them, folds, jackknife groups,
    permutation seed and the precision asked for the statistics' products.

    ``base`` is the index of the pool this one is derived from (None when it keeps its own rows),
    ``column`` its extra column there; ``derived`` lists the pools derived from this one, in the
    order of their extra columns.
    """

    members: tuple[str, ...]
    target: Target
    normalize: str
    states: tuple[int, ...] = ()
    measures: tuple[str, ...] = ("id",)
    folds: int = 0
    groups: int = 0
    seed: int = 666
    precision: str = "float64"
    base: int | None = None
    column: int = -1
    derived: tuple[int, ...] = ()


@dataclass(frozen=True)
class Feed:
    """What one pool's accumulator gets from one batch: rows of the flattened states, the targets and
    documents of those rows, the base's extra columns (its derived pools' targets) and the sign."""

    pool: int
    sign: int
    rows: Tensor
    targets: Tensor
    docs: Tensor
    extra: Tensor | None

    def to(self, device: torch.device | str) -> Feed:
        move = (lambda t: None if t is None else t.to(device))
        return Feed(self.pool, self.sign, move(self.rows), move(self.targets), move(self.docs), move(self.extra))


@dataclass(frozen=True)
class Share:
    """Feed ``feed``'s rows ``start:stop`` lie in a chunk, at ``pick`` among its rows (None: all of them);
    ``cells``: those rows split over the cells of the feed's accumulator (None: it keeps one cell)."""

    feed: int
    start: int
    stop: int
    pick: Tensor | None
    cells: CellSplit | None = None

    def to(self, device: torch.device | str) -> Share:
        return Share(self.feed, self.start, self.stop, None if self.pick is None else self.pick.to(device),
                     None if self.cells is None else self.cells.to(device))


@dataclass(frozen=True)
class Chunk:
    """Rows of the flattened states normalized together, and what each feed takes from them."""

    normalize: str
    rows: Tensor
    shares: tuple[Share, ...]


@dataclass(frozen=True)
class Counts:
    """Documents a pool measures in a batch: all, truncated, and too short to give a sample."""

    docs: int = 0
    truncated: int = 0
    too_short: int = 0


@dataclass(frozen=True)
class BatchPlan:
    """Right-padded token ids and mask of the batch, and what every accumulator is fed from it."""

    ids: Tensor
    mask: Tensor
    feeds: tuple[Feed, ...]
    chunks: tuple[Chunk, ...]
    counts: dict[int, Counts] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> BatchPlan:
        """The plan with every tensor on ``device``."""
        chunks = tuple(Chunk(c.normalize, c.rows.to(device), tuple(s.to(device) for s in c.shares)) for c in self.chunks)
        return BatchPlan(self.ids.to(device), self.mask.to(device), tuple(f.to(device) for f in self.feeds), chunks,
                         self.counts)


def padded(batch: Sequence[Document]) -> tuple[Tensor, Tensor]:
    """Token ids right-padded with 0 and the attention mask: padding never reaches a real token."""
    lengths = torch.tensor([len(doc.tokens) for doc in batch])
    width = int(lengths.max())
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    for i, doc in enumerate(batch):
        ids[i, : len(doc.tokens)] = torch.as_tensor(doc.tokens, dtype=torch.long)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return ids, mask


def distinct_targets(documents: Sequence[Document], pool: Pool) -> int:
    """How many distinct token ids ``pool``'s samples have as targets (the class slots it needs)."""
    seen = [
        np.asarray(doc.tokens)[np.arange(span.start, span.stop) + pool.target.offset]
        for doc in documents
        if (span := pool.target.positions(len(doc.tokens)))
        if any(owner in pool.members for owner, _ in doc.owners)
    ]
    return int(np.unique(np.concatenate(seen)).size) if seen else 0


def plan_batch(batch: Sequence[Document], pools: Sequence[Pool], active: Sequence[int], chunk_rows: int) -> BatchPlan:
    """The plan of one batch for the ``active`` pools (those measuring a state in this pass)."""
    ids, mask = padded(batch)
    related = {k for i in active for k in (*pools[i].derived, pools[i].base) if k is not None}
    sampled, documents, counts = {}, {}, {}
    for index in sorted(set(active) | related):
        sampled[index], documents[index], counts[index] = _sampled(batch, pools[index])
    counts = {index: counts[index] for index in active}
    feeds: list[Feed] = []
    for index in active:
        pool = pools[index]
        if pool.base is None:
            extra = [(sampled[k], pools[k].target.offset) for k in pool.derived]
            spans = [[positions] for positions in sampled[index]]
            feeds.append(_feed(index, 1, ids, spans, documents[index], pool.target.offset, extra))
            continue
        base = sampled[pool.base]
        added = [_minus(mine, theirs) for mine, theirs in zip(sampled[index], base)]
        removed = [_minus(theirs, mine) for mine, theirs in zip(sampled[index], base)]
        feeds.append(_feed(index, 1, ids, added, documents[index], pool.target.offset))
        feeds.append(_feed(index, -1, ids, removed, documents[index], None))
    feeds = [f for f in feeds if f.rows.numel()]
    return BatchPlan(ids, mask, tuple(feeds), _chunks(feeds, pools, chunk_rows), counts)


def _sampled(batch: Sequence[Document], pool: Pool) -> tuple[list[range], list[int], Counts]:
    """The positions ``pool`` samples in each document (empty where it owns none), its document ids, counts."""
    positions, documents = [], []
    docs = truncated = too_short = 0
    for doc in batch:
        owned = {doc_id for owner, doc_id in doc.owners if owner in pool.members}
        if owned and (len(owned) != 1 or sum(owner in pool.members for owner, _ in doc.owners) != len(pool.members)):
            raise RuntimeError(
                f"tasks {', '.join(pool.members)} measure the same corpus but were given different "
                "documents; run them in separate lm_eval calls"
            )
        span = pool.target.positions(len(doc.tokens)) if owned else range(0)
        if owned:
            docs, truncated, too_short = docs + 1, truncated + doc.truncated, too_short + (not span)
        positions.append(span)
        documents.append(owned.pop() if owned else -1)
    return positions, documents, Counts(docs, truncated, too_short)


def _minus(first: range, second: range) -> list[range]:
    """``first`` without ``second`` (unit-step ranges), as at most two ranges."""
    parts = [range(first.start, min(first.stop, second.start)), range(max(first.start, second.stop), first.stop)]
    return [part for part in parts if part] if second else ([first] if first else [])


def _feed(pool: int, sign: int, ids: Tensor, positions: list[list[range]], documents: list[int],
          offset: int | None, extra: Sequence[tuple[list[range], int]] = ()) -> Feed:
    """Rows of ``positions`` (ranges per document), their targets (the token at position + ``offset``,
    or 0 when None), documents, and one extra column per derived pool in ``extra`` (its positions and
    offset): its target where it samples the row, else 0."""
    width = ids.shape[1]
    rows, targets, docs, columns = [], [], [], []
    for i, span in ((i, span) for i, spans in enumerate(positions) for span in spans):
        if not span:
            continue
        where = torch.arange(span.start, span.stop)
        rows.append(where + i * width)
        targets.append(ids[i, where + offset] if offset is not None else torch.zeros_like(where))
        docs.append(torch.full((len(span),), documents[i], dtype=torch.long))
        if extra:
            columns.append(torch.stack([
                torch.where((where >= theirs[i].start) & (where < theirs[i].stop),
                            ids[i, (where + their_offset).clamp(0, width - 1)], 0)
                for theirs, their_offset in extra
            ], 1))
    empty = torch.zeros(0, dtype=torch.long)
    cat = (lambda parts: torch.cat(parts) if parts else empty)
    extra_column = torch.cat(columns) if columns else (torch.zeros(0, len(extra), dtype=torch.long) if extra else None)
    return Feed(pool, sign, cat(rows), cat(targets), cat(docs), extra_column)


def _chunks(feeds: Sequence[Feed], pools: Sequence[Pool], chunk_rows: int) -> tuple[Chunk, ...]:
    """Per normalization, the sorted union of the rows its feeds sample, cut into chunks of
    ``chunk_rows``; each feed takes its own rows from a chunk (or all of them, when they coincide)."""
    union: dict[str, Tensor] = {}
    for f in feeds:
        how = pools[f.pool].normalize
        union[how] = f.rows if how not in union else torch.cat([union[how], f.rows])
    chunks: list[Chunk] = []
    for how, rows in union.items():
        rows = torch.unique(rows)
        members = [(k, f) for k, f in enumerate(feeds) if pools[f.pool].normalize == how]
        edges = list(range(0, rows.numel(), chunk_rows)) + [rows.numel()]
        for low, high in zip(edges[:-1], edges[1:]):
            shares = []
            for k, f in members:
                if torch.equal(f.rows, rows):
                    start, stop, pick = low, high, None
                else:
                    start = int(torch.searchsorted(f.rows, rows[low]))
                    stop = int(torch.searchsorted(f.rows, rows[high - 1], right=True))
                    pick = torch.searchsorted(rows[low:high], f.rows[start:stop])
                if start < stop:
                    shares.append(Share(k, start, stop, pick, _cells(f.docs[start:stop], pools[f.pool])))
            chunks.append(Chunk(how, rows[low:high], tuple(shares)))
    return tuple(chunks)


def _cells(documents: Tensor, pool: Pool) -> CellSplit | None:
    """The split of a share's rows over the cells its pool's accumulator keeps (made once, for every state)."""
    n_cells = cell_count(pool.folds, pool.groups)
    return None if n_cells == 1 else CellSplit.of(documents, n_cells)
