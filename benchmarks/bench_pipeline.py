"""What the measurement costs beside the forward pass: one command, a JSON and a markdown table.

    python benchmarks/bench_pipeline.py [--sentences 3000] [--scale 10] [--batch-size 32]

On the same documents, the same model (the embedded SmolLM2-135M-Instruct), the same batch size,
each run in a fresh process (model loading excluded from the times, peak RSS per process):

- (a)     ``nextlaw_equilearning`` through the real ``lm_eval`` command (the time the wrapper logs
          for running the documents and solving);
- (floor) a plain loop over the same batches through the model's base network, nothing captured;
- (b)     ``--model hf`` with a loglikelihood_rolling task on the same documents;
- (c)     the authors' brute force: keep every state's features in memory, then scikit-learn
          LinearRegression per state;
- the group ``nextlaw`` (all eight variants) through ``lm_eval``;
- (a) and (c) again on a corpus ``--scale`` times larger ((c) is skipped, saying so, when its
  features would not fit in memory).

The corpora are the embedded 3000 sentences, or larger samples drawn the same way (seed 666) by
``tools/build_corpus.py`` from the Austen novels (``--austen``, default ``../shared/data/austen``).
"""

from __future__ import annotations

import argparse
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
TARGETS = (
    ("a / floor", "<=", 1.15),
    ("a / b", "<=", 1.0),
    ("c / a", ">=", 5.0),
    ("RSS growth of a at scale", "<", 0.10),
    ("group / a", "<=", 1.5),
)


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


def measured(command: list[str]) -> tuple[str, float]:
    """Run ``command``; return its stderr+stdout and its peak RSS in MiB."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(),
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
        _, status, usage = os.wait4(process.pid, 0)
        log.seek(0)
        text = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{text[-3000:]}")
    return text, usage.ru_maxrss / 1024


def run_lm_eval(task: str, data: Path, batch_size: int) -> dict:
    lm_eval = str(Path(sys.executable).parent / "lm_eval")
    text, rss = measured([
        lm_eval, "--model", "nextlaw", "--tasks", task, "--batch_size", str(batch_size),
        "--metadata", json.dumps({"nextlaw_data": str(data)}),
    ])
    docs, tokens, seconds = LOGGED.findall(text)[-1]
    return {"seconds": float(seconds), "tokens": int(tokens), "documents": int(docs), "peak_rss_mib": rss}


def run_worker(kind: str, data: Path, batch_size: int) -> dict:
    text, rss = measured([sys.executable, __file__, "--worker", kind, "--data", str(data), "--batch-size", str(batch_size)])
    result = json.loads(text.strip().splitlines()[-1])
    return {**result, "peak_rss_mib": rss}


# ------------------------------------------------------------------------------------ workers


def batches(data: Path, batch_size: int):
    """The documents tokenized as the wrapper does, longest first, in batches of token lists."""
    from transformers import AutoTokenizer

    from nextlaw_task.corpus import read_documents
    from nextlaw_task.embedded import embedded_model_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    tokens = [tokenizer(t, add_special_tokens=True)["input_ids"][:512] for t in read_documents(data) if t.strip()]
    tokens.sort(key=lambda t: (-len(t), t))
    return [tokens[i : i + batch_size] for i in range(0, len(tokens), batch_size)]


def padded(batch):
    import torch

    width = max(map(len, batch))
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, t in enumerate(batch):
        ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
    return ids, mask


def worker_floor(data: Path, batch_size: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from nextlaw_task.capture import locate_states
    from nextlaw_task.embedded import embedded_model_dir

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir()).eval()
    decoder = locate_states(model).decoder
    work = [padded(b) for b in batches(data, batch_size)]
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in work:
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    return {"seconds": time.perf_counter() - start, "tokens": sum(int(m.sum()) for _, m in work)}


def worker_hf(data: Path, batch_size: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from nextlaw_task.embedded import embedded_model_dir

    lm = HFLM(pretrained=str(embedded_model_dir()), batch_size=batch_size, device="cpu", max_length=512)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench_rolling.yaml").write_text(
            f"task: bench_rolling\ndataset_path: json\ndataset_kwargs:\n  data_files: {data}\ntest_split: train\n"
            "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        )
        manager = TaskManager(include_path=folder, include_defaults=False)
        start = time.perf_counter()
        simple_evaluate(model=lm, tasks=["bench_rolling"], task_manager=manager)
        seconds = time.perf_counter() - start
    return {"seconds": seconds}


def worker_brute(data: Path, batch_size: int) -> dict:
    import numpy as np
    import torch
    from sklearn.linear_model import LinearRegression
    from transformers import AutoModelForCausalLM

    from nextlaw_task.capture import locate_states
    from nextlaw_task.embedded import embedded_model_dir
    from nextlaw_task.normalize import FinalNorm, normalize_states

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir()).eval()
    layout = locate_states(model)
    norm = FinalNorm.of(layout.final_norm, layout.model_type)
    work = [padded(b) for b in batches(data, batch_size)]
    start = time.perf_counter()
    features: dict[int, list] = {s: [] for s in range(layout.n_states)}
    targets = []
    with torch.inference_mode():
        for ids, mask in work:
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            keep = mask[:, 1:].bool()
            targets.append(ids[:, 1:][keep].numpy())
            for state, h in enumerate(hidden):
                z = normalize_states(h[:, :-1][keep], state, layout.n_layers, "initialized_ln", norm)
                features[state].append(z.float().numpy())
    y = np.concatenate(targets).astype(np.float64)
    prs = {}
    for state, parts in features.items():
        x = np.concatenate(parts)
        prs[state] = 1.0 - LinearRegression().fit(x, y).score(x, y)
    tokens = sum(int(m.sum()) for _, m in work)
    return {"seconds": time.perf_counter() - start, "tokens": tokens, "pr_last": prs[layout.n_layers]}


WORKERS = {"floor": worker_floor, "hf": worker_hf, "brute": worker_brute}


# ------------------------------------------------------------------------------------ report


def brute_force_fits(tokens: int, n_states: int = 31, hidden: int = 576) -> tuple[bool, float]:
    """Whether (c)'s float32 features (plus sklearn's float64 copy of one state) fit in RAM."""
    need = tokens * hidden * (4 * n_states + 16)
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return need < 0.8 * available, need / 2**30


def table(runs: dict, ratios: dict) -> str:
    lines = ["| run | documents | tokens | seconds | tokens/s | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, run in runs.items():
        if "skipped" in run:
            lines.append(f"| {name} | | | skipped: {run['skipped']} | | |")
            continue
        tokens = run.get("tokens", runs["a"]["tokens"])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--austen", type=Path, default=REPO.parent / "shared" / "data" / "austen")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.batch_size)))
        return

    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    base = corpus(args.sentences, args.out, args.austen)
    large = corpus(args.sentences * args.scale, args.out, args.austen)
    b = args.batch_size
    runs: dict[str, dict] = {}
    steps = [
        ("a", lambda: run_lm_eval("nextlaw_equilearning", base, b)),
        ("floor", lambda: run_worker("floor", base, b)),
        ("b", lambda: run_worker("hf", base, b)),
        ("c", lambda: run_worker("brute", base, b)),
        ("group", lambda: run_lm_eval("nextlaw", base, b)),
        (f"a x{args.scale}", lambda: run_lm_eval("nextlaw_equilearning", large, b)),
    ]
    for name, step in steps:
        print(f"running {name} ...", flush=True)
        runs[name] = step()
        print(f"  {runs[name]}", flush=True)
    fits, gib = brute_force_fits(runs[f"a x{args.scale}"]["tokens"])
    if fits:
        runs[f"c x{args.scale}"] = run_worker("brute", large, b)
    else:
        runs[f"c x{args.scale}"] = {"skipped": f"its features need {gib:.0f} GiB of memory"}

    a = runs["a"]["seconds"]
    ratios = {
        "a / floor": a / runs["floor"]["seconds"],
        "a / b": a / runs["b"]["seconds"],
        "c / a": runs["c"]["seconds"] / a,
        "RSS growth of a at scale": runs[f"a x{args.scale}"]["peak_rss_mib"] / runs["a"]["peak_rss_mib"] - 1,
        "group / a": runs["group"]["seconds"] / a,
    }
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "batch_size": b,
        "runs": runs,
        "ratios": ratios,
    }
    (args.out / "pipeline.json").write_text(json.dumps(report, indent=2))
    markdown = table(runs, ratios)
    (args.out / "pipeline.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
