"""Test helpers: synthetic lm-eval results files with the exact structure lm-eval 0.4.13 writes,
a markdown table parser, and a stand-in for the ``python -m lm_eval`` subprocess.

The layout follows ``EvaluationTracker.save_results_aggregated``: ``<out>/<model_name_sanitized>/
results_<iso time with ':' replaced by '-'>.json``, each task's metrics keyed ``"<metric>,none"``
beside ``"<metric>_stderr,none"``, and ``config.model_args`` stored as a dict (the 0.4.13 CLI) or
a ``k=v,...`` string (older callers of ``simple_evaluate``).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lm_eval.utils import sanitize_model_name

from nextlaw_task.reports.sweep import parse_step


def law_metrics(
    n_layers: int = 6,
    slope: float = -0.08,
    intercept: float = -0.05,
    pr0: float = 0.97,
    hidden_size: int = 128,
    n_tokens: int = 4321,
    n_docs: int = 50,
    wiggle: float = 0.02,
    states: list[int] | None = None,
) -> dict[str, float]:
    """Metric values of one nextlaw task whose PRs follow a law (with a small zig-zag)."""
    states = list(range(n_layers + 1)) if states is None else states
    pr = {
        s: pr0 if s == 0 else 10 ** (intercept + slope * s) * (1 + wiggle * (-1) ** s) for s in states
    }
    fit = [s for s in states if s >= 1]
    logs = np.log10([pr[s] for s in fit])
    fit_slope, fit_intercept = np.polyfit(fit, logs, 1)
    r = float(np.corrcoef(fit, logs)[0, 1])
    width = 3 if max(states) >= 100 else 2
    metrics = {f"pr_layer_{s:0{width}d}": float(v) for s, v in pr.items()}
    metrics.update(
        law_slope=float(fit_slope),
        law_intercept=float(fit_intercept),
        law_rho=float(10**fit_slope),
        law_pearson_r=r,
        law_r2=r * r,
        pr_ratio_last_first=pr[fit[-1]] / pr[fit[0]],
        equilearning_deviation=float(np.std(logs - (fit_intercept + fit_slope * np.array(fit)))),
        n_tokens=float(n_tokens),
        n_docs=float(n_docs),
        hidden_size=float(hidden_size),
    )
    return metrics


def task_entry(task: str, metrics: Mapping[str, Any], stderr: Any = "N/A") -> dict[str, Any]:
    """One task under ``results``: alias, then each metric with its stderr, as lm-eval orders them."""
    entry: dict[str, Any] = {"alias": task}
    for name, value in metrics.items():
        entry[f"{name},none"] = value
        entry[f"{name}_stderr,none"] = stderr
    return entry


def results_document(
    model: str,
    tasks: Mapping[str, Mapping[str, Any]],
    revision: str | None = None,
    date: float = 1_790_000_000.0,
    model_args_as_string: bool = False,
    group_subtasks: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A full results document; ``tasks`` maps task name to metric values (see task_entry)."""
    args = {"pretrained": model, **({"revision": revision} if revision else {})}
    model_args: Any = ",".join(f"{k}={v}" for k, v in args.items()) if model_args_as_string else args
    results = {
        task: task_entry(task, metrics, "N/A" if _is_nextlaw(metrics) else 0.01)
        for task, metrics in tasks.items()
    }
    return {
        "results": results,
        "group_subtasks": dict(group_subtasks or {}),
        "configs": {task: {"task": task, "output_type": "loglikelihood_rolling"} for task in tasks},
        "versions": {task: 1.0 for task in tasks},
        "n-shot": {task: 0 for task in tasks},
        "higher_is_better": {task: {} for task in tasks},
        "n-samples": {task: {"original": 3000, "effective": 50} for task in tasks},
        "config": {
            "model": "nextlaw",
            "model_args": model_args,
            "batch_size": 1,
            "batch_sizes": [],
            "device": None,
            "use_cache": None,
            "limit": 50.0,
            "bootstrap_iters": 100000,
            "gen_kwargs": {},
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": None,
        "date": date,
        "transformers_version": "5.24.0",
        "lm_eval_version": "0.4.13",
        "upper_git_hash": None,
        "task_hashes": {},
        "model_source": "nextlaw",
        "model_name": model,
        "model_name_sanitized": sanitize_model_name(model),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": None,
        "chat_template": None,
        "chat_template_sha": None,
        "total_evaluation_time_seconds": "12.5",
    }


def write_results(out: Path, document: Mapping[str, Any], stamp: str = "2026-11-26T10-00-00.000000") -> Path:
    """Write like lm-eval: ``out/<sanitized model>/results_<stamp>.json``, NaN as a bare NaN."""
    folder = out / document["model_name_sanitized"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def _is_nextlaw(metrics: Mapping[str, Any]) -> bool:
    return "law_slope" in metrics or any(k.startswith("pr_layer_") for k in metrics)


def close(a: float, b: float, rel: float = 0.0) -> bool:
    """Equal, NaN equal to NaN, within ``rel`` relative tolerance."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def parse_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in ``text`` as rows of cells (header first, rule dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if not all(set(c) <= set("-:|") for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def number(cell: str) -> float:
    """A table cell back as a float."""
    return math.nan if cell == "nan" else float(cell)


def make_dirs(root: Path, *names: str) -> list[Path]:
    """Create folders ``root/name`` (parents included) and return them."""
    paths = [root / name for name in names]
    for path in paths:
        path.mkdir(parents=True)
    return paths


class FakeLmEval:
    """Stands in for ``python -m lm_eval``: records commands and writes results like lm-eval."""

    def __init__(self, fail_on: str | None = None, write: bool = True) -> None:
        self.commands: list[list[str]] = []
        self.fail_on, self.write = fail_on, write

    def __call__(self, command: list[str], stdout: Any, **_: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        args = dict(zip(command[3::2], command[4::2]))
        pretrained = args["--model_args"].split("pretrained=")[1].split(",")[0]
        stdout.write(f"evaluating {pretrained}\nRuntimeError: boom\nnextlaw hidden states:   0%|   | 0/30\r")
        if self.fail_on and self.fail_on in pretrained:
            return subprocess.CompletedProcess(command, 1)
        if self.write:
            step = parse_step(Path(pretrained).name) or 0
            metrics = law_metrics(slope=-0.001 * step, n_tokens=100 + step)
            if step == 0:
                metrics["law_pearson_r"] = math.nan
            write_results(Path(args["--output_path"]), results_document(pretrained, {args["--tasks"]: metrics}))
        return subprocess.CompletedProcess(command, 0)
