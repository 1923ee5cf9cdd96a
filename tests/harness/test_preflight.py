"""Checks before the model loads, and nextlaw's errors as one line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from nextlaw_task.corpus import CorpusError
from nextlaw_task.errors import NextlawError
from nextlaw_task.harness.preflight import check_run, checked, report_error, run_metadata
from nextlaw_task.harness.messages import NextlawModelRequired
from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import gather_rows_for
from nextlaw_task.options import OptionError


def test_metadata_merges_model_args_and_metadata_as_the_harness_does() -> None:
    merged = run_metadata("pretrained=gpt2,nextlaw_sample=3,dtype=float32", {"nextlaw_data": "c.jsonl"})
    assert merged == {"pretrained": "gpt2", "nextlaw_sample": 3, "dtype": "float32", "nextlaw_data": "c.jsonl"}
    assert run_metadata({"nextlaw_seed": 1}, {"nextlaw_seed": 2}) == {"nextlaw_seed": 2}
    assert run_metadata(None, None) == {}


def test_runs_without_nextlaw_tasks_are_not_checked(tmp_path: Path) -> None:
    check_run({"tasks": ["hellaswag", {"task": "x"}], "model": "hf", "use_cache": "c", "metadata": {"nextlaw_data": str(tmp_path / "nowhere.jsonl")}})


def test_a_bad_corpus_or_option_is_refused_before_the_model(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nowhere.jsonl: corpus path not found"):
        check_run({"tasks": ["nextlaw_equilearning", "arc_easy"], "model": "nextlaw", "metadata": {"nextlaw_data": str(tmp_path / "nowhere.jsonl")}})
    with pytest.raises(OptionError, match="nextlaw_max_tokens=2"):
        check_run({"tasks": ["nextlaw"], "model": "nextlaw", "model_args": "pretrained=x,nextlaw_max_tokens=2"})
    corpus = tmp_path / "three.jsonl"
    corpus.write_text('{"text": "a b"}\n{"text": "c"}\n{"text": " "}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="nextlaw_sample=3: corpus .* has 2 non-blank documents"):
        check_run({"tasks": "nextlaw_onehot", "model": "nextlaw", "metadata": {"nextlaw_data": str(corpus), "nextlaw_sample": 3}})
    check_run({"tasks": "nextlaw_onehot", "model": "nextlaw", "metadata": {"nextlaw_data": str(corpus), "nextlaw_sample": 2}})


def test_the_wrapped_run_checks_first_then_runs_with_its_arguments(tmp_path: Path) -> None:
    calls = []

    def simple_evaluate(model, model_args=None, tasks=None, metadata=None, **kwargs):
        calls.append((model, model_args, tasks, metadata, kwargs))
        return "results"

    run = checked(simple_evaluate)
    assert run("nextlaw", model_args="pretrained=x", tasks=["nextlaw_equilearning"], limit=3) == "results"
    assert calls == [("nextlaw", "pretrained=x", ["nextlaw_equilearning"], None, {"limit": 3})]
    with pytest.raises(CorpusError):
        run("nextlaw", tasks=["nextlaw_equilearning"], metadata={"nextlaw_data": str(tmp_path / "none.txt")})
    with pytest.raises(NextlawModelRequired, match="`--model vllm` does not expose .* run it with `--model hf"):
        run("vllm", tasks=["nextlaw_equilearning"])
    # a class lm-eval cannot import here: the message says why too (vllm is not installed in the tests' venv)
    with pytest.raises(NextlawModelRequired, match=r"elsewhere; lm-eval cannot load it here either: No module named 'vllm'\): run it"):
        run("vllm", tasks=["nextlaw_equilearning"])
    run("hf", tasks=["nextlaw_equilearning"])  # HFLM exposes hidden states: measured
    run("steered", tasks=["nextlaw_equilearning"])
    assert len(calls) == 3


def test_fewshot_as_multiturn_alone_is_simple_evaluates_default_and_passes() -> None:
    """lm-eval 0.4.13's simple_evaluate defaults it to True; it acts only with a chat template."""
    check_run({"tasks": ["nextlaw_equilearning"], "model": "nextlaw", "fewshot_as_multiturn": True})
    with pytest.raises(OptionError, match="--apply_chat_template is not for nextlaw tasks"):
        check_run({"tasks": ["nextlaw_equilearning"], "model": "nextlaw", "fewshot_as_multiturn": True,
                   "apply_chat_template": True})


def test_bootstrap_iters_0_turns_the_jackknife_off_unless_the_groups_are_set() -> None:
    calls = []

    def simple_evaluate(model, tasks=None, bootstrap_iters=100000, metadata=None):
        calls.append((bootstrap_iters, metadata))

    run = checked(simple_evaluate)
    run("nextlaw", tasks=["nextlaw_equilearning"], bootstrap_iters=0)
    run("nextlaw", tasks=["nextlaw_equilearning"], bootstrap_iters=0, metadata={"nextlaw_jackknife_groups": 4})
    run("nextlaw", tasks=["nextlaw_equilearning"], metadata={"nextlaw_seed": 3})
    assert calls == [(0, {"nextlaw_jackknife_groups": 0}), (0, {"nextlaw_jackknife_groups": 4}),
                     (100000, {"nextlaw_seed": 3})]


@pytest.mark.parametrize(
    "flag", ["use_cache", "cache_requests", "predict_only", "apply_chat_template",
             "system_instruction", "check_integrity"],
)
def test_flags_that_cannot_apply_are_refused_before_the_model(flag: str) -> None:
    with pytest.raises(OptionError, match=f"nextlaw_equilearning: --{flag} is not for nextlaw tasks: .*leave it out"):
        check_run({"tasks": ["nextlaw_equilearning", "hellaswag"], "model": "nextlaw", flag: "x"})


def test_only_the_nextlaw_wrapper_measures(caplog) -> None:
    from lm_eval.api.model import LM

    class Other(LM):
        loglikelihood = loglikelihood_rolling = generate_until = staticmethod(lambda requests: [])

    with pytest.raises(NextlawModelRequired, match="'nextlaw_onehot' measures hidden states"):
        check_run({"tasks": ["nextlaw_onehot"], "model": "vllm"})
    with pytest.raises(NextlawModelRequired):
        check_run({"tasks": ["nextlaw_onehot"], "model": Other()})
    with caplog.at_level(logging.WARNING):
        check_run({"tasks": ["nextlaw_onehot"], "model": "nextlaw", "gen_kwargs": "temperature=0"})
    assert "--gen_kwargs applies to generation tasks only" in caplog.text


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


def test_folds_law_bounds_layers_and_memory_are_checked_against_the_corpus_and_model(tiny_model_dir, monkeypatch,
                                                                                      tmp_path: Path) -> None:
    import nextlaw_task.harness.preflight as preflight

    corpus = tmp_path / "four.jsonl"
    corpus.write_text("".join(f'{{"text": "document number {i}"}}\n' for i in range(4)), encoding="utf-8")

    def run(**options: Any) -> None:
        check_run({"tasks": ["nextlaw_heldout"], "model": "nextlaw", "model_args": f"pretrained={tiny_model_dir}",
                   "metadata": {"nextlaw_data": str(corpus), **options}, "limit": options.pop("limit", None)})

    assert preflight.model_shape(str(tiny_model_dir)) == (3, 32) and preflight.model_shape("org/name") is None
    run(nextlaw_folds=4)
    with pytest.raises(OptionError, match="nextlaw_folds=4, but the run measures 3 documents"):
        run(nextlaw_folds=4, limit=3)
    with pytest.raises(OptionError, match=r"nextlaw_law_last=5 is outside the states 0..3 of this model"):
        run(nextlaw_law_last=5)
    with pytest.raises(OptionError, match=r"nextlaw_law_first=-5 is outside the states 0..3"):
        run(nextlaw_law_first=-5)
    with pytest.raises(OptionError, match=r"nextlaw_law_first=3 \(state 3\) comes after nextlaw_law_last=-2"):
        run(nextlaw_law_first=3, nextlaw_law_last=-2)
    with pytest.raises(OptionError, match="state 7 is outside 0..3"):
        run(nextlaw_layers="0,7")
    monkeypatch.setattr(preflight, "available_memory", lambda: 40 * 1024)
    with pytest.raises(OptionError, match=r"4 states need .* more than the 40.0 KiB of memory free: lower nextlaw_folds"):
        run(nextlaw_folds=2)
    run(nextlaw_folds=2, nextlaw_memory_budget="20KiB")  # one state per pass within a budget: the plan's business
    with pytest.raises(OptionError, match=r"more than the 40.0 KiB of memory free"):
        run(nextlaw_folds=2, nextlaw_memory_budget="10MiB")


def test_memory_on_a_gpu_is_checked_as_the_plan_will_place_it(tiny_model_dir, monkeypatch, tmp_path: Path) -> None:
    """Mocked device memory: statistics go to the GPU in passes while one state fits half its free
    memory; beyond that they fall back to CPU memory, and a run that fits neither is refused."""
    import nextlaw_task.harness.preflight as preflight

    corpus = tmp_path / "many.jsonl"
    corpus.write_text("".join(f'{{"text": "document number {i}"}}\n' for i in range(50)), encoding="utf-8")
    one = ResidualStatistics.memory_bytes(1, 32, ("id",), 40, n_groups=10, gather_rows=gather_rows_for(32, "cuda"))
    monkeypatch.setattr(preflight.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(preflight.torch.cuda, "mem_get_info", lambda index: (2 * one + 2, 10**12))
    monkeypatch.setattr(preflight, "available_memory", lambda: 1000)

    def run(device: str = "", **options: Any) -> None:
        check_run({"tasks": ["nextlaw_heldout"], "model": "nextlaw",
                   "model_args": f"pretrained={tiny_model_dir}{device}",
                   "metadata": {"nextlaw_data": str(corpus), "nextlaw_folds": 40, **options}})

    run()  # one state fits half the GPU: the plan measures the states in passes
    run(",device=cuda:1")
    with pytest.raises(OptionError, match=r"more than the 1000 B of memory free: lower"):
        run(",device=cpu")
    with pytest.raises(OptionError, match=r"over the GPU budget of .*: lower nextlaw_folds"):
        run(nextlaw_folds=50)
    with pytest.raises(OptionError, match=r"one state's .* is over the GPU budget of 1.0 KiB"):
        run(nextlaw_memory_budget="1KiB")
