"""Start-up hook: hand lm-eval's modules to nextlaw's adapter as they are imported.

lm-eval (0.4.9 to 0.4.13) reads no plugin entry points, so ``nextlaw.pth`` (installed beside the
package) imports this module in every Python process. It imports nothing heavy: it only adds a
finder that, right after one of the :data:`WATCHED` lm-eval modules has executed, calls the
matching patch of ``nextlaw_task.harness.adapter`` (which says what each does). Without lm-eval
nothing happens. Any failure here is swallowed: a start-up hook must never break the interpreter.
"""

from __future__ import annotations

import sys
import types

# At start-up this imports only modules that ``python -c pass`` has loaded anyway (and types);
# importlib.util, with what it pulls in, is imported later, inside the finder.


#: lm-eval modules after whose import ``adapter`` patches something (see ``adapter.ACTIONS``)
WATCHED = ("lm_eval.models", "lm_eval.tasks.manager", "lm_eval.tasks", "lm_eval.evaluator", "lm_eval.evaluator_utils",
           "lm_eval.models.huggingface")


def act(name: str) -> types.FunctionType:
    """The action for module ``name``: imports ``adapter`` only once lm-eval is being imported."""

    def action(module: types.ModuleType) -> None:
        from nextlaw_task.harness.adapter import ACTIONS

        ACTIONS[name](module)

    return action


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
    actions = {name: act(name) for name in WATCHED}
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
