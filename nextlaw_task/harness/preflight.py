"""What the start-up hook adds around an lm-eval run: checks before the model loads, clean errors.

lm-eval creates the model before it loads the tasks, so a bad corpus or option would only show
after the minutes a large model takes to load. :func:`check_run` reads the run's ``nextlaw_*``
options and corpus first, as the tasks will (the start-up hook calls it at the start of
``simple_evaluate``). :func:`report_error` is the hook's ``sys.excepthook``: nextlaw's own errors
(:class:`~nextlaw_task.errors.NextlawError`) end the run with one line ``error: ...`` and a
non-zero exit, the traceback only under ``--verbosity DEBUG`` (or ``LMEVAL_LOG_LEVEL=DEBUG``); any
other error keeps Python's traceback.
"""

from __future__ import annotations

import inspect
import logging
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from lm_eval.utils import simple_parse_args_string

from nextlaw_task.corpus import load_corpus
from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import gather_rows_for
from nextlaw_task.errors import NextlawError, one_line
from nextlaw_task.harness.messages import NextlawModelRequired
from nextlaw_task.options import MeasurementSpec, OptionError, build_spec, format_bytes
from nextlaw_task.pipeline.memory import available_memory
from nextlaw_task.schema import resolve_state

logger = logging.getLogger(__name__)


def run_metadata(model_args: Any, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata every task of the run sees: the model_args merged with ``--metadata``."""
    merged = simple_parse_args_string(model_args) if isinstance(model_args, str) else dict(model_args or {})
    return merged | dict(metadata or {})


#: lm-eval flags (as ``simple_evaluate`` and ``build_all_requests`` name them) that cannot apply to a
#: measurement of documents as they are: the flag, and why nextlaw refuses it rather than ignore it.
REFUSED_FLAGS = {
    "use_cache": ("--use_cache", "nextlaw metrics are corpus statistics, which lm-eval's response cache cannot store"),
    "cache_requests": ("--cache_requests", "lm-eval's request cache is keyed by task name only, so a later run on "
                       "another corpus or with other nextlaw options would reuse these documents"),
    "predict_only": ("--predict_only", "it skips the metrics, and a nextlaw task's only output is its metrics"),
    "apply_chat_template": ("--apply_chat_template", "nextlaw measures each document's own tokens, not a chat prompt"),
    "system_instruction": ("--system_instruction", "nextlaw measures each document's own tokens, with no instruction"),
    "check_integrity": ("--check_integrity", "it runs lm-eval's own task tests, and nextlaw's tests are a pytest suite "
                        "of their own (see the README)"),
}


def refuse_flags(task: str, flags: Mapping[str, Any]) -> None:
    """Refuse, in one line, a flag that nextlaw tasks cannot honour."""
    for name, (flag, why) in REFUSED_FLAGS.items():
        if flags.get(name):
            raise OptionError(
                f"{task}: {flag} is not for nextlaw tasks: {why}; leave it out, or run the nextlaw tasks in an "
                "lm_eval call of their own"
            )


def check_model(task: str, model: Any) -> None:
    """Only models built on lm-eval's HFLM expose hidden states: refuse another before it loads
    (a name lm-eval does not know is left to lm-eval's own message)."""
    from nextlaw_task.harness.adapter import hf_model_status

    if model is None or model == "nextlaw":
        return
    built_on_hflm, problem = hf_model_status(model)
    if built_on_hflm is False:
        raise NextlawModelRequired(task, model if isinstance(model, str) else type(model).__name__, problem)


def check_run(arguments: Mapping[str, Any]) -> None:
    """Refuse, before any model is loaded, a run whose nextlaw tasks cannot be measured as asked:
    ``arguments`` are ``simple_evaluate``'s (the model, flags, nextlaw options and corpus)."""
    tasks = arguments.get("tasks")
    names = [t for t in (tasks if isinstance(tasks, (list, tuple)) else [tasks]) if isinstance(t, str)]
    ours = [name for name in names if name.startswith("nextlaw")]
    if not ours:
        return
    refuse_flags(", ".join(ours), arguments)
    check_model(ours[0], arguments.get("model"))
    if arguments.get("gen_kwargs"):
        logger.warning("nextlaw: --gen_kwargs applies to generation tasks only; nextlaw tasks generate nothing")
    metadata = run_metadata(arguments.get("model_args"), arguments.get("metadata"))
    spec = build_spec(ours[0], {}, metadata)
    corpus = load_corpus(spec.corpus_source())
    logger.info("nextlaw: corpus %s checked: %d documents to measure", corpus.location, len(corpus.texts))
    documents = _selected(len(corpus.texts), arguments.get("limit"))
    if spec.folds > documents:
        raise OptionError(
            f"nextlaw_folds={spec.folds}, but the run measures {documents} documents and every fold needs at least "
            f"one: set nextlaw_folds to at most {documents}, or measure more documents"
        )
    shape = model_shape(metadata.get("pretrained"))
    if shape is not None:
        check_shape(spec, *shape, device=metadata.get("device"))


def _selected(available: int, limit: Any) -> int:
    """How many documents ``--limit`` leaves (a fraction below 1 is a share, as lm-eval reads it)."""
    if limit is None:
        return available
    limit = float(limit)
    return min(available, math.ceil(available * limit) if limit < 1 else int(limit))


def model_shape(pretrained: Any) -> tuple[int, int] | None:
    """(layers, hidden size) read from a local model folder's config, without loading the model
    (None when there is no such folder: the checks then happen once the model is loaded)."""
    if not isinstance(pretrained, str) or not (Path(pretrained).expanduser() / "config.json").is_file():
        return None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(Path(pretrained).expanduser())
    except (OSError, ValueError):
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None)
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None)
    return (int(layers), int(hidden)) if layers and hidden else None


def check_shape(spec: MeasurementSpec, n_layers: int, hidden_size: int, device: str | None = None) -> None:
    """The states, the law's bounds and the statistics' memory against the model's shape."""
    states = spec.states(n_layers)
    for key, bound in (("nextlaw_law_first", spec.law_first), ("nextlaw_law_last", spec.law_last)):
        if not 0 <= resolve_state(bound, n_layers) <= n_layers:
            raise OptionError(
                f"{key}={bound} is outside the states 0..{n_layers} of this model ({n_layers} layers; negative "
                f"values count back from L, -1 = L): choose a state in -{n_layers + 1}..{n_layers}"
            )
    first, last = spec.law_states(n_layers)
    if first > last:
        raise OptionError(
            f"nextlaw_law_first={spec.law_first} (state {first}) comes after nextlaw_law_last={spec.law_last} "
            f"(state {last}): the law is fitted from the first to the last, so swap them"
        )
    check_memory(spec, len(states), hidden_size, device)


def gpu_free_memory(device: str | None) -> int | None:
    """Free bytes on the CUDA device the model will use (None when it will run on the CPU)."""
    if not torch.cuda.is_available() or (device is not None and not str(device).startswith("cuda")):
        return None
    index = torch.device(device).index if device and ":" in str(device) else None
    return torch.cuda.mem_get_info(0 if index is None else index)[0]


def check_memory(spec: MeasurementSpec, n_states: int, hidden_size: int, device: str | None) -> None:
    """Refuse statistics that cannot fit, as the memory plan will place them: on a GPU in passes when one
    state fits its budget (half the free memory by default), else all of them in CPU memory; on a CPU
    all of them, or ``nextlaw_memory_budget``'s worth per pass, in free memory."""
    free, gpu_free = available_memory(), gpu_free_memory(device)
    gather = gather_rows_for(hidden_size, "cpu" if gpu_free is None else "cuda")
    sizes = {"n_groups": spec.jackknife_groups, "gather_rows": gather}
    need = ResidualStatistics.memory_bytes(n_states, hidden_size, (spec.measure,), spec.folds, **sizes)
    one = ResidualStatistics.memory_bytes(1, hidden_size, (spec.measure,), spec.folds, **sizes)
    if gpu_free is not None:
        budget = spec.memory_budget if spec.memory_budget is not None else gpu_free // 2
        over = f", and one state's {format_bytes(one)} is over the GPU budget of {format_bytes(budget)}"
        held, where = (0, "") if one <= budget else (need, over)
    else:
        held, where = (need if spec.memory_budget is None else min(need, spec.memory_budget)), ""
    if held <= free:
        return
    raise OptionError(
        f"the statistics of {n_states} states need {format_bytes(need)} (hidden size {hidden_size}, "
        f"nextlaw_folds={spec.folds or 0}, nextlaw_jackknife_groups={spec.jackknife_groups}), more than the {format_bytes(free)} of memory free{where}: lower "
        "nextlaw_folds, nextlaw_jackknife_groups or nextlaw_layers, or set nextlaw_memory_budget below the free memory to measure the "
        "states in passes"
    )


def without_stderrs(arguments: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata that turns nextlaw's jackknife off when ``bootstrap_iters=0`` (lm-eval's switch for
    standard errors) asks for none, so the statistics cost nothing extra; None to leave it as it is
    (an explicit ``nextlaw_jackknife_groups`` wins). It reaches the tasks through ``metadata`` when
    ``simple_evaluate`` builds the task manager itself."""
    metadata = arguments.get("metadata") or {}
    if arguments.get("bootstrap_iters") != 0 or not isinstance(metadata, dict):
        return None
    return None if "nextlaw_jackknife_groups" in metadata else {**metadata, "nextlaw_jackknife_groups": 0}


def checked(simple_evaluate: Callable[..., Any]) -> Callable[..., Any]:
    """``simple_evaluate`` that first runs :func:`check_run` on its arguments."""
    signature = inspect.signature(simple_evaluate)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        metadata = without_stderrs(bound)
        if metadata is not None:
            bound, kwargs = {**bound, "metadata": metadata}, {**kwargs, "metadata": metadata}
        if str(bound.get("verbosity") or "").upper() == "DEBUG":  # lm-eval 0.4.13 reads only LMEVAL_LOG_LEVEL
            logging.getLogger("nextlaw_task").setLevel(logging.DEBUG)
        check_run(bound)
        return simple_evaluate(*args, **kwargs)

    wrapper.__wrapped__ = simple_evaluate  # type: ignore[attr-defined]
    wrapper.__doc__ = simple_evaluate.__doc__
    wrapper._nextlaw = True  # type: ignore[attr-defined]
    return wrapper


def report_error(previous: Callable[..., Any]) -> Callable[[type, BaseException, TracebackType | None], None]:
    """An excepthook that prints nextlaw's own errors as ``error: ...`` and hands others to ``previous``."""

    def hook(kind: type, error: BaseException, trace: TracebackType | None) -> None:
        debug = any(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in ("lm_eval", "nextlaw_task"))
        if not isinstance(error, NextlawError) or debug:
            previous(kind, error, trace)
            return
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)

    hook._nextlaw = True  # type: ignore[attr-defined]
    return hook
