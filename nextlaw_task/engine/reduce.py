"""Cross-process reduction: statistics and counters summed over data-parallel ranks.

Everything nextlaw sums across processes goes through here, after the last batch: the
accumulators (:func:`all_reduce_statistics`), the runner's integer counters and the memory
budget's minimum (:func:`all_reduce_ints`). The tensors travel on :func:`reduction_device`: the
current CUDA device with NCCL, the CPU otherwise. Without ``torch.distributed`` (or with one rank)
every function returns its input unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from nextlaw_task.engine.stats import ResidualStatistics


def _world(process_group: Any = None) -> int:
    """Ranks taking part (1 without an initialized process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def reduction_device(process_group: Any = None) -> torch.device:
    """Where tensors must be for a collective of ``process_group``: CUDA with NCCL, else the CPU."""
    if dist.get_backend(process_group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_ints(values: list[int], op: str, process_group: Any = None) -> list[int]:
    """``values`` reduced element-wise over the ranks by ``op`` (``SUM``, ``MIN``, ``MAX``)."""
    if _world(process_group) == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.long, device=reduction_device(process_group))
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=process_group)
    return tensor.tolist()


def all_reduce_counts(counts: Mapping[str, int], process_group: Any = None) -> dict[str, int]:
    """Named integer counters summed over the ranks."""
    keys = sorted(counts)
    return dict(zip(keys, all_reduce_ints([counts[k] for k in keys], "SUM", process_group)))


def all_reduce_statistics(stats: ResidualStatistics, process_group: Any = None) -> ResidualStatistics:
    """Sum ``stats`` over the ranks in place; every rank then holds the totals.

    Ranks first agree (one ``all_gather_object``) on the configuration, the hidden size, a common
    shift per state (the first rank's that has data) and the union of class ids, re-express their
    sums in that common layout, then sum each state's tensors with one flat ``all_reduce`` (extra
    memory: one state's statistics). With NCCL, set the CUDA device first.
    """
    world = _world(process_group)
    if world == 1:
        return stats
    gathered: list[Any] = [None] * world
    with torch.inference_mode(False):  # see below: the collective's tensors must be normal tensors
        dist.all_gather_object(gathered, stats.layout(), group=process_group)
    mine = stats.layout()["config"]
    for rank, theirs in enumerate(gathered):
        if theirs["config"] != mine:
            raise ValueError(f"rank {rank} has configuration {theirs['config']}, this rank {mine}")
    sizes = {theirs["hidden_size"] for theirs in gathered} - {None}
    if len(sizes) > 1:
        raise ValueError(f"ranks disagree on the hidden size: {sorted(sizes)}")
    if not sizes:
        return stats
    shifts: dict[int, torch.Tensor] = {}
    for theirs in gathered:
        for state, shift in theirs["shifts"].items():
            shifts.setdefault(state, shift)
    class_ids = torch.unique(torch.cat([theirs["ids"] for theirs in gathered]))
    stats.adopt_layout(sizes.pop(), reduction_device(process_group), shifts, class_ids)
    for state in stats.states:
        parts = stats.buffers(state)
        if not parts:
            continue
        # a normal tensor, not an inference tensor, even when called in inference mode: under torch 2.4 gloo
        # wrote the result from a thread of its own, outside inference mode, and refused inference tensors
        with torch.inference_mode(False):
            flat = torch.cat([p.reshape(-1) for p in parts])
            dist.all_reduce(flat, group=process_group)
        offset = 0
        for part in parts:
            part.copy_(flat[offset : offset + part.numel()].view_as(part))
            offset += part.numel()
    stats.recount()
    return stats
