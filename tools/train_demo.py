"""Train a small GPT-2 from scratch on the embedded Austen corpus, saving checkpoints to sweep.

The demo behind ``docs/sweep.png``: how the equi-learning law emerges during training. It needs
no download: the tokenizer is a byte-level BPE trained here on the same corpus, and the model is
a fresh ``GPT2Config``. The defaults (6 blocks, width 128, 500 steps of 16 x 64 tokens) take a few
minutes on 2 CPU cores. Each checkpoint is a transformers folder (model + tokenizer, written with
``save_pretrained``) named ``checkpoint-<step>``, which ``nextlaw sweep --checkpoints`` orders by
step; step 0 is the untrained initialisation. Note that the nextlaw task measures on the same
corpus the demo trains on, so the demo shows fitting, not generalisation.

    python tools/train_demo.py --output runs/demo
    nextlaw sweep --checkpoints runs/demo --limit 300 --output runs/demo-sweep
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from nextlaw_task.corpus import embedded_corpus_path, read_documents

DEFAULT_SAVE_STEPS = (0, 25, 50, 100, 200, 350, 500)


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> tf.PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``texts`` that starts every text with ``<bos>``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<eos>")


def token_blocks(texts: Sequence[str], tokenizer: tf.PreTrainedTokenizerFast, length: int) -> torch.Tensor:
    """All texts as one ``<bos> text <eos>`` stream, cut into rows of ``length`` tokens."""
    stream: list[int] = []
    for ids in tokenizer(list(texts))["input_ids"]:
        stream.extend([*ids, tokenizer.eos_token_id])
    rows = len(stream) // length
    if rows == 0:
        raise SystemExit(f"train_demo: the corpus has {len(stream)} tokens, fewer than one block of {length}")
    return torch.tensor(stream[: rows * length]).view(rows, length)


def build_model(args: argparse.Namespace, tokenizer: tf.PreTrainedTokenizerFast) -> tf.GPT2LMHeadModel:
    """A fresh GPT-2 sized by the arguments, with the tokenizer's special ids."""
    config = tf.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.positions,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=args.heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tf.GPT2LMHeadModel(config)


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(model: tf.PreTrainedModel, tokenizer: tf.PreTrainedTokenizerFast, folder: Path) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def train(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train and save the checkpoints; returns the loss log (one entry per checkpoint)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    texts = read_documents(args.corpus or embedded_corpus_path())
    tokenizer = train_tokenizer(texts, args.vocab)
    blocks = token_blocks(texts, tokenizer, args.seq_len)
    model = build_model(args, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    save_steps = sorted(set(args.save_steps))
    log: list[dict[str, float]] = []
    generator = torch.Generator().manual_seed(args.seed)
    start, loss_value = time.perf_counter(), math.nan
    for step in range(save_steps[-1] + 1):
        if step in save_steps:
            save_checkpoint(model, tokenizer, args.output / f"checkpoint-{step}")
            log.append({"step": step, "train_loss": loss_value, "seconds": round(time.perf_counter() - start, 1)})
            print(f"step {step:5d}  loss {loss_value:.3f}  saved checkpoint-{step}", flush=True)
        if step == save_steps[-1]:
            break
        model.train()
        batch = blocks[torch.randint(len(blocks), (args.batch_size,), generator=generator)]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, save_steps[-1], args.lr, args.warmup)
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = loss.item()
    (args.output / "train_log.json").write_text(json.dumps({"args": _jsonable(args), "log": log}, indent=2) + "\n")
    return log


def _jsonable(args: argparse.Namespace) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="folder for checkpoint-<step>/ subfolders")
    parser.add_argument("--corpus", help="documents to train on (default: nextlaw's embedded corpus)")
    parser.add_argument("--save-steps", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_SAVE_STEPS),
                        help="comma-separated steps to save; the largest is the training length")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--positions", type=int, default=512,
                        help="longest context the model takes; nextlaw reads up to 512 tokens of a document")
    parser.add_argument("--seq-len", type=int, default=64, help="training block length in tokens")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
