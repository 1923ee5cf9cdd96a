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

import ast
import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from nextlaw_task.corpus import load_corpus
from nextlaw_task.errors import NextlawError
from nextlaw_task.options import build_spec

logger = logging.getLogger(__name__)


def _key_values(text: str) -> dict[str, Any]:
    """``k=v,k=v`` model_args as lm-eval reads them (values as Python literals where they parse)."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        try:
            values[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            values[key.strip()] = value.strip()
    return values


def run_metadata(model_args: Any, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata every task of the run sees: the model_args merged with ``--metadata``."""
    merged = _key_values(model_args) if isinstance(model_args, str) else dict(model_args or {})
    return merged | dict(metadata or {})


def check_run(tasks: Any, model_args: Any, metadata: Mapping[str, Any] | None) -> None:
    """Refuse a run whose nextlaw options or corpus cannot be used, before any model is loaded."""
    names = [t for t in (tasks if isinstance(tasks, (list, tuple)) else [tasks]) if isinstance(t, str)]
    if not any(name.startswith("nextlaw") for name in names):
        return
    corpus = load_corpus(build_spec("nextlaw", {}, run_metadata(model_args, metadata)).corpus_source())
    logger.info("nextlaw: corpus %s checked: %d documents to measure", corpus.location, len(corpus.texts))


def checked(simple_evaluate: Callable[..., Any]) -> Callable[..., Any]:
    """``simple_evaluate`` that first runs :func:`check_run` on its arguments."""
    signature = inspect.signature(simple_evaluate)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        if str(bound.get("verbosity") or "").upper() == "DEBUG":  # lm-eval 0.4.13 reads only LMEVAL_LOG_LEVEL
            logging.getLogger("nextlaw_task").setLevel(logging.DEBUG)
        check_run(bound.get("tasks"), bound.get("model_args"), bound.get("metadata"))
        return simple_evaluate(*args, **kwargs)

    wrapper.__wrapped__ = simple_evaluate  # type: ignore[attr-defined]
    wrapper.__doc__ = simple_evaluate.__doc__
    wrapper._nextlaw = True  # type: ignore[attr-defined]
    return wrapper


def one_line(error: BaseException) -> str:
    """The error's message with its whitespace collapsed."""
    return " ".join(str(error).split())


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
