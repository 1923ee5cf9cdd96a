"""What a nextlaw task asks the model wrapper for, and what comes back.

A nextlaw request is a ``loglikelihood_rolling`` instance that carries its document's text and
the task's measurement spec. Only the ``nextlaw`` model may run it: the start-up hook refuses
another model (and ``--use_cache``) before it loads (``preflight``), and a task answered by any
other model raises :class:`NextlawModelRequired` in ``process_results``. The answer for every
document of a task is a :class:`CorpusMeasurement` holding the corpus-level metrics, which the
task's aggregation passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lm_eval.api.instance import Instance

from nextlaw_task.errors import NextlawError
from nextlaw_task.options import MeasurementSpec


class NextlawModelRequired(NextlawError, RuntimeError):
    """A nextlaw task was run by a model whose hidden states nextlaw cannot read (not built on HFLM)."""

    def __init__(self, task: str | None, model: str | None = None, problem: str | None = None) -> None:
        which = f"`--model {model}`" if model else "this model"
        why = f"; lm-eval cannot load it here either: {problem}" if problem else ""
        super().__init__(
            f"task {task!r} measures hidden states, which {which} does not expose (vllm, sglang and API "
            f"models run elsewhere{why}): run it with `--model hf --model_args pretrained=MODEL` (or `--model "
            "nextlaw`, which adds the embedded default model); standard tasks in the same run score as "
            "under `--model hf`."
        )


@dataclass(eq=False)
class NextlawRequest(Instance):
    """A document of a nextlaw task, to be run through the model with hidden-state hooks."""

    spec: MeasurementSpec | None = None

    @property
    def text(self) -> str:
        """The document to measure."""
        return self.arguments[0]



@dataclass(frozen=True)
class CorpusMeasurement:
    """The answer to one nextlaw request: the task's corpus-level metrics, shared by all its docs."""

    task: str
    metrics: Mapping[str, float]
    n_targets: int
    #: jackknife standard errors of the metrics that have one (empty when turned off)
    stderrs: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"nextlaw: {self.n_targets} targets from this document (metrics are corpus-level)"
