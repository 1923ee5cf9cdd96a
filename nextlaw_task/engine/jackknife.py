"""Delete-one-group jackknife over documents: a standard error for every measure and law metric.

Documents fall in G groups by their index in the corpus (group = document % G), so the groups,
hence the standard errors, do not depend on batch size, batch order or the number of processes.
The statistics are kept per *cell* (cell = document % lcm(K, G) with K held-out folds): a fold
and a group are each a union of cells, so folds and groups share one set of sums. Replicate g is
the measurement with group g's documents left out; its sums are the cells' sums without group g's
cells, an exact subtraction of additive statistics, so the point estimate is untouched.

With theta_g the replicate values over the G' groups that hold samples and theta_bar their mean,
SE = sqrt((G' - 1) / G' * sum_g (theta_g - theta_bar)^2), the delete-a-group jackknife
(Quenouille-Tukey). It treats documents as the independent units: tokens within a document are
correlated, documents are not. For the law, each replicate's PR series is refitted, so the law's
errors carry the correlation between layers. With G = 10 groups the estimate has about 9 degrees
of freedom: estimate +- 1.96 SE then covers about 92% (t with 9 degrees of freedom); +- 2.26 SE
covers 95%, or more groups bring +- 1.96 SE close to 95% (``nextlaw_jackknife_groups``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from nextlaw_task.engine.measures import MeasureResult, compute_measures, state_outcomes
from nextlaw_task.engine.sums import F64, Sums


def cell_count(n_folds: int, n_groups: int) -> int:
    """Cells the statistics are kept in: every fold and every group is a union of them."""
    return math.lcm(max(n_folds, 1), max(n_groups, 1))


@dataclass(frozen=True)
class CellSplit:
    """A batch's rows over the cells of their documents: ``fold`` (each row's cell), ``order`` (the rows
    sorted by cell, in their order within a cell), ``indicator`` (rows x cells, 1.0 where the row lies:
    every cell's column sums in one product), ``counts`` (rows per cell, float64) and ``sizes`` (the same,
    as host integers).

    The split is the same for every state, so a caller that feeds many states makes it once a batch
    (:meth:`of` on the host, then :meth:`to` the device) and hands it to each ``partial_fit``: read off
    a GPU tensor, the sizes would wait for the device once a state.
    """

    fold: Tensor
    order: Tensor
    indicator: Tensor
    counts: Tensor
    sizes: tuple[int, ...]

    @classmethod
    def of(cls, documents: Tensor, n_cells: int) -> CellSplit:
        """The split of rows whose document indices are ``documents`` (cell = document % ``n_cells``)."""
        fold = documents.long().remainder(n_cells)
        counts = torch.bincount(fold, minlength=n_cells)
        indicator = torch.nn.functional.one_hot(fold, n_cells).to(F64)
        return cls(fold, torch.argsort(fold, stable=True), indicator, counts.to(F64), tuple(counts.tolist()))

    def to(self, device: torch.device | str) -> CellSplit:
        """The split with its tensors on ``device``."""
        fold, order, indicator, counts = (t.to(device) for t in (self.fold, self.order, self.indicator, self.counts))
        return CellSplit(fold, order, indicator, counts, self.sizes)


@dataclass(frozen=True)
class CellLayout:
    """Which cells form each held-out fold and each jackknife group (cell = document % n_cells)."""

    n_folds: int
    n_groups: int

    @property
    def n_cells(self) -> int:
        return cell_count(self.n_folds, self.n_groups)

    def folds(self, cells: Sequence[Sums]) -> list[Sums]:
        """The fold sums (one total when in-sample)."""
        n_folds = max(self.n_folds, 1)
        return [Sums.total(cells[k::n_folds]) for k in range(n_folds)]

    def without_group(self, cells: Sequence[Sums], folds: Sequence[Sums], group: int) -> list[Sums]:
        """The fold sums with group ``group``'s documents left out: its few cells subtracted from ``folds``."""
        n_folds = max(self.n_folds, 1)
        kept = list(folds)
        for c in range(group, len(cells), self.n_groups):
            kept[c % n_folds] = kept[c % n_folds] - cells[c]
        return kept

    def groups_with_samples(self, cells: Sequence[Sums]) -> list[int]:
        """The groups whose documents gave this state samples (a replicate leaves one of them out)."""
        if not self.n_groups:
            return []
        counts = [0.0] * self.n_groups
        for c, sums in enumerate(cells):
            counts[c % self.n_groups] += sums.n
        return [g for g, n in enumerate(counts) if n > 0.5]


def jackknife_stderr(replicates: Sequence[float]) -> float:
    """sqrt((G - 1) / G * sum (theta_g - mean)^2) over G >= 2 replicates; NaN when fewer or any is NaN."""
    values = [float(v) for v in replicates]
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt((len(values) - 1) / len(values) * sum((v - mean) ** 2 for v in values))


def measure_cells(
    cells_by_state: Mapping[int, Sequence[Sums]],
    layout: CellLayout,
    measures: Sequence[str],
    scalar_columns: Mapping[str, int],
    n_tokens: int,
    hidden_size: int,
    shared_warnings: Sequence[str] = (),
) -> dict[str, MeasureResult]:
    """Every measure for every state from per-cell sums, with its jackknife replicates when groups are kept."""
    folds_by_state = {s: layout.folds(cells) for s, cells in cells_by_state.items()}
    results = compute_measures(folds_by_state, measures, scalar_columns, n_tokens, hidden_size, shared_warnings)
    if not layout.n_groups:
        return results
    replicates: dict[str, dict[int, dict[int, float]]] = {m: {} for m in measures}
    for state, cells in cells_by_state.items():
        for m in measures:
            replicates[m][state] = {}
        for group in layout.groups_with_samples(cells):
            kept = layout.without_group(cells, folds_by_state[state], group)
            outcomes = state_outcomes(state, kept, measures, scalar_columns)
            for m, outcome in outcomes.items():
                replicates[m][state][group] = math.nan if outcome.ill_posed else outcome.value
    return {m: replace(result, replicates=replicates[m]) for m, result in results.items()}
