"""Test helpers: synthetic lm-eval results files with the exact structure lm-eval 0.4.13 writes,
a markdown table parser, and a stand-in for the ``python -m lm_eval`` subprocess.

The layout follows ``EvaluationTracker.save_results_aggregated``: ``<out>/<model_name_sanitized>/
results_<iso time with ':' replaced by '-'>.json``, each task's metrics keyed ``"<metric>,none"``
beside ``"<metric>_stderr,none"``, and ``config.model_args`` stored as a dict (the 0.4.13 CLI) or
a ``k=v,...`` string (older callers of ``simple_evaluate``). Each task's ``configs`` entry holds the
``metadata`` lm-eval gives it (the model_args merged with ``--metadata``); nextlaw 0.3 adds the
``measurement`` (corpus, its sha256, the resolved options) there, and a standard error beside
every nextlaw metric (``"N/A"`` where there is none, as in files written before 0.3).
"""

from __future__ import annotations

import copy
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
    quantity: str = "pr",
) -> dict[str, float]:
    """Metric values of one nextlaw task whose PRs follow a law (with a small zig-zag).

    ``quantity`` names the per-layer metrics (``pr_layer_07``, ``fuzziness_layer_07``).
    """
    states = list(range(n_layers + 1)) if states is None else states
    pr = {
        s: pr0 if s == 0 else 10 ** (intercept + slope * s) * (1 + wiggle * (-1) ** s) for s in states
    }
    fit = [s for s in states if s >= 1]
    logs = np.log10([pr[s] for s in fit])
    fit_slope, fit_intercept = np.polyfit(fit, logs, 1)
    r = float(np.corrcoef(fit, logs)[0, 1])
    width = 3 if max(states) >= 100 else 2
    metrics = {f"{quantity}_layer_{s:0{width}d}": float(v) for s, v in pr.items()}
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


#: Every option a 0.3 run records when none is given (``MeasurementSpec.record``; the corpus aside).
DEFAULT_OPTIONS: dict[str, Any] = {
    "measure": "id",
    "target": "next",
    "nextlaw_split": None,
    "nextlaw_text_field": "text",
    "nextlaw_sample": None,
    "nextlaw_max_tokens": 512,
    "nextlaw_layers": "all",
    "nextlaw_normalize": "initialized_ln",
    "nextlaw_folds": 0,
    "nextlaw_law_first": 1,
    "nextlaw_law_last": -1,
    "nextlaw_seed": 666,
    "nextlaw_jackknife_groups": 10,
}
#: Metrics that never have a standard error.
COUNTS = frozenset({"n_tokens", "n_docs", "hidden_size", "n_docs_truncated", "n_docs_empty", "ill_posed_states",
                    "law_first_state", "law_last_state", "law_n_states"})


def measurement(
    corpus: str = "embedded", sha256: str | None = None, documents: int = 3000, **options: Any
) -> dict[str, Any]:
    """``configs[task]["metadata"]["measurement"]`` as nextlaw 0.3 writes it; ``options`` override the defaults."""
    return {
        "corpus": corpus,
        "corpus_sha256": sha256,
        "corpus_documents": documents,
        "options": {"nextlaw_data": None if corpus == "embedded" else corpus}
        | DEFAULT_OPTIONS
        | {f"nextlaw_{k}": v for k, v in options.items()},
        "nextlaw_version": "0.3.0",
    }


def standard_errors(metrics: Mapping[str, Any], rel: float = 0.02) -> dict[str, float]:
    """A standard error for every metric but the counts: ``rel`` of its magnitude, plus 1e-4 so none is 0."""
    return {
        name: rel * abs(value) + 1e-4
        for name, value in metrics.items()
        if name not in COUNTS and isinstance(value, float) and math.isfinite(value)
    }


def task_entry(task: str, metrics: Mapping[str, Any], stderr: Any = "N/A") -> dict[str, Any]:
    """One task under ``results``: alias, then each metric with its stderr, as lm-eval orders them.

    ``stderr`` is one value for every metric, or a mapping metric -> SE (``"N/A"`` for the others).
    """
    entry: dict[str, Any] = {"alias": task}
    for name, value in metrics.items():
        entry[f"{name},none"] = value
        entry[f"{name}_stderr,none"] = stderr.get(name, "N/A") if isinstance(stderr, Mapping) else stderr
    return entry


def results_document(
    model: str,
    tasks: Mapping[str, Mapping[str, Any]],
    revision: str | None = None,
    date: float = 1_790_000_000.0,
    model_args_as_string: bool = False,
    group_subtasks: Mapping[str, list[str]] | None = None,
    stderrs: Mapping[str, Any] | None = None,
    measurement: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A full results document; ``tasks`` maps task name to metric values (see task_entry).

    ``stderrs`` maps a task to its SEs (see task_entry; nextlaw tasks default to ``"N/A"``,
    benchmarks to 0.01). ``measurement`` goes into every nextlaw task's config metadata (a 0.3
    file); ``metadata`` (e.g. old-style ``nextlaw_*`` keys) into every task's.
    """
    args = {"pretrained": model, **({"revision": revision} if revision else {})}
    model_args: Any = ",".join(f"{k}={v}" for k, v in args.items()) if model_args_as_string else args
    stderrs = dict(stderrs or {})
    results = {
        task: task_entry(task, metrics, stderrs.get(task, "N/A" if _is_nextlaw(metrics) else 0.01))
        for task, metrics in tasks.items()
    }
    configs = {}
    for task, metrics in tasks.items():
        meta = {"version": 1.0, **args, **(metadata or {})}
        if measurement is not None and _is_nextlaw(metrics):
            meta["measurement"] = copy.deepcopy(dict(measurement))  # each task its own, as lm-eval writes
        configs[task] = {"task": task, "output_type": "loglikelihood_rolling", "metadata": meta}
    return {
        "results": results,
        "group_subtasks": dict(group_subtasks or {}),
        "configs": configs,
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


#: A realistic board: (model, layers, law slope, relative SE or None for a file of 0.2 without SEs).
BOARD_MODELS: tuple[tuple[str, int, float, float | None], ...] = (
    ("EleutherAI/pythia-410m", 24, -0.04, 0.0002),
    ("HuggingFaceTB/SmolLM2-135M", 30, -0.03, 0.0001),
    ("/home/user/checkpoints/run-7/checkpoint-12000", 12, -0.06, None),
    ("Qwen/Qwen2.5-0.5B", 24, -0.035, 0.0002),
)
BOARD_CORPUS = ("/data/corpora/austen_sentences.jsonl", "1a2b3c4d" + "5e6f" * 14)


def write_board(out: Path) -> list[Path]:
    """One results file per BOARD_MODELS entry: two nextlaw tasks (PR and fuzziness), two benchmarks.

    Files with SEs are 0.3 files (measurement metadata); the one without is an older file whose
    corpus is given by ``nextlaw_data``.
    """
    paths = []
    for i, (name, layers, slope, rel) in enumerate(BOARD_MODELS):
        eq = law_metrics(n_layers=layers, slope=slope, wiggle=0.01 * (i + 1), hidden_size=64 * (i + 2))
        fuzzy = law_metrics(n_layers=layers, slope=slope / 2, pr0=900.0, intercept=2.5, wiggle=0.02 * (4 - i),
                            hidden_size=64 * (i + 2), quantity="fuzziness")
        tasks = {
            "nextlaw_equilearning": eq,
            "nextlaw_separation_fuzziness": fuzzy,
            "arc_easy": {"acc": 0.5 + 0.05 * i},
            "hellaswag": {"acc_norm": 0.3 + 0.03 * i},
        }
        if rel is None:
            document = results_document(name, tasks, metadata={"nextlaw_data": BOARD_CORPUS[0]})
        else:
            errors = {task: standard_errors(tasks[task], rel) for task in tasks if task.startswith("nextlaw_")}
            document = results_document(name, tasks, stderrs=errors, measurement=measurement(*BOARD_CORPUS))
        paths.append(write_results(out, document))
    return paths


def _is_nextlaw(metrics: Mapping[str, Any]) -> bool:
    return "law_slope" in metrics or any(k.startswith(("pr_layer_", "fuzziness_layer_")) for k in metrics)


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
