"""compute_shared: a row set's id measure from another accumulator's extra column and the rows that differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_helpers import make_stream, results_close
from nextlaw_task.engine.shared import compute_shared
from nextlaw_task.engine.stats import ResidualStatistics


def test_compute_shared_gives_another_row_sets_measure_from_shared_sums() -> None:
    stream = make_stream(43, n=400, d=6)
    rng = np.random.default_rng(43)
    other_targets = torch.tensor(rng.integers(0, 40, size=400))
    in_base = torch.ones(400, dtype=torch.bool)
    in_base[-50:] = False  # rows only the other set has
    in_other = torch.ones(400, dtype=torch.bool)
    in_other[:30] = False  # rows only the base has
    states = [0, 1]
    base = ResidualStatistics(states, ("id", "shuffled_id"), vocab_size=40, extra_columns=1)
    edges = ResidualStatistics(states, ("id",))
    direct = ResidualStatistics(states, ("id",))
    extra = torch.where(in_other, other_targets, 0).double()[:, None]
    for state in states:
        features = stream.features * (state + 1)
        for rows in torch.arange(400).split(70):  # several batches, as a stream
            keep, add, drop = in_base[rows], in_other[rows] & ~in_base[rows], in_base[rows] & ~in_other[rows]
            base.partial_fit(state, features[rows][keep], stream.targets[rows][keep], extra=extra[rows][keep])
            edges.partial_fit(state, features[rows][add], other_targets[rows][add])
            edges.partial_fit(state, features[rows][drop], torch.zeros(int(drop.sum()), dtype=torch.long), sign=-1)
            direct.partial_fit(state, features[rows][in_other[rows]], other_targets[rows][in_other[rows]])
    results_close({"id": compute_shared(base, edges, 0)}, direct.compute())
    assert compute_shared(base, edges, 0).n_tokens == direct.n_tokens == 370


@pytest.mark.parametrize(
    ("edges", "column", "message"),
    [
        (ResidualStatistics([0]), 1, "one of its 1 extra columns"),
        (ResidualStatistics([0], ("onehot",)), 0, "in-sample accumulator of the id measure"),
    ],
)
def test_bad_use_is_refused(edges: ResidualStatistics, column: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_shared(ResidualStatistics([0], extra_columns=1), edges, column)
