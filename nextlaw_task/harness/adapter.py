"""Everything nextlaw needs from lm-eval's internals, in one place, with the version checks.

lm-eval has no plugin interface for a task that measures a model's hidden states. The start-up
hook (``startup``) calls these functions as lm-eval's own modules finish importing:

- :func:`register_model`: ``--model nextlaw`` in lm-eval's model registry (lazily), unless the
  harness registered it from nextlaw's ``lm_eval.models`` entry point itself;
- :func:`include_tasks`: every ``TaskManager`` also scans nextlaw's task folder (as
  ``--include_path`` would), unless it already does;
- :func:`guard_runs`: ``simple_evaluate`` checks nextlaw's options, corpus and model before the model
  loads, and nextlaw's own errors end a run with one line (``preflight``);
- :func:`report_stderrs`: lm-eval's ``stderr_for_metric`` knows nextlaw's corpus-level aggregation,
  so the jackknife standard errors reach its Stderr column;
- :func:`measure_with_hflm`: every model built on lm-eval's HFLM (``hf``, ``steered``, ``nextlaw``)
  answers nextlaw requests by measuring hidden states and hands every other request on unchanged.

:func:`forward_context` is the one HFLM-subclass detail the measurement needs: ``steered`` edits
its forward pass inside a context manager. :func:`release_process_group_at_exit` ends the data-parallel
process group lm-eval leaves open. :data:`SUPPORTED` is the range of lm-eval releases these
patches are written for; :func:`check_version` says when the installed one is outside it.
Nothing here is imported at start-up: each function imports what it patches.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import types
from typing import Any

logger = logging.getLogger(__name__)

#: lm-eval releases whose internals these patches are written and tested for (inclusive)
SUPPORTED = ((0, 4, 9), (0, 4, 13))


def _unpatched(owner: Any, name: str) -> Any:
    """``owner.name`` as lm-eval defined it, or None when nextlaw has patched it already."""
    value = getattr(owner, name)
    return None if getattr(value, "_nextlaw", False) else value


def _patch(owner: Any, name: str, replacement: Any) -> None:
    """Put ``replacement`` in place of ``owner.name`` (keeping its docstring), marked so that it is patched once."""
    replacement.__doc__ = getattr(owner, name).__doc__
    replacement._nextlaw = True
    setattr(owner, name, replacement)


def lm_eval_version() -> tuple[int, ...]:
    """The installed lm-eval release as numbers (0, 4, 13); () when unknown."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("lm_eval")
    except PackageNotFoundError:
        return ()
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_version() -> str | None:
    """A warning when the installed lm-eval is outside :data:`SUPPORTED` (None when inside)."""
    found = lm_eval_version()
    low, high = SUPPORTED
    if not found or low <= found <= high:
        return None
    return (f"nextlaw is tested with lm-eval {'.'.join(map(str, low))} to {'.'.join(map(str, high))}; "
            f"this is {'.'.join(map(str, found))}: if a run fails inside lm-eval, install a release in that range")


def tasks_dir() -> str:
    """The folder of nextlaw's task YAMLs: the installed package, or ``tasks/`` in a checkout."""
    import importlib.util

    spec = importlib.util.find_spec("nextlaw_task.tasks")
    if spec is not None and spec.submodule_search_locations:
        return next(iter(spec.submodule_search_locations))
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tasks")


def register_model(module: types.ModuleType) -> None:
    """Register ``nextlaw`` in lm-eval's model registry, lazily (unless the harness did from our entry point).

    lm-eval before 0.4.10 has a plain ``MODEL_REGISTRY`` dict and ``get_model``: ``nextlaw`` is then
    added the first time ``get_model`` is asked for it."""
    from lm_eval.api import registry

    if hasattr(registry, "model_registry"):
        if "nextlaw" not in registry.model_registry:
            registry.model_registry.register("nextlaw", target="nextlaw_task.harness.model:NextlawLM")
        return
    original = _unpatched(registry, "get_model")
    if original is None:
        return

    def get_model(model_name: str):
        if model_name == "nextlaw" and "nextlaw" not in registry.MODEL_REGISTRY:
            from nextlaw_task.harness.model import NextlawLM

            registry.MODEL_REGISTRY["nextlaw"] = NextlawLM
        return original(model_name)

    _patch(registry, "get_model", get_model)


def include_old_tasks(module: types.ModuleType) -> None:
    """lm-eval 0.4.9 to 0.4.11 (``TaskManager`` in ``lm_eval.tasks``): scan nextlaw's folder, and pass the
    run's metadata to ``class:`` tasks too, as later releases do (else ``--metadata`` would not reach them)."""
    manager = getattr(module, "TaskManager", None)
    if manager is None or manager.__module__ != module.__name__:
        return  # 0.4.12 and later: lm_eval.tasks.manager, handled by include_tasks
    include_tasks(module)
    original = _unpatched(manager, "_get_config")
    if original is None:
        return

    def _get_config(self, name):
        config = original(self, name)
        if isinstance(config, dict) and "class" in config and getattr(self, "metadata", None):
            own = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
            config = {**config, "metadata": {**own, **self.metadata}}
        return config

    _patch(manager, "_get_config", _get_config)


def include_tasks(module: types.ModuleType) -> None:
    """Make every TaskManager scan nextlaw's task folder too."""
    manager = module.TaskManager
    original = _unpatched(manager, "__init__")
    if original is None:
        return

    def __init__(self, *args, include_path=None, **kwargs):
        ours = tasks_dir()
        paths = [] if include_path is None else list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        if ours not in {str(p) for p in paths}:
            paths.insert(0, ours)
        original(self, *args, include_path=paths, **kwargs)

    _patch(manager, "__init__", __init__)


def guard_runs(module: types.ModuleType) -> None:
    """Check nextlaw options and corpus at the start of every ``simple_evaluate`` (before the model
    loads), and print nextlaw's own errors as one line (``nextlaw_task.harness.preflight``)."""
    from nextlaw_task.harness.preflight import checked, report_error

    warning = check_version()
    if warning:
        logger.warning("%s", warning)
    if not getattr(module.simple_evaluate, "_nextlaw", False):
        module.simple_evaluate = checked(module.simple_evaluate)
    if not getattr(sys.excepthook, "_nextlaw", False):
        sys.excepthook = report_error(sys.excepthook)


def report_stderrs(module: types.ModuleType) -> None:
    """Give nextlaw's corpus metrics their jackknife standard errors in lm-eval's Stderr column:
    lm-eval asks ``stderr_for_metric`` for the aggregation's error function, and knows only its own."""
    from nextlaw_task.harness.values import corpus_stderr, corpus_value

    original = _unpatched(module, "stderr_for_metric")
    if original is None:
        return

    def stderr_for_metric(metric, bootstrap_iters):
        if metric is corpus_value:
            return corpus_stderr if bootstrap_iters > 0 else None
        return original(metric, bootstrap_iters)

    _patch(module, "stderr_for_metric", stderr_for_metric)


def measure_with_hflm(module: types.ModuleType) -> None:
    """Let every HFLM (and subclass) measure nextlaw requests; all others go to its own rolling loglikelihood."""
    hflm = module.HFLM
    original = _unpatched(hflm, "loglikelihood_rolling")
    if original is None:
        return

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[Any]:
        from nextlaw_task.harness.measure import measure
        from nextlaw_task.harness.messages import NextlawRequest

        ours = [i for i, r in enumerate(requests) if isinstance(r, NextlawRequest)]
        theirs = [i for i, r in enumerate(requests) if not isinstance(r, NextlawRequest)]
        answers: list[Any] = [None] * len(requests)
        if theirs:
            scored = original(self, [requests[i] for i in theirs], disable_tqdm=disable_tqdm)
            for i, value in zip(theirs, scored, strict=True):
                answers[i] = value
        if ours:
            for i, value in zip(ours, measure(self, [requests[i] for i in ours], disable_tqdm), strict=True):
                answers[i] = value
        return answers

    _patch(hflm, "loglikelihood_rolling", loglikelihood_rolling)


def forward_context(lm: Any) -> contextlib.AbstractContextManager:
    """The context the model's own forward passes run in: ``steered``'s steering hooks, else nothing."""
    hooks = getattr(lm, "hook_to_steer", None)
    if hooks is None:
        return contextlib.nullcontext()
    from lm_eval.models.hf_steered import steer

    return steer(lm.model, hooks)


def _destroy_process_group() -> None:
    """Destroy torch's default process group if one is still open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def release_process_group_at_exit() -> None:
    """Destroy the data-parallel process group when the interpreter exits, before it is torn down.

    lm-eval never destroys the process group its accelerate start opens. With gloo (data parallelism
    on CPUs), a rank that exits with it still open aborts in about one run in ten ("terminate called
    without an active exception"), after the results are written, and the launch fails. Calling this
    more than once registers the handler once.
    """
    atexit.unregister(_destroy_process_group)
    atexit.register(_destroy_process_group)


def hf_model_status(model: Any) -> tuple[bool | None, str | None]:
    """Whether ``model`` (a registry name or an lm-eval model object) is built on HFLM, so that nextlaw can
    read its hidden states: False too when its class cannot be imported here, with the import error as the
    second item (for the message that refuses it); None when the name is not one lm-eval knows (lm-eval
    then says so itself)."""
    from lm_eval.models.huggingface import HFLM

    if not isinstance(model, str):
        return isinstance(model, HFLM), None
    from lm_eval.api.registry import get_model

    try:
        cls = get_model(model)
    except ImportError as error:  # vllm, sglang and the like need packages HFLM does not
        return False, str(error) or type(error).__name__
    except (ValueError, KeyError, AttributeError):
        return None, None
    return isinstance(cls, type) and issubclass(cls, HFLM), None


#: the modules whose import triggers each patch (``startup`` adds them as lm-eval imports)
ACTIONS = {
    "lm_eval.models": register_model,
    "lm_eval.tasks.manager": include_tasks,
    "lm_eval.tasks": include_old_tasks,
    "lm_eval.evaluator": guard_runs,
    "lm_eval.evaluator_utils": report_stderrs,
    "lm_eval.models.huggingface": measure_with_hflm,
}
