"""Additive float64 sums about a fixed shift: the algebra every statistic of nextlaw is made of.

:class:`Sums` is one sample set's statistics as the measures read them. :class:`StateSums` is
the storage one hidden state keeps while data streams in (one slot per held-out fold), with the
exact re-expression about another shift that merging and reduction need. :class:`ClassIndex`
gives the token ids seen dense class slots. The Gram update fills only the upper block triangle of
the symmetric matrix (:func:`add_gram`); :func:`symmetric` mirrors it when the sums are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

F64 = torch.float64


#: Rows each cell of a state gathers before its Gram update on a GPU, per feature column: the pending
#: rows then take at most this share of the memory of the sums they feed.
GATHER_SHARE = 0.5
#: ... and at most this many rows: a float64 GEMM of k rows into a d x d matrix does 2kd^2 flops for the
#: 16d^2 bytes of the matrix it rewrites, k / 8 flops a byte, and a GPU's float64 units balance their
#: memory at about 14 (H100/H200: 67 TFLOPS over 3.4-4.8 TB/s), so 1024 rows leave the update bound by
#: arithmetic many times over; more rows only take memory, which a large model pays for in passes.
GATHER_MAX_ROWS = 1024


def gather_rows_for(hidden_size: int, device: torch.device | str | None) -> int:
    """The ``gather_rows`` a run uses for states of width ``hidden_size`` kept on ``device``: none on a CPU.

    On a GPU a batch's few rows per cell make short GEMMs and a launch per cell and block; gathering
    merges them. On a CPU the GEMMs run as fast on short row blocks and the copies do not pay: with
    SmolLM2, 10 jackknife cells and batches of 32 sentences, gathering left the Gram updates' time
    as it was and slowed the model's own operations (its activations lost the cache to the pending rows).
    The ``fast`` precision's float32 products gain more from long blocks (``benchmarks/bench_core.py
    --row-blocks``), but gathering for them slowed the whole run on a CPU all the same.
    """
    if device is None or torch.device(device).type != "cuda":
        return 0
    return min(int(GATHER_SHARE * hidden_size), GATHER_MAX_ROWS)


@dataclass(frozen=True)
class Sums:
    """Additive statistics of one sample set, about a fixed shift, float64.

    ``z`` stacks the d shifted features and the m shifted scalar target columns; ``zz`` is the sum
    of their outer products (full, symmetric); ``counts`` / ``class_x`` are per-class sample counts
    and sums of the shifted features (None when no class measure is kept).
    """

    n: float
    z: Tensor
    zz: Tensor
    hidden_size: int
    counts: Tensor | None = None
    class_x: Tensor | None = None

    def __add__(self, other: Sums) -> Sums:
        return self._combine(other, 1.0)

    def __sub__(self, other: Sums) -> Sums:
        return self._combine(other, -1.0)

    @classmethod
    def total(cls, parts: Sequence[Sums]) -> Sums:
        """The sum of ``parts`` (at least one), with one new tensor per field however many there are."""
        first = parts[0]
        if len(parts) == 1:
            return first
        classes = first.counts is not None
        n, z, zz = first.n, first.z.clone(), first.zz.clone()
        counts = first.counts.clone() if classes else None
        class_x = first.class_x.clone() if classes else None
        for part in parts[1:]:
            n += part.n
            z += part.z
            zz += part.zz
            if classes:
                counts += part.counts
                class_x += part.class_x
        return cls(n, z, zz, first.hidden_size, counts, class_x)

    def _combine(self, other: Sums, sign: float) -> Sums:
        classes = self.counts is not None
        return Sums(
            n=self.n + sign * other.n,
            z=self.z + sign * other.z,
            zz=self.zz + sign * other.zz,
            hidden_size=self.hidden_size,
            counts=self.counts + sign * other.counts if classes else None,
            class_x=self.class_x + sign * other.class_x if classes else None,
        )

    @classmethod
    def empty(cls, size: int, hidden_size: int, device: torch.device | None) -> Sums:
        """The sums of no samples over ``size`` columns."""
        zeros = torch.zeros(size, dtype=F64, device=device)
        return cls(0.0, zeros, zeros.new_zeros(size, size), hidden_size)


class ClassIndex:
    """Dense slots for the token ids seen, in order of first appearance (shared by all states)."""

    def __init__(self, device: torch.device, vocab_size: int | None) -> None:
        self.ids = torch.empty(0, dtype=torch.int64, device=device)
        self._slot_of = torch.full((vocab_size or 0,), -1, dtype=torch.int64, device=device)

    def __len__(self) -> int:
        return int(self.ids.numel())

    def register(self, values: Tensor) -> Tensor:
        """Slots of ``values`` (non-negative ids), assigning new slots to ids not seen before."""
        top = int(values.max()) + 1
        if top > self._slot_of.numel():
            grown = torch.full((max(top, 2 * self._slot_of.numel()),), -1, dtype=torch.int64, device=values.device)
            grown[: self._slot_of.numel()] = self._slot_of
            self._slot_of = grown
        slots = self._slot_of[values]
        missing = slots < 0
        if bool(missing.any()):
            new = torch.unique(values[missing])
            self._slot_of[new] = torch.arange(len(self), len(self) + new.numel(), device=values.device)
            self.ids = torch.cat([self.ids, new])
            slots = self._slot_of[values]
        return slots

    def reorder(self, ids: Tensor) -> None:
        """Make the sorted, unique ``ids`` (a superset of the current ids) the slot order."""
        self.ids = ids[:0]
        self._slot_of.fill_(-1)
        if ids.numel():
            self.register(ids)


@dataclass
class StateSums:
    """The running sums of one hidden state: leading axis = cell (length 1 when not split by document).

    Rows may be *gathered* before their Gram update (:meth:`gather`): a batch's shifted rows are written
    as they come into ``pending`` (room for ``capacity`` rows a cell, all cells together), with each row's
    cell in ``pending_cells``; when the next batch does not fit, or the sums are read, every cell's rows
    are added to its ``zz`` in one GEMM. Batches of few rows per cell then neither rewrite every cell's
    matrix nor pay a copy and a launch per cell. ``n`` and ``z`` are always up to date; ``zz`` is once
    :meth:`flush` ran (every reader calls it).
    """

    shift: Tensor
    n: Tensor
    z: Tensor
    zz: Tensor
    counts: Tensor | None
    class_x: Tensor | None
    count: int = 0
    capacity: int = 0
    pending: Tensor | None = field(default=None, repr=False)
    pending_cells: Tensor | None = field(default=None, repr=False)
    #: pending rows per cell
    filled: list[int] = field(default_factory=list)
    #: the ``fast`` precision's update and its check (``engine.precision.FastGram``); None: float64 products
    fast: Any = field(default=None, repr=False)

    def update(self, cell: int, rows: Tensor, sign: int = 1) -> None:
        """Add ``sign`` rows'rows to the Gram matrix of ``cell`` now."""
        if self.fast is None:
            add_gram(self.zz[cell], rows, sign=sign)
        else:
            self.fast.update(self.zz, cell, rows, sign)

    @classmethod
    def empty(cls, shift: Tensor, folds: int, hidden_size: int, with_classes: bool, slots: int = 0) -> StateSums:
        """Zero sums about ``shift``; with classes, room for ``slots`` of them to begin with."""
        size, kw = shift.numel(), {"dtype": F64, "device": shift.device}
        return cls(
            shift=shift.clone(),
            n=torch.zeros(folds, **kw),
            z=torch.zeros(folds, size, **kw),
            zz=torch.zeros(folds, size, size, **kw),
            counts=torch.zeros(folds, slots, **kw) if with_classes else None,
            class_x=torch.zeros(folds, slots, hidden_size, **kw) if with_classes else None,
        )

    def gather(self, capacity: int) -> None:
        """Gather up to ``capacity`` rows a cell before the Gram updates (0: update at once)."""
        self.capacity = max(0, int(capacity))
        self.filled = [0] * self.zz.shape[0]

    def slot(self, rows: int) -> Tensor | None:
        """Room for ``rows`` more rows among the pending rows (those pending are added to ``zz`` first when
        they do not fit beside them), or None when they are more than all cells gather; :meth:`commit`
        keeps them."""
        room = self.capacity * len(self.filled)
        if rows == 0 or rows > room:
            return None
        if self.pending is None:  # allocated on first use: batches that never fit never pay for it
            self.pending = self.zz.new_empty(room, self.zz.shape[1])
            self.pending_cells = torch.zeros(room, dtype=torch.int64, device=self.zz.device)
        if sum(self.filled) + rows > room:
            self.flush()
        start = sum(self.filled)
        return self.pending[start : start + rows]

    def commit(self, rows: int, cells: Tensor | None = None, sizes: Sequence[int] | None = None) -> None:
        """Keep the ``rows`` written into the last :meth:`slot`: all of cell 0, or of the ``cells`` given per
        row, ``sizes`` of them in each."""
        start = sum(self.filled)
        if cells is None:
            self.filled[0] += rows
            return
        self.pending_cells[start : start + rows].copy_(cells)
        self.filled = [have + more for have, more in zip(self.filled, sizes)]

    def flush(self) -> None:
        """Add every pending row to its cell's Gram matrix, and the fast precision's open chunks."""
        waiting = sum(self.filled)
        if not waiting and (self.fast is None or not any(self.fast.filled)):
            return
        # sums made in a forward pass are inference tensors: they are updated in place only in that mode
        with torch.inference_mode(self.zz.is_inference()):
            if len(self.filled) == 1 and waiting:
                self.update(0, self.pending[:waiting])
            elif waiting:
                order = torch.argsort(self.pending_cells[:waiting], stable=True)
                for cell, rows in enumerate(torch.split(order, self.filled)):
                    if rows.numel():
                        self.update(cell, self.pending.index_select(0, rows))
            if self.fast is not None:
                self.fast.flush(self.zz)
        self.filled = [0] * len(self.filled)

    @property
    def n_slots(self) -> int:
        return 0 if self.counts is None else self.counts.shape[1]

    @property
    def buffers(self) -> list[Tensor]:
        """Every additive tensor (what a cross-process reduction sums), in a fixed order."""
        self.flush()
        return [self.n, self.z, self.zz] + ([self.counts, self.class_x] if self.counts is not None else [])

    def copy_to(self, device: torch.device) -> StateSums:
        """A copy on ``device``, every row in its sums (none pending)."""
        self.flush()

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, copy=True)

        return StateSums(
            move(self.shift), move(self.n), move(self.z), move(self.zz), move(self.counts), move(self.class_x), self.count
        )

    def grow(self, n_classes: int) -> None:
        """Make room for at least ``n_classes`` class slots (capacity grows geometrically)."""
        if self.counts is None or n_classes <= self.n_slots:
            return
        capacity = max(n_classes, 2 * self.n_slots)
        folds, hidden = self.class_x.shape[0], self.class_x.shape[2]
        counts = self.counts.new_zeros(folds, capacity)
        class_x = self.class_x.new_zeros(folds, capacity, hidden)
        counts[:, : self.n_slots] = self.counts
        class_x[:, : self.n_slots] = self.class_x
        self.counts, self.class_x = counts, class_x

    def reshift(self, shift: Tensor) -> None:
        """Re-express the sums about ``shift`` instead of the current one (exact algebra)."""
        self.flush()
        delta = self.shift - shift
        n = self.n[:, None]
        self.zz += self.z[:, :, None] * delta[None, None, :] + delta[None, :, None] * self.z[:, None, :]
        self.zz += n[:, :, None] * torch.outer(delta, delta)[None]
        self.z += n * delta[None, :]
        if self.class_x is not None:
            self.class_x += self.counts[:, :, None] * delta[: self.class_x.shape[2]][None, None, :]
        self.shift = shift.clone()

    def relayout_classes(self, positions: Tensor, n_classes: int) -> None:
        """Move class slot j to ``positions[j]`` in a layout of ``n_classes`` slots."""
        used = min(self.n_slots, positions.numel())
        counts = self.counts.new_zeros(self.counts.shape[0], n_classes)
        class_x = self.class_x.new_zeros(self.class_x.shape[0], n_classes, self.class_x.shape[2])
        counts[:, positions[:used]] = self.counts[:, :used]
        class_x[:, positions[:used]] = self.class_x[:, :used]
        self.counts, self.class_x = counts, class_x

    def add(self, other: StateSums, slots: Tensor | None) -> None:
        """Add ``other`` (same shift); its class slot j goes to ``slots[j]`` here."""
        self.flush()
        other.flush()
        self.n += other.n
        self.z += other.z
        self.zz += other.zz
        self.count += other.count
        if self.counts is not None and slots is not None and slots.numel():
            used = min(other.n_slots, slots.numel())
            self.grow(int(slots[:used].max()) + 1 if used else 0)
            self.counts.index_add_(1, slots[:used], other.counts[:, :used])
            self.class_x.index_add_(1, slots[:used], other.class_x[:, :used])

    def total(self, hidden_size: int) -> Sums:
        """The scalar sums of every cell together (no class sums), the Gram matrix mirrored once rather than
        once a cell: what the fast precision's check reads."""
        self.flush()
        return Sums(float(self.n.sum()), self.z.sum(0), symmetric(self.zz.sum(0)), hidden_size)

    def fold_sums(self, hidden_size: int, columns: Tensor | None = None) -> list[Sums]:
        """One :class:`Sums` per fold; ``columns`` keeps only those columns of ``z`` (no class sums then)."""
        self.flush()
        if columns is None:
            return [
                Sums(float(self.n[k]), self.z[k], symmetric(self.zz[k]), hidden_size,
                     None if self.counts is None else self.counts[k], None if self.class_x is None else self.class_x[k])
                for k in range(self.n.shape[0])
            ]
        return [
            Sums(float(self.n[k]), self.z[k][columns], symmetric(self.zz[k])[columns][:, columns], hidden_size)
            for k in range(self.n.shape[0])
        ]


def gram_blocks(size: int, device: torch.device) -> int:
    """Blocks per side of the symmetric Gram update: k blocks do (k + 1) / 2k of a full GEMM's work.

    At most 8, and one per 128 columns on a CPU but one per 512 on a GPU, where narrower block rows
    leave it idle (``benchmarks/bench_core.py`` times 1 to 16 blocks; on an H200 the fastest were 1-2
    at d = 576, 4 at 2048 and 8 at 4096).
    """
    return max(1, min(8, size // (512 if device.type == "cuda" else 128)))


def add_gram(zz: Tensor, z: Tensor, blocks: int | None = None, sign: int = 1) -> None:
    """Add ``sign`` z'z to the upper block triangle of ``zz``: one GEMM per block row, k(k+1)/2 of k^2 blocks."""
    size = z.shape[1]
    blocks = gram_blocks(size, z.device) if blocks is None else max(1, min(blocks, size))
    edges = [size * i // blocks for i in range(blocks + 1)]
    for start, stop in zip(edges[:-1], edges[1:]):
        zz[start:stop, start:].addmm_(z[:, start:stop].T, z[:, start:], alpha=sign)


def symmetric(zz: Tensor) -> Tensor:
    """The full symmetric matrix whose upper triangle ``zz`` holds: each entry copied from the upper triangle
    in one pass (no arithmetic, one new matrix; whatever lies below the diagonal is ignored)."""
    upper = torch.ones(zz.shape, dtype=torch.bool, device=zz.device).triu_()
    return torch.where(upper, zz, zz.T)
