"""The task as lm-eval builds it: YAML settings, corpus loading, requests, metrics passthrough."""

from __future__ import annotations

import json
import math

import pytest

from tiny import load_tasks
from nextlaw_task.corpus import CorpusError
from nextlaw_task.harness.messages import CorpusMeasurement, NextlawModelRequired, NextlawRequest
from nextlaw_task.options import MeasurementSpec, OptionError
from nextlaw_task.harness.task import NextlawTask

VARIANTS = {
    "nextlaw_equilearning": ("id", "next", 0),
    "nextlaw_onehot": ("onehot", "next", 0),
    "nextlaw_heldout": ("id", "next", 5),
    "nextlaw_shuffled_id": ("shuffled_id", "next", 0),
    "nextlaw_separation_fuzziness": ("separation_fuzziness", "next", 0),
    "nextlaw_flow_previous": ("id", "previous", 0),
    "nextlaw_flow_current": ("id", "current", 0),
    "nextlaw_flow_next_next": ("id", "next_next", 0),
}


def load(names, metadata=None):
    return load_tasks(names, metadata)


def test_group_holds_every_variant_with_its_yaml_settings():
    loaded = load(["nextlaw"])
    assert set(loaded["tasks"]) == set(VARIANTS)
    for name, task in loaded["tasks"].items():
        assert isinstance(task, NextlawTask)
        assert (task.spec.measure, task.spec.target, task.spec.folds) == VARIANTS[name]
        assert task.spec.normalize == "initialized_ln" and task.spec.max_tokens == 512 and task.spec.data is None
        assert task.OUTPUT_TYPE == "loglikelihood_rolling"
        assert len(task.test_docs()) == 3000


def test_own_corpus_skips_and_counts_blank_documents(tmp_path, caplog):
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["One.", "  ", "Two words.", ""]))
    task = load(["nextlaw_equilearning"], {"nextlaw_data": str(corpus), "nextlaw_max_tokens": 64})["tasks"][
        "nextlaw_equilearning"
    ]
    assert task.spec.data == str(corpus) and task.spec.max_tokens == 64
    assert task.test_docs()["text"] == ["One.", "Two words."]
    assert task.n_empty_docs == 2
    assert "skipped 2 empty or whitespace documents" in caplog.text


def test_missing_corpus_names_the_path(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(CorpusError, match="nowhere.jsonl"):
        load(["nextlaw_equilearning"], {"nextlaw_data": str(missing)})


def test_corpus_of_blanks_is_refused(tmp_path):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n\n   \n\n")
    with pytest.raises(CorpusError, match="no non-empty documents"):
        load(["nextlaw_equilearning"], {"nextlaw_data": str(corpus)})


def test_requests_carry_text_and_spec_and_refuse_other_models():
    task = load(["nextlaw_flow_previous"])["tasks"]["nextlaw_flow_previous"]
    task.build_all_requests(limit=3)
    assert len(task.instances) == 3
    request = task.instances[0]
    assert isinstance(request, NextlawRequest) and request.request_type == "loglikelihood_rolling"
    assert request.text == task.test_docs()[0]["text"] and request.spec is task.spec
    assert request.args == (request.text,)  # what --write_out prints and --log_samples records


@pytest.mark.parametrize("flag", ["cache_requests", "apply_chat_template", "system_instruction"])
def test_request_flags_that_cannot_apply_are_refused_when_the_requests_are_built(flag):
    task = load(["nextlaw_equilearning"])["tasks"]["nextlaw_equilearning"]
    with pytest.raises(OptionError, match=f"nextlaw_equilearning: --{flag} is not for nextlaw tasks"):
        task.build_all_requests(limit=3, **{flag: "yes"})


def test_process_results_passes_corpus_metrics_through():
    task = load(["nextlaw_equilearning"])["tasks"]["nextlaw_equilearning"]
    metrics = {"pr_layer_00": 0.9, "law_r2": 0.99, "law_slope": math.nan}
    answer = CorpusMeasurement("nextlaw_equilearning", metrics, 12, {"pr_layer_00": 0.01, "law_slope": math.nan})
    values = task.process_results({}, [answer])
    assert values == pytest.approx({**metrics, "n_docs_empty": 0.0}, nan_ok=True)  # the task's own count
    assert values["pr_layer_00"].stderr == 0.01 and math.isnan(values["law_slope"].stderr)
    assert values["law_r2"].stderr is None and values["n_docs_empty"].stderr is None  # no error: lm-eval's N/A
    assert set(task.aggregation()) == set(metrics) | {"n_docs_empty"}
    assert task.higher_is_better() == {"pr_layer_00": False, "law_r2": True, "law_slope": False, "n_docs_empty": False}
    with pytest.raises(NextlawModelRequired):
        task.process_results({}, [-12.5])  # a log-likelihood from another model
    assert "12 targets" in str(answer)


def test_spec_is_hashable_for_sharing():
    assert len({MeasurementSpec(task="a"), MeasurementSpec(task="a")}) == 1
