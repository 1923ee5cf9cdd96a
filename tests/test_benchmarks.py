"""The pipeline benchmark runs end to end (tiny random Llama) and its brute force equals nextlaw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_pipeline.py"


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    subprocess.run(
        [sys.executable, str(BENCH), "--model", "random-llama-tiny", "--sentences", "20", "--scale", "2",
         "--repeats", "2", "--big-documents", "300", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    stem = out / "pipeline_random-llama-tiny_cpu"
    return json.loads(stem.with_suffix(".json").read_text()), stem.with_suffix(".md").read_text()


def test_every_run_and_ratio_is_reported(tiny_benchmark: tuple[dict, str]) -> None:
    report, markdown = tiny_benchmark
    assert list(report["runs"]) == [
        "a", "a0", "afast", "floor", "b", "c", "group", "a x2", "c x2", "a pinned", "a x2 pinned", "a big", "b big"
    ]
    assert report["runs"]["a"]["documents"] == 20 and report["runs"]["a x2"]["documents"] == 40
    assert report["runs"]["a big"]["documents"] == 300 and report["runs"]["a big"]["tokens"] == report["runs"]["b big"]["tokens"]
    assert {run["tokens"] for name, run in report["runs"].items() if "x2" not in name and "big" not in name} == {
        report["runs"]["a"]["tokens"]
    }
    assert set(report["ratios"]) == {
        "a / floor", "a / a0", "afast / floor", "a / b", "c / a", "group / a", "RSS growth of a at scale", "RSS growth of a at scale, mmap pinned",
        "peak RSS on the big corpus, a / b",
    }
    big = report["runs"]["a big"]["peak_rss_mib"] / report["runs"]["b big"]["peak_rss_mib"]
    assert report["ratios"]["peak RSS on the big corpus, a / b"] == big
    assert report["ratios"]["c / a"] == report["runs"]["c"]["seconds"] / report["runs"]["a"]["seconds"]
    assert report["ratios"]["a / a0"] == report["runs"]["a"]["seconds"] / report["runs"]["a0"]["seconds"]
    for name in ("a", "a0", "afast", "floor", "group"):  # repeated: the fastest counts
        assert len(report["runs"][name]["all_seconds"]) == 2
        assert report["runs"][name]["seconds"] == min(report["runs"][name]["all_seconds"])
        assert report["runs"][name]["peak_rss_mib"] == max(report["runs"][name]["all_peak_rss_mib"])
    smallest = min(report["runs"]["a"]["all_peak_rss_mib"])
    assert report["ratios"]["RSS growth of a at scale"] == report["runs"]["a x2"]["peak_rss_mib"] / smallest - 1
    pinned = report["runs"]["a x2 pinned"]["peak_rss_mib"] / report["runs"]["a pinned"]["peak_rss_mib"] - 1
    assert report["ratios"]["RSS growth of a at scale, mmap pinned"] == pinned
    assert report["runs"]["a pinned"]["pr"] == report["runs"]["a"]["pr"]
    assert "all_seconds" not in report["runs"]["c"]
    for name in report["ratios"]:
        assert f"| {name} | {report['ratios'][name]:.3f} |" in markdown


def test_brute_force_gives_the_same_pr_as_nextlaw(tiny_benchmark: tuple[dict, str]) -> None:
    report, _ = tiny_benchmark
    runs = report["runs"]
    assert sorted(map(int, runs["a"]["pr"])) == sorted(map(int, runs["c"]["pr"])) == [0, 1, 2]
    assert report["largest_relative_pr_difference"].keys() == {"c vs a", "c x2 vs a x2", "a0 vs a", "afast vs a"}
    assert max(report["largest_relative_pr_difference"].values()) < 1e-6
    assert report["largest_relative_pr_difference"]["a0 vs a"] < 1e-12  # the jackknife leaves the PRs as they are
    assert report["largest_relative_pr_difference"]["afast vs a"] < 1e-5  # float32 products, checked to 1e-6
    assert runs["a"]["pr"] != runs["a x2"]["pr"]


def test_runs_can_be_chosen(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(BENCH), "--model", "random-llama-tiny", "--sentences", "12", "--repeats", "1", "--runs", "a", "floor",
         "--out", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )
    report = json.loads((tmp_path / "pipeline_random-llama-tiny_cpu.json").read_text())
    assert list(report["runs"]) == ["a", "floor"] and list(report["ratios"]) == ["a / floor"]
    assert "| c / a | n/a |" in (tmp_path / "pipeline_random-llama-tiny_cpu.md").read_text()


def test_the_stderr_benchmark_compares_the_jackknife_with_the_spread_over_parts(tmp_path: Path) -> None:
    """Small parts (40 sentences, more tokens than SmolLM2's 576 dimensions): every number comes from the runs."""
    bench = BENCH.parent / "bench_stderr.py"
    subprocess.run([sys.executable, str(bench), "--parts", "3", "--sentences", "40", "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True)
    report = json.loads((tmp_path / "stderr.json").read_text())
    rows = report["rows"]
    assert [r["state"] for r in rows] == list(range(len(rows))) and len(rows) == 31  # SmolLM2: 30 layers
    for row in rows:
        assert row["sd_across_parts"] > 0 and row["jackknife_se_rms"] > 0
        assert row["ratio"] == row["jackknife_se_rms"] / row["sd_across_parts"]
    assert f"| 5 | {rows[5]['pr_mean']:.4f} |" in (tmp_path / "stderr.md").read_text()


def test_the_profile_times_every_stage_in_both_precisions(tmp_path: Path) -> None:
    bench = BENCH.parent / "profile_pass.py"
    done = subprocess.run([sys.executable, str(bench), "--model", "random-llama-tiny", "--sentences", "20",
                           "--repeats", "1", "--precision", "float64", "fast", "--out", str(tmp_path)],
                          check=True, capture_output=True, text=True)
    seconds = json.loads((tmp_path / "profile_random-llama-tiny_cpu.json").read_text())["seconds"]
    stages = ["floor", "hooks", "normalize", "statistics (float64)", "solve (float64)", "statistics (fast)", "solve (fast)"]
    assert list(seconds) == stages and all(value > 0 for value in seconds.values())
    assert f"| solve (fast) | {seconds['solve (fast)']:.2f} |" in done.stdout


def test_the_profile_times_the_gram_updates_beside_the_floor_on_a_thread(tmp_path: Path) -> None:
    """``--beside``: the updates alone and on a thread beside the floor, and the share hidden, from those times."""
    bench = BENCH.parent / "profile_pass.py"
    done = subprocess.run([sys.executable, str(bench), "--model", "random-llama-tiny", "--sentences", "20",
                           "--repeats", "1", "--beside", "--out", str(tmp_path)],
                          check=True, capture_output=True, text=True)
    report = json.loads((tmp_path / "profile_random-llama-tiny_cpu.json").read_text())
    seconds = report["seconds"]
    assert list(seconds)[-2:] == ["updates (float64)", "floor beside updates"] and all(v > 0 for v in seconds.values())
    alone, both = seconds["updates (float64)"], seconds["floor beside updates"]
    assert report["hidden_share"] == (seconds["floor"] + alone - both) / alone
    assert f"{report['hidden_share']:.1%} of their {alone:.2f} s hidden" in done.stdout


def test_beside_is_refused_on_a_gpu(tmp_path: Path) -> None:
    bench = BENCH.parent / "profile_pass.py"
    done = subprocess.run([sys.executable, str(bench), "--device", "cuda", "--beside", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--beside measures a CPU" in done.stderr


def test_the_fast_precision_benchmark_reports_what_the_check_covers(tmp_path: Path) -> None:
    """Per state of SmolLM2, the deviation the check reports is at least the actual one (or inf: re-measured)."""
    bench = BENCH.parent / "fast_precision.py"
    done = subprocess.run([sys.executable, str(bench), "--sentences", "60", "--out", str(tmp_path)],
                          check=True, capture_output=True, text=True)
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines() if line.startswith("| ") and "state" not in line]
    assert [int(r[0]) for r in rows] == list(range(31))
    for state, pr, actual, checked in rows:
        assert 0 < float(pr) < 1 and float(actual) <= float(checked), state


def test_the_core_benchmark_times_row_blocks_in_both_precisions(tmp_path: Path) -> None:
    """``--row-blocks``: a row's Gram update cost per block length in float64 and fast (added at once and in
    float32 chunks), and the jackknife solve."""
    bench = BENCH.parent / "bench_core.py"
    out = tmp_path / "core.json"
    done = subprocess.run([sys.executable, str(bench), "--dims", "24", "--batch", "64", "--tokens", "128", "--repeats", "1",
                           "--row-blocks", "8", "40", "--cells", "3", "--device", "cpu", "--out", str(out)],
                          check=True, capture_output=True, text=True)
    (blocks,) = json.loads(out.read_text())["row_blocks"]
    keys = [f"{p}_{n}_rows_us_per_row" for n in (8, 40) for p in ("float64", "fast", "fast_chunked")]
    assert blocks["d"] == 24 and all(blocks[k] > 0 for k in keys) and blocks["jackknife_factorizations_ms"] > 0
    line = "d=24, Gram update per row (us) by rows an update, float64 / fast / fast chunked: 8: "
    assert line + " / ".join(f"{blocks[k]:.2f}" for k in keys[:3]) + "; 40: " in done.stdout
    assert "jackknife solve, 4 factorizations" in done.stdout
