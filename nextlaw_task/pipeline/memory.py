"""The memory plan: where the float64 statistics live and which states each pass over the corpus measures."""

from __future__ import annotations

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
        ranges = "; ".join(f"{p[0]}-{p[-1]}" for p in self.passes)
        return f" (over the {format_bytes(self.budget)} budget: {len(self.passes)} passes over the corpus, states {ranges})"


def plan_memory(
    model_device: torch.device | str, state_bytes: dict[int, int], budget: int | None, data_parallel: bool = False
) -> MemoryPlan:
    """Keep the statistics beside the model, within ``budget`` bytes.

    ``budget`` None means no limit on the CPU and half the free memory on a GPU (the smallest over
    data-parallel ranks, so that every rank makes the same passes). Beyond the budget the states are
    split into contiguous ranges that each fit, one pass over the corpus per range; a pass stops
    after its last state, so k passes cost about (k + 1) / 2 forward passes. On a GPU, when even one
    state's statistics exceed the budget, they live in CPU memory instead (one pass, with a copy of
    each batch's features to the host); on the CPU that budget is an error.
    """
    device = torch.device(model_device)
    states, needed = sorted(state_bytes), sum(state_bytes.values())
    if budget is None and device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // 2
        budget = all_reduce_ints([budget], "MIN")[0] if data_parallel else budget
    if budget is None or needed <= budget:
        return MemoryPlan(device, (tuple(states),), needed, budget)
    largest = max(state_bytes.values())
    if largest > budget:
        if device.type == "cuda":
            return MemoryPlan(torch.device("cpu"), (tuple(states),), needed, budget)
        raise OptionError(
            f"nextlaw_memory_budget is {format_bytes(budget)}, below the {format_bytes(largest)} of statistics that "
            "one hidden state needs: raise it, or leave it unset (no limit on the CPU)"
        )
    passes: list[tuple[int, ...]] = []
    current: list[int] = []
    for state in states:
        if current and sum(state_bytes[s] for s in current) + state_bytes[state] > budget:
            passes.append(tuple(current))
            current = []
        current.append(state)
    passes.append(tuple(current))
    return MemoryPlan(device, tuple(passes), needed, budget)
