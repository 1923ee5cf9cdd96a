"""The memory plan: statistics beside the model within the budget, passes over ranges of states."""

from __future__ import annotations

import pytest
import torch

from nextlaw_task.pipeline.memory import MemoryPlan, plan_memory


def test_memory_plan_keeps_statistics_beside_the_model_within_the_budget(monkeypatch):
    per_state = {s: 100 for s in range(6)}
    cpu = plan_memory("cpu", per_state, None)
    assert (cpu.device, cpu.passes, cpu.needed) == (torch.device("cpu"), ((0, 1, 2, 3, 4, 5),), 600)
    assert plan_memory("cpu", per_state, 250).passes == ((0, 1), (2, 3), (4, 5))
    assert plan_memory("cpu", per_state, 600).passes == ((0, 1, 2, 3, 4, 5),)
    with pytest.raises(ValueError, match="that one hidden state needs: raise it"):
        plan_memory("cpu", per_state, 99)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (500, 80_000))
    assert plan_memory("cuda", per_state, None).passes == ((0, 1), (2, 3), (4, 5))  # half the free memory: 250
    assert plan_memory("cuda", per_state, None).device == torch.device("cuda")
    assert plan_memory("cuda", per_state, 10**6).passes == ((0, 1, 2, 3, 4, 5),)
    offloaded = plan_memory("cuda", per_state, 50)
    assert (offloaded.device, offloaded.passes) == (torch.device("cpu"), ((0, 1, 2, 3, 4, 5),))


def test_the_log_note_says_how_the_budget_shaped_the_run() -> None:
    cpu = torch.device("cpu")
    assert MemoryPlan(cpu, ((0, 1, 2),), 300, None).note() == ""
    assert MemoryPlan(cpu, ((0, 1, 2),), 300, 300).note() == ""
    split = MemoryPlan(cpu, ((0, 1), (2, 3)), 4096, 2048).note()
    assert split == " (over the 2.0 KiB budget: 2 passes over the corpus, states 0-1; 2-3)"
    offloaded = MemoryPlan(cpu, ((0, 1, 2, 3),), 4096, 512).note()
    assert offloaded == " (over the 512 B budget even for one state: kept in CPU memory)"
