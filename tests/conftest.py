"""Shared fixtures: tiny randomly initialised models, built once per session, no downloads."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import torch
import transformers as tf

import nextlaw_task
from tiny import ARCHITECTURES, mixed_run_args, save_tiny_model, tiny_config

CHECKOUT = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """Refuse to test a stale install: the start-up hook imports the installed package first."""
    installed = Path(nextlaw_task.__file__).resolve().parent
    if installed == CHECKOUT / "nextlaw_task":
        return
    source = CHECKOUT / "nextlaw_task"
    stale = [str(p.relative_to(source)) for p in source.rglob("*.py")
             if not (installed / p.relative_to(source)).is_file()
             or not filecmp.cmp(p, installed / p.relative_to(source), shallow=False)] if installed.is_dir() else ["?"]
    if stale:
        raise pytest.UsageError(
            f"the installed nextlaw at {installed} differs from this checkout ({', '.join(sorted(stale))}); "
            "run `make install` (or `pip install .`) first: subprocess tests run the installed package"
        )


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, torch.nn.Module]:
    """One tiny random causal LM per architecture, in eval mode."""
    torch.manual_seed(0)
    return {arch: tf.AutoModelForCausalLM.from_config(tiny_config(arch)).eval() for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama with a 512-token BPE tokenizer, saved once per session."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


# --- reliability runs through the real command (test_reliability.py, test_distributed.py) ---------

@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory) -> Path:
    """25 documents with text, 2 of them longer than MIXED_MAX_TOKENS, among 3 empty or blank ones."""
    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    sentences = read_documents(embedded_corpus_path())
    texts = sentences[:23] + [" ".join(sentences[100:130]), " ".join(sentences[130:160])]
    for position, blank in ((3, ""), (10, "   "), (20, "\n\t ")):
        texts.insert(position, blank)
    path = tmp_path_factory.mktemp("mixed-corpus") / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def batch1_run(tiny_model_dir, mixed_corpus, tmp_path_factory):
    """One process, batch size 1 (no padding): the reference run of batch invariance and data parallelism."""
    from lm_eval_cli import lm_eval, results_of

    folder = tmp_path_factory.mktemp("batch1")
    done = lm_eval(*mixed_run_args(tiny_model_dir, mixed_corpus), "--batch_size", "1",
                   "--output_path", str(folder / "out"), cwd=folder)
    return done, results_of(folder / "out")
