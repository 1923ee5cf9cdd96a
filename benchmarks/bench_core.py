"""Micro-benchmark of the streaming engine: update cost per token per state, and solve time.

For each hidden size d it times, on one batch of n tokens:
- one float32 GEMM (n x d)^T (n x d) and one float64 GEMM of the same shape (the yardsticks),
- the symmetric float64 Gram update alone with 1, 2, 4, 8 and 16 blocks (k blocks do (k + 1) / 2k of a GEMM),
- ``ResidualStatistics.partial_fit`` for one state with the id measure, and with onehot,
and then ``compute()`` for all four measures (in-sample) after ``--tokens`` tokens.

``--row-blocks 80 288 1024`` also times the Gram update a row costs when rows come in blocks of those
lengths, in float64 and in the ``fast`` precision, its float32 products added to the float64 sums at once
(as rows gathered on a GPU are) or summed in a float32 chunk of up to 1024 rows first (as a CPU's are); 80
rows is a jackknife cell's share of a CPU batch of 32 sentences, d / 2 what a cell gathers on a GPU. It
also times the Cholesky factorizations a state's jackknife solve makes (one per cell and one for all rows).
The matrices stay in the cache here; in a run, every state's cells take turns.

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

from nextlaw_task.engine.precision import FAST_CHUNK_ROWS, FastGram
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


def bench_row_blocks(d: int, lengths: list[int], cells: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Microseconds a row costs in the Gram update of a (d + 1)-column state, by the rows of each update, in
    float64 and in fast precision; and milliseconds of the jackknife solve's ``cells`` + 1 factorizations."""
    row: dict[str, float] = {"d": d}
    zz = torch.zeros(1, d + 1, d + 1, dtype=torch.float64, device=device)
    for n in lengths:
        rows = _batch(n, d + 1, n, device)[0].double()
        updates = -(-FAST_CHUNK_ROWS // n)  # a float32 chunk's worth of updates, then its addition
        row[f"float64_{n}_rows_us_per_row"] = _best_seconds(lambda: add_gram(zz[0], rows), device, repeats) * 1e6 / n
        for name, accumulate in (("fast", False), ("fast_chunked", True)):
            fast = FastGram(d + 1, device, accumulate=accumulate)

            def chunk() -> None:
                fast.chunks = 1  # not a sampled chunk: the products alone, as in 15 of 16 chunks
                for _ in range(updates):
                    fast.update(zz, 0, rows)
                fast.flush(zz)

            row[f"{name}_{n}_rows_us_per_row"] = _best_seconds(chunk, device, repeats) * 1e6 / (n * updates)
    features = _batch(4 * d, d, 1, device)[0].double()
    gram = features.T @ features
    factor = lambda: [torch.linalg.cholesky_ex(gram) for _ in range(cells + 1)]  # noqa: E731
    row["jackknife_factorizations_ms"] = _best_seconds(factor, device, repeats) * 1e3
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[576, 2048, 4096])
    parser.add_argument("--batch", type=int, default=2048, help="tokens per partial_fit call")
    parser.add_argument("--tokens", type=int, default=8192, help="tokens fed before timing compute()")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--row-blocks", type=int, nargs="*", default=[],
                        help="also time the Gram update per row in blocks of these many rows, float64 and fast")
    parser.add_argument("--cells", type=int, default=10, help="jackknife cells of the solve timed with --row-blocks")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [bench_dim(d, args.batch, args.tokens, args.repeats, device) for d in args.dims]
    blocks = [bench_row_blocks(d, args.row_blocks, args.cells, args.repeats, device) for d in args.dims if args.row_blocks]
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
    for r in blocks:
        print(f"d={r['d']}, Gram update per row (us) by rows an update, float64 / fast / fast chunked: " + "; ".join(
            f"{n}: {r[f'float64_{n}_rows_us_per_row']:.2f} / {r[f'fast_{n}_rows_us_per_row']:.2f} / "
            f"{r[f'fast_chunked_{n}_rows_us_per_row']:.2f}" for n in args.row_blocks
        ) + f"; jackknife solve, {args.cells + 1} factorizations: {r['jackknife_factorizations_ms']:.1f} ms a state")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows, "row_blocks": blocks}, indent=2))


if __name__ == "__main__":
    main()
