"""The ``nextlaw`` command line: outputs of each subcommand, and one-line errors with exit 2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from nextlaw_results_factory import FakeLmEval, law_metrics, make_dirs, parse_tables, results_document, write_results
from PIL import Image

from nextlaw_task.reports import cli, sweep


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    doc = results_document("org/m", {"nextlaw_equilearning": law_metrics(), "hellaswag": {"acc": 0.41}})
    return write_results(tmp_path / "results", doc)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(args)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *needles: str) -> None:
    assert status == 2
    assert err.startswith("nextlaw: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert all(needle in err for needle in needles), err


def test_report_prints_tables_and_writes_png(
    results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(["report", str(results_file), "-o", str(tmp_path / "law.png")], capsys)
    assert status == 0
    assert out.startswith("## org/m\n") and len(parse_tables(out)) == 2
    assert out.rstrip().endswith(f"plot written to {tmp_path / 'law.png'}")
    with Image.open(tmp_path / "law.png") as image:
        assert image.size == (800, 500)


def test_report_svg_and_without_plot(results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", str(results_file), "--output", str(tmp_path / "p" / "law.svg")], capsys)[0] == 0
    assert (tmp_path / "p" / "law.svg").read_text().lstrip().startswith("<?xml")
    status, out, _ = run(["report", str(results_file)], capsys)
    assert status == 0 and "plot written" not in out and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p.write_text("{oops"), "not an lm-eval results JSON"),
        (lambda p: write_results(p.parent, results_document("m", {"arc": {"acc": 0.3}})).rename(p), "no nextlaw task"),
        (lambda p: None, "no such file"),
    ],
)
def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], make, needle: str) -> None:
    path = tmp_path / "results_bad.json"
    make(path)
    status, out, err = run(["report", str(path)], capsys)
    assert out == ""
    assert_one_line_error(status, err, needle, str(path))


def test_report_refuses_unknown_plot_suffix_before_printing(results_file: Path, tmp_path: Path, capsys) -> None:
    status, out, err = run(["report", str(results_file), "-o", str(tmp_path / "law.pdf")], capsys)
    assert out == "" and not (tmp_path / "law.pdf").exists()
    assert_one_line_error(status, err, "law.pdf", ".png or .svg")


def test_leaderboard_formats(results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["leaderboard", str(results_file.parent.parent)], capsys)
    assert status == 0 and out.startswith("## nextlaw_equilearning\n")
    assert parse_tables(out)[0][1][:3] == ["1 ★", "org/m", "embedded"]
    args = ["leaderboard", str(results_file), "--format", "csv", "--sort", "n_tokens", "--descending"]
    status, out, _ = run(args, capsys)
    (line,) = csv.DictReader(io.StringIO(out))
    scores = json.loads(results_file.read_text())["results"]
    assert status == 0 and float(line["hellaswag/acc"]) == scores["hellaswag"]["acc,none"]
    assert float(line["hellaswag/acc_stderr"]) == scores["hellaswag"]["acc_stderr,none"]
    assert float(line["n_tokens"]) == scores["nextlaw_equilearning"]["n_tokens,none"]
    status, out, _ = run(["leaderboard", str(results_file), "--format", "json"], capsys)
    (record,) = json.loads(out)
    assert status == 0 and record["law_rho"] == scores["nextlaw_equilearning"]["law_rho,none"]
    assert record["law_rho_stderr"] is None  # "N/A" in the file
    page = tmp_path / "site" / "board.html"
    status, out, _ = run(["leaderboard", str(results_file), "--format", "html", "-o", str(page)], capsys)
    assert status == 0 and out == "" and page.read_text().startswith("<!DOCTYPE html>")


def test_leaderboard_joins_benchmarks_only_from_named_files(
    results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    later = write_results(tmp_path / "later", results_document("org/m", {"arc_easy": {"acc": 0.52}}, date=2e9))
    status, out, _ = run(["leaderboard", str(results_file), str(later), "--format", "csv"], capsys)
    (line,) = csv.DictReader(io.StringIO(out))
    assert status == 0 and "arc_easy/acc" not in line  # another run of the model: not joined
    args = ["leaderboard", str(results_file), "--benchmarks", str(later), "--benchmarks", str(later), "--format", "csv"]
    status, out, _ = run(args, capsys)
    (line,) = csv.DictReader(io.StringIO(out))
    arc = json.loads(later.read_text())["results"]["arc_easy"]
    assert status == 0 and float(line["arc_easy/acc"]) == arc["acc,none"]
    assert float(line["arc_easy/acc_stderr"]) == arc["acc_stderr,none"]
    assert float(line["hellaswag/acc"]) == json.loads(results_file.read_text())["results"]["hellaswag"]["acc,none"]
    status, _, err = run(["leaderboard", str(results_file), "--benchmarks", str(tmp_path / "later")], capsys)
    assert_one_line_error(status, err, "a folder", str(tmp_path / "later"))


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["leaderboard", "{results}", "--sort", "bogus"], ["unknown sort key 'bogus'", "law_pearson_r"]),
        (["leaderboard", "{results}", "--format", "xml"], ["invalid choice: 'xml'"]),
        (["leaderboard"], ["the following arguments are required: paths"]),
        (["leaderboard", "{tmp}/nowhere"], ["nowhere: no such file or folder"]),
        ([], ["the following arguments are required: command"]),
        (["plot"], ["invalid choice: 'plot'"]),
        (["report", "{results}", "--", "--x"], ["only for 'nextlaw sweep'"]),
        (["sweep"], ["one of the arguments --checkpoints --model is required"]),
        (["sweep", "--model", "org/m"], ["--model needs --revisions"]),
        (["sweep", "--checkpoints", "{tmp}", "--revisions", "a"], ["--revisions goes with --model"]),
        (["sweep", "--checkpoints", "{tmp}", "--model", "m"], ["not allowed with argument"]),
        (["sweep", "--checkpoints", "{tmp}/nowhere"], ["nowhere: not a checkpoint folder"]),
        (["sweep", "--checkpoints", "{tmp}", "--limit", "x"], ["invalid int value: 'x'"]),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str], needles: list[str], results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = [a.format(results=results_file, tmp=tmp_path) for a in args]
    status, out, err = run(filled, capsys)
    assert out == ""
    assert_one_line_error(status, err, *needles)


def test_sweep_passes_limit_and_extra_arguments_to_lm_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLmEval()
    monkeypatch.setattr(sweep.subprocess, "run", fake)
    make_dirs(tmp_path / "run", "step10", "step2")
    out_dir = tmp_path / "out"
    status, out, err = run(
        ["sweep", "--checkpoints", str(tmp_path / "run"), "--task", "nextlaw_heldout", "--limit", "7",
         "--output", str(out_dir), "--plot", "law.svg", "--", "--batch_size", "4"],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    assert [c[c.index("--tasks") + 1] for c in fake.commands] == ["nextlaw_heldout"] * 2
    assert all(c[-4:] == ["--limit", "7", "--batch_size", "4"] for c in fake.commands)
    assert "[1/2] step 2 (step2)" in err and "[2/2] step 10 (step10)" in err
    assert [row[0] for row in parse_tables(out)[0][1:]] == ["2", "10"]
    assert f"wrote {out_dir / 'law.svg'}" in out


def test_sweep_over_revisions_builds_model_args(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLmEval()
    monkeypatch.setattr(sweep.subprocess, "run", fake)
    args = ["sweep", "--model", "org/m", "--revisions", "step20", "step3", "--output", str(tmp_path)]
    status, _, err = run(args, capsys)
    assert status == 0, err
    assert [c[c.index("--model_args") + 1] for c in fake.commands] == [
        "pretrained=org/m,revision=step3",
        "pretrained=org/m,revision=step20",
    ]


def test_failed_lm_eval_run_is_one_line(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep.subprocess, "run", FakeLmEval(fail_on="step1"))
    make_dirs(tmp_path, "step1")
    status, _, err = run(["sweep", "--checkpoints", str(tmp_path / "step1"), "--output", str(tmp_path / "o")], capsys)
    progress, error = err.splitlines(keepends=True)
    assert progress.startswith("[1/1] step 1 (step1)")
    assert_one_line_error(status, error, "lm_eval failed (exit 1) on step1: RuntimeError: boom (full log: ")


@pytest.mark.subprocess
def test_module_entry_point_exits_2_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nextlaw_task.reports.cli", "report", str(tmp_path / "none.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"nextlaw: error: {tmp_path / 'none.json'}: no such file or folder\n"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", "--help"])
    assert info.value.code == 0 and "--checkpoints" in capsys.readouterr().out


def test_interrupted_sweep_exits_130(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupt)
    make_dirs(tmp_path, "step1")
    status, _, err = run(["sweep", "--checkpoints", str(tmp_path / "step1")], capsys)
    assert (status, err) == (130, "nextlaw: interrupted\n")


def test_unwritable_output_is_one_line(results_file: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    status, _, err = run(["leaderboard", str(results_file), "-o", str(tmp_path / "file" / "board.md")], capsys)
    assert_one_line_error(status, err, str(tmp_path / "file"))

