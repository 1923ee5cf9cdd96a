"""The lm-eval task: documents in, corpus-level PR per layer and the law's fit out.

Each document becomes one ``loglikelihood_rolling`` request (a :class:`NextlawRequest`) that the
``nextlaw`` model wrapper runs with hidden-state hooks. The wrapper answers every document of the
task with the same :class:`CorpusMeasurement`; ``process_results`` passes its metrics on, with the
task's own count of blank documents skipped (``n_docs_empty``), and the aggregation keeps the
corpus value. A selection that leaves a process without documents (``--limit 0``, fewer documents
than data-parallel processes) is refused before any request is built. Metric keys depend on the
model's depth, so the task learns them from the first answer (a ``class:`` task may add metric
keys at run time).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import datasets
from lm_eval.api.task import ConfigurableTask

from nextlaw_task import __version__
from nextlaw_task.corpus import Corpus, load_corpus
from nextlaw_task.harness.messages import CorpusMeasurement, NextlawModelRequired, NextlawRequest
from nextlaw_task.harness.preflight import refuse_flags
from nextlaw_task.harness.values import CorpusValue, corpus_value
from nextlaw_task.options import MeasurementSpec, OptionError, build_spec
from nextlaw_task.schema import HIGHER_IS_BETTER

logger = logging.getLogger(__name__)


def measurement_record(spec: MeasurementSpec, corpus: Corpus) -> dict[str, Any]:
    """What a results file says about how its numbers were made, beside lm-eval's own record."""
    digest = hashlib.sha256()
    for text in corpus.texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return {
        "corpus": str(corpus.location), "corpus_sha256": digest.hexdigest(), "corpus_documents": len(corpus.texts),
        "options": spec.record(), "nextlaw_version": __version__,
    }


class NextlawTask(ConfigurableTask):
    """A ``class:`` task whose YAML fixes the measure and target (see ``nextlaw_task.options``)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        self.spec: MeasurementSpec = build_spec(str(config.get("task")), config.get("dataset_kwargs"), config.get("metadata"))
        self.n_empty_docs = 0
        self._metric_names: list[str] = []
        super().__init__(config=config)

    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Read the corpus (embedded by default), skipping and counting blank documents, and record in the
        task's metadata (written to the results file) what is measured: the corpus, its fingerprint and
        every setting that shapes the numbers."""
        corpus = load_corpus(self.spec.corpus_source())
        self.config.metadata = {**(self.config.metadata or {}), "measurement": measurement_record(self.spec, corpus)}
        self.n_empty_docs = corpus.n_empty
        if corpus.n_empty:
            logger.warning("%s: skipped %d empty or whitespace documents of %s", self.spec.task, corpus.n_empty,
                           corpus.location)
        self.dataset = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": list(corpus.texts)})})

    def has_training_docs(self) -> bool:
        return False

    def has_validation_docs(self) -> bool:
        return False

    def has_test_docs(self) -> bool:
        return True

    def test_docs(self) -> datasets.Dataset:
        return self.dataset["test"]

    def build_all_requests(
        self, *, limit: int | None = None, samples: list[int] | None = None, rank: int = 0, world_size: int = 1,
        **kwargs: Any,
    ) -> None:
        """Build the requests, refusing first flags that would change what is measured without saying so,
        and a selection that leaves a process without documents.

        The harness would stop with "task.build_requests() did not find any docs!", and under data
        parallelism a rank without documents would leave the others waiting in the all-reduce.
        """
        refuse_flags(self.spec.task, kwargs)
        available = len(samples) if samples else len(self.test_docs())
        chosen = available if limit is None else min(int(limit), available)
        if chosen < 1:
            raise OptionError(
                f"{self.spec.task}: --limit {limit} selects no documents; pass --limit N with N >= 1, "
                f"or leave --limit out to measure all {available} documents"
            )
        if chosen < world_size:
            raise OptionError(
                f"{self.spec.task}: {chosen} documents for {world_size} data-parallel processes; every "
                f"process needs at least one: select at least {world_size} documents or launch fewer processes"
            )
        super().build_all_requests(limit=limit, samples=samples, rank=rank, world_size=world_size, **kwargs)

    def doc_to_text(self, doc: dict, doc_to_text: Any = None) -> str:
        return ""

    def doc_to_target(self, doc: dict, doc_to_target: Any = None) -> str:
        """No gold answer: the targets are the document's own tokens, and ``--log_samples`` records
        already hold its text (under ``doc`` and ``arguments``); a third copy would only grow them."""
        return ""

    def fewshot_context(self, doc: dict, num_fewshot: int, *args: Any, **kwargs: Any) -> str:
        return ""

    def construct_requests(self, doc: dict, ctx: Any, **kwargs: Any) -> NextlawRequest:
        return NextlawRequest(
            request_type="loglikelihood_rolling",
            doc=doc,
            arguments=(doc["text"],),
            idx=0,
            metadata=kwargs["metadata"],
            spec=self.spec,
        )

    def process_results(self, doc: dict, results: list) -> dict[str, float]:
        answer = results[0]
        if not isinstance(answer, CorpusMeasurement):
            raise NextlawModelRequired(self.spec.task)
        metrics = {name: CorpusValue(value, answer.stderrs.get(name)) for name, value in answer.metrics.items()}
        metrics["n_docs_empty"] = CorpusValue(float(self.n_empty_docs))
        if not self._metric_names:
            self._metric_names = list(metrics)
        return metrics

    def aggregation(self) -> dict[str, Callable[[Sequence[float]], float]]:
        return {name: corpus_value for name in self._metric_names}

    def higher_is_better(self) -> dict[str, bool]:
        return {name: name in HIGHER_IS_BETTER for name in self._metric_names}
