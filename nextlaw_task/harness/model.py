"""``--model nextlaw``: lm-eval's HFLM, plus hidden-state measurement for nextlaw requests.

Everything HFLM accepts works unchanged (a hub id or local folder, ``gguf_file=``, ``dtype=``,
``device``, ``batch_size`` including ``auto``, ``parallelize``, ...), and every request that does
not come from a nextlaw task goes to HFLM untouched, so standard tasks in the same run score
exactly as under ``--model hf``. ``pretrained`` defaults to the embedded SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from tqdm import tqdm

from nextlaw_task.errors import NextlawError
from nextlaw_task.harness.embedded import embedded_model_dir, is_embedded
from nextlaw_task.harness.messages import CorpusMeasurement, NextlawRequest
from nextlaw_task.options import MeasurementSpec, format_bytes
from nextlaw_task.pipeline.capture import locate_states
from nextlaw_task.pipeline.memory import plan_memory
from nextlaw_task.pipeline.plan import Document
from nextlaw_task.pipeline.runner import CorpusRunner

logger = logging.getLogger(__name__)

#: documents tokenized per call of the (fast, batched) tokenizer
TOKENIZE_BATCH = 1024


class ModelLoadError(NextlawError, RuntimeError):
    """The model named by ``pretrained`` cannot be loaded; the message names the fix."""


def follow_harness_logging() -> None:
    """Show nextlaw's log lines the way lm-eval shows its own (its handler, its ``--verbosity``)."""
    ours, harness = logging.getLogger("nextlaw_task"), logging.getLogger("lm_eval")
    for handler in harness.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    if harness.handlers:  # a level set for nextlaw alone (--verbosity DEBUG) is kept when lower
        ours.setLevel(min(harness.getEffectiveLevel(), ours.level or logging.CRITICAL))


class NextlawLM(HFLM):
    """HFLM that also measures the prediction residual of every layer for nextlaw tasks."""

    def __init__(self, pretrained: Any = "smollm2", **kwargs: Any) -> None:
        follow_harness_logging()
        if is_embedded(pretrained):
            pretrained = str(embedded_model_dir())
        if kwargs.get("device") in (None, "cuda") and not torch.cuda.is_available():
            logger.info("nextlaw: no CUDA device, running on the CPU")
            kwargs["device"] = "cpu"
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except OSError as error:
            raise ModelLoadError(
                f"cannot load pretrained={pretrained!r}: it is not a transformers folder here and the "
                "Hugging Face Hub did not provide it (offline, misspelt or gated?). Pass a local "
                "folder, a hub id that is reachable, `gguf_file=NAME` for a GGUF file in a folder, "
                f"or `pretrained=smollm2` for the embedded model. ({error})"
            ) from error
        except ImportError as error:
            raise ModelLoadError(
                f"loading pretrained={pretrained!r} needs a package that is missing: {error}. "
                "GGUF files need `pip install gguf accelerate`."
            ) from error
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            # HFLM splits the documents only over GPUs, and numbers ranks within a node: split them over
            # every process (CPUs with gloo too), numbered over all nodes, so each is measured exactly once.
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[Any]:
        """Measure nextlaw requests; hand every other rolling request to HFLM."""
        ours = [i for i, r in enumerate(requests) if isinstance(r, NextlawRequest)]
        theirs = [i for i, r in enumerate(requests) if not isinstance(r, NextlawRequest)]
        answers: list[Any] = [None] * len(requests)
        if theirs:
            scored = super().loglikelihood_rolling([requests[i] for i in theirs], disable_tqdm=disable_tqdm)
            for i, value in zip(theirs, scored, strict=True):
                answers[i] = value
        if ours:
            measured = self._measure([requests[i] for i in ours], disable_tqdm=disable_tqdm)
            for i, value in zip(ours, measured, strict=True):
                answers[i] = value
        return answers

    def _measure(self, requests: list[NextlawRequest], disable_tqdm: bool = False) -> list[CorpusMeasurement]:
        """One forward pass per distinct document; corpus metrics for every request."""
        # The harness pads ranks to equal length by repeating a request object: count each once.
        unique = list({id(r): r for r in requests}.values())
        specs: dict[str, MeasurementSpec] = {}
        for request in unique:
            known = specs.setdefault(request.task_name, request.spec)
            if known != request.spec:
                raise ValueError(f"task {request.task_name}: requests disagree on the measurement spec")

        documents = self._documents(unique)
        layout = locate_states(self.model)
        ordered = sorted(specs.values(), key=lambda s: s.task)
        runner = CorpusRunner(layout, ordered, len(self.tokenizer), self.world_size > 1, documents)
        settings = runner.settings
        state_bytes = settings.state_bytes(layout.hidden_size)
        plan = plan_memory(self.device, state_bytes, ordered[0].memory_budget, settings.data_parallel)
        n_tokens = sum(len(d.tokens) for d in documents)
        class_bytes = plan.needed - sum(settings.state_bytes(layout.hidden_size, classes=False).values())
        logger.info(
            "nextlaw: %d documents, %d tokens, states %s of %d layers, tasks %s in %d accumulator pool(s) "
            "needing %s of float64 statistics (%s of them per-class sums; %s) on %s%s",
            len(documents), n_tokens, list(settings.states), layout.n_layers, ", ".join(sorted(specs)),
            len(settings.pools), format_bytes(plan.needed), format_bytes(class_bytes), settings.cells_note(),
            plan.device, plan.note(),
        )
        collator = Collator(documents, sort_fn=settings.batch_key)
        batch_size = self._nextlaw_batch_size(max(len(d.tokens) for d in documents))
        batches = list(collator.get_batched(n=batch_size))
        progress = tqdm(
            total=len(documents) * len(plan.passes), desc="nextlaw hidden states", disable=disable_tqdm or self.rank != 0
        )
        start = time.perf_counter()
        with progress:  # closed (its line ended) on an error too, so the error prints on a line of its own
            for states in plan.passes:
                runner.start_pass(states, plan.device)
                for batch in batches:
                    runner.feed(batch, self.device)
                    progress.update(len(batch))
                runner.end_pass()
        measured = {name: runner.finish_with_errors(name) for name in sorted(specs)}
        seconds = time.perf_counter() - start
        logger.info(
            "nextlaw: measured %d documents, %d tokens in %.2f s (%.0f tokens/s, batch size %d)",
            len(documents), n_tokens, seconds, n_tokens / max(seconds, 1e-9), batch_size,
        )
        targets = {(name, doc_id): len(specs[name].positions.positions(len(d.tokens)))
                   for d in documents for name, doc_id in d.owners}
        return [
            CorpusMeasurement(r.task_name, *measured[r.task_name][:1], targets.get((r.task_name, r.doc_id), 0),
                              measured[r.task_name][1])
            for r in requests
        ]

    def _documents(self, requests: list[NextlawRequest]) -> list[Document]:
        """The distinct documents to run, each owned by at most one request of every task.

        Tasks measuring the same text share its forward pass; a text that occurs k times in a task's
        corpus is k documents (as a brute-force fit over the corpus counts it), its i-th occurrence
        shared with the i-th occurrence in every other task. Documents longer than the model's
        context are cut there too (a GPT-2 has 1024 positions).
        """
        owners: dict[tuple[str, int, int], list[tuple[str, int]]] = defaultdict(list)
        seen: dict[tuple[str, str, int], int] = defaultdict(int)
        for request in sorted(requests, key=lambda r: (r.task_name, r.doc_id)):
            limit = min(request.spec.max_tokens, self.max_length)
            occurrence = seen[(request.task_name, request.text, limit)]
            seen[(request.task_name, request.text, limit)] += 1
            owners[(request.text, limit, occurrence)].append((request.task_name, request.doc_id))
        keys = list(owners)
        documents = []
        for start in range(0, len(keys), TOKENIZE_BATCH):
            chunk = keys[start : start + TOKENIZE_BATCH]
            encoded = self.tokenizer([text for text, _, _ in chunk], add_special_tokens=True)["input_ids"]
            for key, tokens in zip(chunk, encoded, strict=True):
                max_tokens = key[1]
                ids = np.asarray(tokens[:max_tokens], dtype=np.int32)
                documents.append(Document(ids, tuple(owners[key]), len(tokens) > max_tokens))
        return documents

    def _nextlaw_batch_size(self, longest: int) -> int:
        """The run's batch size; ``auto`` probes the largest batch of the longest document that fits."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        from accelerate.utils import find_executable_batch_size

        layout = locate_states(self.model)

        @find_executable_batch_size(starting_batch_size=self.max_batch_size)
        def probe(batch_size: int) -> int:
            ids = torch.ones((batch_size, longest), dtype=torch.long, device=self.device)
            with torch.inference_mode():
                layout.decoder(input_ids=ids)
            return batch_size

        found = probe()
        logger.info("nextlaw: batch_size auto -> %d", found)
        return found
