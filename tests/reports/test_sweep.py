"""Sweeps: step parsing and ordering, output files, failures, and a real run over demo checkpoints."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
from nextlaw_results_factory import FakeLmEval, close, make_dirs, parse_tables
from PIL import Image

from nextlaw_task.reports import cli, sweep
from nextlaw_task.reports.results import LAW_METRICS
from nextlaw_task.reports.sweep import SweepError, SweepTarget, checkpoint_targets, parse_step, revision_targets, run_sweep

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "step"),
    [("checkpoint-120", 120), ("checkpoint_7", 7), ("step1000", 1000), ("Step-3", 3), ("step_0", 0),
     ("checkpoint", None), ("final", None), ("checkpoint-12-old", None), ("my-step5", None)],
)  # fmt: skip
def test_parse_step(name: str, step: int | None) -> None:
    assert parse_step(name) == step


def test_checkpoints_sort_by_numeric_step_and_parents_expand(tmp_path: Path) -> None:
    make_dirs(tmp_path / "run", "checkpoint-100", "checkpoint-20", "logs")
    (extra,) = make_dirs(tmp_path, "step5")
    targets = checkpoint_targets([tmp_path / "run", extra])
    assert [(t.step, t.label) for t in targets] == [(5, "step5"), (20, "checkpoint-20"), (100, "checkpoint-100")]
    assert targets[1].model_args == f"pretrained={(tmp_path / 'run' / 'checkpoint-20').resolve()}"


def test_checkpoint_errors_name_the_folder(tmp_path: Path) -> None:
    (plain,) = make_dirs(tmp_path, "final")
    with pytest.raises(SweepError, match="final: name has no step"):
        checkpoint_targets([plain])
    with pytest.raises(SweepError, match="missing: not a checkpoint folder"):
        checkpoint_targets([tmp_path / "missing"])
    a, b = make_dirs(tmp_path, "a/checkpoint-5", "b/step5")
    with pytest.raises(SweepError, match="step 5"):
        checkpoint_targets([a, b])
    (comma,) = make_dirs(tmp_path, "x,y/step1")
    with pytest.raises(SweepError, match="cannot carry a ','"):
        checkpoint_targets([comma])
    with pytest.raises(SweepError, match="no checkpoints"):
        run_sweep([], output=tmp_path / "out")


def test_revisions_by_step_or_in_given_order() -> None:
    by_step = revision_targets("EleutherAI/pythia-14m", ["step2000", "step128", "step0"])
    assert [(t.step, t.label) for t in by_step] == [(0, "step0"), (128, "step128"), (2000, "step2000")]
    assert by_step[0].model_args == "pretrained=EleutherAI/pythia-14m,revision=step0"
    named = revision_targets("org/m", ["v2", "step1", "main"])
    assert [(t.step, t.label) for t in named] == [(0, "v2"), (1, "step1"), (2, "main")]
    with pytest.raises(SweepError, match="same step"):
        revision_targets("org/m", ["step1", "checkpoint-1"])
    with pytest.raises(SweepError, match="given twice"):
        revision_targets("org/m", ["main", "main"])


@pytest.fixture
def checkpoints(tmp_path: Path) -> Path:
    make_dirs(tmp_path / "run", "checkpoint-0", "checkpoint-50", "checkpoint-100")
    return tmp_path / "run"


def test_run_sweep_writes_table_json_csv_and_plot(
    checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLmEval()
    monkeypatch.setattr(sweep.subprocess, "run", fake)
    out = tmp_path / "out"
    result = run_sweep(checkpoint_targets([checkpoints]), "nextlaw_onehot", out, ["--limit", "5"])
    assert fake.commands[0][:3] == [sys.executable, "-m", "lm_eval"]
    assert fake.commands[0][3:] == [
        "--model", "nextlaw", "--model_args", f"pretrained={(checkpoints / 'checkpoint-0').resolve()}",
        "--tasks", "nextlaw_onehot", "--output_path", str(out / "lm_eval" / "step-0"), "--limit", "5",
    ]  # fmt: skip
    assert [p.target.step for p in result.points] == [0, 50, 100]
    assert (out / "lm_eval" / "step-50" / "lm_eval.log").read_text().startswith("evaluating")

    document = json.loads(result.json_path.read_text(), parse_constant=pytest.fail)  # strict JSON
    assert document["task"] == "nextlaw_onehot"
    assert [p["step"] for p in document["points"]] == [0, 50, 100]
    assert document["points"][0]["law_pearson_r"] is None
    assert document["points"][2]["law_slope"] == result.points[2].row.law_slope
    assert document["points"][2]["pr"]["3"] == result.points[2].row.layers[3]

    lines = list(csv.DictReader(io.StringIO(result.csv_path.read_text())))
    assert [int(line["step"]) for line in lines] == [0, 50, 100]
    for line, point in zip(lines, result.points):
        assert all(close(float(line[m]), getattr(point.row, m)) for m in LAW_METRICS)
        assert float(line["pr_layer_06"]) == point.row.layers[6]
        assert float(line["n_tokens"]) == 100 + point.target.step

    (table,) = parse_tables(result.markdown_path.read_text())
    assert [cells[:3] for cells in table[1:]] == [
        ["0", "checkpoint-0", "nextlaw_onehot"], ["50", "checkpoint-50", "nextlaw_onehot"],
        ["100", "checkpoint-100", "nextlaw_onehot"],
    ]  # fmt: skip
    with Image.open(result.plot_path) as image:
        assert (result.plot_path.name, image.size) == ("sweep.png", (1000, 750))


def test_rerun_replaces_old_results(checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.subprocess, "run", FakeLmEval())
    targets = checkpoint_targets([checkpoints])
    run_sweep(targets, output=tmp_path / "out")
    stale = tmp_path / "out" / "lm_eval" / "step-50" / "stale.txt"
    stale.write_text("old")
    result = run_sweep(targets, output=tmp_path / "out", plot_name="s.svg")
    assert not stale.exists() and len(result.points) == 3 and result.plot_path.suffix == ".svg"


def test_failed_run_reports_its_log(checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.subprocess, "run", FakeLmEval(fail_on="checkpoint-50"))
    expected = r"lm_eval failed \(exit 1\) on checkpoint-50: RuntimeError: boom \(full log: .*step-50/lm_eval.log\)"
    with pytest.raises(SweepError, match=expected):
        run_sweep(checkpoint_targets([checkpoints]), output=tmp_path / "out")


def test_run_without_results_is_an_error(checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.subprocess, "run", FakeLmEval(write=False))
    with pytest.raises(SweepError, match="no usable nextlaw results for checkpoint-0"):
        run_sweep(checkpoint_targets([checkpoints]), output=tmp_path / "out")


def test_bad_plot_name_fails_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLmEval()
    monkeypatch.setattr(sweep.subprocess, "run", fake)
    with pytest.raises(ValueError, match="png or .svg"):
        run_sweep([SweepTarget(1, "x", "pretrained=x")], output=tmp_path, plot_name="sweep.pdf")
    assert fake.commands == []


def load_train_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_demo", REPO / "tools" / "train_demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.subprocess
def test_sweep_over_demo_checkpoints_with_the_real_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: train_demo saves two tiny GPT-2 checkpoints; nextlaw sweep runs lm-eval on both."""
    demo = load_train_demo()
    args = demo.parse_args([
        "--output", str(tmp_path / "run"), "--save-steps", "0,3", "--layers", "3", "--width", "32",
        "--heads", "2", "--positions", "512", "--seq-len", "32", "--batch-size", "4", "--vocab", "300",
    ])  # fmt: skip
    log = demo.train(args)
    assert [entry["step"] for entry in log] == [0, 3] and math.isfinite(log[1]["train_loss"])
    out = tmp_path / "sweep"
    status = cli.main(["sweep", "--checkpoints", str(tmp_path / "run"), "--limit", "30", "--output", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    document = json.loads((out / "sweep.json").read_text())
    assert [p["step"] for p in document["points"]] == [0, 3]
    for point in document["points"]:
        assert point["task"] == "nextlaw_equilearning" and point["hidden_size"] == 32
        assert sorted(map(int, point["pr"])) == [0, 1, 2, 3]
        assert all(0 <= v <= 1 for v in point["pr"].values())
        assert point["law_slope"] is not None and point["n_docs"] == 30
    assert "| 3 | checkpoint-3 | nextlaw_equilearning |" in captured.out
    with Image.open(out / "sweep.png") as image:
        assert image.size == (1000, 750)
