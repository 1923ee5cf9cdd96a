"""Sweep the nextlaw task over training checkpoints and chart how the law emerges.

Each checkpoint (or revision) is evaluated by its own ``python -m lm_eval --model nextlaw`` run in
a subprocess, exactly as a user would run it, so a sweep exercises the real plugin and a crash in
one run is reported with its log instead of taking the sweep's process down.

Steps: a checkpoint folder's step comes from its name, ``checkpoint-<step>`` or ``step<step>``
(``-``/``_`` separators allowed, case ignored); a folder whose own name has no step is expanded to
its subfolders that have one (so ``--checkpoints runs/demo`` takes every checkpoint in it).
Checkpoints run in ascending step order. Revisions (``pretrained=MODEL,revision=REV``) take their
step from the revision name the same way (e.g. Pythia's ``step1000``); when any revision has no
step, all keep the order given and are numbered 0, 1, 2, ... instead.

Output folder: ``sweep.json``, ``sweep.csv``, ``sweep.md`` (law metrics against step), the sweep
plot, and ``lm_eval/step-<step>/`` with each run's lm-eval results and log (replaced on re-runs).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nextlaw_task.reports.plot import image_format, save_figure, sweep_figure
from nextlaw_task.reports.report import markdown_table
from nextlaw_task.reports.results import (
    LAW_METRICS,
    ROW_COUNTS,
    NextlawRow,
    ResultsError,
    format_number,
    load_rows,
)
from nextlaw_task.schema import layer_metric

DEFAULT_TASK = "nextlaw_equilearning"
_STEP = re.compile(r"^(?:checkpoint|step)[-_]?(\d+)$", re.IGNORECASE)
#: what a failed lm_eval run ends with: nextlaw's one ``error: ...`` line, or a traceback's last line
_EXCEPTION_LINE = re.compile(r"^(?:error: |[\w.]*(?:Error|Exception|Interrupt)\b:?)")


class SweepError(ValueError):
    """A sweep that cannot start or whose lm-eval run failed."""


@dataclass(frozen=True)
class SweepTarget:
    """One model state to evaluate: its training step, a label, and lm-eval's --model_args."""

    step: int
    label: str
    model_args: str


@dataclass(frozen=True)
class SweepPoint:
    """The nextlaw measurements of one task at one step."""

    target: SweepTarget
    row: NextlawRow


@dataclass(frozen=True)
class SweepResult:
    """What a sweep measured and the files it wrote."""

    points: tuple[SweepPoint, ...]
    json_path: Path
    csv_path: Path
    markdown_path: Path
    plot_path: Path


def parse_step(name: str) -> int | None:
    """The step in ``checkpoint-<step>`` / ``step<step>``, or None."""
    match = _STEP.match(name)
    return int(match.group(1)) if match else None


def checkpoint_targets(folders: Sequence[Path | str]) -> list[SweepTarget]:
    """Checkpoint folders (expanding step-less parents) as targets, in ascending step order."""
    found: dict[int, Path] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise SweepError(f"{folder}: not a checkpoint folder")
        step = parse_step(folder.name)
        children = (
            [(step, folder)]
            if step is not None
            else [(parse_step(c.name), c) for c in folder.iterdir() if c.is_dir() and parse_step(c.name) is not None]
        )
        if not children:
            raise SweepError(f"{folder}: name has no step (checkpoint-<step> or step<step>) and no such subfolder")
        for child_step, child in children:
            if child_step in found and found[child_step].resolve() != child.resolve():
                raise SweepError(f"{child}: step {child_step} is also {found[child_step]}")
            found[child_step] = child
    return [
        SweepTarget(step, path.name, _model_args(pretrained=str(path.resolve())))
        for step, path in sorted(found.items())
    ]


def revision_targets(model: str, revisions: Sequence[str]) -> list[SweepTarget]:
    """Revisions of one model as targets: by step when every name has one, else in given order."""
    if not revisions:
        raise SweepError(f"{model}: no revisions given")
    if len(set(revisions)) < len(revisions):
        raise SweepError(f"{model}: a revision is given twice")
    steps = [parse_step(rev) for rev in revisions]
    numbered = list(zip(steps, revisions)) if None not in steps else list(enumerate(revisions))
    if len({step for step, _ in numbered}) < len(numbered):
        raise SweepError(f"{model}: two revisions name the same step")
    return [
        SweepTarget(step, rev, _model_args(pretrained=model, revision=rev))
        for step, rev in sorted(numbered, key=lambda pair: pair[0])
    ]


def run_sweep(
    targets: Sequence[SweepTarget],
    task: str = DEFAULT_TASK,
    output: Path | str = "nextlaw_sweep",
    lm_eval_args: Sequence[str] = (),
    plot_name: str = "sweep.png",
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Evaluate every target with lm-eval, then write the sweep table, JSON, CSV and plot."""
    if not targets:
        raise SweepError("no checkpoints or revisions to sweep")
    output = Path(output)
    plot_path = output / plot_name
    image_format(plot_path)
    points: list[SweepPoint] = []
    for i, target in enumerate(targets, 1):
        if log:
            log(f"[{i}/{len(targets)}] step {target.step} ({target.label}): lm_eval --tasks {task}")
        run_dir = output / "lm_eval" / f"step-{target.step}"
        points.extend(SweepPoint(target, row) for row in _evaluate(target, task, run_dir, lm_eval_args))
    output.mkdir(parents=True, exist_ok=True)
    json_path = output / "sweep.json"
    json_path.write_text(json.dumps(_json_document(task, points), indent=2, allow_nan=False) + "\n")
    csv_path = output / "sweep.csv"
    csv_path.write_text(sweep_csv(points))
    markdown_path = output / "sweep.md"
    markdown_path.write_text(sweep_markdown(points))
    save_figure(sweep_figure([(p.target.step, p.row) for p in points]), plot_path)
    return SweepResult(tuple(points), json_path, csv_path, markdown_path, plot_path)


def lm_eval_command(target: SweepTarget, task: str, output: Path, extra: Sequence[str] = ()) -> list[str]:
    """The lm-eval command line that evaluates one target."""
    return [
        sys.executable, "-m", "lm_eval",
        "--model", "nextlaw",
        "--model_args", target.model_args,
        "--tasks", task,
        "--output_path", str(output),
        *extra,
    ]  # fmt: skip


def sweep_markdown(points: Sequence[SweepPoint]) -> str:
    """Law metrics against step as a markdown table."""
    header = ["step", "checkpoint", "task", "rho", "r", "R²", "PR_1", "PR_L", "deviation", "tokens"]
    body = [
        [
            str(p.target.step), p.target.label, p.row.task,
            *(format_number(v) for v in (
                p.row.law_rho, p.row.law_pearson_r, p.row.law_r2,
                p.row.pr_first, p.row.pr_last, p.row.equilearning_deviation, p.row.n_tokens,
            )),
        ]
        for p in points
    ]  # fmt: skip
    return markdown_table(header, body, [True, False, False] + [True] * 7) + "\n"


def sweep_csv(points: Sequence[SweepPoint]) -> str:
    """Law metrics and per-state PRs against step, one line per (step, task), exact numbers."""
    last = max((p.row.last_state for p in points), default=0)
    states = sorted({s for p in points for s in p.row.states})
    quantity = points[0].row.quantity if points else "pr"
    out_columns = ["step", "label", "task", *LAW_METRICS, *ROW_COUNTS]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(out_columns + [layer_metric(quantity, s, last) for s in states])
    for p in points:
        values = [getattr(p.row, m) for m in (*LAW_METRICS, *ROW_COUNTS)]
        prs = [p.row.layers.get(s, math.nan) for s in states]
        writer.writerow([p.target.step, p.target.label, p.row.task, *map(repr, values + prs)])
    return out.getvalue()


def _evaluate(target: SweepTarget, task: str, run_dir: Path, extra: Sequence[str]) -> list[NextlawRow]:
    """Run lm-eval for one target into ``run_dir`` and read its nextlaw rows back."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    log_path = run_dir / "lm_eval.log"
    command = lm_eval_command(target, task, run_dir, extra)
    with log_path.open("w", encoding="utf-8") as log_file:
        done = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        cause = _failure_line(log_path.read_text(encoding="utf-8", errors="replace"))
        raise SweepError(f"lm_eval failed (exit {done.returncode}) on {target.label}: {cause} (full log: {log_path})")
    try:
        return load_rows([run_dir])
    except ResultsError as err:
        raise SweepError(f"lm_eval wrote no usable nextlaw results for {target.label}: {err}") from None


def _failure_line(log: str) -> str:
    """The line of a failed run's log that says why: the last exception line, else the last line."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", log) if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (errors or lines or ["(no output)"])[-1]


def _model_args(**args: str) -> str:
    """lm-eval's ``k=v,k=v`` model arguments; a comma inside a value cannot be expressed."""
    for key, value in args.items():
        if "," in value:
            raise SweepError(f"{value}: lm-eval --model_args cannot carry a ',' in {key}")
    return ",".join(f"{key}={value}" for key, value in args.items())


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_document(task: str, points: Sequence[SweepPoint]) -> dict[str, object]:
    """The sweep as strict JSON (NaN written as null)."""
    return {
        "task": task,
        "points": [
            {
                "step": p.target.step,
                "label": p.target.label,
                "model_args": p.target.model_args,
                "task": p.row.task,
                **{m: _finite_or_none(getattr(p.row, m)) for m in (*LAW_METRICS, *ROW_COUNTS)},
                "pr": {str(s): _finite_or_none(v) for s, v in p.row.layers.items()},
            }
            for p in points
        ],
    }
