"""Streaming sufficient statistics of hidden states for exact prediction-residual measures.

Per hidden state (and per fold when held-out folds are requested) the accumulator keeps, in
float64 on the features' device, about a fixed shift s (the first batch's mean, stored):

- n, sum(z - s) and sum (z - s)(z - s)' for z = [features, scalar targets, extra columns]: one
  (d + m)^2 matrix gives the feature Gram matrix, the target cross-products and the target sums
  of squares; the scalar targets are the token id (``id``) and its image under a seeded
  permutation of the vocabulary (``shuffled_id``);
- for ``onehot`` / ``separation_fuzziness``: per-class counts and sums of (x - s), only for the
  token ids actually seen (slots are assigned as ids arrive and shared by all states).

Features are converted to float64 before the shift is subtracted, and the update fills only the
upper block triangle of the symmetric matrix (``sums.add_gram``; TF32 and reduced precision never
touch float64 matmuls). Memory is O(d^2) per state and fold, independent of the number of samples,
plus O(classes x d) for the class measures. In scikit-learn's manner the accumulator has
``partial_fit`` (add a batch), ``merge`` (add another accumulator) and ``sums`` (read the totals);
``compute`` turns the sums into measures. Cross-process reduction is ``engine.reduce``; a row set
that differs from another in a few rows is measured from both accumulators' public sums by
:func:`compute_shared`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from nextlaw_task.engine import checks
from nextlaw_task.engine.jackknife import CellLayout, measure_cells
from nextlaw_task.engine.measures import MeasureResult, log_warnings
from nextlaw_task.engine.sums import F64, ClassIndex, StateSums, Sums, add_gram
from nextlaw_task.schema import CLASS_MEASURES, SCALAR_MEASURES


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
        measured by :func:`compute_shared` (their sums ride on this Gram update at little cost).
    class_slots: class slots each state reserves up front (the distinct targets expected, when known:
        the memory plan counts them); more are added, geometrically, when more classes arrive.
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
        extra_columns: int = 0, n_groups: int = 0,
    ) -> int:
        """Bytes of statistics for ``n_states`` states (float64), excluding one batch's float64 copy."""
        folds = CellLayout(n_folds, n_groups).n_cells
        size = hidden_size + sum(m in SCALAR_MEASURES for m in measures) + extra_columns
        per_state = folds * (1 + size + size * size) + size
        if any(m in CLASS_MEASURES for m in measures):
            per_state += folds * n_classes * (hidden_size + 1)
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
        which :func:`compute_shared` adds to another accumulator's rows.
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
        fold = None
        if self._cells > 1:
            fold = documents.to(device).remainder(self._cells)
            order = torch.argsort(fold, stable=True)
            features, targets, fold = features[order.to(features.device)], targets[order], fold[order]
            extra = None if extra is None else extra[order.to(extra.device)]
        z = self._augmented(features, targets, device, extra)
        entry = self._stats.get(state)
        shift = entry.shift if entry is not None else z.mean(0)
        z.sub_(shift)
        column_sums = z.sum(0)
        if self.check_values:
            checks.finite(state, features, column_sums)
        self._device, self._hidden_size = device, features.shape[1]
        if entry is None:
            entry = self._stats[state] = StateSums.empty(
                shift, self._cells, self._hidden_size, self._with_classes, self.class_slots
            )
        self._accumulate(entry, z, column_sums, fold, sign)
        if self._with_classes:
            self._accumulate_classes(entry, z, targets, fold)
        entry.count += sign * z.shape[0]
        return self

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

    def _accumulate(self, entry: StateSums, z: Tensor, column_sums: Tensor, fold: Tensor | None, sign: int) -> None:
        if fold is None:
            entry.n[0] += sign * z.shape[0]
            entry.z[0].add_(column_sums, alpha=sign)
            add_gram(entry.zz[0], z, sign=sign)
            return
        sizes = torch.bincount(fold, minlength=self._cells).tolist()
        for k, block in enumerate(torch.split(z, sizes)):
            if block.shape[0]:
                entry.n[k] += sign * block.shape[0]
                entry.z[k].add_(block.sum(0), alpha=sign)
                add_gram(entry.zz[k], block, sign=sign)

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


def compute_shared(base: ResidualStatistics, edges: ResidualStatistics, column: int) -> MeasureResult:
    """The ``id`` measure of a row set that shares ``base``'s features, from public sums only.

    That row set's sums are ``base``'s (its features and extra column ``column``, which holds the
    set's target on base's rows) plus those of ``edges``: an in-sample ``id`` accumulator of the
    same states fed the rows the set adds and, with ``sign=-1``, the rows it lacks. Only the few
    rows where the sets differ then cost a Gram update of their own; the result equals an
    accumulator fed the row set itself.
    """
    if base.n_folds or not 0 <= column < base.extra_columns:
        raise ValueError(
            f"compute_shared needs an in-sample base accumulator and one of its {base.extra_columns} extra columns, "
            f"got {column!r}"
        )
    if edges.measures != ("id",) or edges.n_folds or edges.states != base.states or edges.n_groups != base.n_groups:
        raise ValueError("edges must be an in-sample accumulator of the id measure over the same states and groups")
    bad = sorted(set(base.non_finite_states()) | set(edges.non_finite_states()))
    if bad:
        raise ValueError(f"states {bad}: the statistics hold NaN or infinite sums: NaN or infinite features were fed")
    d = base.hidden_size if base.hidden_size is not None else edges.hidden_size
    if d is None:
        raise ValueError("compute_shared() needs statistics: call partial_fit first")
    if base.hidden_size is None:
        totals = {state: edges.cell_sums(state) for state in base.states}
    else:
        kept = [*range(d), base.column_of(column)]
        totals = {}
        for state in base.states:
            mine = base.cell_sums(state, columns=kept)
            shift = base.shift(state)
            if shift is not None and edges.shift(state) is not None:
                mine = [a + b for a, b in zip(mine, edges.cell_sums(state, about=shift[kept]))]
            elif edges.shift(state) is not None:
                mine = edges.cell_sums(state)
            totals[state] = mine
    n_tokens = int(round(max(sum(c.n for c in cells) for cells in totals.values())))
    results = measure_cells(totals, base.cells, ("id",), {"id": 0}, n_tokens, d)
    log_warnings(results, set())
    return results["id"]
