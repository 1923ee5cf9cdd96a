"""``lm_eval`` with torch counting two CUDA devices, so that HFLM takes its multi-GPU data-parallel path.

Run under ``torchrun --nproc_per_node 2`` with ``ACCELERATE_USE_CPU=true``: accelerate joins the ranks
with gloo on the CPU, and HFLM, seeing more than one device, splits the documents over the ranks as it
does on GPUs (on a CPU it would otherwise run every document on every rank). Only the count is faked:
the model, the ranks and the reduction are real.
"""

import torch

torch.cuda.device_count = lambda: 2

from lm_eval.__main__ import cli_evaluate  # noqa: E402  (after the count is in place)

cli_evaluate()
