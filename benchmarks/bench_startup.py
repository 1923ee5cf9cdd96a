"""What the start-up hook adds to every Python process: ``python -X importtime -c pass``, N times.

    python benchmarks/bench_startup.py [--runs 20]

Prints the median import time of the hook (``nextlaw_task.harness.startup`` with everything it imports,
plus the ``nextlaw_task`` package) and the median wall time of ``python -c pass`` for scale.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def hook_microseconds() -> int:
    """Cumulative import time of the hook in one fresh interpreter, from -X importtime."""
    log = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
    total = 0
    for line in log.splitlines():
        fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] in ("nextlaw_task", "nextlaw_task.harness", "nextlaw_task.harness.startup"):
            total += int(fields[1])
    if not total:
        raise SystemExit("the hook did not run: install the package first (pip install .)")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    hook = statistics.median(hook_microseconds() for _ in range(runs))
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - start)
    print(f"start-up hook: {hook / 1000:.2f} ms (median of {runs}); python -c pass: {statistics.median(walls) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
