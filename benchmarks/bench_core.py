"""Micro-benchmark of the streaming engine: update cost per token per state, and solve time.

For each hidden size d it times, on one batch of n tokens:
- one float32 GEMM (n x d)^T (n x d) and one float64 GEMM of the same shape (the yardsticks),
- the symmetric float64 Gram update alone with 1, 2, 4, 8 and 16 blocks (k blocks do (k + 1) / 2k of a GEMM),
- ``ResidualStatistics.partial_fit`` for one state with the id measure, and with onehot,
and then ``compute()`` for all four measures (in-sample) after ``--tokens`` tokens.

    python benchmarks/bench_core.py --dims 576 2048 4096 --tokens 8192 --out benchmarks/out/core.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nextlaw_task.engine.stats import ResidualStatistics
from nextlaw_task.engine.sums import add_gram

ALL_MEASURES = ("id", "shuffled_id", "onehot", "separation_fuzziness")
VOCAB = 32_000
#: block counts of the symmetric Gram update timed (the engine uses one per 128 columns, at most 8)
GRAM_BLOCKS = (1, 2, 4, 8, 16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` timed runs after one warm-up run."""
    run()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _batch(n: int, d: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    features = torch.tensor(rng.normal(size=(n, d)) + 3.0, dtype=torch.float32, device=device)
    targets = torch.tensor((rng.zipf(1.2, size=n) - 1) % VOCAB, dtype=torch.int64, device=device)
    return features, targets


def bench_dim(d: int, batch: int, tokens: int, repeats: int, device: torch.device) -> dict[str, float]:
    features, targets = _batch(batch, d, 0, device)
    f64 = features.double()
    us = 1e6 / batch
    row: dict[str, float] = {"d": d, "batch": batch}
    row["gemm_fp32_us_per_token"] = _best_seconds(lambda: features.T @ features, device, repeats) * us
    row["gemm_fp64_us_per_token"] = _best_seconds(lambda: f64.T @ f64, device, repeats) * us
    zz = f64.new_zeros(d, d)
    for blocks in GRAM_BLOCKS:
        row[f"gram_{blocks}_blocks_us_per_token"] = _best_seconds(lambda: add_gram(zz, f64, blocks), device, repeats) * us
    for measure in ("id", "onehot"):
        acc = ResidualStatistics([0], (measure,), vocab_size=VOCAB, device=device, check_values=False)  # as the runner
        seconds = _best_seconds(lambda: acc.partial_fit(0, features, targets), device, repeats)
        row[f"update_{measure}_us_per_token"] = seconds * us
    acc = ResidualStatistics([0], ALL_MEASURES, vocab_size=VOCAB, device=device)
    for seed in range(max(1, tokens // batch)):
        acc.partial_fit(0, *_batch(batch, d, seed, device))
    start = time.perf_counter()
    results = acc.compute()
    _sync(device)
    row["compute_all_measures_s"] = time.perf_counter() - start
    row["compute_tokens"] = acc.n_tokens
    row["compute_classes"] = len(acc._classes)
    row["ill_posed"] = bool(any(r.ill_posed for r in results.values()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[576, 2048, 4096])
    parser.add_argument("--batch", type=int, default=2048, help="tokens per partial_fit call")
    parser.add_argument("--tokens", type=int, default=8192, help="tokens fed before timing compute()")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [bench_dim(d, args.batch, args.tokens, args.repeats, device) for d in args.dims]
    header = f"{'d':>5} {'fp32 GEMM':>10} {'fp64 GEMM':>10} {'update id':>10} {'update 1hot':>11} {'compute s':>10} {'classes':>8}"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, us per token per state")
    print(header)
    for r in rows:
        print(
            f"{r['d']:>5} {r['gemm_fp32_us_per_token']:>10.2f} {r['gemm_fp64_us_per_token']:>10.2f} "
            f"{r['update_id_us_per_token']:>10.2f} {r['update_onehot_us_per_token']:>11.2f} "
            f"{r['compute_all_measures_s']:>10.2f} {r['compute_classes']:>8}"
        )
    print("float64 Gram update by block count, us per token: " + "; ".join(
        f"d={r['d']}: " + ", ".join(f"{k}: {r[f'gram_{k}_blocks_us_per_token']:.2f}" for k in GRAM_BLOCKS) for r in rows
    ))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
