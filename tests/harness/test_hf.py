"""Every model built on lm-eval's HFLM measures nextlaw tasks: ``--model hf``, ``steered``, a notebook's HFLM.

``--model hf`` gives the metrics (and standard errors) of ``--model nextlaw`` on the same model, and
the standard tasks of the run score exactly as in a run without nextlaw. A steered model is
measured as it computes (its steering hooks on), against a brute-force fit under the same hooks. An
HFLM built in Python around a model object already in memory measures it like the command, and the
results dict feeds ``nextlaw report``'s functions with no file in between.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as tf

from lm_eval_cli import lm_eval, metrics_of, results_of, stderrs_of
from nextlaw_task.corpus import embedded_corpus_path, read_documents
from nextlaw_task.schema import layer_metric
from reference import hidden_state_samples, ols_pr
from tiny import write_local_tasks

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

LIMIT = 30


@pytest.fixture(scope="module")
def three_runs(tiny_model_dir, tmp_path_factory) -> dict[str, dict]:
    """The same model and documents: ``nextlaw`` and ``hf`` with nextlaw beside standard tasks, ``hf`` without.
    ``hf`` runs them as the README's suite recipe: a group YAML of the user's that lists them."""
    folder = tmp_path_factory.mktemp("hf")
    write_local_tasks(folder)
    (folder / "my_suite.yaml").write_text("group: my_suite\ntask:\n  - tiny_mc\n  - tiny_rolling\n  - nextlaw_equilearning\n")
    common = ["--model_args", f"pretrained={tiny_model_dir}", "--include_path", str(folder), "--batch_size", "4",
              "--device", "cpu", "--limit", str(LIMIT)]
    plans = {
        "nextlaw": ["--model", "nextlaw", "--tasks", "tiny_mc,tiny_rolling,nextlaw_equilearning"],
        "hf": ["--model", "hf", "--tasks", "my_suite"],
        "hf alone": ["--model", "hf", "--tasks", "tiny_mc,tiny_rolling"],
    }
    for name, args in plans.items():
        lm_eval(*args, *common, "--output_path", str(folder / name.replace(" ", "_")), cwd=folder)
    return {name: results_of(folder / name.replace(" ", "_")) for name in plans}


def test_model_hf_measures_what_model_nextlaw_measures(three_runs):
    ours, theirs = three_runs["hf"], three_runs["nextlaw"]
    task = "nextlaw_equilearning"
    assert set(ours["results"]) == {"my_suite", "tiny_mc", "tiny_rolling", task}
    assert metrics_of(ours, task).keys() == metrics_of(theirs, task).keys()
    for key, value in metrics_of(theirs, task).items():
        assert metrics_of(ours, task)[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    for key, value in stderrs_of(theirs, task).items():
        assert stderrs_of(ours, task)[key] == (value if value == "N/A" else pytest.approx(value, rel=1e-12)), key
    assert metrics_of(ours, task)["n_docs"] == LIMIT


def test_standard_tasks_score_as_without_nextlaw(three_runs):
    for task in ("tiny_mc", "tiny_rolling"):
        alone = metrics_of(three_runs["hf alone"], task)
        assert metrics_of(three_runs["hf"], task) == alone, task
        assert metrics_of(three_runs["nextlaw"], task) == alone, task
    assert metrics_of(three_runs["hf"], "tiny_rolling")["word_perplexity"] > 1


def steering(model_dir: Path, path: Path) -> dict:
    """A steering file for lm-eval's ``steered`` model: add a fixed vector to block 1's output."""
    hidden = tf.AutoConfig.from_pretrained(model_dir).hidden_size
    vector = torch.linspace(-1.0, 1.0, hidden)
    config = {"layers.1": {"action": "add", "steering_vector": vector, "steering_coefficient": 3.0, "bias": None}}
    torch.save(config, path)
    return config


def test_a_steered_model_is_measured_as_it_computes(tiny_model_dir, tmp_path):
    config = steering(tiny_model_dir, tmp_path / "steer.pt")
    args = ["--model_args", f"pretrained={tiny_model_dir},steer_path={tmp_path / 'steer.pt'}", "--device", "cpu",
            "--tasks", "nextlaw_equilearning", "--limit", "20", "--batch_size", "1"]
    lm_eval("--model", "steered", *args, "--output_path", str(tmp_path / "out"), cwd=tmp_path)
    metrics = metrics_of(results_of(tmp_path / "out"), "nextlaw_equilearning")
    tokenizer = tf.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = [tokenizer(t)["input_ids"][:512] for t in read_documents(embedded_corpus_path())[:20]]
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    plain, targets = hidden_state_samples(model, tokens)
    # The same steering built into the weights: block 1's last projection gains the vector as its bias
    # (a reference without hooks: transformers 4.x records hidden states before forward hooks edit them).
    down = model.model.layers[1].mlp.down_proj
    biased = torch.nn.Linear(down.in_features, down.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(down.weight)
        biased.bias.copy_(config["layers.1"]["steering_vector"] * config["layers.1"]["steering_coefficient"])
    model.model.layers[1].mlp.down_proj = biased
    steered, _ = hidden_state_samples(model, tokens)
    for state, x in steered.items():  # the bias adds the vector in another order: float32 rounding, 1e-6
        assert metrics[layer_metric("pr", state, 3)] == pytest.approx(ols_pr(x, targets), rel=1e-5), state
    assert metrics[layer_metric("pr", 3, 3)] != pytest.approx(ols_pr(plain[3], targets), rel=1e-3)


def test_a_notebook_hflm_around_a_model_in_memory(tiny_model_dir, three_runs):
    """As in a notebook after fine-tuning: HFLM(pretrained=<model object>) measures it; the results dict
    feeds the report functions directly."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from nextlaw_task.reports.leaderboard import render
    from nextlaw_task.reports.report import markdown_report
    from nextlaw_task.reports.results import rows_of

    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(tiny_model_dir)
    results = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4),
                                      tasks=["nextlaw_equilearning"], limit=LIMIT)
    task = "nextlaw_equilearning"
    reference = metrics_of(three_runs["hf"], task)
    ours = {k.split(",")[0]: v for k, v in results["results"][task].items() if "," in k and "_stderr" not in k}
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    (row,) = rows_of(results, name="fine-tuned")
    assert row.law_slope == pytest.approx(reference["law_slope"], rel=1e-12)
    assert row.layers[2] == pytest.approx(reference["pr_layer_02"], rel=1e-12)
    assert task in markdown_report([row]) and "law_slope" in render([row], "csv").splitlines()[0]
    json.dumps(results, default=str)  # the dict lm-eval returns stays serializable with nextlaw's values
