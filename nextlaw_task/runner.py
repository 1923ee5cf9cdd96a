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
class TaskRun:
    """The running statistics and counters of one task."""

    spec: MeasurementSpec
    states: tuple[int, ...]
    stats: ResidualStatistics
    counts: dict[str, int] = field(default_factory=lambda: {"docs": 0, "truncated": 0, "too_short": 0})


def metric_name(state: int, n_layers: int, prefix: str = "pr_layer") -> str:
    """``pr_layer_07``: zero-padded to 2 digits, 3 when the model has 100 or more layers."""
    return f"{prefix}_{state:0{max(2, len(str(n_layers)))}d}"


class CorpusRunner:
    """Feeds batches of documents to the statistics of every task that measures them."""

    def __init__(
        self,
        layout: StateLayout,
        specs: Sequence[MeasurementSpec],
        vocab_size: int,
        device: torch.device | str | None = None,
    ) -> None:
        self.layout = layout
        self.n_layers = layout.n_layers
        try:
            self.final_norm: FinalNorm | None = FinalNorm.of(layout.final_norm, layout.model_type)
        except ValueError:
            if any(s.normalize == "initialized_ln" for s in specs):
                raise
            self.final_norm = None
        self.before_norm = bool(self.final_norm and self.final_norm.recomputes_last and layout.uses_hooks)
        self.tasks: dict[str, TaskRun] = {}
        for spec in specs:
            states = spec.states(self.n_layers)
            stats = ResidualStatistics(
                states, measures=(spec.measure,), n_folds=spec.folds, vocab_size=vocab_size, seed=spec.seed, device=device
            )
            self.tasks[spec.task] = TaskRun(spec, states, stats)
        self.states = tuple(sorted({s for run in self.tasks.values() for s in run.states}))

    def feed(self, batch: Sequence[Document], device: torch.device | str) -> None:
        """One forward pass over ``batch`` (any order), updating every owning task."""
        lengths = [len(doc.tokens) for doc in batch]
        width = max(lengths)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        for i, doc in enumerate(batch):
            ids[i, : lengths[i]] = torch.tensor(doc.tokens, dtype=torch.long)
        mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()

        # Rows of the flattened (batch * time) states that each task samples, with targets and docs.
        plan: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for name, run in self.tasks.items():
            offset, first, drop = run.spec.positions
            rows, targets, docs = [], [], []
            for i, doc in enumerate(batch):
                for owner, doc_id in doc.owners:
                    if owner != name:
                        continue
                    run.counts["docs"] += 1
                    run.counts["truncated"] += doc.truncated
                    positions = range(first, lengths[i] - drop)
                    if not positions:
                        run.counts["too_short"] += 1
                        continue
                    rows.append(torch.arange(positions.start, positions.stop) + i * width)
                    targets.append(ids[i, positions.start + offset : positions.stop + offset])
                    docs.append(torch.full((len(positions),), doc_id, dtype=torch.long))
            if rows:
                plan[name] = (torch.cat(rows).to(device), torch.cat(targets).to(device), torch.cat(docs).to(device))
        if not plan:
            return

        def sink(state: int, hidden: torch.Tensor) -> None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            for name, (rows, targets, docs) in plan.items():
                run = self.tasks[name]
                if state not in run.states:
                    continue
                features = normalize_states(
                    flat.index_select(0, rows), state, self.n_layers, run.spec.normalize, self.final_norm, self.before_norm
                )
                run.stats.partial_fit(state, features, targets, docs)

        wanted = sorted({s for name in plan for s in self.tasks[name].states})
        run_decoder(self.layout, ids.to(device), mask.to(device), wanted, sink, self.before_norm)

    def finish(self, name: str) -> dict[str, float]:
        """Reduce across ranks (if any) and turn one task's statistics into its metrics."""
        run = self.tasks[name]
        run.stats.all_reduce()
        counts = _all_reduce_counts(run.counts)
        result = run.stats.compute()[run.spec.measure]
        metrics: dict[str, float] = {}
        for state in run.states:
            metrics[metric_name(state, self.n_layers)] = float(result.values.get(state, math.nan))
        if result.fold_std is not None:
            for state in run.states:
                metrics[metric_name(state, self.n_layers, "pr_fold_std_layer")] = float(result.fold_std.get(state, math.nan))
        if result.ill_posed:
            logger.warning(
                "%s: %d of %d states are ill-posed and left out of the law (%s)",
                name, len(result.ill_posed), len(run.states), next(iter(result.ill_posed.values())),
            )
        usable = {s: v for s, v in result.values.items() if s not in result.ill_posed}
        last = self.n_layers if run.spec.law_last < 0 else run.spec.law_last
        fit = fit_law(usable, first=run.spec.law_first, last=last)
        if not fit.ok:
            logger.warning("%s: the law was not fitted: %s", name, fit.reason)
        metrics.update(fit.as_metrics())
        metrics.update(
            n_tokens=float(result.n_tokens),
            n_docs=float(counts["docs"]),
            n_docs_truncated=float(counts["truncated"]),
            ill_posed_states=float(len(result.ill_posed)),
            hidden_size=float(result.hidden_size),
        )
        return metrics


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
