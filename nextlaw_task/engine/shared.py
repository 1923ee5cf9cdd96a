"""The ``id`` measure of a row set that shares another's features, from public sums only.

Tasks that regress the same normalized rows on other targets (the current, previous or next-next
token) ride on one accumulator: their targets on its rows are its extra columns, and a small
accumulator of their own keeps only the rows where the two row sets differ.
"""

from __future__ import annotations

from nextlaw_task.engine.jackknife import measure_cells
from nextlaw_task.engine.measures import MeasureResult, log_warnings
from nextlaw_task.engine.stats import ResidualStatistics


def compute_shared(base: ResidualStatistics, edges: ResidualStatistics, column: int) -> MeasureResult:
    """The ``id`` measure of a row set that shares ``base``'s features.

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
