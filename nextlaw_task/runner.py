"""Run tokenized documents through a model once and stream every task's statistics.

Independent of lm-eval: the model wrapper hands over documents (already tokenized and truncated)
and the tasks that own them; each batch is one forward pass of the base network, and every
hidden state goes, as the hooks see it, through the task's normalization into the task's
:class:`~nextlaw_task.stats.ResidualStatistics`. Several tasks over the same corpus share the pass.
When the statistics of every state would exceed the memory budget, :func:`plan_memory` splits the
states into contiguous groups, and the corpus is run once per group (``start_pass`` /
``end_pass``), each pass stopping after its last state and freeing its statistics once solved.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from nextlaw_task.capture import StateLayout, run_decoder
from nextlaw_task.law import fit_law
from nextlaw_task.measures import MeasureResult
from nextlaw_task.normalize import FinalNorm, normalize_states
from nextlaw_task.options import MeasurementSpec, format_bytes
from nextlaw_task.stats import ResidualStatistics

logger = logging.getLogger(__name__)

#: float64 working memory per chunk of rows normalized and accumulated at once: at least MIN_CHUNK_ROWS rows,
#: and at least the hidden size d, so the working memory stays within one state's d^2 statistics and the
#: Gram update's inner dimension is no shorter than its output (big GEMMs on a GPU)
CHUNK_BYTES = 8 * 2**20
MIN_CHUNK_ROWS = 1024


@dataclass(frozen=True)
class Document:
    """One document's token ids and the (task, doc_id) requests that share it."""

    tokens: tuple[int, ...]
    owners: tuple[tuple[str, int], ...]
    truncated: bool = False


@dataclass
class Group:
    """Tasks that sample the same positions of the same documents the same way share statistics.

    They differ only in the measure computed at the end (id, shuffled id, one-hot, fuzziness), so
    one accumulator with all their measures serves them, and each batch is accumulated once.
    """

    spec: MeasurementSpec  # the first member's spec: target, normalization, states, folds, seed
    states: tuple[int, ...]
    stats: ResidualStatistics | None  # this pass's statistics (None when the pass measures none of its states)
    members: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=lambda: {"docs": 0, "truncated": 0, "too_short": 0})
    results: dict[str, MeasureResult] | None = None
    #: An in-sample ``id`` group whose positions differ from another in-sample group's (its base) only
    #: at document edges is derived from it: its targets on the base's rows ride in the base's extra
    #: column ``column``, and its own statistics hold only the rows where the two differ (signed).
    base: Group | None = None
    column: int = -1
    derived: list[Group] = field(default_factory=list)


@dataclass(frozen=True)
class _Feed:
    """What one accumulator is fed from one batch: rows of the flattened states, targets, documents,
    extra columns (a base group's) and the sign (-1: rows that a derived group lacks)."""

    group: int
    sign: int
    rows: torch.Tensor
    targets: torch.Tensor
    docs: torch.Tensor
    extra: torch.Tensor | None


def metric_name(state: int, n_layers: int, prefix: str = "pr_layer") -> str:
    """``pr_layer_07``: zero-padded to 2 digits, 3 when the model has 100 or more layers."""
    return f"{prefix}_{state:0{max(2, len(str(n_layers)))}d}"


def _sharing_key(spec: MeasurementSpec) -> tuple:
    return (spec.target, *_rows_key(spec), spec.folds)


def _rows_key(spec: MeasurementSpec) -> tuple:
    """What makes two groups' features the same on the rows they both sample."""
    return (spec.normalize, spec.layers, spec.seed, spec.data, spec.max_tokens)


def _minus(first: range, second: range) -> list[range]:
    """``first`` without ``second`` (unit-step ranges), as at most two ranges."""
    parts = [range(first.start, min(first.stop, second.start)), range(max(first.start, second.stop), first.stop)]
    return [part for part in parts if part] if second else ([first] if first else [])


class CorpusRunner:
    """Feeds batches of documents to the statistics of every task that measures them."""

    def __init__(
        self,
        layout: StateLayout,
        specs: Sequence[MeasurementSpec],
        vocab_size: int,
        data_parallel: bool = False,
    ) -> None:
        self.layout = layout
        self.data_parallel = data_parallel
        self.n_layers = layout.n_layers
        try:
            self.final_norm: FinalNorm | None = FinalNorm.of(layout.final_norm, layout.model_type)
        except ValueError:
            if any(s.normalize == "initialized_ln" for s in specs):
                raise
            self.final_norm = None
        self.before_norm = bool(self.final_norm and self.final_norm.recomputes_last and layout.uses_hooks)
        self.specs = {spec.task: spec for spec in specs}
        members: dict[tuple, list[MeasurementSpec]] = {}
        for spec in specs:
            members.setdefault(_sharing_key(spec), []).append(spec)
        self.groups: list[Group] = []
        self.group_of: dict[str, Group] = {}
        self._measures: dict[int, tuple[str, ...]] = {}
        for shared in members.values():
            first = shared[0]
            group = Group(first, first.states(self.n_layers), None, tuple(s.task for s in shared))
            self._measures[id(group)] = tuple(dict.fromkeys(s.measure for s in shared))
            self.groups.append(group)
            self.group_of.update({s.task: group for s in shared})
        bases: dict[tuple, Group] = {}
        for group in self.groups:
            if group.spec.folds:
                continue
            base = bases.setdefault(_rows_key(group.spec), group)
            if base is not group and self._measures[id(group)] == ("id",):
                group.base, group.column = base, len(base.derived)
                base.derived.append(group)
        self.states = tuple(sorted({s for group in self.groups for s in group.states}))
        self._vocab_size = vocab_size
        self._passes_done = 0
        self._counts_reduced = False
        self.start_pass(self.states)

    def state_bytes(self, hidden_size: int) -> dict[int, int]:
        """Float64 statistics each state needs, summed over the groups that measure it (no class sums)."""
        return {
            state: sum(
                ResidualStatistics.memory_bytes(1, hidden_size, self._measures[id(g)], g.spec.folds, extra_columns=len(g.derived))
                for g in self.groups
                if state in g.states
            )
            for state in self.states
        }

    def start_pass(self, states: Sequence[int], device: torch.device | str | None = None) -> None:
        """Give every group fresh statistics for its states among ``states``, kept on ``device`` (None: beside
        the features); the next batches measure those. The runner starts with a pass over every state."""
        for group in self.groups:
            if group.stats is not None and group.stats.n_tokens:
                raise RuntimeError("end_pass() must solve the current pass before another starts")
            mine = [s for s in group.states if s in states]
            group.stats = None if not mine else ResidualStatistics(
                mine, measures=self._measures[id(group)], n_folds=group.spec.folds, vocab_size=self._vocab_size,
                seed=group.spec.seed, device=device, check_values=False,  # feed() checks once per batch
                extra_columns=len(group.derived),
            )

    def end_pass(self) -> None:
        """Reduce across ranks, solve this pass's states, keep their results and free their statistics."""
        active = [group for group in self.groups if group.stats is not None]
        if self.data_parallel:  # only when the harness split the documents over the ranks
            with torch.inference_mode():  # the statistics are inference tensors, made in the forward pass
                for group in active:
                    group.stats.all_reduce()
        for group in active:
            results = (
                group.stats.compute() if group.base is None
                else {"id": group.base.stats.compute_with(group.stats, group.column)}
            )
            group.results = results if group.results is None else {
                measure: _union(group.results[measure], result) for measure, result in results.items()
            }
        for group in active:
            group.stats = None
        self._passes_done += 1

    def feed(self, batch: Sequence[Document], device: torch.device | str) -> None:
        """One forward pass over ``batch`` (any order), updating every owning task's group."""
        lengths = [len(doc.tokens) for doc in batch]
        width = max(lengths)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for i, doc in enumerate(batch):
            ids[i, : lengths[i]] = torch.tensor(doc.tokens, dtype=torch.long)
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
        top = int(ids.max()) if ids.numel() else 0
        if top >= self._vocab_size:
            raise ValueError(
                f"token id {top} is outside the tokenizer's vocabulary of {self._vocab_size}: "
                "the documents were tokenized by another tokenizer"
            )

        # The positions each group samples in each document (empty where it does not own the document).
        sampled: dict[int, list[range]] = {}
        document_ids: dict[int, list[int]] = {}
        for index, group in enumerate(self.groups):
            if group.stats is None:
                continue
            _, first, drop = group.spec.positions
            sampled[index], document_ids[index] = [], []
            for i, doc in enumerate(batch):
                owned = {doc_id for owner, doc_id in doc.owners if owner in group.members}
                if owned and (len(owned) != 1 or sum(owner in group.members for owner, _ in doc.owners) != len(group.members)):
                    raise RuntimeError(
                        f"tasks {', '.join(group.members)} measure the same corpus but were given different "
                        "documents; run them in separate lm_eval calls"
                    )
                positions = range(first, max(first, lengths[i] - drop)) if owned else range(0)
                if owned and self._passes_done == 0:
                    group.counts["docs"] += 1
                    group.counts["truncated"] += doc.truncated
                    group.counts["too_short"] += not positions
                sampled[index].append(positions)
                document_ids[index].append(owned.pop() if owned else -1)

        # What each accumulator is fed: rows of the flattened (batch * time) states, their targets,
        # documents and extra columns, and the sign. A group derived from a base (see Group) is fed
        # only the rows where its positions and the base's differ; its targets on the base's rows
        # ride in the base's extra columns.
        feeds: list[_Feed] = []
        for index, group in enumerate(self.groups):
            if group.stats is None:
                continue
            if group.base is None:
                extra = [(sampled[self.groups.index(g)], g.spec.positions[0]) for g in group.derived]
                spans = [[positions] for positions in sampled[index]]
                feeds.append(self._feed(index, 1, ids, spans, document_ids[index], group.spec.positions[0], extra))
                continue
            base = sampled[self.groups.index(group.base)]
            added = [_minus(mine, theirs) for mine, theirs in zip(sampled[index], base)]
            removed = [_minus(theirs, mine) for mine, theirs in zip(sampled[index], base)]
            feeds.append(self._feed(index, 1, ids, added, document_ids[index], group.spec.positions[0]))
            feeds.append(self._feed(index, -1, ids, removed, document_ids[index], None))
        feeds = [f for f in feeds if f.rows.numel()]
        if not feeds:
            return
        feeds = [dataclasses.replace(f, rows=f.rows.to(device), targets=f.targets.to(device), docs=f.docs.to(device),
                                     extra=None if f.extra is None else f.extra.to(device)) for f in feeds]

        # Feeds with the same normalization share one normalized copy of the rows any of them
        # samples; each then takes its own rows from it (or all of it, when they coincide).
        shared: dict[str, torch.Tensor] = {}
        for f in feeds:
            how = self.groups[f.group].spec.normalize
            shared[how] = f.rows if how not in shared else torch.cat([shared[how], f.rows])
        shared = {how: torch.unique(rows) for how, rows in shared.items()}
        picks = [
            None if torch.equal(f.rows, shared[self.groups[f.group].spec.normalize])
            else torch.searchsorted(shared[self.groups[f.group].spec.normalize], f.rows)
            for f in feeds
        ]

        # The rows go through normalization and statistics in chunks of bounded size, so the
        # float64 working memory does not grow with the batch (long documents, large batches).
        d = self.layout.hidden_size
        chunk = max(MIN_CHUNK_ROWS, CHUNK_BYTES // (8 * d), d)
        spans: list[list[tuple[int, int, int, int]]] = []
        for f, pick in zip(feeds, picks):
            total = shared[self.groups[f.group].spec.normalize].numel()
            edges = list(range(0, total, chunk)) + [total]
            bounds = edges if pick is None else torch.searchsorted(pick, torch.tensor(edges, device=pick.device)).tolist()
            spans.append([(edges[k], edges[k + 1], bounds[k], bounds[k + 1]) for k in range(len(edges) - 1)])

        dtypes: set[torch.dtype] = set()

        def sink(state: int, hidden: torch.Tensor) -> None:
            dtypes.add(hidden.dtype)
            flat = hidden.reshape(-1, hidden.shape[-1])
            for how, rows in shared.items():
                members = [
                    k for k, f in enumerate(feeds)
                    if self.groups[f.group].spec.normalize == how and state in self.groups[f.group].stats.states
                ]
                for c, start in enumerate(range(0, rows.numel(), chunk)):
                    normalized = normalize_states(
                        flat.index_select(0, rows[start : start + chunk]), state, self.n_layers, how, self.final_norm,
                        self.before_norm,
                    )
                    for k in members:
                        low, _, first, last = spans[k][c]
                        if first == last:
                            continue
                        f, pick = feeds[k], picks[k]
                        features = normalized if pick is None else normalized.index_select(0, pick[first:last] - low)
                        self.groups[f.group].stats.partial_fit(
                            state, features, f.targets[first:last], f.docs[first:last],
                            None if f.extra is None else f.extra[first:last], sign=f.sign,
                        )

        wanted = sorted({s for f in feeds for s in self.groups[f.group].stats.states})
        run_decoder(self.layout, ids.to(device), mask.to(device), wanted, sink, self.before_norm)
        # Once per batch, not per state (each check waits for the device): a non-finite feature
        # leaves a non-finite sum behind, so the first bad batch is caught here.
        for index in sorted({f.group for f in feeds}):
            group = self.groups[index]
            bad = group.stats.non_finite_states()
            if bad:
                raise ValueError(
                    f"{', '.join(group.members)}: state {bad[0]} holds NaN or infinite values: the model, "
                    f"computing in {', '.join(map(str, sorted(dtypes, key=str)))}, overflowed; run it in a wider "
                    "dtype: --model_args dtype=bfloat16 (or dtype=float32)"
                )

    @staticmethod
    def _feed(group: int, sign: int, ids: torch.Tensor, positions: list[list[range]], documents: list[int],
              offset: int | None, extra: Sequence[tuple[list[range], int]] = ()) -> _Feed:
        """Rows of ``positions`` (ranges per document), their targets (the token at position + ``offset``,
        or 0 when None), documents, and one extra column per derived group in ``extra`` (its positions and
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
        extra_column = torch.cat(columns) if columns else (torch.zeros(0, len(extra)) if extra else None)
        return _Feed(group, sign, cat(rows), cat(targets), cat(docs), extra_column)

    def finish(self, name: str) -> dict[str, float]:
        """Reduce across ranks (once per group) and turn one task's statistics into its metrics."""
        if any(g.stats is not None for g in self.groups):
            self.end_pass()
        if not self._counts_reduced:
            for g in self.groups:
                g.counts = _all_reduce_counts(g.counts) if self.data_parallel else g.counts
            self._counts_reduced = True
        group, spec = self.group_of[name], self.specs[name]
        result = group.results[spec.measure]
        if spec.folds and result.ill_posed:
            raise ValueError(
                f"{name}: held-out PR is not a result for {len(result.ill_posed)} of {len(group.states)} states "
                f"({next(iter(result.ill_posed.values()))}). Every training fold needs more samples than "
                "hidden size + 1: measure more tokens (a larger --limit or nextlaw_data corpus), or use "
                "nextlaw_equilearning for in-sample PR"
            )
        metrics: dict[str, float] = {}
        for state in group.states:
            metrics[metric_name(state, self.n_layers)] = float(result.values.get(state, math.nan))
        if result.fold_std is not None:
            for state in group.states:
                metrics[metric_name(state, self.n_layers, "pr_fold_std_layer")] = float(result.fold_std.get(state, math.nan))
        if result.ill_posed:
            logger.warning(
                "%s: %d of %d states are ill-posed and left out of the law (%s)",
                name, len(result.ill_posed), len(group.states), next(iter(result.ill_posed.values())),
            )
        usable = {s: v for s, v in result.values.items() if s not in result.ill_posed}
        last = self.n_layers if spec.law_last < 0 else spec.law_last
        fit = fit_law(usable, first=spec.law_first, last=last)
        if not fit.ok:
            logger.warning("%s: the law was not fitted: %s", name, fit.reason)
        metrics.update(fit.as_metrics())
        metrics.update(
            n_tokens=float(result.n_tokens),
            n_docs=float(group.counts["docs"]),
            n_docs_truncated=float(group.counts["truncated"]),
            ill_posed_states=float(len(result.ill_posed)),
            hidden_size=float(result.hidden_size),
        )
        return metrics


@dataclass(frozen=True)
class MemoryPlan:
    """Where the statistics live, and the states measured by each pass over the corpus."""

    device: torch.device
    passes: tuple[tuple[int, ...], ...]
    needed: int
    budget: int | None


def plan_memory(
    model_device: torch.device | str, state_bytes: dict[int, int], budget: int | None, data_parallel: bool = False
) -> MemoryPlan:
    """Keep the statistics beside the model, within ``budget`` bytes.

    ``budget`` None means no limit on the CPU and half the free memory on a GPU (the smallest over
    data-parallel ranks, so that every rank makes the same passes). Beyond the budget the states are
    split into contiguous groups that each fit, one pass over the corpus per group; a pass stops
    after its last state, so k passes cost about (k + 1) / 2 forward passes. On a GPU, when even one
    state's statistics exceed the budget, they live in CPU memory instead (one pass, with a copy of
    each batch's features to the host); on the CPU that budget is an error.
    """
    device = torch.device(model_device)
    states, needed = sorted(state_bytes), sum(state_bytes.values())
    if budget is None and device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 2
        budget = _all_reduce_ints([budget], "MIN")[0] if data_parallel else budget
    if budget is None or needed <= budget:
        return MemoryPlan(device, (tuple(states),), needed, budget)
    largest = max(state_bytes.values())
    if largest > budget:
        if device.type == "cuda":
            return MemoryPlan(torch.device("cpu"), (tuple(states),), needed, budget)
        raise ValueError(
            f"nextlaw_memory_budget is {format_bytes(budget)}, below the {format_bytes(largest)} of statistics that "
            "one hidden state needs: raise it, or leave it unset (no limit on the CPU)"
        )
    passes: list[tuple[int, ...]] = []
    current: list[int] = []
    for state in states:
        if current and sum(state_bytes[s] for s in current) + state_bytes[state] > budget:
            passes.append(tuple(current))
            current = []
        current.append(state)
    passes.append(tuple(current))
    return MemoryPlan(device, tuple(passes), needed, budget)


def _union(first: MeasureResult, second: MeasureResult) -> MeasureResult:
    """One measure's results over the states of two passes."""
    return dataclasses.replace(
        first,
        values={**first.values, **second.values},
        fold_std=None if first.fold_std is None else {**first.fold_std, **second.fold_std},
        warnings=first.warnings + second.warnings,
        ill_posed={**first.ill_posed, **second.ill_posed},
    )


def _all_reduce_counts(counts: dict[str, int]) -> dict[str, int]:
    """Sum integer counters over data-parallel ranks."""
    keys = sorted(counts)
    return dict(zip(keys, _all_reduce_ints([counts[k] for k in keys], "SUM")))


def _all_reduce_ints(values: list[int], op: str) -> list[int]:
    """``values`` reduced element-wise over data-parallel ranks by ``op`` (identity without torch.distributed)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.long, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return tensor.tolist()
