"""Run tokenized documents through a model once and stream every task's statistics.

Independent of lm-eval: the model wrapper hands over documents (already tokenized and truncated)
and the tasks that own them. :class:`RunSettings` is what a run fixes once (the model's layout,
the tasks and the pools they share accumulators in); :class:`RunState` is what changes as batches
arrive (accumulators, counts, results). Each batch is planned by ``plan.plan_batch`` and carried
out here: one forward pass of the base network, every hidden state, as the hooks see it, through
the batch's feeder (``feeder.BatchFeeder``: its pools' normalization, then their accumulators, on a
side stream on a GPU). When the statistics of every state would exceed
the memory budget (``memory.plan_memory``), the corpus is run once per range of states
(``start_pass`` / ``end_pass``), each pass stopping after its last state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from nextlaw_task.engine.jackknife import cell_count
from nextlaw_task.engine.measures import MeasureResult
from nextlaw_task.engine.metrics import task_metrics, task_stderrs
from nextlaw_task.engine.precision import FAST_TOLERANCE
from nextlaw_task.engine.reduce import all_reduce_counts, all_reduce_ints, all_reduce_statistics
from nextlaw_task.engine.shared import compute_shared
from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import gather_rows_for
from nextlaw_task.errors import MeasurementError
from nextlaw_task.options import MeasurementSpec
from nextlaw_task.pipeline.capture import StateLayout, run_decoder
from nextlaw_task.pipeline.feeder import BatchFeeder
from nextlaw_task.pipeline.normalize import FinalNorm
from nextlaw_task.pipeline.plan import BatchPlan, Document, Pool, distinct_targets, plan_batch
from nextlaw_task.pipeline.streams import StatsStream, stats_stream
from nextlaw_task.schema import CLASS_MEASURES, SCALAR_MEASURES

#: float64 working memory per chunk of rows normalized and accumulated at once: at least MIN_CHUNK_ROWS rows,
#: and at least the hidden size d, so the working memory stays within one state's d^2 statistics and the
#: Gram update's inner dimension is no shorter than its output (big GEMMs on a GPU)
CHUNK_BYTES = 8 * 2**20
MIN_CHUNK_ROWS = 1024

__all__ = ["CorpusRunner", "Document", "RunSettings", "RunState"]


def _rows_key(spec: MeasurementSpec) -> tuple:
    """What makes two tasks' features the same on the rows they both sample."""
    return (spec.normalize, spec.layers, spec.seed, spec.corpus_source(), spec.max_tokens)


def _pools(specs: Sequence[MeasurementSpec], n_layers: int) -> tuple[Pool, ...]:
    """Tasks with the same target, rows and folds share one pool; an in-sample ``id`` pool whose rows
    match an earlier in-sample pool's is derived from it (see ``plan``)."""
    shared: dict[tuple, list[MeasurementSpec]] = {}
    for spec in specs:
        shared.setdefault((spec.target, *_rows_key(spec), spec.folds, spec.jackknife_groups, spec.precision),
                          []).append(spec)
    drafts = []
    for members in shared.values():
        first = members[0]
        drafts.append(dict(
            members=tuple(s.task for s in members), target=first.positions, normalize=first.normalize,
            folds=first.folds, groups=first.jackknife_groups, states=first.states(n_layers), seed=first.seed,
            precision=first.precision,
            measures=tuple(dict.fromkeys(s.measure for s in members)), derived=[], key=_rows_key(first),
        ))
    bases: dict[tuple, int] = {}
    for index, draft in enumerate(drafts):
        if draft["folds"]:
            continue
        if draft["precision"] == "fast":  # the fast check covers a pool's own rows, not rows derived from it
            continue
        base = bases.setdefault((draft["key"], draft["groups"]), index)
        if base != index and draft["measures"] == ("id",):
            draft["base"], draft["column"] = base, len(drafts[base]["derived"])
            drafts[base]["derived"].append(index)
    return tuple(Pool(**{**{k: v for k, v in d.items() if k != "key"}, "derived": tuple(d["derived"])}) for d in drafts)


@dataclass(frozen=True)
class RunSettings:
    """What a run fixes once: the model's layout and norm, the tasks, their pools, the vocabulary."""

    layout: StateLayout
    specs: Mapping[str, MeasurementSpec]
    pools: tuple[Pool, ...]
    pool_of: Mapping[str, int]
    vocab_size: int
    data_parallel: bool
    final_norm: FinalNorm | None
    before_norm: bool
    #: per pool, the class slots its class measures need (distinct targets of its documents; 0 without)
    class_slots: tuple[int, ...] = ()

    @classmethod
    def of(cls, layout: StateLayout, specs: Sequence[MeasurementSpec], vocab_size: int,
           data_parallel: bool = False, documents: Sequence[Document] = ()) -> RunSettings:
        """The settings of a run; ``documents`` (all of this process's) let the plan count class slots."""
        try:
            final_norm: FinalNorm | None = FinalNorm.of(layout.final_norm, layout.model_type)
        except ValueError:
            if any(s.normalize == "initialized_ln" for s in specs):
                raise
            final_norm = None
        pools = _pools(specs, layout.n_layers)
        pool_of = {task: index for index, pool in enumerate(pools) for task in pool.members}
        before_norm = bool(final_norm and final_norm.recomputes_last and layout.uses_hooks)
        slots = [distinct_targets(documents, p) if set(p.measures) & set(CLASS_MEASURES) else 0 for p in pools]
        if data_parallel:  # the ranks' classes are laid out as their union: at most their sum
            slots = [min(vocab_size, total) for total in all_reduce_ints(slots, "SUM")]
        return cls(layout, {s.task: s for s in specs}, pools, pool_of, vocab_size, data_parallel, final_norm,
                   before_norm, tuple(slots))

    @property
    def states(self) -> tuple[int, ...]:
        """Every state some task measures."""
        return tuple(sorted({s for pool in self.pools for s in pool.states}))

    def fast(self, index: int) -> bool:
        """Whether pool ``index`` keeps fast-precision statistics: asked for, in-sample scalar measures
        with nothing derived from them, one process (the check is made per accumulator)."""
        pool = self.pools[index]
        return (pool.precision == "fast" and not pool.folds and not pool.derived and not self.data_parallel
                and set(pool.measures) <= set(SCALAR_MEASURES))

    def accumulator(self, index: int, states: Sequence[int], device: torch.device | str | None,
                    fallback: bool = False) -> ResidualStatistics | None:
        """Fresh statistics of pool ``index`` for its states among ``states`` (None when it has none);
        ``fallback``: only for a fast pool, in float64 (its states that the check could not keep)."""
        pool = self.pools[index]
        if fallback and not self.fast(index):
            return None
        mine = [s for s in pool.states if s in states]
        return None if not mine else ResidualStatistics(
            mine, measures=pool.measures, n_folds=pool.folds, n_groups=pool.groups, vocab_size=self.vocab_size,
            seed=pool.seed,
            device=device, check_values=False, extra_columns=len(pool.derived),  # feed() checks once per batch
            class_slots=self.class_slots[index] if self.class_slots else 0,
            gather_rows=gather_rows_for(self.layout.hidden_size, device),
            precision="fast" if self.fast(index) and not fallback else "float64",
        )

    @staticmethod
    def batch_key(document: Document) -> int:
        """Sort key of the documents before batching: longest first, so batches hold documents of similar
        length (little padding). It does not depend on folds or jackknife groups: turning either on or
        off leaves the batches, hence every float32 hidden state and every point estimate, as they were;
        each batch's rows are split over the cells of documents inside the accumulator."""
        return -len(document.tokens)

    def cells_note(self) -> str:
        """How the jackknife groups and held-out folds multiply the statistics, for the log line."""
        cells = {p.groups: cell_count(p.folds, p.groups) for p in self.pools}
        if not any(cells):
            return "no jackknife"
        return "; ".join(f"{g} jackknife groups, sums kept in {c} cells of documents per state" if g
                         else f"no jackknife, {c} cells" for g, c in sorted(cells.items()))

    def state_bytes(self, hidden_size: int, classes: bool = True, device: torch.device | str | None = None) -> dict[int, int]:
        """Float64 statistics each state needs on ``device``, summed over the pools that measure it (the
        rows gathered on a GPU included); with ``classes`` the per-class sums of the class measures are
        included, else left out."""
        slots = self.class_slots or (0,) * len(self.pools)
        return {
            state: sum(
                ResidualStatistics.memory_bytes(1, hidden_size, p.measures, p.folds, slots[i] if classes else 0,
                                                len(p.derived), p.groups, gather_rows_for(hidden_size, device),
                                                "fast" if self.fast(i) else "float64")
                for i, p in enumerate(self.pools) if state in p.states
            )
            for state in self.states
        }


@dataclass
class RunState:
    """What changes during a run: each pool's accumulator for this pass, its counts and its results."""

    stats: list[ResidualStatistics | None]
    counts: list[dict[str, int]]
    results: list[dict[str, MeasureResult] | None]
    passes_done: int = 0
    counts_reduced: bool = False
    #: per state of a fast pool, the largest checked PR deviation (``engine.precision``)
    deviations: dict[int, float] = field(default_factory=dict)
    in_fallback: bool = False

    @classmethod
    def fresh(cls, n_pools: int) -> RunState:
        return cls([None] * n_pools, [{"docs": 0, "truncated": 0, "too_short": 0} for _ in range(n_pools)],
                   [None] * n_pools)


class CorpusRunner:
    """Feeds batches of documents to the statistics of every task that measures them."""

    def __init__(self, layout: StateLayout, specs: Sequence[MeasurementSpec], vocab_size: int,
                 data_parallel: bool = False, documents: Sequence[Document] = (), overlap: bool = True) -> None:
        self.settings = RunSettings.of(layout, specs, vocab_size, data_parallel, documents)
        self.state = RunState.fresh(len(self.settings.pools))
        #: run the statistics on a side stream beside the forward pass on a GPU (``pipeline.streams``);
        #: False keeps them on the model's stream (what ``benchmarks/profile_pass.py`` compares against)
        self.overlap = overlap
        self._streams: dict[torch.device, StatsStream] = {}
        self.start_pass(self.settings.states)

    def statistics(self, task: str) -> ResidualStatistics | None:
        """The accumulator of ``task``'s pool in this pass."""
        return self.state.stats[self.settings.pool_of[task]]

    def start_pass(self, states: Sequence[int], device: torch.device | str | None = None, fallback: bool = False) -> None:
        """Give every pool fresh statistics for its states among ``states``, kept on ``device`` (None: beside
        the features); the next batches measure those. The runner starts with a pass over every state.
        ``fallback``: the pass re-measures, in float64, states of fast pools (see :meth:`unchecked_states`)."""
        if any(stats is not None and stats.n_tokens for stats in self.state.stats):
            raise RuntimeError("end_pass() must solve the current pass before another starts")
        self.state.stats = [self.settings.accumulator(i, states, device, fallback) for i in range(len(self.settings.pools))]
        self.state.in_fallback = fallback

    def unchecked_states(self) -> list[int]:
        """States of fast pools whose checked PR deviation is over ``FAST_TOLERANCE``: a fallback pass re-measures them."""
        return sorted(s for s, value in self.state.deviations.items() if not value <= FAST_TOLERANCE)

    def end_pass(self) -> None:
        """Reduce across ranks, solve this pass's states, keep their results and free their statistics."""
        stats, pools = self.state.stats, self.settings.pools
        active = [i for i, s in enumerate(stats) if s is not None]
        if self.settings.data_parallel:  # only when the harness split the documents over the ranks
            with torch.inference_mode():  # the statistics are inference tensors, made in the forward pass
                for i in active:
                    all_reduce_statistics(stats[i])
        for i in active:
            if stats[i].hidden_size is None:  # no document gave this pool a sample: every state is flagged
                none = torch.empty(0, dtype=torch.int64)
                stats[i].adopt_layout(self.settings.layout.hidden_size, torch.device("cpu"), {}, none)
            base = pools[i].base
            results = stats[i].compute() if base is None else {"id": compute_shared(stats[base], stats[i], pools[i].column)}
            for state, value in stats[i].checked_deviations(results).items():
                self.state.deviations[state] = max(value, self.state.deviations.get(state, 0.0))
            if self.state.in_fallback:  # measured in float64 now: nothing left to check
                self.state.deviations.update({s: 0.0 for s in stats[i].states})
            known = self.state.results[i]
            self.state.results[i] = results if known is None else {m: known[m].union(r) for m, r in results.items()}
        self.state.stats = [None] * len(pools)
        self.state.passes_done += 1

    def feed(self, batch: Sequence[Document], device: torch.device | str) -> None:
        """One forward pass over ``batch`` (any order), updating every owning task's pool."""
        settings, state = self.settings, self.state
        active = [i for i, s in enumerate(state.stats) if s is not None]
        d = settings.layout.hidden_size
        plan = plan_batch(batch, settings.pools, active, max(MIN_CHUNK_ROWS, CHUNK_BYTES // (8 * d), d))
        top = int(plan.ids.max()) if plan.ids.numel() else 0
        if top >= settings.vocab_size:
            raise MeasurementError(
                f"token id {top} is outside the tokenizer's vocabulary of {settings.vocab_size}: "
                "the documents were tokenized by another tokenizer"
            )
        if state.passes_done == 0:
            for index, counts in plan.counts.items():
                for key in state.counts[index]:
                    state.counts[index][key] += getattr(counts, key)
        if plan.feeds:
            self._carry_out(plan.to(device))

    def _carry_out(self, plan: BatchPlan) -> None:
        """The forward pass: its hidden states through the batch's feeder, then one check of the sums."""
        settings, stats = self.settings, self.state.stats
        wanted = sorted({s for f in plan.feeds for s in stats[f.pool].states})
        device = plan.ids.device
        if device not in self._streams:
            self._streams[device] = stats_stream(device, self.overlap)
        feeder = BatchFeeder(plan, stats, settings.layout.n_layers, settings.final_norm, settings.before_norm,
                             wanted, self._streams[device])
        run_decoder(settings.layout, plan.ids, plan.mask, wanted, feeder, settings.before_norm)
        feeder.close()
        # Once per batch, not per state (each check waits for the device): a non-finite feature
        # leaves a non-finite sum behind, so the first bad batch is caught here.
        for index in sorted({f.pool for f in plan.feeds}):
            bad = stats[index].non_finite_states()
            if bad:
                raise MeasurementError(
                    f"{', '.join(settings.pools[index].members)}: state {bad[0]} holds NaN or infinite values: the "
                    f"model, computing in {', '.join(map(str, sorted(feeder.dtypes, key=str)))}, overflowed; run "
                    "it in a wider dtype: --model_args dtype=bfloat16 (or dtype=float32)"
                )

    def finish(self, task: str) -> dict[str, float]:
        """Reduce across ranks (once) and turn one task's statistics into its metrics."""
        return self.finish_with_errors(task)[0]

    def finish_with_errors(self, task: str) -> tuple[dict[str, float], dict[str, float]]:
        """One task's metrics and their jackknife standard errors (empty without jackknife groups)."""
        if any(s is not None for s in self.state.stats):
            self.end_pass()
        if not self.state.counts_reduced:
            if self.settings.data_parallel:
                self.state.counts = [all_reduce_counts(c) for c in self.state.counts]
            self.state.counts_reduced = True
        index, spec = self.settings.pool_of[task], self.settings.specs[task]
        pool, result, n_layers = self.settings.pools[index], self.state.results[index][spec.measure], self.settings.layout.n_layers
        bounds = (spec.law_first, spec.law_last)
        metrics = task_metrics(task, spec.measure, result, pool.states, n_layers, bounds, self.state.counts[index])
        return metrics, task_stderrs(spec.measure, result, pool.states, n_layers, bounds)
