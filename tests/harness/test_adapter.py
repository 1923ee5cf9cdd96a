"""What the adapter does beside lm-eval's own code: here, ending the process group lm-eval leaves open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_cli import offline_env

pytestmark = pytest.mark.subprocess

#: a one-rank gloo process group; an exit handler registered first (so it runs last) says whether it is still open
SCRIPT = """
import atexit, sys
import torch.distributed as dist
from nextlaw_task.harness.adapter import release_process_group_at_exit

atexit.register(lambda: print("open at exit:", dist.is_initialized()))
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
for _ in range(int(sys.argv[2])):
    release_process_group_at_exit()
"""


def open_at_exit(tmp_path: Path, releases: int) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "init"), str(releases)], cwd=tmp_path,
                          env=offline_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_process_group_is_destroyed_at_exit(tmp_path):
    assert open_at_exit(tmp_path, releases=2) == "open at exit: False"


def test_without_it_the_process_group_stays_open_at_exit(tmp_path):
    """The case the handler exists for: nothing else ends lm-eval's process group (gloo may then abort)."""
    assert open_at_exit(tmp_path, releases=0) == "open at exit: True"
