"""Standard errors through the real ``lm_eval`` command: lm-eval's Stderr column, a brute-force jackknife.

The mixed-corpus run (three tasks, 25 documents, the default 10 jackknife groups) is checked against
a jackknife computed from ``output_hidden_states`` with numpy: for each group, every document whose
index % 10 differs, refitted by least squares. ``nextlaw_jackknife_groups: 0`` turns the errors off
and leaves every point estimate as it was.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import transformers as tf

from tiny import MIXED_MAX_TOKENS, MIXED_TASKS, mixed_run_args
from lm_eval_cli import lm_eval, metrics_of, results_of, stderrs_of
from nextlaw_task.corpus import read_documents
from nextlaw_task.engine.jackknife import jackknife_stderr
from nextlaw_task.engine.law import fit_law
from nextlaw_task.schema import LAW_METRICS, layer_metric
from reference import hidden_state_samples, ols_pr

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

GROUPS = 10
TARGETS = {"nextlaw_equilearning": "next", "nextlaw_flow_previous": "previous"}


@pytest.fixture(scope="module")
def jackknife_reference(tiny_model_dir, mixed_corpus) -> dict[str, dict[int, dict[int, float]]]:
    """Per task, per state, per group: PR of every document but that group's (numpy least squares)."""
    texts = [t for t in read_documents(mixed_corpus) if t.strip()]
    tokenizer = tf.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = [tokenizer(t)["input_ids"][:MIXED_MAX_TOKENS] for t in texts]
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    reference: dict[str, dict[int, dict[int, float]]] = {}
    for task, target in TARGETS.items():
        reference[task] = {}
        for group in range(GROUPS):
            kept = [t for i, t in enumerate(tokens) if i % GROUPS != group]
            features, targets = hidden_state_samples(model, kept, target)
            for state, x in features.items():
                reference[task].setdefault(state, {})[group] = ols_pr(x, targets)
    return reference


@pytest.fixture(scope="module")
def without_jackknife(tiny_model_dir, mixed_corpus, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("no-jackknife")
    args = mixed_run_args(tiny_model_dir, mixed_corpus)
    metadata = {**json.loads(args[-1]), "nextlaw_jackknife_groups": 0}
    lm_eval(*args[:-1], json.dumps(metadata), "--batch_size", "1", "--output_path", str(folder / "out"), cwd=folder)
    return results_of(folder / "out")


def test_every_nextlaw_metric_has_its_error_in_lm_evals_column(batch1_run):
    done, results = batch1_run
    for task in MIXED_TASKS:
        errors, metrics = stderrs_of(results, task), metrics_of(results, task)
        quantity = [k for k in metrics if k.startswith(("pr_layer_", "fuzziness_layer_"))]
        for key in [*quantity, *LAW_METRICS]:
            assert isinstance(errors[key], float) and errors[key] > 0, (task, key)
        assert errors["n_tokens"] == "N/A" and errors["n_docs"] == "N/A"
    row = next(line for line in done.stdout.splitlines() if "|pr_layer_01" in line)
    assert f"{stderrs_of(results, MIXED_TASKS[0])['pr_layer_01']:.4f}" in row.split("±")[1]


@pytest.mark.parametrize("task", sorted(TARGETS))
def test_errors_equal_a_brute_force_jackknife(batch1_run, jackknife_reference, task):
    errors = stderrs_of(batch1_run[1], task)
    reference = jackknife_reference[task]
    for state, replicates in reference.items():
        expected = jackknife_stderr([replicates[g] for g in range(GROUPS)])
        assert errors[layer_metric("pr", state, 3)] == pytest.approx(expected, rel=1e-5), state
    fits = [fit_law({s: reference[s][g] for s in (1, 2, 3)}, 1, 3).as_metrics() for g in range(GROUPS)]
    for key in LAW_METRICS:
        assert errors[key] == pytest.approx(jackknife_stderr([f[key] for f in fits]), rel=1e-4), key


def test_groups_0_turns_errors_off_and_leaves_the_numbers(batch1_run, without_jackknife):
    for task in MIXED_TASKS:
        assert set(stderrs_of(without_jackknife, task).values()) == {"N/A"}, task
        ours, reference = metrics_of(without_jackknife, task), metrics_of(batch1_run[1], task)
        assert set(ours) == set(reference)
        for key, value in reference.items():
            assert ours[key] == pytest.approx(value, rel=1e-12, nan_ok=True), (task, key)


def test_the_results_file_records_the_measurement(batch1_run, mixed_corpus):
    results = batch1_run[1]
    texts = [t for t in read_documents(mixed_corpus) if t.strip()]
    for task in MIXED_TASKS:
        record = results["configs"][task]["metadata"]["measurement"]
        assert record["corpus"] == str(mixed_corpus) and record["corpus_documents"] == len(texts)
        assert record["options"]["nextlaw_jackknife_groups"] == GROUPS
        assert record["options"]["nextlaw_max_tokens"] == MIXED_MAX_TOKENS and len(record["corpus_sha256"]) == 64
    assert not math.isnan(float(results["results"][MIXED_TASKS[0]]["pr_layer_01_stderr,none"]))
    assert np.isfinite(results["results"][MIXED_TASKS[0]]["law_slope_stderr,none"])
