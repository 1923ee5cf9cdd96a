"""Run tokenized documents through a model once and stream every task's statistics.

Independent of lm-eval: the model wrapper hands over documents (already tokenized and truncated)
and the tasks that own them; each batch is one forward pass of the base network, and every
hidden state goes, as the hooks see it, through the task's normalization into the task's
:class:`~nextlaw_task.stats.ResidualStatistics`. Several tasks over the same corpus share the pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from nextlaw_task.capture import StateLayout, run_decoder
from nextlaw_task.law import fit_law
from nextlaw_task.normalize import FinalNorm, normalize_states
from nextlaw_task.options import MeasurementSpec
from nextlaw_task.stats import ResidualStatistics

logger = logging.getLogger(__name__)


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
    stats: ResidualStatistics
    members: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=lambda: {"docs": 0, "truncated": 0, "too_short": 0})
    results: dict | None = None


def metric_name(state: int, n_layers: int, prefix: str = "pr_layer") -> str:
    """``pr_layer_07``: zero-padded to 2 digits, 3 when the model has 100 or more layers."""
    return f"{prefix}_{state:0{max(2, len(str(n_layers)))}d}"


def _sharing_key(spec: MeasurementSpec) -> tuple:
    return (spec.target, spec.normalize, spec.layers, spec.folds, spec.seed, spec.data, spec.max_tokens)


class CorpusRunner:
    """Feeds batches of documents to the statistics of every task that measures them."""

    def __init__(
        self,
        layout: StateLayout,
        specs: Sequence[MeasurementSpec],
        vocab_size: int,
        device: torch.device | str | None = None,
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
        for shared in members.values():
            first = shared[0]
            states = first.states(self.n_layers)
            measures = tuple(dict.fromkeys(s.measure for s in shared))
            stats = ResidualStatistics(
                states, measures=measures, n_folds=first.folds, vocab_size=vocab_size, seed=first.seed, device=device
            )
            group = Group(first, states, stats, tuple(s.task for s in shared))
            self.groups.append(group)
            self.group_of.update({s.task: group for s in shared})
        self.states = tuple(sorted({s for group in self.groups for s in group.states}))

    def memory_bytes(self, hidden_size: int, n_classes: int = 0) -> int:
        """Accumulator memory of every group, for the pre-run log line."""
        return sum(
            ResidualStatistics.memory_bytes(len(g.states), hidden_size, g.stats.measures, g.spec.folds, n_classes)
            for g in self.groups
        )

    def feed(self, batch: Sequence[Document], device: torch.device | str) -> None:
        """One forward pass over ``batch`` (any order), updating every owning task's group."""
        lengths = [len(doc.tokens) for doc in batch]
        width = max(lengths)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for i, doc in enumerate(batch):
            ids[i, : lengths[i]] = torch.tensor(doc.tokens, dtype=torch.long)
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()

        # Rows of the flattened (batch * time) states that each group samples, with targets and docs.
        plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for index, group in enumerate(self.groups):
            offset, first, drop = group.spec.positions
            rows, targets, docs = [], [], []
            for i, doc in enumerate(batch):
                owned = {doc_id for owner, doc_id in doc.owners if owner in group.members}
                if not owned:
                    continue
                if len(owned) != 1 or sum(owner in group.members for owner, _ in doc.owners) != len(group.members):
                    raise RuntimeError(
                        f"tasks {', '.join(group.members)} measure the same corpus but were given different "
                        "documents; run them in separate lm_eval calls"
                    )
                group.counts["docs"] += 1
                group.counts["truncated"] += doc.truncated
                positions = range(first, lengths[i] - drop)
                if not positions:
                    group.counts["too_short"] += 1
                    continue
                rows.append(torch.arange(positions.start, positions.stop) + i * width)
                targets.append(ids[i, positions.start + offset : positions.stop + offset])
                docs.append(torch.full((len(positions),), owned.pop(), dtype=torch.long))
            if rows:
                plan[index] = (torch.cat(rows).to(device), torch.cat(targets).to(device), torch.cat(docs).to(device))
        if not plan:
            return

        # Groups with the same normalization share one normalized copy of the rows any of them
        # samples; each then takes its own rows from it (or all of it, when they coincide).
        shared: dict[str, torch.Tensor] = {}
        for index in plan:
            how = self.groups[index].spec.normalize
            shared[how] = plan[index][0] if how not in shared else torch.cat([shared[how], plan[index][0]])
        shared = {how: torch.unique(rows) for how, rows in shared.items()}
        picks = {
            index: None
            if torch.equal(rows, shared[self.groups[index].spec.normalize])
            else torch.searchsorted(shared[self.groups[index].spec.normalize], rows)
            for index, (rows, _, _) in plan.items()
        }

        def sink(state: int, hidden: torch.Tensor) -> None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            normalized: dict[str, torch.Tensor] = {}
            for index, (_, targets, docs) in plan.items():
                group = self.groups[index]
                if state not in group.states:
                    continue
                how = group.spec.normalize
                if how not in normalized:
                    normalized[how] = normalize_states(
                        flat.index_select(0, shared[how]), state, self.n_layers, how, self.final_norm, self.before_norm
                    )
                pick = picks[index]
                features = normalized[how] if pick is None else normalized[how].index_select(0, pick)
                try:
                    group.stats.partial_fit(state, features, targets, docs)
                except ValueError:
                    if bool(torch.isfinite(features).all()):
                        raise
                    raise ValueError(
                        f"{', '.join(group.members)}: state {state} holds NaN or infinite values: the model, "
                        f"computing in {hidden.dtype}, overflowed; run it in a wider dtype: "
                        "--model_args dtype=bfloat16 (or dtype=float32)"
                    ) from None

        wanted = sorted({s for index in plan for s in self.groups[index].states})
        run_decoder(self.layout, ids.to(device), mask.to(device), wanted, sink, self.before_norm)

    def finish(self, name: str) -> dict[str, float]:
        """Reduce across ranks (once per group) and turn one task's statistics into its metrics."""
        group, spec = self.group_of[name], self.specs[name]
        if group.results is None:
            if self.data_parallel:  # only when the harness split the documents over the ranks
                with torch.inference_mode():  # the statistics are inference tensors, made in the forward pass
                    group.stats.all_reduce()
                group.counts = _all_reduce_counts(group.counts)
            group.results = group.stats.compute()
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


def accumulator_device(model_device: torch.device | str, needed: int, budget: int | None) -> torch.device:
    """Where the statistics live: beside the model, unless on a GPU they would exceed the budget.

    ``budget`` None means half the GPU memory free now. Kept in CPU memory instead, the statistics
    cost a device-to-host copy of each batch's features, but never an out-of-memory error.
    """
    device = torch.device(model_device)
    if device.type != "cuda":
        return device
    if budget is None:
        budget = torch.cuda.mem_get_info(device)[0] // 2
    return device if needed <= budget else torch.device("cpu")


def _all_reduce_counts(counts: dict[str, int]) -> dict[str, int]:
    """Sum integer counters over data-parallel ranks (identity without torch.distributed)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(counts)
    keys = sorted(counts)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([counts[k] for k in keys], dtype=torch.long, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))
