"""``lm_eval --model nextlaw`` through the real command: metrics, exactness, coexistence, misuse."""

from __future__ import annotations

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


def test_use_cache_is_refused(tiny_model_dir, tmp_path):
    done = lm_eval("--model", "nextlaw", "--model_args", f"pretrained={tiny_model_dir}", "--tasks",
                   "nextlaw_equilearning", "--limit", "5", "--use_cache", str(tmp_path / "cache"), cwd=tmp_path,
                   check=False)
    assert done.returncode != 0
    assert "--use_cache" in done.stderr
