"""The nextlaw wrapper in-process: one pass per document for a group, padding copies counted once."""

from __future__ import annotations

import pytest

from tiny import load_tasks
from nextlaw_task.harness.measure import documents_of
from nextlaw_task.harness.messages import CorpusMeasurement
from nextlaw_task.harness.model import ModelLoadError, NextlawLM
from nextlaw_task.options import format_bytes
from nextlaw_task.pipeline.capture import locate_states


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return NextlawLM(pretrained=str(tiny_model_dir), batch_size=4)


def requests_of(names, limit, metadata=None):
    tasks = load_tasks(names, metadata)["tasks"]
    requests = []
    for task in tasks.values():
        task.build_all_requests(limit=limit)
        requests += task.instances
    return tasks, requests


def count_passes(lm, requests):
    decoder = locate_states(lm.model).decoder
    calls = []
    handle = decoder.register_forward_pre_hook(lambda *a: calls.append(True))
    try:
        answers = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    finally:
        handle.remove()
    return answers, len(calls)


def test_runs_on_cpu_without_cuda(lm):
    assert str(lm.device) == "cpu"


def test_group_shares_one_forward_pass_per_batch(lm):
    tasks, requests = requests_of(["nextlaw"], limit=12)
    assert len(requests) == 8 * 12
    answers, passes = count_passes(lm, requests)
    assert passes == 3  # 12 shared documents in batches of 4
    assert all(isinstance(a, CorpusMeasurement) for a in answers)
    by_task = {a.task: a.metrics for a in answers}
    assert set(by_task) == set(tasks)
    assert all(m["n_docs"] == 12.0 for m in by_task.values())
    # targets differ, so the flows differ from the next-token measurement
    assert by_task["nextlaw_flow_previous"]["pr_layer_01"] != by_task["nextlaw_equilearning"]["pr_layer_01"]


def test_padding_copies_are_counted_once(lm):
    _, requests = requests_of(["nextlaw_equilearning"], limit=10)
    plain, _ = count_passes(lm, requests)
    padded, _ = count_passes(lm, requests + [requests[-1]] * 3)  # how the harness pads ranks
    assert len(padded) == 13
    assert padded[0].metrics == plain[0].metrics
    assert padded[-1].metrics["n_docs"] == 10.0


def test_other_rolling_requests_go_to_hf(lm, tmp_path):
    from lm_eval.api.instance import Instance

    _, ours = requests_of(["nextlaw_equilearning"], limit=6)
    theirs = [Instance("loglikelihood_rolling", {}, ("A short text to score.",), 0, ("other", 0, 1))]
    answers = lm.loglikelihood_rolling([theirs[0], *ours], disable_tqdm=True)
    assert isinstance(answers[0], float) and answers[0] < 0
    assert answers[0] == pytest.approx(lm.loglikelihood_rolling(theirs, disable_tqdm=True)[0])
    assert all(isinstance(a, CorpusMeasurement) for a in answers[1:])


def test_unknown_model_names_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="pretrained=smollm2"):
        NextlawLM(pretrained=str(tmp_path / "no-such-model"))


def test_documents_are_cut_to_the_model_context(tmp_path):
    import json

    from tiny import save_tiny_model
    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    gpt2 = NextlawLM(pretrained=str(save_tiny_model(tmp_path / "gpt2", "gpt2")), batch_size=4)
    assert gpt2.max_length == 128
    sentences = read_documents(embedded_corpus_path())
    corpus = tmp_path / "long.jsonl"
    corpus.write_text("".join(json.dumps({"text": " ".join(sentences[i : i + 8])}) + "\n" for i in range(0, 48, 8)))
    _, requests = requests_of(["nextlaw_equilearning"], limit=6, metadata={"nextlaw_data": str(corpus)})
    answers, _ = count_passes(gpt2, requests)
    metrics = answers[0].metrics
    assert metrics["n_docs_truncated"] == 6.0
    assert metrics["n_tokens"] == 6 * 127  # 128 positions each, the last one has no next token


def test_memory_budget_measures_groups_of_states_in_passes(lm, caplog):
    _, requests = requests_of(["nextlaw_equilearning"], limit=10)
    plain, batches = count_passes(lm, requests)
    # one state's id statistics in 10 jackknife cells: 8 * (10 * (1 + 33 + 33**2) + 33) = 90104 bytes (d = 32)
    _, budgeted = requests_of(["nextlaw_equilearning"], limit=10, metadata={"nextlaw_memory_budget": "200000"})
    with caplog.at_level("INFO", logger="nextlaw_task"):
        split, passes = count_passes(lm, budgeted)
    assert passes == 2 * batches == 6
    assert "10 jackknife groups, sums kept in 10 cells of documents per state" in caplog.text
    assert "over the 195.3 KiB budget: 2 passes over the corpus, states 0-1; 2-3" in caplog.text
    assert split[0].metrics == pytest.approx(plain[0].metrics, rel=1e-12)
    assert split[0].metrics["n_docs"] == 10.0


def test_class_sums_enter_the_memory_plan(lm, caplog):
    """One-hot keeps per-class sums (distinct targets x (d + 1) per state): the plan counts them."""
    _, requests = requests_of(["nextlaw_onehot"], limit=10)
    documents = documents_of(lm, requests)
    classes = len({int(t) for d in documents for t in d.tokens[1:]})
    cells = 10  # jackknife groups: every statistic is kept per cell of documents
    scalar = 8 * (cells * (1 + 32 + 32**2) + 32)  # the Gram statistics of one state (hidden size 32, no scalar target)
    per_state = scalar + 8 * cells * classes * 33
    with caplog.at_level("INFO", logger="nextlaw_task"):
        plain, batches = count_passes(lm, requests)
    class_bytes = format_bytes(4 * cells * classes * 33 * 8)
    assert f"needing {format_bytes(4 * per_state)} of float64 statistics ({class_bytes}" in caplog.text
    _, budgeted = requests_of(["nextlaw_onehot"], limit=10, metadata={"nextlaw_memory_budget": str(2 * per_state)})
    caplog.clear()
    with caplog.at_level("INFO", logger="nextlaw_task"):
        split, passes = count_passes(lm, budgeted)
    assert passes == 2 * batches  # two states a pass: without the class sums all four would fit in one
    assert "2 passes over the corpus, states 0-1; 2-3" in caplog.text
    assert split[0].metrics == pytest.approx(plain[0].metrics, rel=1e-12)


def test_a_text_repeated_in_one_task_is_measured_each_time(lm, tmp_path):
    import json

    corpus = tmp_path / "repeats.jsonl"
    texts = ["Yes.", "A longer sentence, with several words in it.", "Yes.", "Yes.", "Another one here."]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    _, requests = requests_of(["nextlaw_equilearning", "nextlaw_flow_previous"], limit=None,
                              metadata={"nextlaw_data": str(corpus)})
    documents = documents_of(lm, requests)
    assert len(documents) == 5  # one per occurrence, shared by the two tasks
    assert sorted(d.owners for d in documents)[0] == (("nextlaw_equilearning", 0), ("nextlaw_flow_previous", 0))
    answers = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    assert answers[0].metrics["n_docs"] == 5.0
    assert answers[0].metrics["n_tokens"] == sum(len(d.tokens) - 1 for d in documents)


def test_every_corpus_form_in_one_folder_is_measured(lm, tmp_path):
    """A folder as people keep it: every form, nested, read in path order, sampled with the seed."""
    import csv
    import gzip
    import json

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    sentences = read_documents(embedded_corpus_path())[:12]
    folder = tmp_path / "corpus"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "a.txt").write_text("\n\n".join(sentences[0:2]), encoding="utf-8")
    with open(folder / "b.csv", "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([("id", "body"), *enumerate(sentences[2:4])])
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write("".join(json.dumps({"body": s}) + "\n" for s in sentences[4:6]))
    (folder / "nested" / "d.json").write_text(json.dumps([{"body": s} for s in sentences[6:8]]), encoding="utf-8")
    pq.write_table(pa.table({"body": sentences[8:10]}), folder / "nested" / "deeper" / "e.parquet")
    datasets.Dataset.from_dict({"body": sentences[10:12]}).save_to_disk(str(folder / "nested" / "f"))
    (folder / "notes.md").write_text("not a document")
    metadata = {"nextlaw_data": str(folder), "nextlaw_text_field": "body"}
    tasks, requests = requests_of(["nextlaw_equilearning"], limit=None, metadata=metadata)
    # .txt paragraphs have no field: the folder mixes forms, and each is read its own way
    assert [r.text for r in requests] == sentences
    answers = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    assert answers[0].metrics["n_docs"] == 12.0
    _, sampled = requests_of(["nextlaw_equilearning"], limit=None, metadata={**metadata, "nextlaw_sample": 5})
    _, again = requests_of(["nextlaw_equilearning"], limit=None, metadata={**metadata, "nextlaw_sample": 5})
    assert [r.text for r in sampled] == [r.text for r in again] and len(sampled) == 5
    assert set(r.text for r in sampled) < set(sentences)


def test_fast_precision_is_checked_and_falls_back_to_float64(lm, caplog, monkeypatch):
    """nextlaw_precision=fast: PRs within 1e-6 of float64, the check logged; a state the check cannot
    keep (here: every state, by a negative tolerance) is measured again in float64, one more pass."""
    import nextlaw_task.harness.measure as measure
    import nextlaw_task.pipeline.runner as runner

    _, plain = requests_of(["nextlaw_equilearning"], limit=10)
    _, fast = requests_of(["nextlaw_equilearning"], limit=10, metadata={"nextlaw_precision": "fast"})
    exact, batches = count_passes(lm, plain)
    with caplog.at_level("INFO", logger="nextlaw_task"):
        checked, passes = count_passes(lm, fast)
    assert passes == batches
    assert "nextlaw: fast precision: the largest checked PR deviation from float64 is" in caplog.text
    pr = [k for k in exact[0].metrics if k.startswith("pr_layer_")]
    assert pr and all(abs(checked[0].metrics[k] - exact[0].metrics[k]) <= 1e-6 for k in pr)
    monkeypatch.setattr(runner, "FAST_TOLERANCE", -1.0)
    monkeypatch.setattr(measure, "FAST_TOLERANCE", -1.0)
    caplog.clear()
    with caplog.at_level("INFO", logger="nextlaw_task"):
        redone, passes = count_passes(lm, fast)
    assert passes == 2 * batches
    assert "could not be kept and were measured again in float64" in caplog.text
    assert {k: redone[0].metrics[k] for k in pr} == pytest.approx({k: exact[0].metrics[k] for k in pr}, rel=1e-12)
    assert redone[0].stderrs == pytest.approx(exact[0].stderrs, rel=1e-9)


def test_the_fast_fallback_keeps_to_the_memory_budget(lm, monkeypatch):
    """The states measured again in float64 are planned like the first pass: within the budget (here two
    states a pass, so four passes in all), not all in one pass."""
    import nextlaw_task.harness.measure as measure
    import nextlaw_task.pipeline.runner as runner
    from nextlaw_task.engine.stats import ResidualStatistics

    _, plain = requests_of(["nextlaw_equilearning"], limit=10)
    exact, batches = count_passes(lm, plain)
    per_state = ResidualStatistics.memory_bytes(1, 32, ("id",), 0, n_groups=10, precision="fast")
    metadata = {"nextlaw_precision": "fast", "nextlaw_memory_budget": str(2 * per_state)}
    _, fast = requests_of(["nextlaw_equilearning"], limit=10, metadata=metadata)
    monkeypatch.setattr(runner, "FAST_TOLERANCE", -1.0)
    monkeypatch.setattr(measure, "FAST_TOLERANCE", -1.0)
    redone, passes = count_passes(lm, fast)
    assert passes == 4 * batches
    pr = [k for k in exact[0].metrics if k.startswith("pr_layer_")]
    assert {k: redone[0].metrics[k] for k in pr} == pytest.approx({k: exact[0].metrics[k] for k in pr}, rel=1e-12)
