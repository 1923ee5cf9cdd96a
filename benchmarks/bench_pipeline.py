"""What the measurement costs beside the forward pass: one command, a JSON and a markdown table.

    python benchmarks/bench_pipeline.py                      # SmolLM2 on 2 CPU cores, under 15 min
    python benchmarks/bench_pipeline.py --device cuda --dtype bfloat16 --model random-llama-7b --runs a floor

On the same documents, the same model, the same batch size, each run in a fresh process (model
loading excluded from the times, peak RSS per process). (a), (floor) and the group, whose targets
sit closest to the run-to-run noise (about 10% on a shared 2-core machine), are made ``--repeats``
times, interleaved, and the fastest of each counts; the table shows the largest peak RSS of the
repeats, and the RSS growth at scale is taken against the smallest, so that it is not understated:

- (a)     ``nextlaw_equilearning`` through the real ``lm_eval`` command (the time the wrapper logs
          for running the documents and solving);
- (a0)    (a) with ``nextlaw_jackknife_groups: 0``: no standard errors (its PRs must equal (a)'s);
- (afast) (a) with ``nextlaw_precision: fast``: float32 products, checked (its PRs within 1e-6 of (a)'s);
- (floor) a plain loop over the same batches through the model's base network, nothing captured;
- (b)     ``--model hf`` with a loglikelihood_rolling task on the same documents;
- (c)     the authors' brute force: the base network with ``output_hidden_states``, every state's
          features kept in memory, then scikit-learn LinearRegression per state;
- the group ``nextlaw`` (all eight variants) through ``lm_eval``;
- (a) and (c) again on a corpus ``--scale`` times larger ((c) is skipped, saying so, when its
  features would not fit in memory);
- ``big``: (a) and (b) on a synthetic corpus of ``--big-documents`` documents (100,000 by default:
  random words of the embedded corpus, 5 to 40 a document, seed 666) with the tiny random Llama,
  whatever ``--model`` is: the peak RSS of the wrapper against lm-eval's own rolling run;
- (a) once more on both corpora with glibc's mmap threshold pinned at 1 MiB
  (``MALLOC_MMAP_THRESHOLD_``): blocks of over 1 MiB then go back to the system when freed, so the
  peak RSS shows the memory in use rather than what the heap kept after batches of other shapes
  (by default glibc raises the threshold as it goes, and the peak drifts from run to run).

It also checks that (c) and (a) give the same PR for every state (the largest relative difference
is reported). Models: ``smollm2`` (the embedded default), or a Llama with random weights saved on
first use under ``--out``: ``random-llama-7b`` (Llama-7B shape, SmolLM2's tokenizer, so its
vocabulary is 49152) or ``random-llama-tiny`` (a smoke test). The corpora are the embedded 3000
sentences, or larger samples drawn the same way (seed 666) by ``tools/build_corpus.py`` from the
Austen novels (``--austen``, default ``tasks/data/austen``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGGED = re.compile(r"nextlaw: measured (\d+) documents, (\d+) tokens in ([0-9.]+) s")
PR_KEY = re.compile(r"^pr_layer_(\d+),none$")
RUNS = ("a", "a0", "afast", "floor", "b", "c", "group", "scale", "big")
TARGETS = (
    ("a / floor", "<=", 1.15),
    ("a / a0", "<=", 1.10),
    ("afast / floor", "<=", 1.06),
    ("a / b", "<=", 1.0),
    ("c / a", ">=", 5.0),
    ("RSS growth of a at scale", "<", 0.10),
    ("RSS growth of a at scale, mmap pinned", "<", 0.10),
    ("group / a", "<=", 1.5),
    ("peak RSS on the big corpus, a / b", "<=", 1.0),
)
#: runs on the base corpus made ``--repeats`` times (interleaved): the targets closest to noise
REPEATED = ("a", "a0", "afast", "floor", "group")
#: glibc's setting for the runs "a pinned": blocks over 1 MiB are mapped and unmapped, never kept in the heap
PINNED_MMAP = {"MALLOC_MMAP_THRESHOLD_": str(2**20)}
#: Llama shapes with random weights: hidden size, MLP size, blocks, attention heads
RANDOM_LLAMAS = {"random-llama-7b": (4096, 11008, 32, 32), "random-llama-tiny": (64, 128, 2, 4)}


def corpus(sentences: int, out: Path, austen: Path) -> Path:
    """The embedded corpus (or its first lines), or a larger sample built like it."""
    from nextlaw_task.corpus import embedded_corpus_path

    embedded = embedded_corpus_path()
    path = out / f"austen_{sentences}.jsonl"
    if sentences <= 3000:
        path.write_text("".join(embedded.read_text(encoding="utf-8").splitlines(keepends=True)[:sentences]))
    elif not path.exists():
        subprocess.run(
            [sys.executable, str(REPO / "tools" / "build_corpus.py"), "--source", str(austen), "--n", str(sentences),
             "--seed", "666", "--out", str(path)],
            check=True, stdout=subprocess.DEVNULL,
        )
    return path


def big_corpus(documents: int, out: Path) -> Path:
    """``documents`` synthetic documents: 5 to 40 random words of the embedded corpus each (seed 666)."""
    import random

    from nextlaw_task.corpus import embedded_corpus_path, read_documents

    path = out / f"synthetic_{documents}.jsonl"
    if not path.exists():
        words = sorted({w for text in read_documents(embedded_corpus_path()) for w in text.split()})
        draw = random.Random(666)
        lines = (json.dumps({"text": " ".join(draw.choices(words, k=draw.randint(5, 40)))}) for _ in range(documents))
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def model_dir(name: str, out: Path, device: str, dtype: str) -> Path:
    """The folder of the model to benchmark; random Llamas are built on ``device`` and saved once."""
    from nextlaw_task.harness.embedded import embedded_model_dir

    if name == "smollm2":
        return embedded_model_dir()
    folder = out / f"{name}-{dtype}"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    hidden, mlp, blocks, heads = RANDOM_LLAMAS[name]
    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=blocks, num_attention_heads=heads,
        num_key_value_heads=heads, vocab_size=len(tokenizer), max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    partial = folder.with_name(folder.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def measured(command: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``command`` (with ``env`` added to the environment); return its stderr+stdout and its peak RSS in MiB."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(),
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})})
        _, status, usage = os.wait4(process.pid, 0)
        log.seek(0)
        text = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{text[-3000:]}")
    return text, usage.ru_maxrss / 1024


def run_lm_eval(task: str, data: Path, args: argparse.Namespace, env: dict[str, str] | None = None,
                options: dict | None = None) -> dict:
    with tempfile.TemporaryDirectory() as results:
        text, rss = measured([
            sys.executable, "-m", "lm_eval", "--model", "nextlaw", "--tasks", task, "--batch_size", str(args.batch_size),
            "--model_args", f"pretrained={args.model_dir},dtype={args.dtype}", "--device", args.device,
            "--metadata", json.dumps({"nextlaw_data": str(data), **(options or {})}), "--output_path", results,
        ], env)
        (path,) = glob.glob(f"{results}/**/results_*.json", recursive=True)
        metrics = json.loads(Path(path).read_text())["results"][task]
    docs, tokens, seconds = LOGGED.findall(text)[-1]
    pr = {int(m.group(1)): value for key, value in metrics.items() if (m := PR_KEY.match(key))}
    return {"seconds": float(seconds), "tokens": int(tokens), "documents": int(docs), "peak_rss_mib": rss, "pr": pr}


def run_worker(kind: str, data: Path, args: argparse.Namespace) -> dict:
    text, rss = measured([
        sys.executable, __file__, "--worker", kind, "--data", str(data), "--batch-size", str(args.batch_size),
        "--model-dir", str(args.model_dir), "--device", args.device, "--dtype", args.dtype,
    ])
    result = json.loads(text.strip().splitlines()[-1])
    return {**result, "peak_rss_mib": rss}


# ------------------------------------------------------------------------------------ workers


def batches(data: Path, folder: Path, batch_size: int) -> list[list[list[int]]]:
    """The documents tokenized as the wrapper does, longest first, in batches of token lists."""
    from transformers import AutoTokenizer

    from nextlaw_task.corpus import read_documents

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = [tokenizer(t, add_special_tokens=True)["input_ids"][:512] for t in read_documents(data) if t.strip()]
    tokens.sort(key=lambda t: (-len(t), t))
    return [tokens[i : i + batch_size] for i in range(0, len(tokens), batch_size)]


def padded(batch: list[list[int]], device: str):
    """Right-padded ids and attention mask on ``device``."""
    import torch

    width = max(map(len, batch))
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, t in enumerate(batch):
        ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
    return ids.to(device), mask.to(device)


def base_network(args: argparse.Namespace):
    """The model's base network (no LM head), loaded as the benchmark asks, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from nextlaw_task.pipeline.capture import locate_states

    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype))
    return locate_states(model.to(args.device).eval()).decoder


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker_floor(args: argparse.Namespace) -> dict:
    import torch

    decoder = base_network(args)
    work = [padded(b, args.device) for b in batches(args.data, args.model_dir, args.batch_size)]
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in work:
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)
        synchronize(args.device)
    return {"seconds": time.perf_counter() - start, "tokens": sum(int(m.sum()) for _, m in work)}


def worker_hf(args: argparse.Namespace) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tokens = sum(len(t) for batch in batches(args.data, args.model_dir, args.batch_size) for t in batch)
    lm = HFLM(pretrained=str(args.model_dir), batch_size=args.batch_size, device=args.device, dtype=args.dtype,
              max_length=512)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench_rolling.yaml").write_text(
            f"task: bench_rolling\ndataset_path: json\ndataset_kwargs:\n  data_files: {args.data}\ntest_split: train\n"
            "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        )
        manager = TaskManager(include_path=folder, include_defaults=False)
        start = time.perf_counter()
        simple_evaluate(model=lm, tasks=["bench_rolling"], task_manager=manager)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens}


def worker_brute(args: argparse.Namespace) -> dict:
    """The published pipeline in a few lines: keep all states of all tokens, then one sklearn fit per state."""
    import numpy as np
    import torch
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error

    decoder = base_network(args)
    eps = decoder.config.rms_norm_eps
    work = [padded(b, args.device) for b in batches(args.data, args.model_dir, args.batch_size)]
    start = time.perf_counter()
    per_document, targets = [], []
    with torch.inference_mode():
        for ids, mask in work:
            hidden = decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            # initialized-LN: a fresh unit-gain RMSNorm on every state but the last (already normed)
            states = [h.float() * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + eps) for h in hidden[:-1]]
            stacked = torch.stack([*states, hidden[-1].float()], dim=2).cpu().numpy()
            for j, length in enumerate(mask.sum(1).tolist()):
                per_document.append(stacked[j, : length - 1])
                targets.append(ids[j, 1:length].cpu().numpy())
    features, y = np.concatenate(per_document), np.concatenate(targets).astype(np.float64)
    del per_document
    pr = {}
    for state in range(features.shape[1]):
        x = features[:, state, :]
        predicted = LinearRegression().fit(x, y).predict(x)
        pr[state] = float(mean_squared_error(y, predicted) / np.var(y))
    return {"seconds": time.perf_counter() - start, "tokens": sum(int(m.sum()) for _, m in work), "pr": pr}


WORKERS = {"floor": worker_floor, "hf": worker_hf, "brute": worker_brute}


# ------------------------------------------------------------------------------------ report


def brute_force_fits(tokens: int, folder: Path) -> tuple[bool, float]:
    """Whether (c)'s float32 features (twice, while stacking) and sklearn's copies fit in RAM."""
    config = json.loads((folder / "config.json").read_text())
    states, hidden = config["num_hidden_layers"] + 1, config["hidden_size"]
    need = tokens * hidden * 4 * (2 * states + 3)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return need < 0.8 * available, need / 2**30


def largest_pr_difference(a: dict, c: dict) -> float:
    """Largest relative difference between the PRs of (a) and (c), over every state."""
    c_pr = {int(state): value for state, value in c["pr"].items()}
    return max(abs(value - c_pr[int(state)]) / abs(c_pr[int(state)]) for state, value in a["pr"].items())


def best_of(first: dict, second: dict) -> dict:
    """The faster of two repeats; every time and peak RSS seen is kept, and the largest peak is reported."""
    best = dict(min(first, second, key=lambda run: run["seconds"]))
    best["all_seconds"] = first.get("all_seconds", [first["seconds"]]) + [second["seconds"]]
    best["all_peak_rss_mib"] = first.get("all_peak_rss_mib", [first["peak_rss_mib"]]) + [second["peak_rss_mib"]]
    best["peak_rss_mib"] = max(best["all_peak_rss_mib"])
    return best


def ratios_of(runs: dict, scale: int) -> dict[str, float]:
    """The target ratios that the runs made allow."""
    a = runs.get("a", {}).get("seconds")
    pairs = {
        "a / floor": ("a", "floor"),
        "a / a0": ("a", "a0"),
        "afast / floor": ("afast", "floor"),
        "a / b": ("a", "b"),
        "c / a": ("c", "a"),
        "group / a": ("group", "a"),
    }
    ratios = {
        name: runs[top]["seconds"] / runs[bottom]["seconds"]
        for name, (top, bottom) in pairs.items()
        if a and "seconds" in runs.get(top, {}) and "seconds" in runs.get(bottom, {})
    }
    if a and f"a x{scale}" in runs:  # against the smallest peak of the repeats: the growth is not understated
        base = min(runs["a"].get("all_peak_rss_mib", [runs["a"]["peak_rss_mib"]]))
        ratios["RSS growth of a at scale"] = runs[f"a x{scale}"]["peak_rss_mib"] / base - 1
    if "a big" in runs and "b big" in runs:
        ratios["peak RSS on the big corpus, a / b"] = runs["a big"]["peak_rss_mib"] / runs["b big"]["peak_rss_mib"]
    if "a pinned" in runs and f"a x{scale} pinned" in runs:
        ratios["RSS growth of a at scale, mmap pinned"] = (
            runs[f"a x{scale} pinned"]["peak_rss_mib"] / runs["a pinned"]["peak_rss_mib"] - 1
        )
    return ratios


def table(runs: dict, ratios: dict) -> str:
    lines = ["| run | documents | tokens | seconds | tokens/s | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, run in runs.items():
        if "skipped" in run:
            lines.append(f"| {name} | | | skipped: {run['skipped']} | | |")
            continue
        tokens = run["tokens"]
        lines.append(
            f"| {name} | {run.get('documents', '')} | {tokens} | {run['seconds']:.1f} | "
            f"{tokens / run['seconds']:.0f} | {run['peak_rss_mib']:.0f} |"
        )
    lines += ["", "| target | measured | goal | met |", "|---|---:|---|---|"]
    for name, op, goal in TARGETS:
        value = ratios.get(name)
        if value is None:
            lines.append(f"| {name} | n/a | {op} {goal} | not measured |")
            continue
        met = value <= goal if op == "<=" else value >= goal if op == ">=" else value < goal
        lines.append(f"| {name} | {value:.3f} | {op} {goal} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", *RANDOM_LLAMAS], default="smollm2")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weights' dtype; the statistics are float64 whatever it is")
    parser.add_argument("--sentences", type=int, help="corpus size (default: 300 on CPU, 3000 on CUDA)")
    parser.add_argument("--scale", type=int, default=10, help="the larger corpus is this many times larger")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs a, floor and group are made this many times, interleaved; the fastest counts")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS),
                        help="runs to make; 'scale' repeats a and c on the larger corpus, and a on both "
                             "with glibc's mmap threshold pinned (default: all)")
    parser.add_argument("--big-documents", type=int, default=100_000,
                        help="documents of the synthetic corpus of the 'big' runs (default: 100000)")
    parser.add_argument("--austen", type=Path, default=REPO / "tasks" / "data" / "austen")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sentences is None:
        args.sentences = 3000 if args.device.startswith("cuda") else 300
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    began = time.perf_counter()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.model_dir = model_dir(args.model, args.out, args.device, args.dtype)
    base = corpus(args.sentences, args.out, args.austen)
    scaled = f"x{args.scale}"

    def brute_force(data: Path, tokens: int | None) -> dict:
        """Run (c), unless its features would not fit in memory (tokens counted by (a), or here)."""
        if tokens is None:
            tokens = sum(len(t) for batch in batches(data, args.model_dir, args.batch_size) for t in batch)
        fits, gib = brute_force_fits(tokens, args.model_dir)
        return run_worker("brute", data, args) if fits else {"skipped": f"its features need {gib:.0f} GiB of memory"}

    steps = {
        "a": lambda: run_lm_eval("nextlaw_equilearning", base, args),
        "a0": lambda: run_lm_eval("nextlaw_equilearning", base, args, options={"nextlaw_jackknife_groups": 0}),
        "afast": lambda: run_lm_eval("nextlaw_equilearning", base, args, options={"nextlaw_precision": "fast"}),
        "floor": lambda: run_worker("floor", base, args),
        "b": lambda: run_worker("hf", base, args),
        "c": lambda: brute_force(base, None),
        "group": lambda: run_lm_eval("nextlaw", base, args),
    }
    steps = {name: step for name, step in steps.items() if name in args.runs}
    if "scale" in args.runs:
        large = corpus(args.sentences * args.scale, args.out, args.austen)
        steps[f"a {scaled}"] = lambda: run_lm_eval("nextlaw_equilearning", large, args)
        steps[f"c {scaled}"] = lambda: brute_force(large, runs[f"a {scaled}"]["tokens"])
        steps["a pinned"] = lambda: run_lm_eval("nextlaw_equilearning", base, args, PINNED_MMAP)
        steps[f"a {scaled} pinned"] = lambda: run_lm_eval("nextlaw_equilearning", large, args, PINNED_MMAP)
    if "big" in args.runs:
        tiny = argparse.Namespace(**{**vars(args), "model_dir": model_dir("random-llama-tiny", args.out, args.device,
                                                                           args.dtype)})
        synthetic = big_corpus(args.big_documents, args.out)
        steps["a big"] = lambda: run_lm_eval("nextlaw_equilearning", synthetic, tiny)
        steps["b big"] = lambda: run_worker("hf", synthetic, tiny)
    runs: dict[str, dict] = {}
    for round_ in range(args.repeats):
        for name, step in steps.items():
            if round_ and name not in REPEATED:
                continue
            print(f"running {name}{f' (repeat {round_ + 1})' if round_ else ''} ...", flush=True)
            run = step()
            print(f"  {json.dumps({k: v for k, v in run.items() if k != 'pr'})}", flush=True)
            runs[name] = run if name not in runs else best_of(runs[name], run)

    ratios = ratios_of(runs, args.scale)
    agreement = {
        f"{c} vs {a}": largest_pr_difference(runs[a], runs[c])
        for a, c in (("a", "c"), (f"a {scaled}", f"c {scaled}"), ("a", "a0"), ("a", "afast"))
        if "pr" in runs.get(a, {}) and "pr" in runs.get(c, {})
    }
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "device": args.device if not args.device.startswith("cuda") else cuda_name(),
        "model": args.model, "dtype": args.dtype, "batch_size": args.batch_size,
        "runs": runs, "ratios": ratios, "largest_relative_pr_difference": agreement,
        "benchmark_minutes": (time.perf_counter() - began) / 60,
    }
    stem = "pipeline" if (args.model, args.device) == ("smollm2", "cpu") else f"pipeline_{args.model}_{args.device}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    markdown = table(runs, ratios)
    if agreement:
        markdown += "\n\nLargest relative PR difference, brute force (c), no jackknife (a0) or fast precision (afast) vs nextlaw (a): " + ", ".join(
            f"{name} {value:.1e}" for name, value in agreement.items()
        )
    markdown += f"\n\nThe benchmark took {report['benchmark_minutes']:.1f} min in all."
    (args.out / f"{stem}.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
