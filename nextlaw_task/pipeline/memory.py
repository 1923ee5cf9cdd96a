"""The memory plan: where the float64 statistics live and which states each pass over the corpus measures."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from nextlaw_task.engine.reduce import all_reduce_ints
from nextlaw_task.options import OptionError, format_bytes


@dataclass(frozen=True)
class MemoryPlan:
    """Where the statistics live, and the states measured by each pass over the corpus."""

    device: torch.device
    passes: tuple[tuple[int, ...], ...]
    needed: int
    budget: int | None

    def note(self) -> str:
        """How the budget shaped the run, for the log line before the first batch ('' when it did not)."""
        if self.budget is None or self.needed <= self.budget:
            return ""
        if len(self.passes) == 1:
            return f" (over the {format_bytes(self.budget)} budget even for one state: kept in CPU memory)"
        ranges = "; ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else f"{p[0]}" for p in self.passes)
        return f" (over the {format_bytes(self.budget)} budget: {len(self.passes)} passes over the corpus, states {ranges})"


def available_memory() -> int:
    """Bytes of memory the system can still give (``MemAvailable``, page cache counted as free)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def plan_memory(
    model_device: torch.device | str, state_bytes: dict[int, int], budget: int | None, data_parallel: bool = False
) -> MemoryPlan:
    """Keep the statistics beside the model, within ``budget`` bytes.

    ``budget`` None means no limit on the CPU and half the free memory on a GPU (the smallest over
    data-parallel ranks, so that every rank makes the same passes). Beyond the budget the states are
    split into contiguous ranges that each fit, one pass over the corpus per range; a pass stops
    after its last state, so k passes cost about (k + 1) / 2 forward passes. On a GPU, when even one
    state's statistics exceed the budget, they live in CPU memory instead (one pass, with a copy of
    each batch's features to the host); on the CPU that budget is an error. A plan that cannot fit
    where it puts the statistics (a pass over the GPU's free memory, or the host's) is refused here,
    before the first batch, not by an out-of-memory error in the middle of the run.
    """
    device = torch.device(model_device)
    states, needed, one = sorted(state_bytes), sum(state_bytes.values()), max(state_bytes.values())
    free = None
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        free = all_reduce_ints([free], "MIN")[0] if data_parallel else free
        budget = free // 2 if budget is None else budget
    if budget is None or needed <= budget:
        passes = [tuple(states)]
    elif one > budget:
        if device.type != "cuda":
            raise OptionError(
                f"nextlaw_memory_budget is {format_bytes(budget)}, below the {format_bytes(one)} "
                "of statistics that one hidden state needs: raise it, or leave it unset (no limit on the CPU)"
            )
        _check_host_memory(needed, budget, data_parallel)
        return MemoryPlan(torch.device("cpu"), (tuple(states),), needed, budget)
    else:
        passes = _split(states, state_bytes, budget)
    largest = max(sum(state_bytes[s] for s in p) for p in passes)
    if free is not None and largest > free:
        raise OptionError(
            f"nextlaw_memory_budget is {format_bytes(budget)}, but {device} has only {format_bytes(free)} free"
            f"{' (the least over the data-parallel ranks)' if data_parallel else ''} for a pass's "
            f"{format_bytes(largest)} of statistics: set it below the free memory, or leave it unset (half of it)"
        )
    return MemoryPlan(device, tuple(passes), needed, budget)


def _split(states: list[int], state_bytes: dict[int, int], budget: int) -> list[tuple[int, ...]]:
    """Contiguous ranges of ``states`` whose statistics each fit ``budget``, in order."""
    passes: list[tuple[int, ...]] = []
    current: list[int] = []
    held = 0
    for state in states:
        if current and held + state_bytes[state] > budget:
            passes.append(tuple(current))
            current, held = [], 0
        current.append(state)
        held += state_bytes[state]
    passes.append(tuple(current))
    return passes


def _check_host_memory(needed: int, budget: int, data_parallel: bool) -> None:
    """Statistics sent from a GPU to CPU memory must fit there; each data-parallel rank on this machine
    keeps its own copy (every rank decides alike, so none is left waiting in a collective)."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if data_parallel else 1
    free = available_memory()
    short = needed * ranks > free
    if data_parallel:
        short = bool(all_reduce_ints([int(short)], "MAX")[0])
    if short:
        each = f" on each of the {ranks} ranks on this machine" if ranks > 1 else ""
        raise OptionError(
            f"the statistics need {format_bytes(needed)}{each}: not even one state fits the GPU budget of "
            f"{format_bytes(budget)}, so they would live in CPU memory, where {format_bytes(free)} is free on this machine: "
            "lower nextlaw_jackknife_groups, nextlaw_folds or nextlaw_layers, or leave more GPU memory free "
            "(parallelize=True, a smaller batch) so that states fit on the GPU in passes"
        )
