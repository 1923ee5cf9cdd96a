"""Data parallelism is exact: two CPU processes (gloo) through the real command give the one-process metrics.

``torchrun`` starts two ranks of ``lm_eval``; ``ACCELERATE_USE_CPU`` makes accelerate join them with
gloo on the CPU. The harness gives each rank every other document of the 25 and pads the shorter
rank with a repeat of a request; nextlaw must measure each document once, reduce the statistics
once, and rank 0 alone must write the results. Batch size 1 and the reference run's thread count
keep every hidden state bit-identical to the one-process run, so only float64 summation order may
differ: every metric agrees to 1e-9 relative.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tiny import MIXED_TASKS, load_tasks, mixed_run_args, write_local_tasks
from lm_eval_cli import BIN, lm_eval, metrics_of, offline_env, results_of, stderrs_of
from nextlaw_task.options import OptionError

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.distributed]

REL = 1e-9


@pytest.fixture(scope="module")
def two_process_run(tiny_model_dir, mixed_corpus, tmp_path_factory) -> tuple[subprocess.CompletedProcess, list]:
    folder = tmp_path_factory.mktemp("two-ranks")
    # torchrun would set one thread per rank; float32 kernels then round differently from the reference
    env = {**offline_env(), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "lm_eval",
               *mixed_run_args(tiny_model_dir, mixed_corpus), "--batch_size", "1",
               "--output_path", str(folder / "out")]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    return done, sorted((folder / "out").rglob("results_*.json"))


def test_two_ranks_split_the_documents_and_rank_0_alone_reports(two_process_run):
    done, files = two_process_run
    assert "Building contexts for nextlaw_equilearning on rank 1" in done.stderr
    assert len(files) == 1


def test_two_ranks_give_the_one_process_metrics(two_process_run, batch1_run):
    """25 documents over 2 ranks: rank 1 is padded with a repeat, which must not count twice."""
    _, (path,) = two_process_run
    results = results_of(path.parent)
    for task in MIXED_TASKS:
        ours, reference = metrics_of(results, task), metrics_of(batch1_run[1], task)
        assert ours["n_docs"] == 25.0 and ours["n_tokens"] == reference["n_tokens"], task
        assert set(ours) == set(reference)
        for key, value in reference.items():
            assert ours[key] == pytest.approx(value, rel=REL), (task, key)
        errors, reference_errors = stderrs_of(results, task), stderrs_of(batch1_run[1], task)
        assert errors.keys() == reference_errors.keys()
        for key, value in reference_errors.items():  # groups by corpus index: the same on any number of ranks
            assert errors[key] == (value if value == "N/A" else pytest.approx(value, rel=1e-7)), (task, key)


def test_model_hf_on_two_ranks_gives_the_one_process_run(tiny_model_dir, tmp_path):
    """``--model hf`` under ``torchrun``, through HFLM's own multi-GPU rank split (the device count
    faked, see ``lm_eval_two_gpus``): nextlaw's metrics and the standard tasks' scores are those of
    one process."""
    write_local_tasks(tmp_path)
    # device_map=cpu: under transformers 4, HFLM's "cpu:0" is refused (the README's note on CPU data parallelism)
    args = ["--model", "hf", "--model_args", f"pretrained={tiny_model_dir},device_map=cpu", "--include_path", str(tmp_path),
            "--tasks", "tiny_mc,tiny_rolling,nextlaw_equilearning", "--limit", "30", "--batch_size", "1"]
    lm_eval(*args, "--device", "cpu", "--output_path", str(tmp_path / "one"), cwd=tmp_path)
    env = {**offline_env(), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    launcher = Path(__file__).resolve().parents[1] / "lm_eval_two_gpus.py"
    command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(launcher), *args,
               "--output_path", str(tmp_path / "two")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Building contexts for nextlaw_equilearning on rank 1" in done.stderr
    assert len(sorted((tmp_path / "two").rglob("results_*.json"))) == 1
    one, two = results_of(tmp_path / "one"), results_of(tmp_path / "two")
    for task in ("tiny_mc", "tiny_rolling", "nextlaw_equilearning"):
        reference = metrics_of(one, task)
        assert metrics_of(two, task).keys() == reference.keys(), task
        for key, value in reference.items():
            assert metrics_of(two, task)[key] == pytest.approx(value, rel=REL, nan_ok=True), (task, key)
    assert metrics_of(two, "nextlaw_equilearning")["n_docs"] == 30
    for key, value in stderrs_of(one, "nextlaw_equilearning").items():
        assert stderrs_of(two, "nextlaw_equilearning")[key] == (value if value == "N/A" else pytest.approx(value, rel=1e-7)), key


def test_fewer_documents_than_ranks_is_refused_before_any_pass():
    """A rank without documents would leave the others waiting in the all-reduce."""
    task = load_tasks(["nextlaw_equilearning"])["tasks"]["nextlaw_equilearning"]
    with pytest.raises(OptionError, match="3 documents for 4 data-parallel processes"):
        task.build_all_requests(limit=3, rank=3, world_size=4)
    task.build_all_requests(limit=4, rank=3, world_size=4)
    assert [r.doc_id for r in task.instances] == [3]
