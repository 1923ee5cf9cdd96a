#!/usr/bin/env bash
# The GPU measurements the README reports, in one run (several minutes on an H200, most of it building and
# loading the random 7B-shape model once): exactness on CUDA against a brute-force fit, (a), (afast) and
# (floor) on the random 7B shape, the warm in-process profile in float64 and fast precision (each with and
# without the side stream), and the fast
# precision's PR deviation per state against what its check reports (TF32 tensor-core products), and the
# Gram update's cost per row by rows an update in both precisions (the float64 bound).
#
#     benchmarks/gpu_checks.sh [OUTPUT_FOLDER]        # default: benchmarks/out/gpu; PYTHON=... to choose python
#
# Every command's output is appended to OUTPUT_FOLDER/log.txt; the benchmarks write their JSON and
# markdown there too. Needs a CUDA GPU with about 40 GB free and the package installed (pip install .).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/out/gpu}"
python="${PYTHON:-python}"
mkdir -p "$out"

run() {
  echo "+ $*" | tee -a "$out/log.txt"
  PYTHONUNBUFFERED=1 "$python" "$@" 2>&1 | tee -a "$out/log.txt"
}

"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: these are the GPU checks'; print(torch.cuda.get_device_name(), torch.__version__)" | tee -a "$out/log.txt"
run benchmarks/bench_pipeline.py --device cuda --dtype bfloat16 --model random-llama-tiny --runs a c --out "$out"
run benchmarks/bench_pipeline.py --device cuda --dtype bfloat16 --model random-llama-7b --runs a afast floor --repeats 2 --out "$out"
run benchmarks/profile_pass.py --device cuda --dtype bfloat16 --model random-llama-7b --precision float64 fast --out "$out"
run benchmarks/fast_precision.py --device cuda --dtype bfloat16 --out "$out"
run benchmarks/fast_precision.py --device cuda --dtype bfloat16 --model random-llama-7b-width --sentences 600 --out "$out"
run benchmarks/bench_core.py --device cuda --dims 576 4096 --row-blocks 90 1024 --out "$out/core.json"
