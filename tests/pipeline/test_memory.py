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
    assert plan_memory("cuda", per_state, 400).passes == ((0, 1, 2, 3), (4, 5))  # the user's budget, within the free 500
    offloaded = plan_memory("cuda", per_state, 50)
    assert (offloaded.device, offloaded.passes) == (torch.device("cpu"), ((0, 1, 2, 3, 4, 5),))


def test_a_plan_that_cannot_fit_is_refused_before_the_first_batch(monkeypatch):
    """A budget over the GPU's free memory, or statistics sent to a host without room for them, stop the
    run before its first batch with what to change, not with an out-of-memory error in the middle of it."""
    import nextlaw_task.pipeline.memory as memory

    per_state = {s: 100 for s in range(6)}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (500, 80_000))
    with pytest.raises(ValueError, match="nextlaw_memory_budget is 976.6 KiB, but cuda has only 500 B free for a "
                                         "pass's 600 B of statistics: set it below the free memory"):
        plan_memory("cuda", per_state, 10**6)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (700, 80_000))
    assert plan_memory("cuda", per_state, 10**6).passes == ((0, 1, 2, 3, 4, 5),)  # over the free memory, not the need
    monkeypatch.setattr(memory, "available_memory", lambda: 599)
    with pytest.raises(ValueError, match="the statistics need 600 B: not even one state fits the GPU budget of 50 B, "
                                         "so they would live in CPU memory, where 599 B is free on this machine"):
        plan_memory("cuda", per_state, 50)
    monkeypatch.setattr(memory, "available_memory", lambda: 600)
    assert plan_memory("cuda", per_state, 50).device == torch.device("cpu")


def test_the_log_note_says_how_the_budget_shaped_the_run() -> None:
    cpu = torch.device("cpu")
    assert MemoryPlan(cpu, ((0, 1, 2),), 300, None).note() == ""
    assert MemoryPlan(cpu, ((0, 1, 2),), 300, 300).note() == ""
    split = MemoryPlan(cpu, ((0, 1), (2, 3)), 4096, 2048).note()
    assert split == " (over the 2.0 KiB budget: 2 passes over the corpus, states 0-1; 2-3)"
    offloaded = MemoryPlan(cpu, ((0, 1, 2, 3),), 4096, 512).note()
    assert offloaded == " (over the 512 B budget even for one state: kept in CPU memory)"


# ---- A Llama-70B shape (issue 17): hidden size 8192, 80 layers, so 81 states; mocked device memory, no model ----

GB = 10**9
LLAMA_70B_LAYERS, LLAMA_70B_HIDDEN = 80, 8192
#: one H200 at its sold 141 GB (torch shows ~140 GiB: see the last test), and a 70B model's weights in bf16
H200_BYTES, LLAMA_70B_WEIGHTS = 141 * GB, 2 * 70 * GB
#: under parallelize=True the first of 8 GPUs holds 1/8 of the weights, plus the CUDA context and a batch's activations
FIRST_OF_EIGHT_FREE = H200_BYTES - LLAMA_70B_WEIGHTS // 8 - 3_500_000_000  # 141 - 17.5 - 3.5 = 120 GB
#: a GPU that holds the whole model (one GPU, or each data-parallel rank): 140 GB of weights leave 1 GB, half of it
#: taken by the CUDA context: the model hardly loads at all, and not beside a batch's activations
WHOLE_MODEL_FREE = H200_BYTES - LLAMA_70B_WEIGHTS - 500_000_000  # 0.5 GB
#: the CPU memory free on an 8-GPU node (2 TB is common beside 8 H200s)
HOST_FREE = 2000 * GB


class LlamaRMSNorm(torch.nn.Module):
    """Stands in for Llama's final norm: FinalNorm.of reads the kind off the name, the epsilon off the attribute."""

    variance_epsilon = 1e-5


def _llama_70b_state_bytes(**metadata: str) -> dict[int, int]:
    """Float64 statistics per state of nextlaw_equilearning on a Llama-70B shape, as measure() asks RunSettings."""
    return _llama_70b(**metadata)[0]


def _llama_70b_plan(device: str, data_parallel: bool = False, **metadata: str) -> MemoryPlan:
    """The plan measure() makes for nextlaw_equilearning on a Llama-70B shape placed on ``device``."""
    state_bytes, spec = _llama_70b(**metadata)
    return plan_memory(device, state_bytes, spec.memory_budget, data_parallel)


def _llama_70b(**metadata: str):
    """(statistics per state, spec) of nextlaw_equilearning with the user's ``nextlaw_*`` metadata."""
    from types import SimpleNamespace

    from nextlaw_task.options import build_spec
    from nextlaw_task.pipeline.capture import StateLayout
    from nextlaw_task.pipeline.runner import RunSettings

    decoder = SimpleNamespace(config=SimpleNamespace(hidden_size=LLAMA_70B_HIDDEN))
    layout = StateLayout("llama", LLAMA_70B_LAYERS, decoder, None, LlamaRMSNorm())
    # the dataset_kwargs of tasks/nextlaw_equilearning.yaml; the user's nextlaw_* keys arrive as metadata
    spec = build_spec("nextlaw_equilearning", {"measure": "id", "target": "next", "folds": 0}, metadata)
    return RunSettings.of(layout, [spec], vocab_size=128256).state_bytes(layout.hidden_size, device="cuda"), spec


def _one_state_bytes(groups: int, gather_rows: int | None = None) -> int:
    """8 bytes x cells x (1 + size + size^2 + gather_rows x (size + 1)) + 8 x size: the id target adds one column
    to d, each gathered row its cell; in-sample, the cells are the jackknife groups (lcm(1, G)), or 1 without."""
    from nextlaw_task.engine.sums import gather_rows_for

    size, cells = LLAMA_70B_HIDDEN + 1, max(groups, 1)
    gather = gather_rows_for(LLAMA_70B_HIDDEN, "cuda") if gather_rows is None else gather_rows
    return 8 * (cells * (1 + size + size**2 + gather * (size + 1)) + size)


def _mock_free_memory(monkeypatch, free: int) -> list:
    """torch.cuda.mem_get_info reports ``free`` bytes of an H200; the devices asked about are recorded."""
    asked: list = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (asked.append(device), (free, H200_BYTES))[1])
    return asked


def _in_passes(states: range, per_pass: int) -> tuple[tuple[int, ...], ...]:
    """Contiguous ranges of ``per_pass`` states, the last one shorter: the plan's greedy split of equal states."""
    return tuple(tuple(states[i : i + per_pass]) for i in range(0, len(states), per_pass))


def _forward_passes(plan: MemoryPlan) -> float:
    """Expected cost in forward passes: pass i of k stops after its last state, about i/k of the blocks."""
    return (len(plan.passes) + 1) / 2


def test_llama_70b_statistics_follow_the_cell_formula() -> None:
    """The 70B statistics measure() plans with, from RunSettings, against the formula: the jackknife's 10 cells
    multiply them about tenfold, and without the jackknife and the gathered rows they are the issue's ~43 GB."""
    from nextlaw_task.engine.stats import ResidualStatistics
    from nextlaw_task.engine.sums import gather_rows_for
    from nextlaw_task.options import DEFAULT_JACKKNIFE_GROUPS

    assert gather_rows_for(LLAMA_70B_HIDDEN, "cuda") == 1024  # each cell keeps room for 1024 rows (d/8)
    with_jackknife, without = _llama_70b_state_bytes(), _llama_70b_state_bytes(nextlaw_jackknife_groups="0")
    states = tuple(range(LLAMA_70B_LAYERS + 1))
    assert with_jackknife == {s: _one_state_bytes(DEFAULT_JACKKNIFE_GROUPS) for s in states}
    assert without == {s: _one_state_bytes(0) for s in states}
    assert round(sum(with_jackknife.values()) / GB, 1) == 489.4  # 81 x 6.04 GB
    assert round(sum(without.values()) / GB, 1) == 48.9  # 81 x 0.60 GB
    bare = ResidualStatistics.memory_bytes(len(states), LLAMA_70B_HIDDEN, ("id",), 0, n_groups=0)  # no gathered rows
    assert bare == len(states) * _one_state_bytes(0, gather_rows=0)
    assert round(bare / GB, 1) == 43.5  # the "about 43 GB": 81 x 8 x 8193^2 bytes and a little more
    assert round(sum(without.values()) / bare, 3) == 1.125  # the 1024 = d/8 gathered rows add an eighth of d^2


def test_llama_70b_on_eight_gpus_with_parallelize_passes_on_the_first_gpu(monkeypatch) -> None:
    """parallelize=True spreads the model over 8 GPUs of one process; lm.device is the first, and the statistics
    live there within half its ~120 GB free: 9 passes with the jackknife, 1 without."""
    from nextlaw_task.options import DEFAULT_JACKKNIFE_GROUPS

    asked = _mock_free_memory(monkeypatch, FIRST_OF_EIGHT_FREE)
    budget = FIRST_OF_EIGHT_FREE // 2  # 60 GB = 55.9 GiB
    states = range(LLAMA_70B_LAYERS + 1)

    plan = _llama_70b_plan("cuda:0")
    per_pass = budget // _one_state_bytes(DEFAULT_JACKKNIFE_GROUPS)  # 9 states of 6.04 GB in 60 GB
    assert (plan.device, plan.budget, per_pass) == (torch.device("cuda:0"), budget, 9)
    assert plan.passes == _in_passes(states, per_pass) and len(plan.passes) == 9  # 81 / 9
    assert plan.passes[-1] == tuple(range(72, 81))
    assert plan.note() == (
        " (over the 55.9 GiB budget: 9 passes over the corpus, states "
        "0-8; 9-17; 18-26; 27-35; 36-44; 45-53; 54-62; 63-71; 72-80)"
    )
    assert _forward_passes(plan) == 5.0
    assert asked == [torch.device("cuda:0")]  # only the first GPU's memory counts

    plan = _llama_70b_plan("cuda:0", nextlaw_jackknife_groups="0")
    assert round(plan.needed / GB, 1) == 48.9 and plan.needed <= budget  # all 81 states (0.60 GB each) fit in 60 GB
    assert (plan.device, plan.passes, plan.note()) == (torch.device("cuda:0"), (tuple(states),), "")
    assert _forward_passes(plan) == 1.0


def test_llama_70b_budget_and_layers_options_on_eight_gpus_with_parallelize(monkeypatch) -> None:
    """What the user can do on the 8-GPU run: nextlaw_memory_budget above half the free memory makes fewer passes
    (the plan trusts it), nextlaw_layers=every:8 measures 11 states instead of 81."""
    from nextlaw_task.options import DEFAULT_JACKKNIFE_GROUPS

    _mock_free_memory(monkeypatch, FIRST_OF_EIGHT_FREE)
    budget = 100 * GB  # of the 120 GB free, leaving 20 GB for activations
    plan = _llama_70b_plan("cuda:0", nextlaw_jackknife_groups="0", nextlaw_memory_budget="100GB")
    assert plan.budget == budget
    assert (plan.device, plan.passes, plan.note()) == (torch.device("cuda:0"), (tuple(range(81)),), "")
    assert _forward_passes(plan) == 1.0

    plan = _llama_70b_plan("cuda:0", nextlaw_memory_budget="100GB")
    per_pass = budget // _one_state_bytes(DEFAULT_JACKKNIFE_GROUPS)  # 16 states of 6.04 GB in 100 GB
    assert plan.passes == _in_passes(range(81), per_pass) and len(plan.passes) == 6  # ceil(81 / 16)
    assert plan.note() == (
        " (over the 93.1 GiB budget: 6 passes over the corpus, states 0-15; 16-31; 32-47; 48-63; 64-79; 80)"
    )
    assert _forward_passes(plan) == 3.5

    every_8 = tuple(range(0, LLAMA_70B_LAYERS + 1, 8))  # 0, 8, ..., 80: 11 states
    sparse = _llama_70b_state_bytes(nextlaw_layers="every:8")
    assert tuple(sparse) == every_8 and round(sum(sparse.values()) / GB, 1) == 66.5  # 11 x 6.04 GB
    plan = _llama_70b_plan("cuda:0", nextlaw_layers="every:8")  # 9 of the 11 states fit in 60 GB
    assert plan.passes == (every_8[:9], every_8[9:])
    assert plan.note() == " (over the 55.9 GiB budget: 2 passes over the corpus, states 0-64; 72-80)"
    assert _forward_passes(plan) == 1.5
    plan = _llama_70b_plan("cuda:0", nextlaw_layers="every:8", nextlaw_jackknife_groups="0")
    assert (plan.passes, plan.note(), round(plan.needed / GB, 1)) == ((every_8,), "", 6.6)  # 11 x 0.60 GB fit


def test_llama_70b_with_the_whole_model_on_each_gpu_keeps_the_statistics_in_cpu_memory(monkeypatch) -> None:
    """One GPU, or 8 data-parallel ranks that each hold the whole 140 GB model on a 141 GB card: ~0.5 GB stays
    free, so not even one state (0.60 GB) fits the budget and the statistics live in CPU memory, one pass. Data
    parallelism takes the smallest budget over the ranks (all_reduce_ints MIN), so every rank plans alike."""
    import nextlaw_task.pipeline.memory as memory

    assert H200_BYTES - LLAMA_70B_WEIGHTS == GB  # the weights alone leave 1 GB: too little to run a batch in
    asked = _mock_free_memory(monkeypatch, WHOLE_MODEL_FREE)
    monkeypatch.setattr(memory, "available_memory", lambda: HOST_FREE)
    every_state = (tuple(range(LLAMA_70B_LAYERS + 1)),)
    for groups, needed in (("10", 81 * _one_state_bytes(10)), ("0", 81 * _one_state_bytes(0))):
        plan = _llama_70b_plan("cuda:0", nextlaw_jackknife_groups=groups)
        assert (plan.device, plan.passes, plan.needed) == (torch.device("cpu"), every_state, needed)
        assert plan.budget == WHOLE_MODEL_FREE // 2 < _one_state_bytes(0)  # 250 MB = 238.4 MiB
        assert plan.note() == " (over the 238.4 MiB budget even for one state: kept in CPU memory)"
        assert _forward_passes(plan) == 1.0  # plus a copy of each batch's features to the host
    assert asked == [torch.device("cuda:0")] * 2

    # data parallel: this rank has 0.5 GB free, the 7 others report theirs; the smallest (0.4 GB) decides
    other_ranks = [free * 10**7 for free in (50, 45, 60, 40, 50, 55, 50)]  # each one's free bytes (0.4-0.6 GB)
    reductions: list = []

    def over_ranks(values: list[int], op: str) -> list[int]:
        """The smallest free memory over the ranks; for the host check, this rank's own answer."""
        reductions.append((values, op))
        return [min(values[0], *other_ranks)] if op == "MIN" else values

    monkeypatch.setattr(memory, "all_reduce_ints", over_ranks)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    # each of the 8 ranks keeps its own copy in the host's memory: 8 x 48.9 GB = 391.6 GB fit the 2 TB free
    plan = _llama_70b_plan("cuda:0", data_parallel=True, nextlaw_jackknife_groups="0")
    assert reductions == [([WHOLE_MODEL_FREE], "MIN"), ([0], "MAX")]  # every rank agrees the host has room
    assert (plan.device, plan.passes, plan.budget) == (torch.device("cpu"), every_state, min(other_ranks) // 2)
    assert isinstance(plan.budget, int) and plan.budget == 200_000_000  # half of 0.4 GB
    assert plan.note() == " (over the 190.7 MiB budget even for one state: kept in CPU memory)"
    assert round(8 * plan.needed / GB, 1) == 391.6
    # with the jackknife, 8 x 489.4 GB = 3915.2 GB: refused before the first batch, on every rank alike
    with pytest.raises(ValueError, match="the statistics need 455.8 GiB on each of the 8 ranks on this machine: "
                                         "not even one state fits the GPU budget of 190.7 MiB, so they would live in "
                                         "CPU memory, where 1.8 TiB is free on this machine"):
        _llama_70b_plan("cuda:0", data_parallel=True, nextlaw_jackknife_groups="10")
    assert reductions[-1] == ([1], "MAX")


def test_llama_70b_on_one_gpu_with_a_few_gib_free_makes_many_short_passes(monkeypatch) -> None:
    """A card that shows ~140 GiB (as an H200 does) holds a 70B model's 131 GiB of bf16 weights with a few GiB
    to spare: with 6 GiB free, the 3 GiB budget holds 5 states without the jackknife, so the plan makes 17 passes
    (9 forward passes) rather than one pass with the statistics in CPU memory; with it, CPU memory."""
    import nextlaw_task.pipeline.memory as memory

    free = 6 * 2**30
    _mock_free_memory(monkeypatch, free)
    monkeypatch.setattr(memory, "available_memory", lambda: HOST_FREE)
    plan = _llama_70b_plan("cuda:0", nextlaw_jackknife_groups="0")
    per_pass = (free // 2) // _one_state_bytes(0)  # 3 GiB / 576.3 MiB
    assert (plan.device, per_pass) == (torch.device("cuda:0"), 5)
    assert plan.passes == _in_passes(range(81), per_pass) and len(plan.passes) == 17
    ranges = "; ".join(f"{first}-{first + 4}" for first in range(0, 80, 5))  # 0-4; 5-9; ...; 75-79; then 80
    assert plan.note() == f" (over the 3.0 GiB budget: 17 passes over the corpus, states {ranges}; 80)"
    assert _forward_passes(plan) == 9.0

    plan = _llama_70b_plan("cuda:0")  # one state with the jackknife (7.5 GiB) is over the 3 GiB budget
    assert (plan.device, plan.passes) == (torch.device("cpu"), (tuple(range(81)),))
    assert plan.note() == " (over the 3.0 GiB budget even for one state: kept in CPU memory)"
