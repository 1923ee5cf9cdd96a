"""Start-up hook: make ``--model nextlaw`` and the nextlaw tasks known to lm-eval 0.4.13.

lm-eval 0.4.13 reads no plugin entry points, so ``nextlaw.pth`` (installed beside the package)
imports this module in every Python process. It imports nothing heavy: it only adds a finder
that acts once lm-eval's own modules are imported. After ``lm_eval.models`` loads, it registers
the model name ``nextlaw`` lazily (``nextlaw_task.harness.model`` is imported only when the model is
used); after ``lm_eval.tasks.manager`` loads, every ``TaskManager`` also scans nextlaw's task
folder, as if ``--include_path`` named it; after ``lm_eval.evaluator`` loads, every run checks
its nextlaw options and corpus before the model loads, and nextlaw's own errors end it with one
line (``preflight``). Without lm-eval nothing happens. Any failure here is
swallowed: a start-up hook must never break the interpreter.
"""

from __future__ import annotations

import os
import sys
import types

# At start-up this imports only modules that ``python -c pass`` has loaded anyway (and types);
# importlib.util, with what it pulls in, is imported later, inside the finder.


def tasks_dir() -> str:
    """The folder of nextlaw's task YAMLs: the installed package, or ``tasks/`` in a checkout."""
    import importlib.util

    spec = importlib.util.find_spec("nextlaw_task.tasks")
    if spec is not None and spec.submodule_search_locations:
        return next(iter(spec.submodule_search_locations))
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tasks")


def register_model(module: types.ModuleType) -> None:
    """Register ``nextlaw`` in lm-eval's model registry, lazily."""
    from lm_eval.api.registry import model_registry

    if "nextlaw" not in model_registry:
        model_registry.register("nextlaw", target="nextlaw_task.harness.model:NextlawLM")


def include_tasks(module: types.ModuleType) -> None:
    """Make every TaskManager scan nextlaw's task folder too."""
    manager = module.TaskManager
    original = manager.__init__
    if getattr(original, "_nextlaw", False):
        return

    def __init__(self, *args, include_path=None, **kwargs):
        ours = tasks_dir()
        paths = [] if include_path is None else list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        if ours not in {str(p) for p in paths}:
            paths.insert(0, ours)
        original(self, *args, include_path=paths, **kwargs)

    __init__.__doc__ = original.__doc__
    __init__._nextlaw = True
    manager.__init__ = __init__


def guard_runs(module: types.ModuleType) -> None:
    """Check nextlaw options and corpus at the start of every ``simple_evaluate`` (before the model
    loads), and print nextlaw's own errors as one line (``nextlaw_task.harness.preflight``)."""
    from nextlaw_task.harness.preflight import checked, report_error

    if not getattr(module.simple_evaluate, "_nextlaw", False):
        module.simple_evaluate = checked(module.simple_evaluate)
    if not getattr(sys.excepthook, "_nextlaw", False):
        sys.excepthook = report_error(sys.excepthook)


def report_stderrs(module: types.ModuleType) -> None:
    """Give nextlaw's corpus metrics their jackknife standard errors in lm-eval's Stderr column:
    lm-eval asks ``stderr_for_metric`` for the aggregation's error function, and knows only its own."""
    from nextlaw_task.harness.values import corpus_stderr, corpus_value

    original = module.stderr_for_metric
    if getattr(original, "_nextlaw", False):
        return

    def stderr_for_metric(metric, bootstrap_iters):
        if metric is corpus_value:
            return corpus_stderr if bootstrap_iters > 0 else None
        return original(metric, bootstrap_iters)

    stderr_for_metric.__doc__ = original.__doc__
    stderr_for_metric._nextlaw = True
    module.stderr_for_metric = stderr_for_metric


class AfterImport:
    """A ``sys.meta_path`` finder that runs an action right after a named module has executed.

    (Duck-typed rather than an ``importlib.abc.MetaPathFinder`` subclass: importing
    ``importlib.abc`` alone would cost the start-up more than everything else here.)
    """

    def __init__(self, actions: dict) -> None:
        """``actions`` maps a module name to a callable that takes the executed module."""
        self.actions = dict(actions)

    def find_spec(self, fullname, path, target=None):
        action = self.actions.pop(fullname, None)
        if action is None:
            return None
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            execute(module)
            try:
                action(module)
            except Exception:  # noqa: BLE001 - never break lm-eval's import
                pass

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Add the finder, or act at once on modules that are already imported."""
    actions = {"lm_eval.models": register_model, "lm_eval.tasks.manager": include_tasks, "lm_eval.evaluator": guard_runs,
               "lm_eval.evaluator_utils": report_stderrs}
    for name, action in list(actions.items()):
        if name in sys.modules:
            action(sys.modules[name])
            del actions[name]
    if actions:
        sys.meta_path.insert(0, AfterImport(actions))


try:
    install()
except Exception:  # noqa: BLE001
    pass
