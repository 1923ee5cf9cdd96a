"""Streaming sufficient statistics of hidden states for exact prediction-residual measures.

Per hidden state (and per fold when held-out folds are requested) the accumulator keeps, in
float64 on the features' device, about a fixed shift s (the first batch's mean, stored):

- n, sum(z - s) and sum (z - s)(z - s)' for z = [features, scalar targets, extra columns]: one
  (d + m)^2 matrix gives the feature Gram matrix, the target cross-products and the target sums
  of squares; the scalar targets are the token id (``id``) and its image under a seeded
  permutation of the vocabulary (``shuffled_id``);
- for ``onehot`` / ``separation_fuzziness``: per-class counts and sums of (x - s), only for the
  token ids actually seen (slots are assigned as ids arrive and shared by all states).

Features are converted to float64 before the shift is subtracted; the update fills the upper block
triangle of the symmetric matrix (``sums.add_gram``; TF32 and reduced precision never touch float64
matmuls). Memory is O(d^2) per state and cell, whatever the number of samples, plus
O(classes x d) for the class measures. In scikit-learn's manner the accumulator has ``partial_fit``,
``merge`` and ``sums``; ``compute`` turns the sums into measures. ``engine.reduce`` adds ranks' sums.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from nextlaw_task.engine import checks
from nextlaw_task.engine.jackknife import CellLayout, CellSplit, measure_cells
from nextlaw_task.engine.measures import MeasureResult, log_warnings
from nextlaw_task.engine.precision import FastGram, checked_deviation
from nextlaw_task.engine.sums import F64, ClassIndex, StateSums, Sums
from nextlaw_task.schema import CLASS_MEASURES, PRECISIONS, SCALAR_MEASURES


class ResidualStatistics:
    """Streaming, mergeable sufficient statistics of several hidden states; ``compute()`` gives the PRs.

    Parameters
    ----------
    states: labels of the hidden states measured (e.g. ``range(L + 1)``).
    measures: subset of ``("id", "shuffled_id", "onehot", "separation_fuzziness")``.
    n_folds: 0 for in-sample PR (the authors' protocol); K >= 2 for K-fold held-out PR with
        folds by document (fold = document % K) for id, shuffled_id and onehot.
    n_groups: 0 for no standard errors; G >= 2 for a delete-one-group jackknife over documents
        (group = document % G, see ``engine.jackknife``). Folds and groups share the sums: they are
        kept per cell (document % lcm(K, G)), so memory grows by that factor, time barely.
    vocab_size: size of the vocabulary; required for ``shuffled_id``, whose permutation is
        ``torch.randperm(vocab_size, generator=torch.Generator().manual_seed(seed))``.
    seed: seed of that permutation.
    device: where the statistics live; None = the device of the first features seen.
    extra_columns: number of further float columns kept after the scalar targets, given per row
        by ``partial_fit(..., extra=...)``: targets of other row sets that share these features,
        measured by :func:`engine.shared.compute_shared` (their sums ride on this Gram update at little cost).
    class_slots: class slots each state reserves up front (the distinct targets expected, when known:
        the memory plan counts them); more are added, geometrically, when more classes arrive.
    gather_rows: rows each cell of a state gathers before its Gram update (0: every batch updates at
        once): one larger GEMM instead of many small ones that each rewrite the cell's matrix. The rows
        wait in float64 (``memory_bytes`` counts them) and are added whenever the sums are read.
    precision: ``float64`` or ``fast`` (float32 products, their cost in PR checked per state by
        ``checked_deviations``: ``engine.precision``; in-sample scalar measures only).
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
        class_slots: int = 0,
        n_groups: int = 0,
        gather_rows: int = 0,
        precision: str = "float64",
    ) -> None:
        self.states = checks.states_list(states)
        self.measures = checks.measures_list(measures)
        self.n_folds = checks.fold_count(n_folds)
        self.n_groups = checks.group_count(n_groups)
        self.cells = CellLayout(self.n_folds, self.n_groups)
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
        self.class_slots = max(0, int(class_slots))
        if not isinstance(gather_rows, int) or gather_rows < 0:
            raise ValueError(f"gather_rows must be an int >= 0, got {gather_rows!r}")
        self.gather_rows = gather_rows
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fast" and (set(self.measures) - set(SCALAR_MEASURES) or self.n_folds or extra_columns):
            raise ValueError("precision='fast' checks in-sample id and shuffled_id fits without extra columns only")
        self.precision = precision
        self._hidden_size: int | None = None
        self._stats: dict[int, StateSums] = {}
        self._classes: ClassIndex | None = None
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
    def _cells(self) -> int:
        return self.cells.n_cells

    @property
    def _split_by(self) -> str | None:
        """What splits the sums by document, for messages (None when nothing does)."""
        named = [f"n_folds={self.n_folds}"] * bool(self.n_folds) + [f"n_groups={self.n_groups}"] * bool(self.n_groups)
        return " and ".join(named) or None

    def _config(self) -> tuple[Any, ...]:
        return (self.states, self.measures, self.n_folds, self.n_groups, self.vocab_size, self.seed, self.extra_columns)

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
        n_states: int, hidden_size: int, measures: Sequence[str], n_folds: int, n_classes: int = 0,
        extra_columns: int = 0, n_groups: int = 0, gather_rows: int = 0, precision: str = "float64",
    ) -> int:
        """Bytes of statistics for ``n_states`` states (float64), gathered rows and their cells included, and in
        ``fast`` precision the check's sample and, rows not gathered, each cell's float32 open chunk; excluding
        one batch's float64 copy."""
        folds = CellLayout(n_folds, n_groups).n_cells
        size = hidden_size + sum(m in SCALAR_MEASURES for m in measures) + extra_columns
        per_state = folds * (1 + size + size * size + gather_rows * (size + 1)) + size + (precision == "fast") * size * size
        if any(m in CLASS_MEASURES for m in measures):
            per_state += folds * n_classes * (hidden_size + 1)
        chunks = 4 * folds * size * size if precision == "fast" and not gather_rows else 0  # float32 open chunks
        return n_states * (8 * per_state + chunks)

    def partial_fit(
        self,
        state: int,
        features: Tensor,
        targets: Tensor,
        documents: Tensor | CellSplit | None = None,
        extra: Tensor | None = None,
        sign: int = 1,
    ) -> ResidualStatistics:
        """Add one batch of ``features`` (n, d) with next-token ``targets`` (n,) for hidden ``state``.

        ``documents``: each row's document index, or their :class:`CellSplit` over this accumulator's
        cells (made once for all states). ``extra`` (n, extra_columns) holds the extra columns' values.
        ``sign=-1`` subtracts the batch instead: the sums then describe a row set minus these rows (scalar
        measures only), which :func:`engine.shared.compute_shared` adds to another accumulator's rows.
        """
        features, targets, documents = checks.batch(
            state, self.states, self._hidden_size, self._split_by, features, targets, documents
        )
        if features.shape[0] and self.check_values:
            checks.target_range(state, targets, self.vocab_size)
        extra = checks.extra_values(state, extra, features.shape[0], self.extra_columns)
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 (add the rows) or -1 (subtract them), got {sign!r}")
        if sign == -1 and self._with_classes:
            raise ValueError("sign=-1 subtracts rows from scalar statistics only; the class measures keep no signed sums")
        if features.shape[0] == 0:
            return self
        device = self._device or features.device
        targets = targets.to(device)
        split = None if self._cells == 1 else checks.cell_split(state, documents, self._cells, device)
        entry = self._stats.get(state)
        # rows are written straight among the state's pending rows when they fit there
        room = entry.slot(features.shape[0]) if entry is not None and sign == 1 else None
        z = self._augmented(features, targets, device, extra, None if entry is None else entry.shift, room)
        shift = entry.shift if entry is not None else z.mean(0)
        if entry is None:
            z.sub_(shift)
        # the column sums of split rows are taken per cell in _accumulate; checking needs their total first
        column_sums = z.sum(0) if split is None or self.check_values else None
        if self.check_values:
            checks.finite(state, features, column_sums)
        self._device, self._hidden_size = device, features.shape[1]
        if entry is None:
            entry = self._stats[state] = StateSums.empty(
                shift, self._cells, self._hidden_size, self._with_classes, self.class_slots
            )
            entry.gather(self.gather_rows)
            if self.precision == "fast":
                # rows not gathered come a few a cell: their products are summed in float32 chunks
                entry.fast = FastGram(z.shape[1], device, self._cells, accumulate=not self.gather_rows)
        self._accumulate(entry, z, column_sums, split, sign, gathered=room is not None)
        if self._with_classes:
            self._accumulate_classes(entry, z, targets, None if split is None else split.fold)
        entry.count += sign * z.shape[0]
        return self

    def _augmented(
        self, features: Tensor, targets: Tensor, device: torch.device, extra: Tensor | None, shift: Tensor | None,
        out: Tensor | None = None,
    ) -> Tensor:
        """[features, scalar targets, extra columns] - ``shift`` (when given) as one (n, d + m + k) float64
        matrix on ``device`` (written into ``out`` when given); the features are converted, copied and
        shifted in one pass where they lie."""
        n, d = features.shape
        columns = self._scalar_columns
        z = torch.empty(n, d + len(columns) + self.extra_columns, dtype=F64, device=device) if out is None else out
        if shift is not None and features.device == z.device:
            torch.sub(features, shift[:d], out=z[:, :d])
        else:
            z[:, :d].copy_(features)
            if shift is not None:
                z[:, :d].sub_(shift[:d])
        for j, measure in enumerate(columns):
            z[:, d + j] = targets if measure == "id" else self._permuted(targets)
        if extra is not None:
            z[:, d + len(columns) :].copy_(extra)
        if shift is not None:
            z[:, d:].sub_(shift[d:])
        return z

    def _permuted(self, targets: Tensor) -> Tensor:
        if self._permutation is None:
            generator = torch.Generator().manual_seed(self.seed)
            self._permutation = torch.randperm(self.vocab_size, generator=generator)
        self._permutation = self._permutation.to(targets.device)
        return self._permutation[targets]

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

    def _accumulate(self, entry: StateSums, z: Tensor, column_sums: Tensor | None, split: CellSplit | None,
                    sign: int, gathered: bool) -> None:
        """Add the rows ``z``: counts and column sums now, the Gram update now or, ``gathered``, when flushed."""
        if split is None:
            entry.n[0] += sign * z.shape[0]
            entry.z[0].add_(column_sums, alpha=sign)
        else:
            entry.n.add_(split.counts, alpha=sign)
            entry.z.addmm_(split.indicator.T, z, alpha=sign)  # every cell's column sums in one product
        if gathered:
            entry.commit(z.shape[0], None if split is None else split.fold, None if split is None else split.sizes)
        elif split is None:
            entry.update(0, z, sign)
        else:
            for k, block in enumerate(torch.split(z[split.order], split.sizes)):
                if block.shape[0]:
                    entry.update(k, block, sign)

    def _accumulate_classes(self, entry: StateSums, z: Tensor, targets: Tensor, fold: Tensor | None) -> None:
        if self._classes is None:
            self._classes = ClassIndex(self._device, self.vocab_size)
        slots = self._classes.register(targets)
        entry.grow(len(self._classes))
        flat = slots if fold is None else fold * entry.n_slots + slots
        folds, d = self._cells, self._hidden_size
        # index_put_ with accumulate is a sort-and-reduce: fast on CPU and GPU, where index_add_ on CPU
        # is slow for contiguous sources with repeated (Zipf) indices.
        entry.class_x.view(folds * entry.n_slots, d).index_put_((flat,), z[:, :d], accumulate=True)
        entry.counts.view(-1).index_put_((flat,), torch.ones_like(flat, dtype=F64), accumulate=True)

    def merge(self, other: ResidualStatistics) -> ResidualStatistics:
        """Add ``other``'s statistics: the result equals one accumulator that saw both streams."""
        if not isinstance(other, ResidualStatistics):
            raise ValueError(f"can only merge another ResidualStatistics, got {type(other).__name__}")
        if "fast" in (self.precision, other.precision):
            raise ValueError("fast-precision statistics are checked per accumulator and cannot be merged: use precision='float64'")
        if other._config() != self._config():
            raise ValueError(
                "cannot merge accumulators with different configurations "
                f"(states, measures, n_folds, n_groups, vocab_size, seed, extra_columns): {self._config()} vs "
                f"{other._config()}"
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
                self._classes = ClassIndex(self._device, self.vocab_size)
            slots = self._classes.register(other._classes.ids.to(self._device))
        for state, theirs in other._stats.items():
            incoming = theirs.copy_to(self._device)
            mine = self._stats.get(state)
            if mine is None:
                mine = self._stats[state] = StateSums.empty(
                    incoming.shift, self._cells, self._hidden_size, self._with_classes
                )
            incoming.reshift(mine.shift)
            mine.add(incoming, slots)
        return self

    def compute(self) -> dict[str, MeasureResult]:
        """Every measure for every state, from the statistics; logs each warning once per accumulator."""
        if self._hidden_size is None:
            raise ValueError("compute() needs statistics: call partial_fit (or merge) first")
        bad = self.non_finite_states()
        if bad:
            raise ValueError(
                f"states {bad}: the statistics hold NaN or infinite sums: NaN or infinite features were fed; "
                "if a model computed them, run it in a wider dtype (bfloat16 or float32 instead of float16)"
            )
        d = self._hidden_size
        columns = {m: j for j, m in enumerate(self._scalar_columns)}
        results: dict[str, MeasureResult] = {}
        shared = self._uneven_warning()
        for state in self.states:  # one state's cells at a time: the copies they need do not pile up
            one = measure_cells({state: self.cell_sums(state)}, self.cells, self.measures, columns, self.n_tokens, d,
                                () if results else shared)
            results = {m: results[m].union(r) for m, r in one.items()} if results else one
        log_warnings(results, self._logged)
        return results

    def checked_deviations(self, results: Mapping[str, MeasureResult]) -> dict[int, float]:
        """Per state fed, how far the PRs ``compute()`` gave (``results``) are checked to be from float64
        (``engine.precision``); empty in float64."""
        columns = self._scalar_columns
        return {} if self.precision != "fast" else {
            state: checked_deviation(entry.total(self._hidden_size), entry.fast,
                                     {m: results[m].values[state] for m in columns}, columns, state)
            for state, entry in self._stats.items()}

    def sums(self, state: int, columns: Sequence[int] | None = None, about: Tensor | None = None) -> list[Sums]:
        """The totals of ``state``, one :class:`Sums` per fold (one when in-sample).

        ``columns`` keeps only those columns of z = [features, scalar targets, extra columns]
        (then without class sums); ``about`` re-expresses the sums about another shift (of the
        kept columns) first, so that they add to another accumulator's sums about that shift.
        """
        return self.cells.folds(self.cell_sums(state, columns, about))

    def cell_sums(self, state: int, columns: Sequence[int] | None = None, about: Tensor | None = None) -> list[Sums]:
        """The sums of ``state`` per cell (``self.cells``: folds and jackknife groups are unions of cells),
        with ``columns`` and ``about`` as in :meth:`sums`."""
        if self._hidden_size is None:
            raise ValueError("sums() needs statistics: call partial_fit (or merge) first")
        if columns is not None and about is not None:
            raise ValueError("sums() takes columns or about, not both")
        d = self._hidden_size
        index = None if columns is None else torch.as_tensor(list(columns), device=self._device)
        entry = self._stats.get(state)
        if entry is None:
            size = d + len(self._scalar_columns) + self.extra_columns if index is None else index.numel()
            return [Sums.empty(size, d, self._device)] * self._cells
        if about is not None:
            entry = entry.copy_to(self._device)
            entry.reshift(torch.as_tensor(about, dtype=F64, device=self._device))
        return entry.fold_sums(d, index)

    def shift(self, state: int) -> Tensor | None:
        """The fixed point the sums of ``state`` are taken about (None before its first batch)."""
        entry = self._stats.get(state)
        return None if entry is None else entry.shift

    def column_of(self, extra: int) -> int:
        """The position in z of extra column ``extra``."""
        if not 0 <= extra < self.extra_columns:
            raise ValueError(f"the accumulator keeps {self.extra_columns} extra columns, not column {extra!r}")
        return self._hidden_size + len(self._scalar_columns) + extra

    def layout(self) -> dict[str, Any]:
        """What ranks must agree on before their sums can be added: configuration, hidden size,
        the shift of every state fed and the class ids seen (all on the CPU)."""
        has_ids = self._classes is not None and len(self._classes)
        return {
            "config": self._config(),
            "hidden_size": self._hidden_size,
            "shifts": {s: e.shift.cpu() for s, e in self._stats.items()},
            "ids": self._classes.ids.cpu() if has_ids else torch.empty(0, dtype=torch.int64),
        }

    def adopt_layout(self, hidden_size: int, device: torch.device, shifts: dict[int, Tensor], class_ids: Tensor) -> None:
        """Re-express the sums in a common layout: every state in ``shifts`` about that shift (states
        not fed here get zero sums), class slots in the order of the sorted ``class_ids``."""
        self._hidden_size = hidden_size
        self._device = self._device or device
        if self._with_classes:
            if self._classes is None:
                self._classes = ClassIndex(self._device, self.vocab_size)
            union = class_ids.to(self._device)
            positions = torch.searchsorted(union, self._classes.ids)
            for entry in self._stats.values():
                entry.relayout_classes(positions, union.numel())
            self._classes.reorder(union)
        for state, shift in shifts.items():
            shift = shift.to(self._device)
            if state not in self._stats:
                self._stats[state] = StateSums.empty(shift, self._cells, hidden_size, self._with_classes)
                self._stats[state].grow(len(self._classes) if self._with_classes else 0)
            self._stats[state].reshift(shift)

    def buffers(self, state: int) -> list[Tensor]:
        """The additive tensors of ``state`` (empty before its first batch), to be summed in place."""
        entry = self._stats.get(state)
        return [] if entry is None else entry.buffers

    def recount(self) -> None:
        """Take each state's sample count from its sums (after they were summed in place)."""
        for entry in self._stats.values():
            entry.count = int(round(float(entry.n.sum())))

    def _uneven_warning(self) -> tuple[str, ...]:
        counts = self.counts
        if len(set(counts.values())) <= 1:
            return ()
        listed = ", ".join(f"state {s}: {n}" for s, n in counts.items())
        return (f"states saw different numbers of samples ({listed}): feed every state the same batches",)
