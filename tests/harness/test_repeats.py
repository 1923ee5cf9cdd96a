"""Repeated documents are documents: every occurrence is measured, as a brute-force fit over the
corpus in file order counts it (identical texts, texts equal after truncation, across the tasks
of the group, under held-out folds and over two data-parallel processes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from lm_eval_cli import BIN, lm_eval, metrics_of, offline_env, results_of
from nextlaw_task.corpus import embedded_corpus_path, read_documents
from nextlaw_task.schema import layer_metric
from reference import hidden_state_samples, ols_pr

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

MAX_TOKENS = 16
FOLDS = 5
TASKS = ("nextlaw_equilearning", "nextlaw_heldout", "nextlaw_flow_previous", "nextlaw_onehot")


@pytest.fixture(scope="module")
def repeated_corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """Sentences with five "Yes.", one paragraph twice, and two texts equal after truncation."""
    everything = read_documents(embedded_corpus_path())
    sentences, long = everything[:30], " ".join(everything[200:210])
    texts = sentences[:10] + ["Yes."] * 3 + sentences[10:20] + [sentences[4], "Yes.", long, long + " And more.", "Yes."]
    texts += sentences[20:30]
    path = tmp_path_factory.mktemp("repeats") / "repeats.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path, texts


def run_args(model_dir: Path, corpus: Path, tasks: str) -> list[str]:
    metadata = {"nextlaw_data": str(corpus), "nextlaw_max_tokens": MAX_TOKENS}
    return ["--model", "nextlaw", "--model_args", f"pretrained={model_dir}", "--tasks", tasks,
            "--metadata", json.dumps(metadata), "--batch_size", "4"]


@pytest.fixture(scope="module")
def group_run(tiny_model_dir, repeated_corpus, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("group")
    lm_eval(*run_args(tiny_model_dir, repeated_corpus[0], "nextlaw"), "--output_path", str(folder / "out"), cwd=folder)
    return results_of(folder / "out")


def token_lists(model_dir: Path, texts: list[str]) -> list[list[int]]:
    tokenizer = tf.AutoTokenizer.from_pretrained(model_dir)
    return [tokenizer(t, add_special_tokens=True)["input_ids"][:MAX_TOKENS] for t in texts]


def heldout_pr(model, tokens: list[list[int]], state: int) -> float:
    """K-fold held-out PR by brute force: document i in fold i % K, mean of RSS_k / TSS_k."""
    scores = []
    for k in range(FOLDS):
        test = [t for i, t in enumerate(tokens) if i % FOLDS == k]
        train = [t for i, t in enumerate(tokens) if i % FOLDS != k]
        (x_train, y_train), (x_test, y_test) = (
            (f[state], y) for f, y in (hidden_state_samples(model, train), hidden_state_samples(model, test))
        )
        design = np.column_stack([x_train, np.ones(len(x_train))])
        coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
        residual = y_test - np.column_stack([x_test, np.ones(len(x_test))]) @ coef
        scores.append(residual @ residual / ((y_test - y_test.mean()) @ (y_test - y_test.mean())))
    return float(np.mean(scores))


def test_every_task_of_the_group_counts_every_occurrence(group_run, repeated_corpus) -> None:
    _, texts = repeated_corpus
    for task in (*TASKS, "nextlaw_shuffled_id", "nextlaw_separation_fuzziness"):
        assert metrics_of(group_run, task)["n_docs"] == len(texts), task


def test_in_sample_and_flow_prs_equal_the_brute_force_over_the_corpus_in_file_order(
    group_run, repeated_corpus, tiny_model_dir
) -> None:
    _, texts = repeated_corpus
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokens = token_lists(tiny_model_dir, texts)
    assert tokens[-12] == tokens[-13] and texts[-12] != texts[-13]  # equal after truncation
    for task, target in (("nextlaw_equilearning", "next"), ("nextlaw_flow_previous", "previous")):
        features, targets = hidden_state_samples(model, tokens, target)
        metrics = metrics_of(group_run, task)
        assert metrics["n_tokens"] == len(targets), task
        for state, x in features.items():
            assert metrics[layer_metric("pr", state, 3)] == pytest.approx(ols_pr(x, targets), rel=1e-6), (task, state)


def test_held_out_folds_split_repeats_by_their_own_index(group_run, repeated_corpus, tiny_model_dir) -> None:
    _, texts = repeated_corpus
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokens = token_lists(tiny_model_dir, texts)
    metrics = metrics_of(group_run, "nextlaw_heldout")
    for state in range(4):
        assert metrics[layer_metric("pr", state, 3)] == pytest.approx(heldout_pr(model, tokens, state), rel=1e-6), state


@pytest.mark.distributed
def test_two_processes_give_the_one_process_metrics(group_run, repeated_corpus, tiny_model_dir, tmp_path) -> None:
    env = {**offline_env(), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "lm_eval",
               *run_args(tiny_model_dir, repeated_corpus[0], "nextlaw_equilearning,nextlaw_heldout"),
               "--output_path", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    results = results_of(tmp_path / "out")
    for task in ("nextlaw_equilearning", "nextlaw_heldout"):
        ours, reference = metrics_of(results, task), metrics_of(group_run, task)
        assert ours["n_docs"] == len(repeated_corpus[1])
        for key, value in reference.items():
            assert ours[key] == pytest.approx(value, rel=1e-9, nan_ok=True), (task, key)


def test_the_austen_novels_as_a_folder_run_to_the_end(tiny_model_dir, tmp_path) -> None:
    """Read as a folder, the six novels repeat paragraphs ("CHAPTER I", short replies)."""
    novels = Path(__file__).resolve().parents[2] / "tasks" / "data" / "austen"
    paragraphs = [p for p in read_documents(novels) if p.strip()]
    assert len(paragraphs) - len(set(paragraphs)) > 50
    done = lm_eval(
        "--model", "nextlaw", "--model_args", f"pretrained={tiny_model_dir}", "--tasks", "nextlaw_equilearning",
        "--metadata", json.dumps({"nextlaw_data": str(novels), "nextlaw_max_tokens": 24}),
        "--batch_size", "64", "--output_path", str(tmp_path / "out"), cwd=tmp_path,
    )
    metrics = metrics_of(results_of(tmp_path / "out"), "nextlaw_equilearning")
    assert metrics["n_docs"] == len(paragraphs)
    assert all(np.isfinite(metrics[layer_metric("pr", s, 3)]) for s in range(4)), done.stderr[-2000:]
