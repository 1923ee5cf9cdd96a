"""The package's layering and size: the folders follow the data flow and nothing reaches back.

- ``engine`` (statistics, solve, measures, law) imports neither lm-eval nor transformers;
- ``pipeline`` (capture, normalize, plan, runner) does not import lm-eval;
- ``reports`` and the shared modules (``schema``, ``options``, ``corpus``) import no torch;
- only ``harness`` imports lm-eval.

Checked twice: statically over every import statement of every module, and by importing each
layer in a fresh interpreter and listing what ``sys.modules`` then holds. Modules stay under 450
lines and functions under 60.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nextlaw_task"
FORBIDDEN = {
    "engine": ("lm_eval", "transformers", "nextlaw_task.pipeline", "nextlaw_task.harness", "nextlaw_task.reports"),
    "pipeline": ("lm_eval", "nextlaw_task.harness", "nextlaw_task.reports"),
    "reports": ("torch", "lm_eval", "transformers", "nextlaw_task.engine", "nextlaw_task.pipeline", "nextlaw_task.harness"),
    "schema": ("torch", "lm_eval", "transformers", "nextlaw_task."),
    "options": ("torch", "lm_eval", "transformers", "nextlaw_task.engine", "nextlaw_task.pipeline",
                "nextlaw_task.harness", "nextlaw_task.reports"),
    "corpus": ("torch", "lm_eval", "transformers", "nextlaw_task.engine", "nextlaw_task.pipeline",
               "nextlaw_task.harness", "nextlaw_task.reports", "nextlaw_task.options", "nextlaw_task.schema"),
    "errors": ("torch", "lm_eval", "transformers", "nextlaw_task."),
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_across_its_layer(path: Path) -> None:
    forbidden = FORBIDDEN.get(_layer(path), ())
    bad = sorted(n for n in _imports(path) if any(n == f or n.startswith(f + ".") or (f.endswith(".") and n.startswith(f))
                                                  for f in forbidden))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


@pytest.mark.subprocess
@pytest.mark.parametrize("layer", ["engine", "pipeline", "reports", "schema", "options", "corpus", "errors"])
def test_importing_a_layer_loads_nothing_it_must_not(layer: str) -> None:
    modules = [f"nextlaw_task.{layer}"] if (PACKAGE / f"{layer}.py").exists() else [
        f"nextlaw_task.{layer}.{p.stem}" for p in sorted((PACKAGE / layer).glob("*.py")) if p.stem != "__init__"
    ]
    code = f"import importlib, json, sys; [importlib.import_module(m) for m in {modules!r}]; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    roots = {name.split(".")[0] for name in loaded}
    for forbidden in FORBIDDEN[layer]:
        if forbidden.startswith("nextlaw_task"):
            continue  # the static test holds the package's own layering; the start-up hook imports harness
        assert forbidden not in roots, f"importing {layer} loaded {forbidden}"


def test_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(PACKAGE))
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long


def test_docs_point_inside_the_repository() -> None:
    assert (PACKAGE.parent / "docs" / "protocol.md").is_file()
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        assert "PROTOCOL.md" not in text and "../shared" not in text, path
