"""Measure nextlaw requests with any lm-eval model built on HFLM (``--model nextlaw``, ``hf``, ``steered``).

The model object supplies what HFLM holds: the transformers model and tokenizer, the device, the
batch size (``auto`` too), the context length and the data-parallel rank and world size. Every
forward pass runs inside :func:`adapter.forward_context`, so a model that edits its own forward
pass (lm-eval's ``steered``) is measured as it computes.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import numpy as np
import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from tqdm import tqdm

from nextlaw_task.engine.precision import FAST_TOLERANCE
from nextlaw_task.harness.adapter import forward_context, release_process_group_at_exit
from nextlaw_task.harness.messages import CorpusMeasurement, NextlawRequest
from nextlaw_task.options import MeasurementSpec, format_bytes
from nextlaw_task.pipeline.capture import locate_states
from nextlaw_task.pipeline.memory import plan_memory
from nextlaw_task.pipeline.plan import Document
from nextlaw_task.pipeline.runner import CorpusRunner

logger = logging.getLogger(__name__)

#: documents tokenized per call of the (fast, batched) tokenizer
TOKENIZE_BATCH = 1024


def measure(lm: HFLM, requests: list[NextlawRequest], disable_tqdm: bool = False) -> list[CorpusMeasurement]:
    """One forward pass of ``lm``'s model per distinct document; corpus metrics for every request."""
    # The harness pads ranks to equal length by repeating a request object: count each once.
    unique = list({id(r): r for r in requests}.values())
    specs: dict[str, MeasurementSpec] = {}
    for request in unique:
        known = specs.setdefault(request.task_name, request.spec)
        if known != request.spec:
            raise ValueError(f"task {request.task_name}: requests disagree on the measurement spec")

    data_parallel = lm.world_size > 1
    if data_parallel:
        release_process_group_at_exit()
    documents = documents_of(lm, unique)
    layout = locate_states(lm.model)
    ordered = sorted(specs.values(), key=lambda s: s.task)
    runner = CorpusRunner(layout, ordered, len(lm.tokenizer), data_parallel, documents)
    settings = runner.settings
    state_bytes = settings.state_bytes(layout.hidden_size, device=lm.device)
    plan = plan_memory(lm.device, state_bytes, ordered[0].memory_budget, settings.data_parallel)
    n_tokens = sum(len(d.tokens) for d in documents)
    class_bytes = plan.needed - sum(settings.state_bytes(layout.hidden_size, False, lm.device).values())
    logger.info(
        "nextlaw: %d documents, %d tokens, states %s of %d layers, tasks %s in %d accumulator pool(s) "
        "needing %s of float64 statistics (%s of them per-class sums; %s) on %s%s",
        len(documents), n_tokens, list(settings.states), layout.n_layers, ", ".join(sorted(specs)),
        len(settings.pools), format_bytes(plan.needed), format_bytes(class_bytes), settings.cells_note(),
        plan.device, plan.note(),
    )
    collator = Collator(documents, sort_fn=settings.batch_key)
    batch_size = batch_size_for(lm, max(len(d.tokens) for d in documents))
    batches = list(collator.get_batched(n=batch_size))
    progress = tqdm(
        total=len(documents) * len(plan.passes), desc="nextlaw hidden states", disable=disable_tqdm or lm.rank != 0
    )
    start = time.perf_counter()
    # the progress bar is closed (its line ended) on an error too, so the error prints on a line of its own
    with progress, forward_context(lm):
        for states in plan.passes:
            run_pass(runner, batches, states, plan.device, lm.device, progress)
        checked, redo = dict(runner.state.deviations), runner.unchecked_states()
        if redo:  # the states the fast precision could not keep, measured again in float64, planned like the rest
            again = plan_memory(lm.device, {s: state_bytes[s] for s in redo}, ordered[0].memory_budget)
            progress.total += len(documents) * len(again.passes)
            for states in again.passes:
                run_pass(runner, batches, states, again.device, lm.device, progress, fallback=True)
    log_precision(checked, redo)
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

def log_precision(checked: dict[int, float], redo: list[int]) -> None:
    """Report what the fast precision's check found (nothing in float64 precision)."""
    if checked:
        kept = [v for v in checked.values() if v <= FAST_TOLERANCE]
        logger.info(
            "nextlaw: fast precision: the largest checked PR deviation from float64 is %s over %d states "
            "(tolerance %.0e)%s", f"{max(kept):.2g}" if kept else "n/a", len(kept), FAST_TOLERANCE,
            f"; states {redo} could not be kept and were measured again in float64" if redo else "",
        )


def run_pass(runner: CorpusRunner, batches: list, states, statistics_device, model_device, progress,
             fallback: bool = False) -> None:
    """One pass over the corpus measuring ``states`` (in float64 for fast pools when ``fallback``)."""
    runner.start_pass(states, statistics_device, fallback)
    for batch in batches:
        runner.feed(batch, model_device)
        progress.update(len(batch))
    runner.end_pass()


def documents_of(lm: HFLM, requests: list[NextlawRequest]) -> list[Document]:
    """The distinct documents to run, each owned by at most one request of every task.

    Tasks measuring the same text share its forward pass; a text that occurs k times in a task's
    corpus is k documents (as a brute-force fit over the corpus counts it), its i-th occurrence
    shared with the i-th occurrence in every other task. Documents longer than the model's
    context are cut there too (a GPT-2 has 1024 positions).
    """
    owners: dict[tuple[str, int, int], list[tuple[str, int]]] = defaultdict(list)
    seen: dict[tuple[str, str, int], int] = defaultdict(int)
    for request in sorted(requests, key=lambda r: (r.task_name, r.doc_id)):
        limit = min(request.spec.max_tokens, lm.max_length)
        occurrence = seen[(request.task_name, request.text, limit)]
        seen[(request.task_name, request.text, limit)] += 1
        owners[(request.text, limit, occurrence)].append((request.task_name, request.doc_id))
    keys = list(owners)
    documents = []
    for start in range(0, len(keys), TOKENIZE_BATCH):
        chunk = keys[start : start + TOKENIZE_BATCH]
        encoded = lm.tokenizer([text for text, _, _ in chunk], add_special_tokens=True)["input_ids"]
        for key, tokens in zip(chunk, encoded, strict=True):
            max_tokens = key[1]
            ids = np.asarray(tokens[:max_tokens], dtype=np.int32)
            documents.append(Document(ids, tuple(owners[key]), len(tokens) > max_tokens))
    return documents


def batch_size_for(lm: HFLM, longest: int) -> int:
    """The run's batch size; ``auto`` probes the largest batch of the longest document that fits."""
    if lm.batch_size != "auto":
        return int(lm.batch_size)
    from accelerate.utils import find_executable_batch_size

    layout = locate_states(lm.model)

    @find_executable_batch_size(starting_batch_size=lm.max_batch_size)
    def probe(batch_size: int) -> int:
        ids = torch.ones((batch_size, longest), dtype=torch.long, device=lm.device)
        with torch.inference_mode():
            layout.decoder(input_ids=ids)
        return batch_size

    found = probe()
    logger.info("nextlaw: batch_size auto -> %d", found)
    return found
