"""Shared fixtures: tiny randomly initialised models, built once per session, no downloads."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import torch
import transformers as tf

import nextlaw_task

VOCAB = 96
CHECKOUT = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    """Refuse to test a stale install: the start-up hook imports the installed package first."""
    installed = Path(nextlaw_task.__file__).resolve().parent
    if installed == CHECKOUT / "nextlaw_task":
        return
    stale = [p.name for p in (CHECKOUT / "nextlaw_task").glob("*.py") if not filecmp.cmp(p, installed / p.name, shallow=False)
             ] if installed.is_dir() else ["?"]
    if stale:
        raise pytest.UsageError(
            f"the installed nextlaw at {installed} differs from this checkout ({', '.join(sorted(stale))}); "
            "run `make install` (or `pip install .`) first: subprocess tests run the installed package"
        )


def tiny_config(arch: str):
    """A 3-block config of each architecture the capture must support."""
    common = dict(num_hidden_layers=3, hidden_size=32, vocab_size=VOCAB)
    attn = dict(intermediate_size=64, num_attention_heads=4)
    configs = {
        "gpt2": lambda: tf.GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=128,
                                      bos_token_id=0, eos_token_id=0),
        "llama": lambda: tf.LlamaConfig(**common, **attn, num_key_value_heads=2),
        "qwen2": lambda: tf.Qwen2Config(**common, **attn, num_key_value_heads=2),
        "mistral": lambda: tf.MistralConfig(**common, **attn, num_key_value_heads=2),
        "gemma3": lambda: tf.Gemma3TextConfig(**common, **attn, num_key_value_heads=2, head_dim=8,
                                              sliding_window=8),
        "phi": lambda: tf.PhiConfig(**common, **attn),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**common, **attn),
        "mamba": lambda: tf.MambaConfig(**common, state_size=4),
        "rwkv": lambda: tf.RwkvConfig(**common, attention_hidden_size=32, intermediate_size=64,
                                      context_length=128),
    }
    return configs[arch]()


ARCHITECTURES = ("gpt2", "llama", "qwen2", "mistral", "gemma3", "phi", "gpt_neox", "mamba", "rwkv")


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, torch.nn.Module]:
    """One tiny random causal LM per architecture, in eval mode."""
    torch.manual_seed(0)
    return {arch: tf.AutoModelForCausalLM.from_config(tiny_config(arch)).eval() for arch in ARCHITECTURES}


def train_tokenizer(texts: list[str], vocab_size: int = 512) -> tf.PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer trained offline, with a BOS token it prepends by default."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<eos>")


def save_tiny_model(path: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Save a tiny random model of ``arch`` with a trained tokenizer as a transformers folder."""
    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    tokenizer = train_tokenizer(read_documents(embedded_corpus_path())[:1000])
    config = tiny_config(arch)
    config.vocab_size = len(tokenizer)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(config, attr, getattr(tokenizer, attr))
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama with a 512-token BPE tokenizer, saved once per session."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


# --- reliability runs through the real command (test_reliability.py, test_distributed.py) ---------

MIXED_MAX_TOKENS = 64
MIXED_TASKS = ("nextlaw_equilearning", "nextlaw_onehot", "nextlaw_flow_previous")


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


def mixed_run_args(model_dir: Path, corpus: Path) -> list[str]:
    """``lm_eval`` arguments of the runs over the mixed corpus (three tasks, an unknown nextlaw key)."""
    metadata = {"nextlaw_data": str(corpus), "nextlaw_max_tokens": MIXED_MAX_TOKENS, "nextlaw_colour": "red"}
    return ["--model", "nextlaw", "--model_args", f"pretrained={model_dir}", "--tasks", ",".join(MIXED_TASKS),
            "--metadata", json.dumps(metadata)]


@pytest.fixture(scope="session")
def batch1_run(tiny_model_dir, mixed_corpus, tmp_path_factory):
    """One process, batch size 1 (no padding): the reference run of batch invariance and data parallelism."""
    from lm_eval_cli import lm_eval, results_of

    folder = tmp_path_factory.mktemp("batch1")
    done = lm_eval(*mixed_run_args(tiny_model_dir, mixed_corpus), "--batch_size", "1",
                   "--output_path", str(folder / "out"), cwd=folder)
    return done, results_of(folder / "out")
