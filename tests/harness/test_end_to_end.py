"""``lm_eval --model nextlaw`` through the real command: metrics, exactness, coexistence, misuse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import transformers as tf

from lm_eval_cli import lm_eval, metrics_of, results_of
from nextlaw_task.corpus import embedded_corpus_path, read_documents
from nextlaw_task.harness.embedded import embedded_model_dir
from nextlaw_task.schema import layer_metric
from reference import hidden_state_samples, ols_pr

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

LAW_KEYS = (
    "law_slope", "law_intercept", "law_rho", "law_pearson_r", "law_r2", "pr_ratio_last_first", "equilearning_deviation",
)
COUNT_KEYS = ("n_tokens", "n_docs", "hidden_size")


def brute_force_prs(model_dir: Path, n_docs: int) -> tuple[dict[int, float], int]:
    """PR per state from output_hidden_states on the first ``n_docs`` embedded documents."""
    tokenizer = tf.AutoTokenizer.from_pretrained(model_dir)
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    docs = read_documents(embedded_corpus_path())[:n_docs]
    tokens = [tokenizer(d, add_special_tokens=True)["input_ids"][:512] for d in docs]
    features, targets = hidden_state_samples(model, tokens)
    return {s: ols_pr(x, targets) for s, x in features.items()}, len(targets)


def check_against_brute_force(metrics: dict[str, float], model_dir: Path, n_docs: int) -> None:
    expected, n_tokens = brute_force_prs(model_dir, n_docs)
    n_layers = max(expected)
    assert metrics["n_tokens"] == n_tokens and metrics["n_docs"] == n_docs
    for state, pr in expected.items():
        assert metrics[layer_metric("pr", state, n_layers)] == pytest.approx(pr, rel=1e-6), state
    for key in (*LAW_KEYS, *COUNT_KEYS):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key


def test_tiny_model_every_metric_exact(tiny_model_dir, tmp_path):
    lm_eval(
        "--model", "nextlaw", "--model_args", f"pretrained={tiny_model_dir}", "--tasks", "nextlaw_equilearning",
        "--limit", "60", "--batch_size", "8", "--output_path", str(tmp_path / "out"), cwd=tmp_path,
    )
    metrics = metrics_of(results_of(tmp_path / "out"), "nextlaw_equilearning")
    assert {layer_metric("pr", s, 3) for s in range(4)} | set(LAW_KEYS) | set(COUNT_KEYS) <= set(metrics)
    assert metrics["hidden_size"] == 32.0
    check_against_brute_force(metrics, tiny_model_dir, 60)


def test_embedded_smollm2_exact(tmp_path):
    done = lm_eval(
        "--model", "nextlaw", "--tasks", "nextlaw_equilearning", "--limit", "40", "--batch_size", "8",
        "--output_path", str(tmp_path / "out"), cwd=tmp_path,
    )
    assert "pr_layer_30" in done.stdout and "law_rho" in done.stdout  # the printed table
    metrics = metrics_of(results_of(tmp_path / "out"), "nextlaw_equilearning")
    assert metrics["hidden_size"] == 576.0
    check_against_brute_force(metrics, embedded_model_dir(), 40)
    assert metrics["law_pearson_r"] < -0.5, "a trained model's PR falls with depth"


def write_local_tasks(folder: Path) -> None:
    """A multiple-choice and a rolling-loglikelihood task over local jsonl files."""
    docs = read_documents(embedded_corpus_path())
    mc = [
        {"question": docs[i], "choices": [docs[i + 1][:40], docs[i + 2][:40], docs[i + 3][:40]], "label": i % 3}
        for i in range(0, 40, 4)
    ]
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc))
    (folder / "rolling.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[100:112]))
    common = "dataset_path: json\ntest_split: train\n"
    (folder / "tiny_mc.yaml").write_text(
        f"task: tiny_mc\n{common}dataset_kwargs:\n  data_files: {folder / 'mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    (folder / "tiny_rolling.yaml").write_text(
        f"task: tiny_rolling\n{common}dataset_kwargs:\n  data_files: {folder / 'rolling.jsonl'}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
    )


def test_standard_tasks_score_as_under_hf(tiny_model_dir, tmp_path):
    write_local_tasks(tmp_path)
    common = ["--model_args", f"pretrained={tiny_model_dir}", "--include_path", str(tmp_path), "--batch_size", "4"]
    lm_eval("--model", "nextlaw", *common, "--tasks", "tiny_mc,tiny_rolling,nextlaw_equilearning", "--limit", "30",
            "--output_path", str(tmp_path / "nl"), cwd=tmp_path)
    lm_eval("--model", "hf", *common, "--device", "cpu", "--tasks", "tiny_mc,tiny_rolling", "--limit", "30",
            "--output_path", str(tmp_path / "hf"), cwd=tmp_path)
    ours, theirs = results_of(tmp_path / "nl"), results_of(tmp_path / "hf")
    for task in ("tiny_mc", "tiny_rolling"):
        assert metrics_of(ours, task) == metrics_of(theirs, task), task
    assert metrics_of(ours, "tiny_rolling")["word_perplexity"] > 1
    assert "pr_layer_03" in metrics_of(ours, "nextlaw_equilearning")


def test_nextlaw_task_under_hf_names_the_fix(tiny_model_dir, tmp_path):
    done = lm_eval("--model", "hf", "--model_args", f"pretrained={tiny_model_dir}", "--device", "cpu",
                   "--tasks", "nextlaw_equilearning", "--limit", "5", cwd=tmp_path, check=False)
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "needs the nextlaw model wrapper" in line and "--model nextlaw" in line
    assert "Traceback" not in done.stderr


def test_use_cache_is_refused(tiny_model_dir, tmp_path):
    done = lm_eval("--model", "nextlaw", "--model_args", f"pretrained={tiny_model_dir}", "--tasks",
                   "nextlaw_equilearning", "--limit", "5", "--use_cache", str(tmp_path / "cache"), cwd=tmp_path,
                   check=False)
    assert done.returncode != 0
    assert "--use_cache" in done.stderr
