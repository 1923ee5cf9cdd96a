"""The streaming pass equals brute force on output_hidden_states, for every target and batching."""

from __future__ import annotations

import numpy as np
import pytest

from tiny import VOCAB
from nextlaw_task.engine.jackknife import CellSplit
from nextlaw_task.engine.sums import StateSums
from nextlaw_task.pipeline.capture import locate_states
from nextlaw_task.options import MeasurementSpec
from nextlaw_task.pipeline.runner import CorpusRunner, Document
from nextlaw_task.schema import layer_metric
from reference import hidden_state_samples, ols_pr


def random_documents(n_docs: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, rng.integers(1, 40)).tolist() for _ in range(n_docs)]


def run(model, specs, token_lists, batch_size):
    runner = CorpusRunner(locate_states(model), specs, VOCAB)
    documents = [Document(tuple(t), tuple((s.task, i) for s in specs)) for i, t in enumerate(token_lists)]
    for start in range(0, len(documents), batch_size):
        runner.feed(documents[start : start + batch_size], "cpu")
    return {s.task: runner.finish(s.task) for s in specs}


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("target", ["next", "previous", "current", "next_next"])
def test_pr_equals_brute_force(tiny_models, arch, target):
    model = tiny_models[arch]
    docs = random_documents(40)
    spec = MeasurementSpec(task="t", target=target)
    metrics = run(model, [spec], docs, batch_size=7)["t"]
    features, targets = hidden_state_samples(model, docs, target)
    assert metrics["n_tokens"] == len(targets) > 3 * 32
    assert metrics["n_docs"] == len(docs) and metrics["hidden_size"] == 32
    for state, x in features.items():
        # GPT-2's last state is a float32 LayerNorm output (see reference.ols_pr)
        rcond = 1e-6 if arch == "gpt2" and state == 3 else None
        assert metrics[layer_metric("pr", state, 3)] == pytest.approx(ols_pr(x, targets, rcond), rel=1e-6)
    assert np.isfinite(metrics["law_slope"])


def test_batching_and_padding_do_not_change_the_result(tiny_models):
    model = tiny_models["llama"]
    docs = random_documents(30, seed=3)
    spec = MeasurementSpec(task="t")
    one = run(model, [spec], docs, batch_size=1)["t"]
    many = run(model, [spec], docs, batch_size=16)["t"]
    for key, value in one.items():
        assert many[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_tasks_sharing_a_pass_are_independent(tiny_models):
    model = tiny_models["llama"]
    docs = random_documents(30, seed=4)
    specs = [MeasurementSpec(task="a"), MeasurementSpec(task="b", target="previous", layers="0,2")]
    both = run(model, specs, docs, batch_size=5)
    alone = run(model, [specs[1]], docs, batch_size=5)["b"]
    assert set(k for k in both["b"] if k.startswith("pr_layer")) == {"pr_layer_00", "pr_layer_02"}
    assert both["b"] == pytest.approx(alone, nan_ok=True)
    assert both["a"]["pr_layer_01"] != both["b"]["pr_layer_00"]


def test_short_documents_contribute_nothing(tiny_models):
    model = tiny_models["llama"]
    docs = random_documents(30, seed=5) + [[5], [7]]
    spec = MeasurementSpec(task="t", target="next_next")
    metrics = run(model, [spec], docs, batch_size=8)["t"]
    features, targets = hidden_state_samples(model, docs, "next_next")
    assert metrics["n_tokens"] == len(targets)
    assert metrics["pr_layer_01"] == pytest.approx(ols_pr(features[1], targets), rel=1e-6)




def test_too_few_tokens_warns_with_both_numbers_and_flags(tiny_models, caplog):
    docs = random_documents(3, seed=6)  # far fewer samples than hidden size 32 + 1
    metrics = run(tiny_models["llama"], [MeasurementSpec(task="t")], docs, batch_size=4)["t"]
    n = int(metrics["n_tokens"])
    assert n <= 32
    assert f"{n} samples <= hidden size 32" in caplog.text
    assert metrics["ill_posed_states"] == 4.0
    assert all(np.isnan(metrics[layer_metric("pr", s, 3)]) and metrics[layer_metric("ill_posed", s, 3)] == 1.0
               for s in range(4))
    assert np.isnan(metrics["law_slope"]) and "not enough layers" in caplog.text


def test_measures_over_the_same_samples_share_one_accumulator(tiny_models):
    model = tiny_models["llama"]
    docs = random_documents(40, seed=7)
    specs = [
        MeasurementSpec(task="id"),
        MeasurementSpec(task="onehot", measure="onehot"),
        MeasurementSpec(task="shuffled", measure="shuffled_id"),
        MeasurementSpec(task="previous", target="previous"),
    ]
    runner = CorpusRunner(locate_states(model), specs, VOCAB)
    assert [p.members for p in runner.settings.pools] == [("id", "onehot", "shuffled"), ("previous",)]
    together = run(model, specs, docs, batch_size=8)
    for spec in specs:
        alone = run(model, [spec], docs, batch_size=8)[spec.task]
        assert together[spec.task] == pytest.approx(alone, rel=1e-12, nan_ok=True), spec.task


def test_passes_over_ranges_of_states_equal_one_pass(tiny_models):
    model = tiny_models["llama"]
    docs = random_documents(30, seed=5)
    specs = [
        MeasurementSpec(task="id"),
        MeasurementSpec(task="onehot", measure="onehot"),
        MeasurementSpec(task="held", folds=2),
        MeasurementSpec(task="some", target="previous", layers="1,3"),
    ]
    documents = [Document(tuple(t), tuple((s.task, i) for s in specs)) for i, t in enumerate(docs)]
    runner = CorpusRunner(locate_states(model), specs, VOCAB)
    bytes_per_state = runner.settings.state_bytes(32)
    assert bytes_per_state[1] > bytes_per_state[0]  # states 1 and 3 are also measured by "some"
    for states in ((0, 1), (2,), (3,)):
        runner.start_pass(states)
        assert {s for stats in runner.state.stats if stats for s in stats.states} == set(states)
        for start in range(0, len(documents), 8):
            runner.feed(documents[start : start + 8], "cpu")
        runner.end_pass()
    passes = {s.task: runner.finish(s.task) for s in specs}
    once = run(model, specs, docs, batch_size=8)
    for spec in specs:
        assert passes[spec.task].keys() == once[spec.task].keys()
        assert passes[spec.task] == pytest.approx(once[spec.task], rel=1e-12, nan_ok=True), spec.task
    assert passes["id"]["n_docs"] == len(docs)


def test_a_pass_cannot_start_before_the_last_one_is_solved(tiny_models):
    runner = CorpusRunner(locate_states(tiny_models["llama"]), [MeasurementSpec(task="t")], VOCAB)
    runner.feed([Document((1, 2, 3, 4), (("t", 0),))], "cpu")
    with pytest.raises(RuntimeError, match="end_pass"):
        runner.start_pass((0,))

def test_rows_in_small_chunks_give_the_same_statistics(tiny_models, monkeypatch):
    import nextlaw_task.pipeline.runner as runner_module

    model = tiny_models["gpt2"]
    docs = random_documents(25, seed=6)
    specs = [
        MeasurementSpec(task="next", measure="onehot"),
        MeasurementSpec(task="held", folds=3),
        MeasurementSpec(task="previous", target="previous"),
        MeasurementSpec(task="current", target="current", normalize="none"),
        MeasurementSpec(task="next_next", target="next_next", layers="0,3"),
    ]
    whole = run(model, specs, docs, batch_size=10)
    monkeypatch.setattr(runner_module, "CHUNK_BYTES", 1)
    monkeypatch.setattr(runner_module, "MIN_CHUNK_ROWS", 7)
    chunked = run(model, specs, docs, batch_size=10)
    for spec in specs:
        assert chunked[spec.task] == pytest.approx(whole[spec.task], rel=1e-9, nan_ok=True), spec.task
    features, targets = hidden_state_samples(model, docs, "previous")
    assert chunked["previous"][layer_metric("pr", 2, 3)] == pytest.approx(ols_pr(features[2], targets), rel=1e-6)


def test_token_ids_outside_the_vocabulary_are_refused_before_the_pass(tiny_models):
    runner = CorpusRunner(locate_states(tiny_models["llama"]), [MeasurementSpec(task="t")], VOCAB)
    with pytest.raises(ValueError, match=f"token id {VOCAB} is outside the tokenizer's vocabulary of {VOCAB}"):
        runner.feed([Document((1, 2, VOCAB), (("t", 0),))], "cpu")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_flows_derived_from_the_next_token_rows_equal_their_own_runs(tiny_models, arch):
    model = tiny_models[arch]
    docs = [[5], [6, 7], [8, 9, 10], *random_documents(30, seed=8)]  # lengths 1, 2, 3 exercise every edge
    specs = [
        MeasurementSpec(task="next", measure="onehot"),
        MeasurementSpec(task="held", folds=3),
        MeasurementSpec(task="previous", target="previous"),
        MeasurementSpec(task="current", target="current"),
        MeasurementSpec(task="next_next", target="next_next"),
    ]
    runner = CorpusRunner(locate_states(model), specs, VOCAB)
    pools, pool_of = runner.settings.pools, runner.settings.pool_of
    assert all(pools[pool_of[name]].base == pool_of["next"] for name in ("previous", "current", "next_next"))
    assert runner.statistics("next").extra_columns == 3 and pools[pool_of["held"]].base is None
    derived = {name: runner.statistics(name) for name in ("previous", "current", "next_next")}
    documents = [Document(tuple(t), tuple((s.task, i) for s in specs)) for i, t in enumerate(docs)]
    for start in range(0, len(documents), 8):
        runner.feed(documents[start : start + 8], "cpu")
    # a derived group's own statistics hold only the rows where its positions differ from the base's:
    # none for current (the same positions), +1 and -1 per document for previous, -1 for next_next
    assert derived["current"].hidden_size is None
    assert set(derived["previous"].counts.values()) == {0} and derived["previous"].hidden_size == 32
    assert set(derived["next_next"].counts.values()) == {-sum(len(t) >= 2 for t in docs)}
    together = {s.task: runner.finish(s.task) for s in specs}
    for spec in specs[2:]:
        alone = run(model, [spec], docs, batch_size=8)[spec.task]
        assert together[spec.task] == pytest.approx(alone, rel=1e-9, abs=1e-12, nan_ok=True), spec.task
        features, targets = hidden_state_samples(model, docs, spec.target)
        assert together[spec.task]["n_tokens"] == len(targets)
        for state, x in features.items():
            rcond = 1e-6 if arch == "gpt2" and state == 3 else None
            assert together[spec.task][layer_metric("pr", state, 3)] == pytest.approx(ols_pr(x, targets, rcond), rel=1e-6)


def test_documents_of_one_token_give_nan_and_a_reason_not_an_internal_error(tiny_models, caplog):
    """No sample for any state (every document one token long): NaN and flags, with the reason logged."""
    docs = [[5], [7], [9]]
    metrics = run(tiny_models["llama"], [MeasurementSpec(task="t"), MeasurementSpec(task="h", folds=2)], docs, 2)
    for task in ("t", "h"):
        assert metrics[task]["n_tokens"] == 0 and metrics[task]["n_docs"] == 3
        assert all(np.isnan(metrics[task][layer_metric("pr", s, 3)]) for s in range(4))
        assert metrics[task]["ill_posed_states"] == 4.0 and np.isnan(metrics[task]["law_slope"])
    assert "no samples were fed" in caplog.text


def test_rows_are_split_over_the_cells_once_a_batch_not_once_a_state(tiny_models, monkeypatch):
    """The jackknife cells of a batch's rows are worked out in its plan, once for all states (on a GPU,
    reading the rows per cell off the device would wait for it once a state)."""
    model = tiny_models["llama"]
    made: list[int] = []
    original = CellSplit.of.__func__
    monkeypatch.setattr(CellSplit, "of", classmethod(lambda cls, docs, n: made.append(n) or original(cls, docs, n)))
    docs = random_documents(20, seed=3)
    run(model, [MeasurementSpec(task="id")], docs, batch_size=8)
    assert locate_states(model).n_layers >= 2
    assert made == [10, 10, 10]  # three batches of one chunk, ten jackknife groups; not once a state


def test_rows_gathered_as_on_a_gpu_give_the_metrics_and_errors_of_updates_at_once(tiny_models, monkeypatch):
    """The GPU's path on the CPU: rows gathered per state (16 a cell, 10 jackknife cells, flushed as batches
    come and when the sums are read) give every metric and standard error of the CPU's updates at once."""
    import nextlaw_task.pipeline.runner as runner_module

    model = tiny_models["llama"]
    docs = random_documents(60, seed=9)
    specs = [MeasurementSpec(task="id"), MeasurementSpec(task="prev", target="previous")]

    def measured() -> dict[str, tuple[dict, dict]]:
        runner = CorpusRunner(locate_states(model), specs, VOCAB)
        documents = [Document(tuple(t), tuple((s.task, i) for s in specs)) for i, t in enumerate(docs)]
        for start in range(0, len(documents), 6):
            runner.feed(documents[start : start + 6], "cpu")
        return {s.task: runner.finish_with_errors(s.task) for s in specs}

    at_once = measured()
    gathered: list[int] = []
    monkeypatch.setattr(runner_module, "gather_rows_for", lambda d, device: gathered.append(d) or d // 2)
    commits = []
    keep = StateSums.commit
    monkeypatch.setattr(StateSums, "commit", lambda self, rows, *cells: commits.append(rows) or keep(self, rows, *cells))
    for task, (metrics, errors) in measured().items():
        assert metrics == pytest.approx(at_once[task][0], rel=1e-9, abs=1e-12), task
        assert errors == pytest.approx(at_once[task][1], rel=1e-7, abs=1e-12), task
    assert gathered and set(gathered) == {32}
    assert len(commits) > 20  # batches after each state's first were gathered
