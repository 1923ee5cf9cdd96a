"""Where the time of nextlaw's pass goes, stage by stage, in one process (the model loaded once).

    python benchmarks/profile_pass.py                                   # SmolLM2 on the CPU
    python benchmarks/profile_pass.py --model random-llama-7b --device cuda --dtype bfloat16

On the batches of ``bench_pipeline.py`` (same corpus, tokenization, order and batch size) it times
cumulative stages, so that each difference is what one stage adds:

- floor:      the base network alone, nothing captured;
- hooks:      the same pass with every state handed to a sink that does nothing;
- normalize:  the sink also takes each state's rows and normalizes them in float64;
- statistics: ``CorpusRunner.feed``, all that nextlaw does per batch (the float64 Gram updates too);
- solve:      the end of the pass: every state's least squares and the law.

``--precision float64 fast`` times the last two stages once in each precision (fast: the check too).
On a GPU they are timed twice more, ``no overlap``: the statistics on the model's stream
(``CorpusRunner(overlap=False)``, the same windows of states) against the side stream of a real run.

``--beside`` (a CPU) asks whether the statistics could hide behind the forward pass on a thread of their
own, as they do on a GPU's side stream: it times the run's float64 Gram updates alone (random rows of the
run's shapes: every batch's rows split over the jackknife cells, into every state's cells), then the floor
with those updates on a second thread (one intra-op thread of its own), and reports the share of the
updates' time that the overlap hid.

Every stage runs ``--repeats`` times after one warm-up batch; the fastest run counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline  # noqa: E402  (the benchmark's corpus, models and batches)

from nextlaw_task.pipeline.capture import locate_states, run_decoder  # noqa: E402
from nextlaw_task.pipeline.normalize import FinalNorm, normalize_states  # noqa: E402
from nextlaw_task.engine.jackknife import cell_count  # noqa: E402
from nextlaw_task.engine.sums import add_gram  # noqa: E402
from nextlaw_task.options import MeasurementSpec  # noqa: E402
from nextlaw_task.pipeline.plan import Document  # noqa: E402
from nextlaw_task.pipeline.runner import CorpusRunner  # noqa: E402


def timed(step, work, device: str, repeats: int) -> float:
    """Fastest of ``repeats`` passes of ``step`` over ``work``, after a warm-up on the first batch."""
    step(*work[0])
    bench_pipeline.synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in work:
            step(*batch)
        bench_pipeline.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


#: a piece of work timed by :func:`beside`
Step = Callable[[], None]


def gram_updates(tokens: list[int], states: int, size: int, cells: int) -> tuple[Step, Step]:
    """The float64 Gram updates of a run on random rows (``tokens`` a batch, each batch's rows split over
    ``cells``, into every state's cells), as ``(prepare, update)``: ``update()`` makes them all."""
    sums: list[torch.Tensor] = []
    rows = [torch.randn(max(1, n // cells), size, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
            for n in tokens]

    def prepare() -> None:
        sums[:] = [torch.zeros(cells, size, size, dtype=torch.float64) for _ in range(states)]

    def update() -> None:
        for block in rows:
            for zz in sums:
                for cell in range(cells):
                    add_gram(zz[cell], block)

    return prepare, update


def beside(floor, work, updates: tuple[Step, Step], repeats: int) -> dict[str, float]:
    """Seconds of the updates alone (all intra-op threads) and of the floor with the updates on a second
    thread (one intra-op thread), fastest of ``repeats``; the share of the updates' time the overlap hid
    is taken against the floor's own time."""
    prepare, update = updates
    prepare()
    alone = timed(update, [()], "cpu", repeats)

    def worker() -> None:
        torch.set_num_threads(1)
        update()

    both = float("inf")
    for _ in range(repeats):
        prepare()
        thread = threading.Thread(target=worker)
        start = time.perf_counter()
        thread.start()
        for batch in work:
            floor(*batch)
        thread.join()
        both = min(both, time.perf_counter() - start)
    return {"updates (float64)": alone, "floor beside updates": both}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", *bench_pipeline.RANDOM_LLAMAS], default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--sentences", type=int, help="corpus size (default: 300 on CPU, 3000 on CUDA)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", nargs="+", choices=["float64", "fast"], default=["float64"],
                        help="nextlaw_precision of the statistics and solve stages; both: one stage pair each")
    parser.add_argument("--beside", action="store_true",
                        help="(a CPU) time the float64 Gram updates alone and on a thread beside the floor")
    parser.add_argument("--austen", type=Path, default=bench_pipeline.REPO / "tasks" / "data" / "austen")
    parser.add_argument("--out", type=Path, default=bench_pipeline.REPO / "benchmarks" / "out")
    args = parser.parse_args()
    if args.beside and args.device != "cpu":
        parser.error("--beside measures a CPU: on a GPU the statistics' side stream is timed already")
    args.sentences = args.sentences or (3000 if args.device.startswith("cuda") else 300)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.model_dir = bench_pipeline.model_dir(args.model, args.out, args.device, args.dtype)
    data = bench_pipeline.corpus(args.sentences, args.out, args.austen)
    token_batches = bench_pipeline.batches(data, args.model_dir, args.batch_size)
    work = [(batch, *bench_pipeline.padded(batch, args.device)) for batch in token_batches]
    tokens = sum(len(t) for batch in token_batches for t in batch)

    decoder = bench_pipeline.base_network(args)
    layout = locate_states(decoder)
    states = list(range(layout.n_layers + 1))
    final_norm = FinalNorm.of(layout.final_norm, layout.model_type)
    vocab = len(__import__("transformers").AutoTokenizer.from_pretrained(args.model_dir))

    def floor(_batch, ids, mask):
        with torch.inference_mode():
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)

    def hooks(_batch, ids, mask):
        run_decoder(layout, ids, mask, states, lambda state, hidden: None)

    def normalize(_batch, ids, mask):
        rows = torch.nonzero(mask.flatten()).flatten()

        def sink(state: int, hidden: torch.Tensor) -> None:
            flat = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
            normalize_states(flat, state, layout.n_layers, "initialized_ln", final_norm)

        run_decoder(layout, ids, mask, states, sink)

    seconds = {"floor": timed(floor, work, args.device, args.repeats)}
    seconds["hooks"] = timed(hooks, work, args.device, args.repeats)
    seconds["normalize"] = timed(normalize, work, args.device, args.repeats)
    overlaps = (True, False) if args.device.startswith("cuda") else (True,)
    for precision, overlap in ((p, o) for p in args.precision for o in overlaps):
        named = [precision] * (args.precision != ["float64"]) + ["no overlap"] * (not overlap)
        suffix = f" ({', '.join(named)})" if named else ""
        spec = MeasurementSpec(task="nextlaw_equilearning", precision=precision)
        documents = [[Document(tuple(t), ((spec.task, i),)) for i, t in enumerate(b)] for b in token_batches]
        runner: list[CorpusRunner] = []

        def statistics(batch, _ids, _mask):
            if not runner:
                runner.append(CorpusRunner(layout, [spec], vocab, overlap=overlap))
            runner[0].feed(documents[token_batches.index(batch)], args.device)

        seconds[f"statistics{suffix}"] = timed(statistics, work, args.device, 1)
        start = time.perf_counter()
        runner[0].finish(spec.task)
        bench_pipeline.synchronize(args.device)
        seconds[f"solve{suffix}"] = time.perf_counter() - start

    if args.beside:
        per_batch = [sum(map(len, batch)) for batch in token_batches]
        cells = cell_count(0, MeasurementSpec(task="nextlaw_equilearning").jackknife_groups)
        updates = gram_updates(per_batch, len(states), layout.hidden_size + 1, cells)
        seconds.update(beside(floor, work, updates, args.repeats))

    device = bench_pipeline.cuda_name() if args.device.startswith("cuda") else args.device
    lines = [f"{args.model} ({args.dtype}) on {device}, {len(token_batches)} batches, {tokens} tokens",
             "| stage | seconds | x floor | tokens/s |", "|---|---:|---:|---:|"]
    for name, value in seconds.items():
        total = seconds[name.replace("solve", "statistics")] + value if name.startswith("solve") else value
        lines.append(f"| {name} | {value:.2f} | {total / seconds['floor']:.3f} | {tokens / value:.0f} |")
    report = {"model": args.model, "dtype": args.dtype, "device": device, "tokens": tokens, "seconds": seconds}
    if args.beside:
        alone, both = seconds["updates (float64)"], seconds["floor beside updates"]
        report["hidden_share"] = (seconds["floor"] + alone - both) / alone
        lines.append(f"\nthe Gram updates on a thread beside the floor: {report['hidden_share']:.1%} of their "
                     f"{alone:.2f} s hidden (floor {seconds['floor']:.2f} s, both {both:.2f} s)")
    stem = f"profile_{args.model}_{args.device.split(':')[0]}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
