"""``--model nextlaw``: lm-eval's HFLM with the embedded default model and errors that name the fix.

Every HFLM measures nextlaw requests (``adapter.measure_with_hflm``); this subclass adds what a run
on the embedded defaults needs: ``pretrained`` defaults to the embedded SmolLM2-135M-Instruct, a
machine without CUDA runs on the CPU, a model that cannot be loaded is one line naming the fix,
and data parallelism on CPUs (gloo) splits the documents over every process. Everything HFLM
accepts works unchanged (a hub id or local folder, ``gguf_file=``, ``dtype=``, ``device``,
``batch_size`` including ``auto``, ``parallelize``, ...), and standard tasks score exactly as
under ``--model hf``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from lm_eval.models import huggingface
from lm_eval.models.huggingface import HFLM

from nextlaw_task.errors import NextlawError
from nextlaw_task.harness.adapter import measure_with_hflm
from nextlaw_task.harness.embedded import embedded_model_dir, is_embedded

logger = logging.getLogger(__name__)

measure_with_hflm(huggingface)  # done by the start-up hook already; here for a process without it


class ModelLoadError(NextlawError, RuntimeError):
    """The model named by ``pretrained`` cannot be loaded; the message names the fix."""


def follow_harness_logging() -> None:
    """Show nextlaw's log lines the way lm-eval shows its own (its handler, its ``--verbosity``)."""
    ours, harness = logging.getLogger("nextlaw_task"), logging.getLogger("lm_eval")
    for handler in harness.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    if harness.handlers:  # a level set for nextlaw alone (--verbosity DEBUG) is kept when lower
        ours.setLevel(min(harness.getEffectiveLevel(), ours.level or logging.CRITICAL))


def cpu_processes() -> bool:
    """Whether this is one of several data-parallel processes on a machine without CUDA."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


class NextlawLM(HFLM):
    """HFLM that also measures the prediction residual of every layer for nextlaw tasks."""

    def __init__(self, pretrained: Any = "smollm2", **kwargs: Any) -> None:
        follow_harness_logging()
        if is_embedded(pretrained):
            pretrained = str(embedded_model_dir())
        if kwargs.get("device") in (None, "cuda") and not torch.cuda.is_available():
            logger.info("nextlaw: no CUDA device, running on the CPU")
            kwargs["device"] = "cpu"
        if cpu_processes() and not kwargs.get("parallelize") and "device_map" not in kwargs:
            kwargs["device_map"] = "cpu"  # HFLM would ask transformers for "cpu:0", which 4.x refuses
        try:
            super().__init__(pretrained=pretrained, **kwargs)
        except OSError as error:
            raise ModelLoadError(
                f"cannot load pretrained={pretrained!r}: it is not a transformers folder here and the "
                "Hugging Face Hub did not provide it (offline, misspelt or gated?). Pass a local "
                "folder, a hub id that is reachable, `gguf_file=NAME` for a GGUF file in a folder, "
                f"or `pretrained=smollm2` for the embedded model. ({error})"
            ) from error
        except ImportError as error:
            raise ModelLoadError(
                f"loading pretrained={pretrained!r} needs a package that is missing: {error}. "
                "GGUF files need `pip install gguf accelerate`."
            ) from error
        accelerator = getattr(self, "accelerator", None)
        if accelerator is not None and accelerator.num_processes > 1:
            # HFLM splits the documents only over GPUs, and numbers ranks within a node: split them over
            # every process (CPUs with gloo too), numbered over all nodes, so each is measured exactly once.
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
