"""Run the real ``lm_eval`` command in a subprocess, as a user would, and read its results file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def offline_env() -> dict[str, str]:
    """The environment for a subprocess: offline, quiet, using the installed package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def lm_eval(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``lm_eval ARGS`` from ``cwd`` (not the checkout, so the installed package is what runs)."""
    done = subprocess.run(
        [str(BIN / "lm_eval"), *args], cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=900
    )
    if check and done.returncode != 0:
        raise AssertionError(f"lm_eval {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return done


def results_of(output: Path) -> dict:
    """The single results JSON lm-eval wrote under ``output``."""
    (path,) = sorted(output.rglob("results_*.json"))
    return json.loads(path.read_text())


def metrics_of(results: dict, task: str) -> dict[str, float]:
    """A task's metrics without the ``,none`` filter suffix and stderr entries."""
    return {
        key.split(",")[0]: value
        for key, value in results["results"][task].items()
        if "," in key and "_stderr" not in key
    }


def stderrs_of(results: dict, task: str) -> dict[str, float | str]:
    """A task's standard errors, keyed by the metric they belong to (``N/A`` where lm-eval has none)."""
    return {
        key.split(",")[0].removesuffix("_stderr"): value
        for key, value in results["results"][task].items()
        if key.endswith("_stderr,none")
    }
