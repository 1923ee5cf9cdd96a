"""How far ``nextlaw_precision: fast`` moves each state's PR from float64, against what its check reports.

    python benchmarks/fast_precision.py                          # the embedded SmolLM2, 300 sentences
    python benchmarks/fast_precision.py --model random-llama-7b-width --sentences 600
    python benchmarks/fast_precision.py --device cuda --dtype bfloat16     # TF32 tensor-core products

On the same batches (the embedded corpus, longest first, 32 a batch, jackknife off) it runs the
runner twice in one process, in fast and in float64 precision, and prints per state the PR, the
actual deviation of the fast PR and the deviation the check reports (inf: the state would be
measured again in float64). ``random-llama-7b-width`` is a Llama with random weights of the 7B
width (hidden size 4096, MLP 11008, 32 heads) and 2 blocks, built in memory: the statistics of a
7B model's states, with a forward pass a CPU can afford.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline  # noqa: E402  (the benchmark's corpus, batches and models)

from nextlaw_task.options import MeasurementSpec  # noqa: E402
from nextlaw_task.pipeline.capture import locate_states  # noqa: E402
from nextlaw_task.pipeline.plan import Document  # noqa: E402
from nextlaw_task.pipeline.runner import CorpusRunner  # noqa: E402


def model_and_tokens(name: str, sentences: int, out: Path, device: str = "cpu",
                     dtype: str = "float32") -> tuple[torch.nn.Module, list[list[list[int]]], int]:
    """The model's base network on ``device`` in ``dtype``, the benchmark's batches of token ids and the
    vocabulary size."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nextlaw_task.harness.embedded import embedded_model_dir

    folder = embedded_model_dir()
    data = bench_pipeline.corpus(sentences, out, bench_pipeline.REPO / "tasks" / "data" / "austen")
    batches = bench_pipeline.batches(data, folder, 32)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    if name == "smollm2":
        args = argparse.Namespace(model_dir=folder, dtype=dtype, device=device)
        return bench_pipeline.base_network(args), batches, vocab
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=vocab, max_position_embeddings=2048)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(config).to(getattr(torch, dtype)).eval(), batches, vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "random-llama-7b-width"], default="smollm2")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--out", type=Path, default=bench_pipeline.REPO / "benchmarks" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model, batches, vocab = model_and_tokens(args.model, args.sentences, args.out, args.device, args.dtype)
    layout = locate_states(model)
    documents = [[Document(tuple(t), (("t", 1000 * i + j),)) for j, t in enumerate(b)] for i, b in enumerate(batches)]
    values, seconds, checked = {}, {}, {}
    for precision in ("fast", "float64"):
        runner = CorpusRunner(layout, [MeasurementSpec(task="t", precision=precision, jackknife_groups=0)], vocab)
        start = time.perf_counter()
        for batch in documents:
            runner.feed(batch, args.device)
        runner.end_pass()  # the fast pass's states over the tolerance are left unchecked here, not re-measured
        bench_pipeline.synchronize(args.device)
        seconds[precision] = time.perf_counter() - start
        values[precision] = runner.state.results[0]["id"].values
        checked = checked if precision == "float64" else dict(runner.state.deviations)
    tokens = sum(len(t) for batch in batches for t in batch)
    device = bench_pipeline.cuda_name() if args.device.startswith("cuda") else args.device
    print(f"{args.model} ({args.dtype}) on {device}, {tokens} tokens: fast {seconds['fast']:.1f} s, "
          f"float64 {seconds['float64']:.1f} s")
    print("| state | PR (float64) | actual deviation | checked deviation |\n|---:|---:|---:|---:|")
    for state, exact in values["float64"].items():
        print(f"| {state} | {exact:.6f} | {abs(values['fast'][state] - exact):.2g} | {checked[state]:.2g} |")


if __name__ == "__main__":
    main()
