"""The installed start-up hook makes the model and the tasks known to lm-eval, cheaply."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import nextlaw_task
from lm_eval_cli import lm_eval, offline_env
from nextlaw_task.harness.startup import AfterImport

TASKS = (
    "nextlaw_equilearning", "nextlaw_onehot", "nextlaw_heldout", "nextlaw_shuffled_id",
    "nextlaw_separation_fuzziness", "nextlaw_flow_previous", "nextlaw_flow_current", "nextlaw_flow_next_next",
)


def python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=offline_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_package_is_installed_with_its_hook():
    site = Path(nextlaw_task.__file__).resolve().parent.parent
    (dist,) = importlib.metadata.distributions(name="nextlaw", path=[str(site)])
    files = {str(f) for f in dist.files}
    assert "nextlaw.pth" in files, "install the package (pip install ., not editable) before the tests"
    assert "nextlaw_task/tasks/data/austen_sentences.jsonl" in files
    groups = {ep.group: ep.value for ep in dist.entry_points}
    assert groups["lm_eval.models"] == "nextlaw_task.harness.model:NextlawLM"
    assert groups["lm_eval.tasks"] == "nextlaw_task.tasks"
    assert groups["console_scripts"] == "nextlaw_task.reports.cli:main"


@pytest.mark.subprocess
def test_hook_runs_at_startup_and_imports_nothing_heavy(tmp_path):
    out = python(
        "import sys; print('nextlaw_task.harness.startup' in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'lm_eval', 'transformers', 'numpy'}))",
        tmp_path,
    )
    assert out == "True []"


@pytest.mark.slow
@pytest.mark.subprocess
def test_model_is_registered_beside_the_harness_models(tmp_path):
    out = python(
        "from lm_eval.api.registry import get_model; print(get_model('nextlaw').__name__, get_model('hf').__name__)",
        tmp_path,
    )
    assert out == "NextlawLM HFLM"


@pytest.mark.slow
@pytest.mark.subprocess
def test_tasks_are_listed_without_include_path(tmp_path):
    listing = lm_eval("ls", "tasks", cwd=tmp_path).stdout
    for name in (*TASKS, "nextlaw"):
        assert name in listing, name


def test_after_import_acts_once_after_the_module_ran(tmp_path, monkeypatch):
    package = tmp_path / "fakeharness"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    finder = AfterImport({"fakeharness.models": lambda module: seen.append(module.LOADED)})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import fakeharness.models  # noqa: F401

    assert seen == [True]
    assert finder.actions == {}


def test_failing_action_never_breaks_the_import(tmp_path, monkeypatch):
    package = tmp_path / "fakeharness2"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = AfterImport({"fakeharness2": lambda module: 1 / 0})
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    import fakeharness2

    assert fakeharness2.VALUE == 3
