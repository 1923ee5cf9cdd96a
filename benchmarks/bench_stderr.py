"""Jackknife standard errors against the spread of PR over disjoint corpora, on the embedded model.

    python benchmarks/bench_stderr.py                   # 8 parts of 400 sentences, SmolLM2, about 5 min on 2 cores

Draws ``parts x sentences`` distinct sentences from the Austen novels (shuffled with seed 666, as
``tools/build_corpus.py`` draws), splits them into disjoint parts of equal size, and measures each
part with ``nextlaw_equilearning`` (10 jackknife groups) through ``simple_evaluate`` in one process
(the model loaded once). Per state it compares two estimates of the same thing, the sampling spread
of PR for a corpus of that size: the standard deviation of PR across the parts (ddof = 1; with 8
parts it is itself uncertain by about +-27%) and the root mean square of the parts' jackknife SEs.
Writes ``stderr.json`` and ``stderr.md`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASK = "nextlaw_equilearning"


def draw_parts(parts: int, sentences: int, austen: Path, folder: Path) -> list[Path]:
    """Disjoint corpora of ``sentences`` sentences each, as JSON lines files in ``folder``."""
    sys.path.insert(0, str(REPO / "tools"))
    from build_corpus import choose, read_novels, write_jsonl

    drawn = choose(read_novels(austen), parts * sentences, seed=666)
    paths = []
    for index in range(parts):
        path = folder / f"part{index}.jsonl"
        write_jsonl(drawn[index * sentences : (index + 1) * sentences], path)
        paths.append(path)
    return paths


def measure(paths: list[Path], batch_size: int) -> list[dict[str, float]]:
    """Each part's results for the task (metrics and standard errors, lm-eval's keys)."""
    import lm_eval.evaluator  # noqa: F401 - the start-up hook wraps simple_evaluate as it loads

    from lm_eval.evaluator import simple_evaluate

    from nextlaw_task.harness.model import NextlawLM

    model = NextlawLM(batch_size=batch_size)
    return [
        simple_evaluate(model=model, tasks=[TASK], metadata={"nextlaw_data": str(path)})["results"][TASK]
        for path in paths
    ]


def compare(results: list[dict[str, float]]) -> list[dict[str, float]]:
    """Per state: PR mean, SD across parts, RMS of the jackknife SEs, and their ratio."""
    states = sorted(int(k.split(",")[0].rsplit("_", 1)[1]) for k in results[0]
                    if k.startswith("pr_layer_") and "_stderr" not in k)
    width = max(2, len(str(states[-1])))
    rows = []
    for state in states:
        key = f"pr_layer_{state:0{width}d}"
        prs = [r[f"{key},none"] for r in results]
        errors = [r[f"{key}_stderr,none"] for r in results]
        spread = statistics.stdev(prs)
        rms = math.sqrt(sum(e * e for e in errors) / len(errors))
        rows.append({"state": state, "pr_mean": statistics.fmean(prs), "sd_across_parts": spread,
                     "jackknife_se_rms": rms, "ratio": rms / spread})
    return rows


def markdown(rows: list[dict[str, float]], parts: int, sentences: int) -> str:
    lines = [f"{parts} disjoint parts of {sentences} sentences, `{TASK}` on the embedded SmolLM2:", "",
             "| state | mean PR | SD of PR across parts | RMS jackknife SE | SE / SD |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['state']} | {r['pr_mean']:.4f} | {r['sd_across_parts']:.5f} | {r['jackknife_se_rms']:.5f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    ratios = [r["ratio"] for r in rows]
    lines += ["", f"SE / SD over the states: median {statistics.median(ratios):.2f}, "
                  f"range {min(ratios):.2f} to {max(ratios):.2f}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--sentences", type=int, default=400, help="sentences in each part")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--austen", type=Path, default=REPO / "tasks" / "data" / "austen")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = measure(draw_parts(args.parts, args.sentences, args.austen, Path(folder)), args.batch_size)
    rows = compare(results)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "parts": args.parts,
              "sentences": args.sentences, "rows": rows, "minutes": (time.perf_counter() - began) / 60}
    (args.out / "stderr.json").write_text(json.dumps(report, indent=2))
    text = markdown(rows, args.parts, args.sentences) + f"\n\nThe benchmark took {report['minutes']:.1f} min."
    (args.out / "stderr.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
