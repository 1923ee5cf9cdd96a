"""Checks before the model loads, and nextlaw's errors as one line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nextlaw_task.corpus import CorpusError
from nextlaw_task.errors import NextlawError
from nextlaw_task.harness.preflight import check_run, checked, report_error, run_metadata
from nextlaw_task.options import OptionError


def test_metadata_merges_model_args_and_metadata_as_the_harness_does() -> None:
    merged = run_metadata("pretrained=gpt2,nextlaw_sample=3,dtype=float32", {"nextlaw_data": "c.jsonl"})
    assert merged == {"pretrained": "gpt2", "nextlaw_sample": 3, "dtype": "float32", "nextlaw_data": "c.jsonl"}
    assert run_metadata({"nextlaw_seed": 1}, {"nextlaw_seed": 2}) == {"nextlaw_seed": 2}
    assert run_metadata(None, None) == {}


def test_runs_without_nextlaw_tasks_are_not_checked(tmp_path: Path) -> None:
    check_run(["hellaswag", {"task": "x"}], "", {"nextlaw_data": str(tmp_path / "nowhere.jsonl")})


def test_a_bad_corpus_or_option_is_refused_before_the_model(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nowhere.jsonl: corpus path not found"):
        check_run(["nextlaw_equilearning", "arc_easy"], "", {"nextlaw_data": str(tmp_path / "nowhere.jsonl")})
    with pytest.raises(OptionError, match="nextlaw_max_tokens=2"):
        check_run(["nextlaw"], "pretrained=x,nextlaw_max_tokens=2", None)
    corpus = tmp_path / "three.jsonl"
    corpus.write_text('{"text": "a b"}\n{"text": "c"}\n{"text": " "}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="nextlaw_sample=3: corpus .* has 2 non-blank documents"):
        check_run("nextlaw_onehot", "", {"nextlaw_data": str(corpus), "nextlaw_sample": 3})
    check_run("nextlaw_onehot", "", {"nextlaw_data": str(corpus), "nextlaw_sample": 2})


def test_the_wrapped_run_checks_first_then_runs_with_its_arguments(tmp_path: Path) -> None:
    calls = []

    def simple_evaluate(model, model_args=None, tasks=None, metadata=None, **kwargs):
        calls.append((model, model_args, tasks, metadata, kwargs))
        return "results"

    run = checked(simple_evaluate)
    assert run("hf", model_args="pretrained=x", tasks=["nextlaw_equilearning"], limit=3) == "results"
    assert calls == [("hf", "pretrained=x", ["nextlaw_equilearning"], None, {"limit": 3})]
    with pytest.raises(CorpusError):
        run("hf", tasks=["nextlaw_equilearning"], metadata={"nextlaw_data": str(tmp_path / "none.txt")})
    assert len(calls) == 1


def test_nextlaw_errors_print_one_line_and_others_keep_their_traceback(capsys) -> None:
    seen = []
    hook = report_error(lambda *args: seen.append(args))
    error = CorpusError("c.jsonl, line 3: not valid JSON;\n  fix the line")
    hook(CorpusError, error, None)
    assert capsys.readouterr().err == "error: c.jsonl, line 3: not valid JSON; fix the line\n" and not seen
    other = ValueError("internal")
    hook(ValueError, other, None)
    assert seen == [(ValueError, other, None)]
    for name in ("lm_eval", "nextlaw_task"):  # LMEVAL_LOG_LEVEL=DEBUG, or --verbosity DEBUG
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.DEBUG)
        try:
            hook(NextlawError, error, None)
        finally:
            logger.setLevel(level)
        assert seen[-1] == (NextlawError, error, None) and capsys.readouterr().err == ""
