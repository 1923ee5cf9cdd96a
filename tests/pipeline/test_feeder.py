"""The feeder on a CPU, run as a GPU runs it: windows of states normalized together, on a stream that
runs each job as late as the streams' contract allows. Every metric and standard error must equal the
CPU's own path (one state at a time, at once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch

import nextlaw_task.pipeline.feeder as feeder_module
import nextlaw_task.pipeline.runner as runner_module
from tiny import VOCAB
from nextlaw_task.engine.precision import FAST_TOLERANCE
from nextlaw_task.options import MeasurementSpec
from nextlaw_task.pipeline.capture import locate_states
from nextlaw_task.pipeline.feeder import WINDOW_BYTES, BatchFeeder, window_size
from nextlaw_task.pipeline.plan import plan_batch
from nextlaw_task.pipeline.runner import CorpusRunner, Document
from nextlaw_task.pipeline.streams import Inline, stats_stream


class Deferred:
    """A stream whose jobs run only when the caller waits for them (``wait``) or for all (``join``): the
    latest a side stream may run them. Each job checks that the tensors it was handed still hold what they
    held when it was submitted: a buffer refilled before its job ran fails here."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[], None], list[torch.Tensor], list[torch.Tensor]]] = []
        self.ran = 0
        self.submitted = 0

    def submit(self, work: Callable[[], None], tensors: Sequence[torch.Tensor]) -> object:
        self.queue.append((work, list(tensors), [t.clone() for t in tensors]))
        self.submitted += 1
        return self.submitted

    def wait(self, mark: object) -> None:
        while self.ran < mark:
            self._run_next()

    def join(self) -> None:
        while self.ran < self.submitted:
            self._run_next()

    def _run_next(self) -> None:
        work, tensors, snapshots = self.queue[self.ran]
        for tensor, snapshot in zip(tensors, snapshots):
            assert torch.equal(tensor, snapshot), "a window was overwritten before its job read it"
        self.ran += 1
        work()


def documents_of(specs, n_docs: int, seed: int) -> list[Document]:
    rng = np.random.default_rng(seed)
    tokens = [rng.integers(0, VOCAB, rng.integers(1, 40)).tolist() for _ in range(n_docs)]
    return [Document(tuple(t), tuple((s.task, i) for s in specs)) for i, t in enumerate(tokens)]


def measure(model, specs, documents, batch_size: int = 7) -> dict[str, tuple[dict, dict]]:
    runner = CorpusRunner(locate_states(model), specs, VOCAB)
    for start in range(0, len(documents), batch_size):
        runner.feed(documents[start : start + batch_size], "cpu")
    return {s.task: runner.finish_with_errors(s.task) for s in specs}


SPECS = [
    MeasurementSpec(task="id"),
    MeasurementSpec(task="prev", target="previous"),  # derived from id's rows: signed feeds, extra columns
    MeasurementSpec(task="held", folds=2),
    MeasurementSpec(task="onehot", measure="onehot", normalize="standardize"),
    MeasurementSpec(task="raw", normalize="none", layers="1,2,3"),
    MeasurementSpec(task="quick", precision="fast"),  # float32 products, and the check's float64 sample
]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # gpt2: state L recomputed from the final norm's input
@pytest.mark.parametrize("window, gather", [(1, 0), (2, 0), (3, 0), (99, 0), (3, 16)])  # 1: each buffer reused
def test_windows_on_a_late_stream_give_the_cpu_path_s_metrics_and_errors(tiny_models, monkeypatch, arch, window, gather):
    """All of a GPU's path on the CPU: windows, a stream that runs late, and (``gather``) rows gathered per cell."""
    model = tiny_models[arch]
    documents = documents_of(SPECS, 40, seed=5)
    at_once = measure(model, SPECS, documents)
    streams: list[Deferred] = []
    monkeypatch.setattr(runner_module, "stats_stream", lambda device, overlap: streams.append(Deferred()) or streams[-1])
    monkeypatch.setattr(feeder_module, "window_size", lambda device, rows, d, itemsize: window)
    monkeypatch.setattr(runner_module, "gather_rows_for", lambda d, device: gather)
    late = measure(model, SPECS, documents)
    n_states = locate_states(model).n_states
    for task, (metrics, errors) in late.items():
        if task == "quick" and gather:  # float32 products of other row blocks: PRs within the fast tolerance
            prs = {k: v for k, v in metrics.items() if k.startswith("pr_layer_")}
            expected = {k: at_once[task][0][k] for k in prs}
            assert len(prs) == n_states and prs == pytest.approx(expected, rel=0, abs=FAST_TOLERANCE), task
            continue
        assert metrics == pytest.approx(at_once[task][0], rel=1e-12, abs=1e-14), task
        assert errors == pytest.approx(at_once[task][1], rel=1e-9, abs=1e-14), task
    assert len(streams) == 1 and streams[0].submitted == 6 * -(-n_states // window)  # 6 batches, whole windows
    assert streams[0].ran == streams[0].submitted


def test_a_window_normalizes_its_states_in_one_call(tiny_models, monkeypatch):
    """Four states in windows of three: states 0-2 in one call, the last state on its own, per batch."""
    import nextlaw_task.pipeline.normalize as normalize_module

    calls: list[tuple[int, ...]] = []
    original = normalize_module.normalize_states
    monkeypatch.setattr(normalize_module, "normalize_states",
                        lambda x, state, *rest: calls.append(tuple(x.shape[:-2]) + (state,)) or original(x, state, *rest))
    monkeypatch.setattr(feeder_module, "window_size", lambda device, rows, d, itemsize: 3)
    spec = MeasurementSpec(task="id")
    measure(tiny_models["llama"], [spec], documents_of([spec], 10, seed=1), batch_size=10)
    assert calls == [(3, 0), (3,)]  # one batch: a (3, n, d) window from state 0, then state 3 alone


def test_what_the_model_does_with_its_tensor_after_the_hook_does_not_reach_the_sums(tiny_models):
    """The feeder copies each state's rows on the model's stream: a job that runs later reads the copy."""
    model = tiny_models["llama"]
    layout = locate_states(model)
    spec = MeasurementSpec(task="id")
    documents = documents_of([spec], 8, seed=2)
    results = []
    for overwrite in (False, True):
        runner = CorpusRunner(layout, [spec], VOCAB)
        plan = plan_batch(documents, runner.settings.pools, [0], 1024)
        stream = Deferred()
        feeder = BatchFeeder(plan, runner.state.stats, layout.n_layers, runner.settings.final_norm, False,
                             list(range(layout.n_states)), stream)
        generator = torch.Generator().manual_seed(0)
        for state in range(layout.n_states):
            hidden = torch.randn(*plan.ids.shape, 32, generator=generator)
            feeder(state, hidden)
            if overwrite:
                hidden.fill_(float("nan"))
        assert stream.ran < stream.submitted  # jobs were still waiting when the tensors changed
        feeder.close()
        results.append(runner.finish("id"))
    assert results[1] == pytest.approx(results[0], rel=0, abs=0, nan_ok=True)
    assert np.isfinite(results[1]["law_slope"])


def test_window_size_is_one_state_on_a_cpu_and_a_budget_on_a_gpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert window_size(cpu, 1000, 64, 4) == 1
    per_state = 930 * 4096 * (2 * 2 + 8)  # a 7B batch of 930 tokens in bfloat16: two buffers and float64
    assert window_size(cuda, 930, 4096, 2) == WINDOW_BYTES // per_state == 5
    assert window_size(cuda, 930, 8192, 2) == 2
    assert window_size(cuda, 100_000, 8192, 4) == 1  # always at least one state


def test_the_statistics_run_inline_on_a_cpu_and_without_overlap():
    assert isinstance(stats_stream(torch.device("cpu")), Inline)
    assert isinstance(stats_stream(torch.device("cuda"), overlap=False), Inline)
    done: list[int] = []
    stream = Inline()
    assert stream.submit(lambda: done.append(1), []) is None and done == [1]
