"""The names nextlaw uses, each defined once: measures, targets, normalizations and metric names.

Every layer of the package reads its vocabulary from here: the engine (which measures exist and
how they are kept), the pipeline (which positions a target samples), the harness (which metrics a
task reports) and the reports (how a results file's metric names are parsed back). Metric names
are written and parsed by the same two functions, :func:`layer_metric` and
:func:`parse_layer_metric`. Stdlib only: the reports import this without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Measure:
    """One regression measure of a hidden state.

    ``kept`` says what the statistics hold for it: a ``scalar`` target column or ``class`` sums.
    ``heldout`` says whether K-fold held-out folds are defined for it. ``quantity`` is what its
    per-layer value is, and so the prefix of its per-layer metrics (``pr_layer_07``).
    """

    name: str
    kept: str
    heldout: bool
    quantity: str


MEASURES: dict[str, Measure] = {
    "id": Measure("id", "scalar", heldout=True, quantity="pr"),
    "shuffled_id": Measure("shuffled_id", "scalar", heldout=True, quantity="pr"),
    "onehot": Measure("onehot", "class", heldout=True, quantity="pr"),
    "separation_fuzziness": Measure("separation_fuzziness", "class", heldout=False, quantity="fuzziness"),
}
MEASURE_NAMES: tuple[str, ...] = tuple(MEASURES)
SCALAR_MEASURES: tuple[str, ...] = tuple(m.name for m in MEASURES.values() if m.kept == "scalar")
CLASS_MEASURES: tuple[str, ...] = tuple(m.name for m in MEASURES.values() if m.kept == "class")
HELDOUT_MEASURES: tuple[str, ...] = tuple(m.name for m in MEASURES.values() if m.heldout)


class Target(NamedTuple):
    """Which token a sample at position t predicts, and which positions of a document are samples.

    The target of position t is the token at t + ``offset``; the samples are positions
    ``first`` .. T - 1 - ``drop`` of a document of T tokens.
    """

    offset: int
    first: int
    drop: int

    def positions(self, length: int) -> range:
        """The sample positions of a document of ``length`` tokens (empty when it is too short)."""
        return range(self.first, max(self.first, length - self.drop))


TARGETS: dict[str, Target] = {
    "next": Target(offset=1, first=0, drop=1),
    "current": Target(offset=0, first=0, drop=1),
    "previous": Target(offset=-1, first=1, drop=0),
    "next_next": Target(offset=2, first=0, drop=2),
}

NORMALIZATIONS: tuple[str, ...] = ("initialized_ln", "none", "standardize")
#: How the statistics multiply: every product in float64, or float32 products checked per state (``engine.precision``).
PRECISIONS: tuple[str, ...] = ("float64", "fast")

#: The law's metrics, in display order (``nextlaw_task.engine.law`` computes them).
LAW_METRICS: tuple[str, ...] = (
    "law_slope",
    "law_intercept",
    "law_rho",
    "law_pearson_r",
    "law_r2",
    "pr_ratio_last_first",
    "equilearning_deviation",
)
#: Bookkeeping metrics every nextlaw task reports once.
COUNT_METRICS: tuple[str, ...] = (
    "n_tokens",
    "n_docs",
    "n_docs_truncated",
    "n_docs_empty",
    "ill_posed_states",
    "hidden_size",
)
#: The states the law was actually fitted over: the first and last label and how many.
LAW_STATES: tuple[str, ...] = ("law_first_state", "law_last_state", "law_n_states")
#: Metrics where a larger value is better (lm-eval's ``higher_is_better``); every other is False.
HIGHER_IS_BETTER: frozenset[str] = frozenset({"law_r2", "n_tokens", "n_docs", "hidden_size"})

#: Per-layer quantities: a measure's value, the spread of held-out PR over folds, and the flag (1.0)
#: of a state whose fit is not a result (its value is then NaN, and the log says why).
FOLD_SPREAD = "pr_fold_std"
ILL_POSED = "ill_posed"
LAYER_QUANTITIES: tuple[str, ...] = (*dict.fromkeys(m.quantity for m in MEASURES.values()), FOLD_SPREAD, ILL_POSED)
_LAYER_METRIC = re.compile(rf"^({'|'.join(sorted(LAYER_QUANTITIES, key=len, reverse=True))})_layer_(\d+)$")


def state_width(n_layers: int) -> int:
    """Digits of a state index in metric names: 2, or as many as L has (3 for 100..999 layers)."""
    return max(2, len(str(int(n_layers))))


def layer_metric(quantity: str, state: int, n_layers: int) -> str:
    """The metric name of ``quantity`` at ``state`` of a model with ``n_layers`` blocks: ``pr_layer_07``."""
    if quantity not in LAYER_QUANTITIES:
        raise ValueError(f"unknown per-layer quantity {quantity!r}; known: {', '.join(LAYER_QUANTITIES)}")
    return f"{quantity}_layer_{int(state):0{state_width(n_layers)}d}"


def parse_layer_metric(name: str) -> tuple[str, int] | None:
    """(quantity, state) of a per-layer metric name written by :func:`layer_metric`, else None."""
    match = _LAYER_METRIC.match(name)
    return None if match is None else (match.group(1), int(match.group(2)))


def resolve_state(index: int, n_layers: int) -> int:
    """A state index as the user wrote it: 0..L as is, negative counted back from L (-1 = L, -2 = L - 1)."""
    return n_layers + 1 + index if index < 0 else index
