"""Tiny models and corpora the tests build offline: configs of every architecture the capture
supports, a small trained BPE tokenizer, and the arguments of the reliability runs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers as tf

VOCAB = 96


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


MIXED_MAX_TOKENS = 64
MIXED_TASKS = ("nextlaw_equilearning", "nextlaw_onehot", "nextlaw_flow_previous")


def mixed_run_args(model_dir: Path, corpus: Path) -> list[str]:
    """``lm_eval`` arguments of the runs over the mixed corpus (three tasks, an unknown nextlaw key)."""
    metadata = {"nextlaw_data": str(corpus), "nextlaw_max_tokens": MIXED_MAX_TOKENS, "nextlaw_colour": "red"}
    return ["--model", "nextlaw", "--model_args", f"pretrained={model_dir}", "--tasks", ",".join(MIXED_TASKS),
            "--metadata", json.dumps(metadata)]


def load_tasks(names: list[str], metadata: dict | None = None) -> dict:
    """``{"tasks": {name: task}}`` for nextlaw's tasks, on every supported lm-eval release
    (``TaskManager.load`` from 0.4.12; before, a nested ``load_task_or_group``)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_defaults=False, metadata=metadata or {})
    if hasattr(manager, "load"):
        return manager.load(names)
    flat: dict = {}

    def walk(tree: dict) -> None:
        for key, value in tree.items():
            walk(value) if isinstance(value, dict) else flat.__setitem__(getattr(key, "group_name", key), value)

    walk(manager.load_task_or_group(names))
    return {"tasks": flat}


def write_local_tasks(folder: Path) -> None:
    """A multiple-choice and a rolling-loglikelihood task over local jsonl files."""
    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    docs = read_documents(embedded_corpus_path())
    mc = [
        {"question": docs[i], "choices": [docs[i + 1][:40], docs[i + 2][:40], docs[i + 3][:40]], "label": i % 3}
        for i in range(0, 40, 4)
    ]
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc))
    (folder / "rolling.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[100:112]))
    common = "dataset_path: json\ntest_split: train\n"
    (folder / "tiny_mc.yaml").write_text(
        f"task: tiny_mc\n{common}dataset_kwargs:\n  data_files: {folder / 'mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    (folder / "tiny_rolling.yaml").write_text(
        f"task: tiny_rolling\n{common}dataset_kwargs:\n  data_files: {folder / 'rolling.jsonl'}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
    )
