"""Streaming sufficient statistics of hidden states for exact prediction-residual measures.

Per hidden state (and per fold when held-out folds are requested) the accumulator keeps, in
float64 on the features' device, about a fixed shift s (the first batch's mean, stored):

- n, sum(z - s) and sum (z - s)(z - s)' for z = [features, scalar targets]: one (d + m)^2 matrix
  gives the feature Gram matrix, the target cross-products and the target sums of squares; the
  scalar targets are the token id (``id``) and its image under a seeded permutation of the
  vocabulary (``shuffled_id``);
- for ``onehot`` / ``separation_fuzziness``: per-class counts and sums of (x - s), only for the
  token ids actually seen (slots are assigned as ids arrive and shared by all states).

Features are converted to float64 before the shift is subtracted, and the update is a few float64
GEMMs that fill only the upper block triangle of the symmetric (d + m)^2 matrix (about 60% of a
full GEMM; TF32 and reduced precision never touch float64 matmuls). The blocks below the diagonal
are never read: ``sums()`` mirrors the upper triangle, and since merging, reshifting and
all-reducing only add matrices, the upper triangle stays exact. Memory is O(d^2) per state and
fold, independent of the number of samples, plus O(classes x d) for the class measures.
Statistics are additive: ``merge`` adds another accumulator, ``all_reduce`` sums across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from nextlaw_task.measures import (
    CLASS_MEASURES,
    MEASURES,
    SCALAR_MEASURES,
    MeasureResult,
    Sums,
    compute_measures,
    log_warnings,
)

F64 = torch.float64


class _ClassIndex:
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
class _StateStats:
    """Statistics of one hidden state: leading axis = fold (length 1 when not folded)."""

    shift: Tensor
    n: Tensor
    z: Tensor
    zz: Tensor
    counts: Tensor | None
    class_x: Tensor | None
    count: int = 0

    @classmethod
    def empty(cls, shift: Tensor, groups: int, hidden_size: int, with_classes: bool) -> _StateStats:
        size, kw = shift.numel(), {"dtype": F64, "device": shift.device}
        return cls(
            shift=shift.clone(),
            n=torch.zeros(groups, **kw),
            z=torch.zeros(groups, size, **kw),
            zz=torch.zeros(groups, size, size, **kw),
            counts=torch.zeros(groups, 0, **kw) if with_classes else None,
            class_x=torch.zeros(groups, 0, hidden_size, **kw) if with_classes else None,
        )

    @property
    def n_slots(self) -> int:
        return 0 if self.counts is None else self.counts.shape[1]

    def copy_to(self, device: torch.device) -> _StateStats:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, copy=True)

        return _StateStats(
            move(self.shift), move(self.n), move(self.z), move(self.zz), move(self.counts), move(self.class_x), self.count
        )

    def grow(self, n_classes: int) -> None:
        """Make room for at least ``n_classes`` class slots (capacity grows geometrically)."""
        if self.counts is None or n_classes <= self.n_slots:
            return
        capacity = max(n_classes, 2 * self.n_slots)
        groups, hidden = self.class_x.shape[0], self.class_x.shape[2]
        counts = self.counts.new_zeros(groups, capacity)
        class_x = self.class_x.new_zeros(groups, capacity, hidden)
        counts[:, : self.n_slots] = self.counts
        class_x[:, : self.n_slots] = self.class_x
        self.counts, self.class_x = counts, class_x

    def reshift(self, shift: Tensor) -> None:
        """Re-express the sums about ``shift`` instead of the current one (exact algebra)."""
        delta = self.shift - shift
        n = self.n[:, None]
        self.zz += self.z[:, :, None] * delta[None, None, :] + delta[None, :, None] * self.z[:, None, :]
        self.zz += n[:, :, None] * torch.outer(delta, delta)[None]
        self.z += n * delta[None, :]
        if self.class_x is not None:
            self.class_x += self.counts[:, :, None] * delta[: self.class_x.shape[2]][None, None, :]
        self.shift = shift.clone()

    def add(self, other: _StateStats, slots: Tensor | None) -> None:
        """Add ``other`` (same shift); its class slot j goes to ``slots[j]`` here."""
        self.n += other.n
        self.z += other.z
        self.zz += other.zz
        self.count += other.count
        if self.counts is not None and slots is not None and slots.numel():
            used = min(other.n_slots, slots.numel())
            self.grow(int(slots[:used].max()) + 1 if used else 0)
            self.counts.index_add_(1, slots[:used], other.counts[:, :used])
            self.class_x.index_add_(1, slots[:used], other.class_x[:, :used])

    def sums(self, hidden_size: int) -> list[Sums]:
        return [
            Sums(
                n=float(self.n[k]),
                z=self.z[k],
                zz=_symmetric(self.zz[k]),
                hidden_size=hidden_size,
                counts=None if self.counts is None else self.counts[k],
                class_x=None if self.class_x is None else self.class_x[k],
            )
            for k in range(self.n.shape[0])
        ]


class ResidualStatistics:
    """Streaming, mergeable sufficient statistics of several hidden states; ``compute()`` gives the PRs.

    Parameters
    ----------
    states: labels of the hidden states measured (e.g. ``range(L + 1)``).
    measures: subset of ``("id", "shuffled_id", "onehot", "separation_fuzziness")``.
    n_folds: 0 for in-sample PR (the authors' protocol); K >= 2 for K-fold held-out PR with
        folds by document (fold = document % K) for id, shuffled_id and onehot.
    vocab_size: size of the vocabulary; required for ``shuffled_id``, whose permutation is
        ``torch.randperm(vocab_size, generator=torch.Generator().manual_seed(seed))``.
    seed: seed of that permutation.
    device: where the statistics live; None = the device of the first features seen.
    extra_columns: number of further float columns kept after the scalar targets, given per row
        by ``partial_fit(..., extra=...)``: targets of other row sets that share these features,
        measured by :meth:`compute_with` (their sums ride on this Gram update at little cost).
    check_values: check every batch's target range and finiteness in ``partial_fit`` (each check
        waits for the device). A caller that checks its targets once per batch for all states, and
        calls ``non_finite_states()`` after the batch, turns it off; ``compute()`` always refuses
        statistics that hold NaN or infinite sums.
    """

    def __init__(
        self,
        states: Sequence[int],
        measures: Sequence[str] = ("id",),
        n_folds: int = 0,
        vocab_size: int | None = None,
        seed: int = 666,
        device: torch.device | str | None = None,
        check_values: bool = True,
        extra_columns: int = 0,
    ) -> None:
        self.states = _check_states(states)
        self.measures = _check_measures(measures)
        self.n_folds = _check_folds(n_folds)
        if "shuffled_id" in self.measures and vocab_size is None:
            raise ValueError("shuffled_id permutes range(vocab_size): pass vocab_size (e.g. the tokenizer's len())")
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.seed = int(seed)
        self._device = None if device is None else torch.device(device)
        self.check_values = bool(check_values)
        if not isinstance(extra_columns, int) or extra_columns < 0:
            raise ValueError(f"extra_columns must be an int >= 0, got {extra_columns!r}")
        self.extra_columns = extra_columns
        self._hidden_size: int | None = None
        self._stats: dict[int, _StateStats] = {}
        self._classes: _ClassIndex | None = None
        self._permutation: Tensor | None = None
        self._logged: set[str] = set()

    @property
    def _scalar_columns(self) -> tuple[str, ...]:
        """Scalar targets kept, in column order after the features."""
        return tuple(m for m in SCALAR_MEASURES if m in self.measures)

    @property
    def _with_classes(self) -> bool:
        return any(m in CLASS_MEASURES for m in self.measures)

    @property
    def _groups(self) -> int:
        return max(self.n_folds, 1)

    def _config(self) -> tuple[Any, ...]:
        return (self.states, self.measures, self.n_folds, self.vocab_size, self.seed, self.extra_columns)

    @property
    def hidden_size(self) -> int | None:
        """Feature dimension d, known once features were seen (here or in a merged accumulator)."""
        return self._hidden_size

    @property
    def n_tokens(self) -> int:
        """Samples seen per state (the same for every state when each batch is fed to all states)."""
        return max((self._stats[s].count if s in self._stats else 0) for s in self.states)

    @property
    def counts(self) -> dict[int, int]:
        """Samples seen by each state."""
        return {s: (self._stats[s].count if s in self._stats else 0) for s in self.states}

    @staticmethod
    def memory_bytes(
        n_states: int, hidden_size: int, measures: Sequence[str], n_folds: int, n_classes: int = 0, extra_columns: int = 0
    ) -> int:
        """Bytes of statistics for ``n_states`` states (float64), excluding one batch's float64 copy."""
        groups = max(n_folds, 1)
        size = hidden_size + sum(m in SCALAR_MEASURES for m in measures) + extra_columns
        per_state = groups * (1 + size + size * size) + size
        if any(m in CLASS_MEASURES for m in measures):
            per_state += groups * n_classes * (hidden_size + 1)
        return 8 * n_states * per_state

    def partial_fit(
        self,
        state: int,
        features: Tensor,
        targets: Tensor,
        documents: Tensor | None = None,
        extra: Tensor | None = None,
        sign: int = 1,
    ) -> ResidualStatistics:
        """Add one batch of ``features`` (n, d) with next-token ``targets`` (n,) for hidden ``state``.

        ``extra`` (n, extra_columns) holds the extra columns' values. ``sign=-1`` subtracts the
        batch instead: the sums then describe a row set minus these rows (scalar measures only),
        which :meth:`compute_with` adds to another accumulator's rows.
        """
        features, targets, documents = self._validated(state, features, targets, documents)
        extra = self._validated_extra(state, extra, features.shape[0])
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 (add the rows) or -1 (subtract them), got {sign!r}")
        if sign == -1 and self._with_classes:
            raise ValueError("sign=-1 subtracts rows from scalar statistics only; the class measures keep no signed sums")
        if features.shape[0] == 0:
            return self
        device = self._device or features.device
        targets = targets.to(device)
        fold = None
        if self.n_folds:
            fold = documents.to(device).remainder(self.n_folds)
            order = torch.argsort(fold, stable=True)
            features, targets, fold = features[order.to(features.device)], targets[order], fold[order]
            extra = None if extra is None else extra[order.to(extra.device)]
        z = self._augmented(features, targets, device, extra)
        entry = self._stats.get(state)
        shift = entry.shift if entry is not None else z.mean(0)
        z.sub_(shift)
        column_sums = z.sum(0)
        if self.check_values:
            self._check_finite(state, features, column_sums)
        self._device, self._hidden_size = device, features.shape[1]
        if entry is None:
            entry = self._stats[state] = _StateStats.empty(shift, self._groups, self._hidden_size, self._with_classes)
        self._accumulate(entry, z, column_sums, fold, sign)
        if self._with_classes:
            self._accumulate_classes(entry, z, targets, fold)
        entry.count += sign * z.shape[0]
        return self

    def _validated_extra(self, state: int, extra: Tensor | None, n: int) -> Tensor | None:
        if extra is None and not self.extra_columns:
            return None
        if extra is None:
            raise ValueError(f"state {state}: the accumulator keeps {self.extra_columns} extra columns: pass extra (n, k)")
        extra = torch.as_tensor(extra)
        if extra.shape != (n, self.extra_columns):
            raise ValueError(
                f"state {state}: extra must have shape ({n}, {self.extra_columns}), got {tuple(extra.shape)}"
            )
        return extra

    def _validated(
        self, state: int, features: Tensor, targets: Tensor, documents: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if state not in self.states:
            raise ValueError(f"state {state!r} is not measured; the accumulator was built for states {list(self.states)}")
        features, targets = torch.as_tensor(features), torch.as_tensor(targets)
        if features.ndim != 2:
            raise ValueError(
                f"state {state}: features must be 2-D (n, d), got shape {tuple(features.shape)}; "
                "flatten batch and positions first, e.g. h.reshape(-1, h.shape[-1])"
            )
        if not features.is_floating_point():
            raise ValueError(f"state {state}: features must be floating point, got {features.dtype}")
        n, d = features.shape
        if self._hidden_size is not None and d != self._hidden_size:
            raise ValueError(f"state {state}: features have hidden size {d}, earlier batches had {self._hidden_size}")
        if targets.shape != (n,) or targets.is_floating_point() or targets.dtype == torch.bool:
            raise ValueError(
                f"state {state}: targets must be integer token ids of shape ({n},), "
                f"got {targets.dtype} of shape {tuple(targets.shape)}"
            )
        if self.n_folds:
            if documents is None:
                raise ValueError(f"state {state}: n_folds={self.n_folds} needs documents (n,) to split folds by document")
            documents = torch.as_tensor(documents)
            if documents.shape != (n,) or documents.is_floating_point():
                raise ValueError(
                    f"state {state}: documents must be integer document indices of shape ({n},), "
                    f"got {documents.dtype} of shape {tuple(documents.shape)}"
                )
        if n and self.check_values:
            self._check_target_range(state, targets)
        return features, targets.long(), documents

    def _check_target_range(self, state: int, targets: Tensor) -> None:
        low, high = (int(v) for v in torch.stack([targets.min(), targets.max()]).tolist())
        if low < 0:
            raise ValueError(f"state {state}: target ids must be >= 0, got {low} (mask padding before feeding)")
        if self.vocab_size is not None and high >= self.vocab_size:
            raise ValueError(f"state {state}: target id {high} >= vocab_size {self.vocab_size}")

    def _augmented(self, features: Tensor, targets: Tensor, device: torch.device, extra: Tensor | None) -> Tensor:
        """[features, scalar targets, extra columns] as one (n, d + m + k) float64 matrix on ``device``."""
        n, d = features.shape
        columns = self._scalar_columns
        z = torch.empty(n, d + len(columns) + self.extra_columns, dtype=F64, device=device)
        z[:, :d].copy_(features)
        for j, measure in enumerate(columns):
            z[:, d + j] = targets if measure == "id" else self._permuted(targets)
        if extra is not None:
            z[:, d + len(columns) :].copy_(extra)
        return z

    def _permuted(self, targets: Tensor) -> Tensor:
        if self._permutation is None:
            generator = torch.Generator().manual_seed(self.seed)
            self._permutation = torch.randperm(self.vocab_size, generator=generator)
        self._permutation = self._permutation.to(targets.device)
        return self._permutation[targets]

    def _check_finite(self, state: int, features: Tensor, column_sums: Tensor) -> None:
        # A float64 sum of finite 16/32-bit values cannot overflow: a non-finite sum means a non-finite input.
        if bool(torch.isfinite(column_sums[: features.shape[1]]).all()):
            return
        bad = int((~torch.isfinite(features)).sum())
        raise ValueError(
            f"state {state}: {bad} feature values are NaN or infinite (dtype {features.dtype}); "
            "the model overflowed: run it in a wider dtype (bfloat16 or float32 instead of float16)"
        )

    def non_finite_states(self) -> list[int]:
        """States whose sums hold NaN or infinite values (one wait for the device, for all states).

        A float64 sum of finite 16/32-bit values cannot overflow, so these states were fed
        non-finite features; once there, a non-finite value stays in the sums.
        """
        fed = [s for s in self.states if s in self._stats]
        if not fed:
            return []
        finite = torch.stack([torch.isfinite(self._stats[s].z).all() for s in fed]).tolist()
        return [s for s, ok in zip(fed, finite) if not ok]

    def _accumulate(self, entry: _StateStats, z: Tensor, column_sums: Tensor, fold: Tensor | None, sign: int) -> None:
        if fold is None:
            entry.n[0] += sign * z.shape[0]
            entry.z[0].add_(column_sums, alpha=sign)
            _add_gram(entry.zz[0], z, sign=sign)
            return
        sizes = torch.bincount(fold, minlength=self.n_folds).tolist()
        for k, block in enumerate(torch.split(z, sizes)):
            if block.shape[0]:
                entry.n[k] += sign * block.shape[0]
                entry.z[k].add_(block.sum(0), alpha=sign)
                _add_gram(entry.zz[k], block, sign=sign)

    def _accumulate_classes(self, entry: _StateStats, z: Tensor, targets: Tensor, fold: Tensor | None) -> None:
        if self._classes is None:
            self._classes = _ClassIndex(self._device, self.vocab_size)
        slots = self._classes.register(targets)
        entry.grow(len(self._classes))
        flat = slots if fold is None else fold * entry.n_slots + slots
        groups, d = self._groups, self._hidden_size
        # index_put_ with accumulate is a sort-and-reduce: fast on CPU and GPU, where index_add_ on CPU
        # is slow for contiguous sources with repeated (Zipf) indices.
        entry.class_x.view(groups * entry.n_slots, d).index_put_((flat,), z[:, :d], accumulate=True)
        entry.counts.view(-1).index_put_((flat,), torch.ones_like(flat, dtype=F64), accumulate=True)

    def merge(self, other: ResidualStatistics) -> ResidualStatistics:
        """Add ``other``'s statistics: the result equals one accumulator that saw both streams."""
        if not isinstance(other, ResidualStatistics):
            raise ValueError(f"can only merge another ResidualStatistics, got {type(other).__name__}")
        if other._config() != self._config():
            raise ValueError(
                "cannot merge accumulators with different configurations "
                f"(states, measures, n_folds, vocab_size, seed): {self._config()} vs {other._config()}"
            )
        if other._hidden_size is None:
            return self
        if self._hidden_size not in (None, other._hidden_size):
            raise ValueError(f"cannot merge hidden size {other._hidden_size} into hidden size {self._hidden_size}")
        self._hidden_size = other._hidden_size
        self._device = self._device or other._device
        slots = None
        if self._with_classes and other._classes is not None and len(other._classes):
            if self._classes is None:
                self._classes = _ClassIndex(self._device, self.vocab_size)
            slots = self._classes.register(other._classes.ids.to(self._device))
        for state, theirs in other._stats.items():
            incoming = theirs.copy_to(self._device)
            mine = self._stats.get(state)
            if mine is None:
                mine = self._stats[state] = _StateStats.empty(
                    incoming.shift, self._groups, self._hidden_size, self._with_classes
                )
            incoming.reshift(mine.shift)
            mine.add(incoming, slots)
        return self

    def all_reduce(self, group: Any = None) -> ResidualStatistics:
        """Sum the statistics over the ranks of ``group`` (no-op without torch.distributed or with one rank).

        Ranks first agree (one all_gather_object) on the configuration, the hidden size, a common
        shift per state (the first rank's that has data) and the union of class ids, re-express
        their sums in that common layout, then sum each state's statistics with one flat
        all_reduce (extra memory: one state's statistics). Call it once, after the last batch:
        every rank then holds the totals. With NCCL, set the CUDA device first.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return self
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self._metadata(), group=group)
        self._adopt_common_layout(gathered, dist.get_backend(group))
        for state in self.states:
            entry = self._stats.get(state)
            if entry is not None:
                self._reduce_state(entry, group)
        return self

    def _metadata(self) -> dict[str, Any]:
        has_ids = self._classes is not None and len(self._classes)
        return {
            "config": self._config(),
            "hidden_size": self._hidden_size,
            "shifts": {s: e.shift.cpu() for s, e in self._stats.items()},
            "ids": self._classes.ids.cpu() if has_ids else torch.empty(0, dtype=torch.int64),
        }

    def _adopt_common_layout(self, gathered: list[dict[str, Any]], backend: str) -> None:
        for rank, meta in enumerate(gathered):
            if meta["config"] != self._config():
                raise ValueError(f"rank {rank} has configuration {meta['config']}, this rank {self._config()}")
        sizes = {meta["hidden_size"] for meta in gathered} - {None}
        if len(sizes) > 1:
            raise ValueError(f"ranks disagree on the hidden size: {sorted(sizes)}")
        if not sizes:
            return
        self._hidden_size = sizes.pop()
        if self._device is None:
            cuda = backend == "nccl"
            self._device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        if self._with_classes:
            self._adopt_class_union(torch.unique(torch.cat([meta["ids"] for meta in gathered])).to(self._device))
        for state in self.states:
            shift = next((meta["shifts"][state] for meta in gathered if state in meta["shifts"]), None)
            if shift is None:
                continue
            shift = shift.to(self._device)
            if state not in self._stats:
                self._stats[state] = _StateStats.empty(shift, self._groups, self._hidden_size, self._with_classes)
                self._stats[state].grow(len(self._classes) if self._with_classes else 0)
            self._stats[state].reshift(shift)

    def _adopt_class_union(self, union: Tensor) -> None:
        """Lay out every state's class slots in the order of the sorted ``union`` of ids over ranks."""
        if self._classes is None:
            self._classes = _ClassIndex(self._device, self.vocab_size)
        own = self._classes.ids
        positions = torch.searchsorted(union, own)
        for entry in self._stats.values():
            used = min(entry.n_slots, own.numel())
            counts = entry.counts.new_zeros(entry.counts.shape[0], union.numel())
            class_x = entry.class_x.new_zeros(entry.class_x.shape[0], union.numel(), entry.class_x.shape[2])
            counts[:, positions[:used]] = entry.counts[:, :used]
            class_x[:, positions[:used]] = entry.class_x[:, :used]
            entry.counts, entry.class_x = counts, class_x
        self._classes.reorder(union)

    def _reduce_state(self, entry: _StateStats, group: Any) -> None:
        parts = [entry.n, entry.z, entry.zz] + ([entry.counts, entry.class_x] if entry.counts is not None else [])
        flat = torch.cat([p.reshape(-1) for p in parts])
        dist.all_reduce(flat, group=group)
        offset = 0
        for part in parts:
            part.copy_(flat[offset : offset + part.numel()].view_as(part))
            offset += part.numel()
        entry.count = int(round(float(entry.n.sum())))

    def compute(self) -> dict[str, MeasureResult]:
        """Every measure for every state, from the statistics; logs each warning once per accumulator."""
        if self._hidden_size is None:
            raise ValueError("compute() needs statistics: call partial_fit (or merge / all_reduce) first")
        bad = self.non_finite_states()
        if bad:
            raise ValueError(
                f"states {bad}: the statistics hold NaN or infinite sums: NaN or infinite features were fed; "
                "if a model computed them, run it in a wider dtype (bfloat16 or float32 instead of float16)"
            )
        d = self._hidden_size
        columns = {m: j for j, m in enumerate(self._scalar_columns)}
        size = d + len(columns)
        folds_by_state = {}
        for state in self.states:
            entry = self._stats.get(state)
            if entry is None:
                zeros = torch.zeros(size, dtype=F64, device=self._device)
                folds_by_state[state] = [Sums(0.0, zeros, zeros.new_zeros(size, size), d)]
            else:
                folds_by_state[state] = entry.sums(d)
        results = compute_measures(folds_by_state, self.measures, columns, self.n_tokens, d, self._uneven_warning())
        log_warnings(results, self._logged)
        return results

    def compute_with(self, edges: ResidualStatistics, column: int) -> MeasureResult:
        """The ``id`` measure of another row set over the same features, from this accumulator's sums.

        That row set's sums are this accumulator's (features and extra column ``column``, its
        target on these rows) plus those of ``edges``: an in-sample ``id`` accumulator of the same
        states that was fed the rows the set adds, and, with ``sign=-1``, the rows it lacks (with
        the values held here for them). Only the few rows where the sets differ then cost a Gram
        update of their own; the result equals an accumulator fed the row set itself.
        """
        if self.n_folds or not 0 <= column < self.extra_columns:
            raise ValueError(f"compute_with needs an in-sample accumulator and one of its {self.extra_columns} extra columns, got {column!r}")
        if edges.measures != ("id",) or edges.n_folds or edges.states != self.states:
            raise ValueError("edges must be an in-sample accumulator of the id measure over the same states")
        bad = sorted(set(self.non_finite_states()) | set(edges.non_finite_states()))
        if bad:
            raise ValueError(f"states {bad}: the statistics hold NaN or infinite sums: NaN or infinite features were fed")
        d = self._hidden_size if self._hidden_size is not None else edges.hidden_size
        if d is None:
            raise ValueError("compute_with() needs statistics: call partial_fit first")
        device = self._device or edges._device
        columns = torch.tensor([*range(d), d + len(self._scalar_columns) + column], device=device)
        folds_by_state = {}
        for state in self.states:
            mine, theirs = self._stats.get(state), edges._stats.get(state)
            if mine is None:
                total = theirs.sums(d)[0] if theirs is not None else Sums(
                    0.0, torch.zeros(d + 1, dtype=F64, device=device), torch.zeros(d + 1, d + 1, dtype=F64, device=device), d
                )
            else:
                total = Sums(float(mine.n[0]), mine.z[0][columns], _symmetric(mine.zz[0])[columns][:, columns], d)
                if theirs is not None:
                    moved = theirs.copy_to(device)
                    moved.reshift(mine.shift[columns])
                    total = total + moved.sums(d)[0]
            folds_by_state[state] = [total]
        n_tokens = int(round(max(folds[0].n for folds in folds_by_state.values())))
        results = compute_measures(folds_by_state, ("id",), {"id": 0}, n_tokens, d)
        log_warnings(results, edges._logged)
        return results["id"]

    def _uneven_warning(self) -> tuple[str, ...]:
        counts = self.counts
        if len(set(counts.values())) <= 1:
            return ()
        listed = ", ".join(f"state {s}: {n}" for s, n in counts.items())
        return (f"states saw different numbers of samples ({listed}): feed every state the same batches",)


def gram_blocks(size: int, device: torch.device) -> int:
    """Blocks per side of the symmetric Gram update: k blocks do (k + 1) / 2k of a full GEMM's work.

    At most 8, and one per 128 columns on a CPU but one per 512 on a GPU, where narrower block rows
    leave it idle (``benchmarks/bench_core.py`` times 1 to 16 blocks; on an H200 the fastest were 1-2
    at d = 576, 4 at 2048 and 8 at 4096).
    """
    return max(1, min(8, size // (512 if device.type == "cuda" else 128)))


def _add_gram(zz: Tensor, z: Tensor, blocks: int | None = None, sign: int = 1) -> None:
    """Add ``sign`` z'z to the upper block triangle of ``zz``: one GEMM per block row, k(k+1)/2 of k^2 blocks."""
    size = z.shape[1]
    blocks = gram_blocks(size, z.device) if blocks is None else max(1, min(blocks, size))
    edges = [size * i // blocks for i in range(blocks + 1)]
    for start, stop in zip(edges[:-1], edges[1:]):
        zz[start:stop, start:].addmm_(z[:, start:stop].T, z[:, start:], alpha=sign)


def _symmetric(zz: Tensor) -> Tensor:
    """The full symmetric matrix whose upper triangle ``zz`` holds."""
    return torch.triu(zz) + torch.triu(zz, 1).T


def _check_states(states: Sequence[int]) -> tuple[int, ...]:
    labels = tuple(int(s) for s in states)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"states must be a non-empty sequence of distinct ints, got {list(states)!r}")
    return labels


def _check_measures(measures: Sequence[str]) -> tuple[str, ...]:
    if isinstance(measures, str):
        measures = (measures,)
    chosen = tuple(measures)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"measures must be distinct names from {MEASURES}, got {chosen!r}")
    return chosen


def _check_folds(n_folds: int) -> int:
    if not isinstance(n_folds, int) or n_folds < 0 or n_folds == 1:
        raise ValueError(f"n_folds must be 0 (in-sample) or an int >= 2 (held-out), got {n_folds!r}")
    return n_folds

