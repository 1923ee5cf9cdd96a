"""Trustworthy numbers through the real ``lm_eval`` command: batch invariance, precision, bad input.

Every run is a subprocess, as a user types it. The runs of one fixture go two at a time; each test
then checks its numbers against a brute-force fit or a one-document-at-a-time reference, or checks
that a failing run says what is wrong, names the fix, and leaves nothing in its output folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from tiny import MIXED_MAX_TOKENS, MIXED_TASKS, mixed_run_args, tiny_config
from lm_eval_cli import BIN, lm_eval, metrics_of, offline_env, results_of
from nextlaw_task.corpus import embedded_corpus_path, read_documents
from nextlaw_task.options import KNOWN_KEYS
from nextlaw_task.schema import layer_metric
from reference import hidden_state_samples, ols_pr

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

PR_REL = 1e-6  # batch composition changes float32 rounding of the hidden states, nothing else
FLOAT64_REL = 1e-9  # same hidden states, float64 statistics: agreement to float64 rounding
LAW_ABS = 1e-6
N_DOCS, N_LONG, N_EMPTY = 25, 2, 3  # the mixed corpus (conftest.mixed_corpus)
SHORT_CORPUS = ["Yes.", "No, sir.", "It rained."]  # far fewer tokens than hidden size 32
Run = subprocess.CompletedProcess
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Required): ", re.M)


def run_concurrently(runs: Mapping[str, tuple[list[str], Path]]) -> dict[str, Run]:
    """``lm_eval`` for every (args, cwd), two at a time; failures are returned, not raised."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(lm_eval, *args, cwd=cwd, check=False) for name, (args, cwd) in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def error_line(stderr: str) -> str:
    """The one ``error: ...`` line that ends a failed run, with no traceback before it."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, f"not one error line in:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr and not EXCEPTION_LINE.search(stderr), stderr[-3000:]
    return lines[0]


def assert_same_numbers(ours: Mapping[str, float], reference: Mapping[str, float]) -> None:
    """PRs to PR_REL relative, counts exactly, the law's fit (differences of log PRs) to LAW_ABS."""
    assert set(ours) == set(reference)
    for key, value in reference.items():
        if key.startswith("pr_layer"):
            assert ours[key] == pytest.approx(value, rel=PR_REL), key
        elif key.startswith("n_") or key in ("hidden_size", "ill_posed_states"):
            assert ours[key] == value, key
        else:
            assert ours[key] == pytest.approx(value, rel=PR_REL, abs=LAW_ABS), key


def onehot_pr(x: np.ndarray, t: np.ndarray) -> float:
    """Multi-output least squares on one-hot next tokens: total RSS / total TSS (numpy lstsq)."""
    _, codes = np.unique(t, return_inverse=True)
    y = np.eye(codes.max() + 1)[codes]
    spread = x.std(axis=0)
    design = np.column_stack([x / np.where(spread > 0, spread, 1.0), np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coef) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum())


def tokens_of(model_dir: Path, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
    tokenizer = tf.AutoTokenizer.from_pretrained(model_dir)
    return [tokenizer(t, add_special_tokens=True)["input_ids"][:max_tokens] for t in texts]


def save_llama(path: Path, tokenizer_dir: Path, layers: int) -> Path:
    """A tiny random Llama with ``layers`` blocks and the session's tokenizer."""
    tokenizer = tf.AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_config("llama")
    config.num_hidden_layers, config.vocab_size = layers, len(tokenizer)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, attr, getattr(tokenizer, attr))
    torch.manual_seed(layers)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --- batch invariance, padding, two tasks, counts, log_samples, determinism ------------------------

@pytest.fixture(scope="module")
def batched_runs(tiny_model_dir, mixed_corpus, tmp_path_factory) -> dict[str, tuple[Run, dict, Path]]:
    """The mixed-corpus run with batch size 8 (twice, with --log_samples) and auto."""
    args = mixed_run_args(tiny_model_dir, mixed_corpus)
    flags = {"8": ["--batch_size", "8", "--log_samples"], "8 again": ["--batch_size", "8", "--log_samples"],
             "auto": ["--batch_size", "auto"]}
    folders = {name: tmp_path_factory.mktemp("batch") for name in flags}
    done = run_concurrently(
        {name: ([*args, *flags[name], "--output_path", str(folders[name] / "out")], folders[name]) for name in flags}
    )
    for name, run in done.items():
        assert run.returncode == 0, f"batch size {name}:\n{run.stderr[-6000:]}"
    return {name: (run, results_of(folders[name] / "out"), folders[name] / "out") for name, run in done.items()}


@pytest.fixture(scope="module")
def brute_force(tiny_model_dir, mixed_corpus) -> tuple[dict[str, dict[int, float]], int]:
    """Each mixed-corpus task's PR per state from output_hidden_states, one document at a time."""
    texts = [t for t in read_documents(mixed_corpus) if t.strip()]
    tokens = [t[:MIXED_MAX_TOKENS] for t in tokens_of(tiny_model_dir, texts)]
    model = tf.AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    nxt, nxt_t = hidden_state_samples(model, tokens, "next")
    prev, prev_t = hidden_state_samples(model, tokens, "previous")
    prs = {
        "nextlaw_equilearning": {s: ols_pr(x, nxt_t) for s, x in nxt.items()},
        "nextlaw_onehot": {s: onehot_pr(x, nxt_t) for s, x in nxt.items()},
        "nextlaw_flow_previous": {s: ols_pr(x, prev_t) for s, x in prev.items()},
    }
    assert len(nxt_t) == len(prev_t) == sum(len(t) - 1 for t in tokens)
    return prs, len(nxt_t)


def test_batch_sizes_1_8_auto_agree(batch1_run, batched_runs):
    _, reference = batch1_run
    for name in ("8", "auto"):
        results = batched_runs[name][1]
        for task in MIXED_TASKS:
            assert_same_numbers(metrics_of(results, task), metrics_of(reference, task))
    assert batched_runs["auto"][1]["config"]["batch_size"] == "auto"


def test_padding_never_enters_the_statistics(batch1_run, batched_runs, brute_force):
    """Batched runs pad up to 64 tokens per row; every PR equals the unpadded brute-force fit."""
    prs, n_tokens = brute_force
    for results in (batch1_run[1], batched_runs["8"][1], batched_runs["auto"][1]):
        for task in MIXED_TASKS:
            metrics = metrics_of(results, task)
            assert metrics["n_tokens"] == n_tokens, task
            for state, pr in prs[task].items():
                assert metrics[layer_metric("pr", state, 3)] == pytest.approx(pr, rel=PR_REL), (task, state)


def test_tasks_in_one_run_keep_independent_statistics(batch1_run, brute_force):
    """Three tasks share the forward passes; each counts every document once and keeps its own measure."""
    prs, n_tokens = brute_force
    metrics = {task: metrics_of(batch1_run[1], task) for task in MIXED_TASKS}
    for task, values in metrics.items():
        assert (values["n_docs"], values["n_tokens"]) == (N_DOCS, n_tokens), task
        others = [prs[other][3] for other in MIXED_TASKS if other != task]
        assert all(abs(values["pr_layer_03"] - pr) > 1e-3 * pr for pr in others), task


def test_blank_and_long_documents_are_counted(batch1_run, tiny_model_dir, mixed_corpus):
    lengths = [len(t) for t in tokens_of(tiny_model_dir, [t for t in read_documents(mixed_corpus) if t.strip()])]
    truncated = sum(n > MIXED_MAX_TOKENS for n in lengths)
    assert truncated >= N_LONG and len(lengths) == N_DOCS
    for task in MIXED_TASKS:
        metrics = metrics_of(batch1_run[1], task)
        assert (metrics["n_docs"], metrics["n_docs_truncated"], metrics["n_docs_empty"]) == (
            N_DOCS, truncated, N_EMPTY
        ), task
    assert f"skipped {N_EMPTY} empty or whitespace documents" in batch1_run[0].stderr


def test_unknown_nextlaw_key_warns_with_the_known_ones(batch1_run):
    (line, *_) = [line for line in batch1_run[0].stderr.splitlines() if "unknown nextlaw metadata" in line]
    assert "nextlaw_colour" in line
    assert all(key in line.split("known keys")[1] for key in KNOWN_KEYS)


def test_log_samples_records_stay_small(batched_runs):
    """One record per document: its text twice (``doc``, ``arguments``) plus about 64 bytes per metric."""
    _, _, output = batched_runs["8"]
    for task in MIXED_TASKS:
        (path,) = output.rglob(f"samples_{task}_*.jsonl")
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == N_DOCS
        for line in lines:
            record = json.loads(line)
            text = json.dumps(record["doc"]["text"], ensure_ascii=False)
            assert len(line) <= 2 * len(text) + 64 * len(record["metrics"]) + 1024, (task, len(line), len(text))
            assert record["target"] == ""
            assert record["resps"] == [[record["filtered_resps"][0]]]
            assert record["filtered_resps"][0].startswith("nextlaw: ")


def test_two_runs_with_the_same_arguments_are_identical(batched_runs):
    first, again = batched_runs["8"][1], batched_runs["8 again"][1]
    for task in MIXED_TASKS:
        assert metrics_of(first, task) == metrics_of(again, task), task


# --- precision: bfloat16 and float16 weights, float64 statistics, overflow ------------------------

PRECISION_DOCS = 30


@pytest.fixture(scope="module")
def shallow_models(tiny_model_dir, tmp_path_factory) -> dict[int, Path]:
    """Tiny Llamas with one and with two blocks (the law needs three states 1..L)."""
    root = tmp_path_factory.mktemp("shallow")
    return {layers: save_llama(root / f"llama{layers}", tiny_model_dir, layers) for layers in (1, 2)}


@pytest.fixture(scope="module")
def precision_runs(shallow_models, tmp_path_factory) -> dict[str, tuple[Run, dict]]:
    """The two-block model in bfloat16 and the one-block model in float16, batch size 1."""
    plan = {"bfloat16": shallow_models[2], "float16": shallow_models[1]}
    folders = {dtype: tmp_path_factory.mktemp(dtype) for dtype in plan}
    done = run_concurrently({
        dtype: (["--model", "nextlaw", "--model_args", f"pretrained={model},dtype={dtype}", "--tasks",
                 "nextlaw_equilearning", "--limit", str(PRECISION_DOCS), "--batch_size", "1",
                 "--output_path", str(folders[dtype] / "out")], folders[dtype])
        for dtype, model in plan.items()
    })
    for dtype, run in done.items():
        assert run.returncode == 0, f"{dtype}:\n{run.stderr[-6000:]}"
    return {dtype: (run, results_of(folders[dtype] / "out")) for dtype, run in done.items()}


def reference_prs(model_dir: Path, dtype: torch.dtype) -> dict[int, float]:
    """PR per state of the embedded documents, the model in ``dtype``, the fit in float64 numpy."""
    texts = read_documents(embedded_corpus_path())[:PRECISION_DOCS]
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    features, targets = hidden_state_samples(model, tokens_of(model_dir, texts, 512))
    return {s: ols_pr(x, targets) for s, x in features.items()}


@pytest.mark.parametrize(("dtype", "layers"), [("bfloat16", 2), ("float16", 1)])
def test_half_precision_weights_with_float64_statistics(precision_runs, shallow_models, dtype, layers):
    """PRs equal a float64 fit of the half-precision states, and not float32's: the dtype reached the model."""
    _, results = precision_runs[dtype]
    metrics = metrics_of(results, "nextlaw_equilearning")
    ours = reference_prs(shallow_models[layers], getattr(torch, dtype))
    wide = reference_prs(shallow_models[layers], torch.float32)
    assert set(ours) == set(range(layers + 1))
    for state, pr in ours.items():
        assert metrics[layer_metric("pr", state, layers)] == pytest.approx(pr, rel=FLOAT64_REL), state
    assert any(metrics[layer_metric("pr", s, layers)] != pytest.approx(wide[s], rel=PR_REL) for s in wide)


@pytest.mark.parametrize(("dtype", "layers"), [("bfloat16", 2), ("float16", 1)])
def test_one_or_two_layers_report_prs_and_say_why_no_law(precision_runs, dtype, layers):
    run, results = precision_runs[dtype]
    metrics = metrics_of(results, "nextlaw_equilearning")
    assert all(math.isfinite(metrics[layer_metric("pr", s, layers)]) for s in range(layers + 1))
    for key in ("law_slope", "law_intercept", "law_rho", "law_pearson_r", "law_r2", "equilearning_deviation"):
        assert math.isnan(metrics[key]), key
    assert f"not enough layers: {layers} usable states in 1..{layers} (need 3)" in run.stderr


# --- bad input: a clear message, a non-zero exit, nothing written ---------------------------------

def write_short_corpus(folder: Path) -> Path:
    path = folder / "short.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in SHORT_CORPUS), encoding="utf-8")
    return path


def write_apart_corpus(folder: Path) -> Path:
    """Even and odd documents (the two folds of two) share no words: state 0 of each training fold
    spans fewer directions than the held-out fold's embeddings use."""
    texts = [" ".join(["the cat sat on the mat"] * 6) if i % 2 == 0 else " ".join(["dogs run far away quickly"] * 6)
             for i in range(20)]
    path = folder / "apart.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def save_overflowing_model(path: Path, source: Path) -> Path:
    """The session's tiny Llama with embeddings scaled past float16's largest value (65504)."""
    model = tf.AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1e6)
        assert float(model.get_input_embeddings().weight.abs().max()) > 65504
    model.save_pretrained(path)
    tf.AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def save_encoder_decoder(path: Path, source: Path) -> Path:
    """A tiny random T5: transformers loads it, nextlaw must refuse it."""
    tokenizer = tf.AutoTokenizer.from_pretrained(source)
    config = tf.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                         decoder_start_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    tf.AutoModelForSeq2SeqLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# name -> what the user must read in the error that ends the run
FAILURES = {
    "empty corpus": ("empty.txt", "no non-empty documents"),
    "missing path": ("nowhere.jsonl", "corpus path not found", ".jsonl or .json file"),
    "hub id offline": ("someone/no-such-corpus", "Hugging Face Hub could not provide", "save_to_disk"),
    "not UTF-8": ("latin.txt", "not valid UTF-8 at byte offset 3", "iconv"),
    "line not JSON": ("notjson.jsonl, line 3", "not valid JSON"),
    "no text field": ("notext.jsonl", "no field or column 'text' (it has: 'body')", "set nextlaw_text_field"),
    "encoder-decoder model": ("'t5'", "encoder-decoder", "decoder-only"),
    "limit 0": ("--limit 0 selects no documents", "--limit N with N >= 1"),
    "held-out folds too small": ("nextlaw_heldout", "training samples <= hidden size 32 + 1", "more tokens"),
    "float16 overflow": ("state 0 holds NaN or infinite values", "torch.float16", "dtype=bfloat16"),
    "option out of range": ("nextlaw_max_tokens=2", "at least 3 tokens"),
    "budget below one state": ("nextlaw_memory_budget is 1.0 KiB", "raise it, or leave it unset"),
    "model not found": ("cannot load pretrained=", "nowhere-model", "pretrained=smollm2"),
    "bad corpus before the model loads": ("nowhere.jsonl", "corpus path not found"),
    "option misspelt": ("'nextlaw-data' (did you mean 'nextlaw_data'?)", "correct the spelling"),
    "--cache_requests": ("nextlaw_equilearning: --cache_requests is not for nextlaw tasks", "another corpus"),
    "--system_instruction": ("--system_instruction is not for nextlaw tasks", "leave it out"),
    "--apply_chat_template": ("--apply_chat_template is not for nextlaw tasks", "own tokens"),
    "--predict_only": ("--predict_only is not for nextlaw tasks", "only output is its metrics"),
    "--use_cache": ("--use_cache is not for nextlaw tasks", "response cache cannot store"),
    "--check_integrity": ("--check_integrity is not for nextlaw tasks", "pytest suite"),
    "--model vllm": ("'nextlaw_equilearning' measures hidden states", "`--model vllm` does not expose", "--model hf"),
    "law bound beyond the model": ("nextlaw_law_last=5 is outside the states 0..3 of this model",),
    "folds beyond the documents": ("nextlaw_folds=30, but the run measures 20 documents", "at most 20"),
}


@pytest.fixture(scope="module")
def bad_input_runs(tiny_model_dir, tmp_path_factory) -> dict[str, tuple[Run, Path]]:
    """Every failing run, plus the short corpus that succeeds with ill-posed states."""
    data = tmp_path_factory.mktemp("bad-data")
    (data / "empty.txt").write_bytes(b"")
    (data / "latin.txt").write_bytes("Caf\u00e9 au lait.\n".encode("latin-1"))
    (data / "notjson.jsonl").write_text('{"text": "One."}\n\n{oops\n', encoding="utf-8")
    (data / "notext.jsonl").write_text('{"body": "One."}\n{"body": "Two."}\n', encoding="utf-8")
    short = write_short_corpus(data)
    apart = write_apart_corpus(data)
    t5 = save_encoder_decoder(data / "t5", tiny_model_dir)
    overflow = save_overflowing_model(data / "overflow", tiny_model_dir)

    def args(corpus: Path | None = None, model: Path = tiny_model_dir, tasks: str = "nextlaw_equilearning",
             extra: str = "", limit: str | None = "20", options: dict | None = None) -> list[str]:
        options = {**({} if corpus is None else {"nextlaw_data": str(corpus)}), **(options or {})}
        metadata = ["--metadata", json.dumps(options)] if options else []
        return ["--model", "nextlaw", "--model_args", f"pretrained={model}{extra}", "--tasks", tasks, *metadata,
                *(["--limit", limit] if limit is not None else []), "--log_samples"]

    plans = {
        "empty corpus": args(data / "empty.txt"),
        "missing path": args(data / "nowhere.jsonl"),
        "not UTF-8": args(data / "latin.txt"),
        "line not JSON": args(data / "notjson.jsonl"),
        "no text field": args(data / "notext.jsonl"),
        "hub id offline": args(options={"nextlaw_data": "someone/no-such-corpus"}),
        "encoder-decoder model": args(model=t5),
        "limit 0": args(limit="0"),
        "held-out folds too small": args(short, tasks="nextlaw_heldout"),
        "float16 overflow": args(model=overflow, extra=",dtype=float16"),
        "option out of range": args(options={"nextlaw_max_tokens": 2}),
        "budget below one state": args(options={"nextlaw_memory_budget": "1KiB"}),
        "model not found": args(model=data / "nowhere-model"),
        # the model would fail to load too: the corpus, checked first, is what the user reads about
        "bad corpus before the model loads": args(data / "nowhere.jsonl", model=data / "nowhere-model"),
        "ill-posed": args(short),
        "traceback under DEBUG": [*args(data / "nowhere.jsonl"), "--verbosity", "DEBUG"],
        "option misspelt": args(options={"nextlaw-data": str(short)}),
        "--cache_requests": [*args(), "--cache_requests", "true"],
        "--system_instruction": [*args(), "--system_instruction", "Answer briefly."],
        "--num_fewshot": [*args(short), "--num_fewshot", "3"],
        "held-out fit undetermined": args(apart, tasks="nextlaw_heldout", limit=None, options={"nextlaw_folds": 2}),
        "--apply_chat_template": [*args(), "--apply_chat_template"],
        "--predict_only": [*args(), "--predict_only"],
        "--use_cache": [*args(), "--use_cache", str(data / "cache")],
        "--check_integrity": [*args(), "--check_integrity"],
        "--seed, --show_config, --max_batch_size": [*args(short), "--seed", "5,6,7,8", "--show_config",
                                                    "--batch_size", "auto", "--max_batch_size", "2"],
        "--model vllm": ["--model", "vllm", *args()[2:]],
        "law bound beyond the model": args(options={"nextlaw_law_last": 5}),
        "folds beyond the documents": args(options={"nextlaw_folds": 30}),
        "--write_out, --gen_kwargs, --samples": [*args(short, limit=None), "--write_out", "--gen_kwargs", "temperature=0",
                                               "--samples", json.dumps({"nextlaw_equilearning": [0, 2]})],
    }
    folders = {name: tmp_path_factory.mktemp("run") for name in plans}
    done = run_concurrently(
        {name: ([*a, "--output_path", str(folders[name] / "out")], folders[name]) for name, a in plans.items()}
    )
    return {name: (run, folders[name] / "out") for name, run in done.items()}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_bad_input_stops_with_one_error_line_and_writes_nothing(bad_input_runs, case):
    run, output = bad_input_runs[case]
    assert run.returncode != 0, run.stdout[-3000:]
    message = error_line(run.stderr)
    for fragment in FAILURES[case]:
        assert fragment in message, f"{fragment!r} not in the error the user reads: {message}"
    assert written_files(output) == []


def test_num_fewshot_leaves_nextlaw_tasks_at_zero_shots(bad_input_runs):
    run, output = bad_input_runs["--num_fewshot"]
    assert run.returncode == 0, run.stderr[-3000:]
    results = results_of(output)
    assert results["n-shot"]["nextlaw_equilearning"] == 0
    plain = metrics_of(results_of(bad_input_runs["ill-posed"][1]), "nextlaw_equilearning")
    assert json.dumps(metrics_of(results, "nextlaw_equilearning"), sort_keys=True) == json.dumps(plain, sort_keys=True)


def test_seed_show_config_and_max_batch_size_leave_the_numbers_alone(bad_input_runs):
    """Nothing nextlaw measures draws from lm-eval's seeds (nextlaw_seed drives its own draws)."""
    run, output = bad_input_runs["--seed, --show_config, --max_batch_size"]
    assert run.returncode == 0, run.stderr[-3000:]
    results = results_of(output)
    assert results["config"]["random_seed"] == 5 and '"random_seed": 5' in run.stdout  # --show_config printed it
    plain = metrics_of(results_of(bad_input_runs["ill-posed"][1]), "nextlaw_equilearning")
    assert json.dumps(metrics_of(results, "nextlaw_equilearning"), sort_keys=True) == json.dumps(plain, sort_keys=True)


def test_write_out_gen_kwargs_and_samples_are_honoured(bad_input_runs):
    run, output = bad_input_runs["--write_out, --gen_kwargs, --samples"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "context prompt (starting on next line)" in run.stderr and SHORT_CORPUS[0] in run.stderr
    assert "--gen_kwargs applies to generation tasks only" in run.stderr
    assert metrics_of(results_of(output), "nextlaw_equilearning")["n_docs"] == 2


def test_the_traceback_shows_under_verbosity_debug(bad_input_runs):
    run, output = bad_input_runs["traceback under DEBUG"]
    assert run.returncode != 0 and "Traceback (most recent call last)" in run.stderr
    assert "nextlaw_task.corpus" in run.stderr and "CorpusError: " in run.stderr and "nowhere.jsonl" in run.stderr
    assert written_files(output) == []


def test_fewer_tokens_than_hidden_size_warns_and_flags_every_state(bad_input_runs):
    run, output = bad_input_runs["ill-posed"]
    assert run.returncode == 0, run.stderr[-6000:]
    metrics = metrics_of(results_of(output), "nextlaw_equilearning")
    n = int(metrics["n_tokens"])
    assert 0 < n <= 32 and metrics["n_docs"] == len(SHORT_CORPUS)
    assert metrics["ill_posed_states"] == 4.0
    # not results: NaN, flagged per state, never a number a plot or a ranking would take
    assert all(math.isnan(metrics[layer_metric("pr", s, 3)]) for s in range(4))
    assert all(metrics[layer_metric("ill_posed", s, 3)] == 1.0 for s in range(4))
    assert math.isnan(metrics["law_slope"]) and metrics["law_n_states"] == 0
    assert f"{n} samples <= hidden size 32 + 1" in run.stderr
    assert "4 of 4 states are ill-posed" in run.stderr


def test_a_held_out_fit_undetermined_on_its_test_fold_is_nan_and_flagged(bad_input_runs):
    """State 0 (embeddings) of one fold's training documents cannot predict the other fold's new words."""
    run, output = bad_input_runs["held-out fit undetermined"]
    assert run.returncode == 0, run.stderr[-6000:]
    metrics = metrics_of(results_of(output), "nextlaw_heldout")
    assert math.isnan(metrics["pr_layer_00"]) and metrics["ill_posed_layer_00"] == 1.0
    assert all(math.isfinite(metrics[layer_metric("pr", s, 3)]) for s in (1, 2, 3))
    assert (metrics["law_first_state"], metrics["law_n_states"]) == (1.0, 3.0)
    assert "state 0, fold 1: the training folds determine the fit in only" in run.stderr
    assert "1 of 4 states are ill-posed" in run.stderr


# --- an interrupt --------------------------------------------------------------------------------

def test_interrupt_mid_run_leaves_no_results_file(tiny_model_dir, tmp_path):
    """SIGINT once the hidden-state pass has started: the run stops and writes no results file."""
    output = tmp_path / "out"
    command = [str(BIN / "lm_eval"), "--model", "nextlaw", "--model_args", f"pretrained={tiny_model_dir}",
               "--tasks", "nextlaw_equilearning", "--batch_size", "1", "--log_samples", "--output_path", str(output)]
    # A shell that starts pytest in the background (`make test &`) makes it ignore SIGINT, and children
    # inherit that: give lm_eval the default handling, as in a terminal.
    process = subprocess.Popen(command, cwd=tmp_path, env=offline_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while b"nextlaw hidden states" not in seen:  # the progress bar appears before the first batch
        chunk = os.read(process.stderr.fileno(), 65536)
        if not chunk:
            break
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=600)
    log = (seen + rest).decode(errors="replace")
    assert process.returncode != 0, log[-3000:]
    assert "KeyboardInterrupt" in log
    assert written_files(output) == []
