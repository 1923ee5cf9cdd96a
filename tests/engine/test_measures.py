"""Every measure against brute force on materialised data, plus the ill-posed flags and warnings."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

from engine_helpers import (
    ALL_MEASURES,
    Stream,
    feed,
    fuzziness,
    heldout_pr,
    make_stream,
    ols_pr,
    onehot,
    onehot_pr,
    permuted_ids,
    relative_error,
)
from nextlaw_task.engine.measures import MeasureResult
from nextlaw_task.engine.stats import ResidualStatistics

RTOL = 1e-9


def _insample_references(stream: Stream, vocab: int) -> dict[str, float]:
    x, t = stream.x, stream.t
    return {
        "id": ols_pr(x, t.astype(float)),
        "shuffled_id": ols_pr(x, permuted_ids(t, vocab)),
        "onehot": onehot_pr(x, t),
        "separation_fuzziness": fuzziness(x, t),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1])
def test_insample_measures_match_brute_force(dtype: torch.dtype, seed: int) -> None:
    stream = make_stream(seed, dtype=dtype, offset=1e3 if dtype != torch.float16 else 20.0)
    results = feed(ResidualStatistics([0, 3], ALL_MEASURES, vocab_size=40), stream).compute()
    for name, expected in _insample_references(stream, 40).items():
        assert results[name].values.keys() == {0, 3}
        assert relative_error(results[name].values[3], expected) < RTOL, name
        assert results[name].fold_std is None and not results[name].ill_posed


def test_id_matches_sklearn() -> None:
    stream = make_stream(7, n=800, d=20)
    y = stream.t.astype(float)
    model = LinearRegression().fit(stream.x, y)
    expected = 1.0 - model.score(stream.x, y)
    value = feed(ResidualStatistics([5]), stream).compute()["id"].values[5]
    assert relative_error(value, expected) < RTOL


@pytest.mark.parametrize("n_folds", [2, 5])
def test_heldout_matches_explicit_split_by_document(n_folds: int) -> None:
    stream = make_stream(11, n=700, d=10, n_documents=40)
    acc = feed(ResidualStatistics([1], ("id", "shuffled_id", "onehot", "separation_fuzziness"), n_folds, 40), stream)
    results = acc.compute()
    x, t, docs = stream.x, stream.t, stream.docs
    targets = {
        "id": t.astype(float),
        "shuffled_id": permuted_ids(t, 40),
        "onehot": onehot(t, np.unique(t)),
    }
    for name, y in targets.items():
        mean, std = heldout_pr(x, y, docs, n_folds)
        assert relative_error(results[name].values[1], mean) < RTOL, name
        assert abs(results[name].fold_std[1] - std) < RTOL * mean, name
    assert results["separation_fuzziness"].fold_std is None
    assert relative_error(results["separation_fuzziness"].values[1], fuzziness(x, t)) < RTOL


def test_heldout_id_matches_sklearn_per_fold() -> None:
    stream = make_stream(12, n=500, d=8)
    x, y, docs = stream.x, stream.t.astype(float), stream.docs
    scores = []
    for k in range(3):
        test = docs % 3 == k
        pred = LinearRegression().fit(x[~test], y[~test]).predict(x[test])
        scores.append(((y[test] - pred) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum())
    value = feed(ResidualStatistics([0], n_folds=3), stream).compute()["id"].values[0]
    assert relative_error(value, float(np.mean(scores))) < RTOL


def test_heldout_class_unseen_in_training_folds() -> None:
    stream = make_stream(13, n=400, d=5)
    targets = stream.targets.clone()
    targets[stream.documents == 3] = 39
    targets[targets == 39] = torch.where(stream.documents[targets == 39] == 3, 39, 0)
    stream = Stream(stream.features, targets, stream.documents)
    value = feed(ResidualStatistics([0], ("onehot",), n_folds=4), stream).compute()["onehot"].values[0]
    expected, _ = heldout_pr(stream.x, onehot(stream.t, np.unique(stream.t)), stream.docs, 4)
    assert relative_error(value, expected) < RTOL


def test_fuzziness_with_more_classes_than_features() -> None:
    stream = make_stream(14, n=900, d=4, vocab=40, zipf=1.1)
    assert len(np.unique(stream.t)) > 5
    value = feed(ResidualStatistics([0], ("separation_fuzziness",)), stream).compute()
    assert relative_error(value["separation_fuzziness"].values[0], fuzziness(stream.x, stream.t)) < RTOL


def test_fuzziness_singular_between_scatter_with_many_classes() -> None:
    stream = make_stream(15, n=900, d=4, vocab=40, zipf=1.1, dtype=torch.float64)
    x = stream.x
    x = np.column_stack([x, x[:, 1] - 2.0 * x[:, 2]])
    value = feed(ResidualStatistics([0], ("separation_fuzziness",)), Stream(torch.tensor(x), stream.targets, stream.documents))
    assert relative_error(value.compute()["separation_fuzziness"].values[0], fuzziness(x, stream.t)) < 1e-8


def _with_columns(stream: Stream, extra: np.ndarray) -> Stream:
    return Stream(torch.tensor(np.column_stack([stream.x, extra])), stream.targets, stream.documents)


def test_near_duplicate_columns_match_lstsq() -> None:
    stream = make_stream(16, n=600, d=8, dtype=torch.float64)
    rng = np.random.default_rng(0)
    x = stream.x
    near = _with_columns(stream, np.column_stack([x[:, 1] + 1e-3 * rng.normal(size=600), 2 * x[:, 2] + 1e-3 * rng.normal(size=600)]))
    results = feed(ResidualStatistics([0], ("id", "onehot"), vocab_size=40), near).compute()
    assert relative_error(results["id"].values[0], ols_pr(near.x, near.t.astype(float))) < RTOL
    assert relative_error(results["onehot"].values[0], onehot_pr(near.x, near.t)) < RTOL


def test_duplicates_below_float64_resolution_act_as_exact_duplicates() -> None:
    stream = make_stream(17, n=600, d=8, dtype=torch.float64)
    x = stream.x
    exact = _with_columns(stream, x[:, 1])
    near = _with_columns(stream, x[:, 1] + 1e-10 * np.random.default_rng(1).normal(size=600))
    value_exact = feed(ResidualStatistics([0]), exact).compute()["id"].values[0]
    value_near = feed(ResidualStatistics([0]), near).compute()["id"].values[0]
    assert relative_error(value_exact, ols_pr(exact.x, exact.t.astype(float))) < RTOL
    assert relative_error(value_near, value_exact) < RTOL


def test_zero_variance_feature_column() -> None:
    stream = make_stream(18, n=300, d=6, dtype=torch.float64)
    constant = _with_columns(stream, np.full(300, 123.25))
    results = feed(ResidualStatistics([0], ALL_MEASURES, vocab_size=40), constant).compute()
    for name, expected in _insample_references(stream, 40).items():
        assert relative_error(results[name].values[0], expected) < RTOL, name


def test_fewer_samples_than_hidden_size_is_flagged_with_numbers(caplog: pytest.LogCaptureFixture) -> None:
    stream = make_stream(19, n=40, d=64)
    acc = feed(ResidualStatistics([2], ("id", "onehot")), stream)
    with caplog.at_level(logging.WARNING):
        results = acc.compute()
        acc.compute()
    for name in ("id", "onehot"):
        result = results[name]
        assert 0.0 <= result.values[2] < 1e-8
        assert "40 samples <= hidden size 64" in result.ill_posed[2]
        assert result.warnings == (result.ill_posed[2],)
        assert sum(result.ill_posed[2] in r.getMessage() for r in caplog.records) == 1


def test_heldout_with_small_training_folds_is_flagged_and_minimum_norm() -> None:
    stream = make_stream(20, n=60, d=50, n_documents=12)
    result = feed(ResidualStatistics([0], n_folds=2), stream).compute()["id"]
    assert "training samples <= hidden size 50" in result.ill_posed[0]
    x, y, docs = stream.x, stream.t.astype(float), stream.docs
    scores = []
    for k in range(2):
        test = docs % 2 == k
        xt, yt = x[~test], y[~test]
        xc, scale = xt - xt.mean(0), np.sqrt(((xt - xt.mean(0)) ** 2).sum(0))
        coef = np.linalg.pinv(xc / scale, rcond=1e-10) @ (yt - yt.mean()) / scale
        pred = yt.mean() + (x[test] - xt.mean(0)) @ coef
        scores.append(((y[test] - pred) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum())
    assert relative_error(result.values[0], float(np.mean(scores))) < RTOL


def test_single_class_and_constant_target_are_flagged() -> None:
    stream = make_stream(21, n=200, d=4)
    constant = Stream(stream.features, torch.full((200,), 7), stream.documents)
    results = feed(ResidualStatistics([0], ALL_MEASURES, vocab_size=40), constant).compute()
    for name in ALL_MEASURES:
        assert math.isnan(results[name].values[0])
        assert "200 samples" in results[name].ill_posed[0]
    assert "single class" in results["onehot"].ill_posed[0]
    assert "no variance" in results["id"].ill_posed[0]


def test_heldout_constant_target_is_flagged() -> None:
    stream = make_stream(22, n=200, d=4)
    constant = Stream(stream.features, torch.full((200,), 7), stream.documents)
    results = feed(ResidualStatistics([0], ("id", "onehot"), n_folds=3), constant).compute()
    assert math.isnan(results["id"].values[0]) and "no variance" in results["id"].ill_posed[0]
    assert math.isnan(results["onehot"].values[0]) and "single class" in results["onehot"].ill_posed[0]


def test_empty_state_is_flagged() -> None:
    stream = make_stream(23, n=200, d=4)
    acc = feed(ResidualStatistics([0, 1], ("id", "onehot")), stream, states=[0])
    results = acc.compute()
    assert math.isnan(results["id"].values[1]) and "no samples" in results["id"].ill_posed[1]
    assert "state 0: 200, state 1: 0" in results["onehot"].warnings[0]


def test_a_state_measured_again_replaces_its_flag_and_warning() -> None:
    """A second pass over a state (the fast precision's float64 fallback) replaces its first result whole."""
    stream = make_stream(23, n=200, d=4)
    first = feed(ResidualStatistics([0, 1, 2]), stream, states=[0]).compute()["id"]
    again = feed(ResidualStatistics([1]), stream, states=[1]).compute()["id"]
    assert set(first.ill_posed) == {1, 2} and again.ill_posed == {}
    union = first.union(again)
    assert union.values[1] == again.values[1] and not math.isnan(union.values[1])
    assert union.ill_posed == {2: first.ill_posed[2]}
    assert first.ill_posed[1] in first.warnings and first.ill_posed[1] not in union.warnings
    assert first.ill_posed[2] in union.warnings and len(set(union.warnings)) == len(union.warnings)


def test_empty_fold_is_skipped_with_a_note() -> None:
    stream = make_stream(24, n=400, d=5)
    documents = stream.documents * 3
    docs3 = Stream(stream.features, stream.targets, documents % 2 + 3 * (documents // 6))
    result = feed(ResidualStatistics([0], n_folds=3), docs3).compute()["id"]
    assert any("fold 2: no samples" in w for w in result.warnings)
    mean, _ = heldout_pr(docs3.x, docs3.t.astype(float), docs3.docs % 3, 2)
    assert relative_error(result.values[0], mean) < RTOL


def test_fuzziness_every_class_once_is_flagged() -> None:
    features = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    acc = ResidualStatistics([0], ("separation_fuzziness",)).partial_fit(0, features, torch.arange(10))
    result = acc.compute()["separation_fuzziness"]
    assert abs(result.values[0]) < 1e-12 and "each of the 10 classes was seen once" in result.ill_posed[0]


def test_result_type_and_fields() -> None:
    result = feed(ResidualStatistics([0, 1]), make_stream(25, n=300, d=4)).compute()["id"]
    assert isinstance(result, MeasureResult)
    assert result.measure == "id" and result.n_tokens == 300 and result.hidden_size == 4
    assert result.warnings == () and result.ill_posed == {}
    with pytest.raises(AttributeError):
        result.measure = "onehot"  # type: ignore[misc]


@pytest.mark.parametrize("n_folds", [0, 3])
def test_wide_states_use_the_blocked_update_and_match_brute_force(n_folds: int) -> None:
    stream = make_stream(13, n=1500, d=300, vocab=60, n_documents=45)
    acc = feed(ResidualStatistics([0], ("id", "shuffled_id", "onehot"), n_folds, 60), stream, batch=401)
    results = acc.compute()
    x, t = stream.x, stream.t
    targets = {"id": t.astype(float), "shuffled_id": permuted_ids(t, 60), "onehot": onehot(t, np.unique(t))}
    for name, y in targets.items():
        expected = ols_pr(x, y) if n_folds == 0 else heldout_pr(x, y, stream.docs, n_folds)[0]
        assert relative_error(results[name].values[0], expected) < RTOL, name


def _embedding_stream(seed: int, test_tokens_seen_in_training: bool) -> Stream:
    """State-0-like features: one vector per input token, five input tokens per fold of two."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(10, 12)) + 3.0
    documents = np.repeat(np.arange(20), 30)
    inputs = rng.integers(0, 5, size=documents.size)
    if not test_tokens_seen_in_training:
        inputs = inputs + 5 * (documents % 2)
    targets = (3 * inputs + rng.integers(0, 4, size=documents.size)) % 40
    return Stream(torch.tensor(table[inputs]), torch.tensor(targets), torch.tensor(documents))


def test_heldout_fit_undetermined_where_the_test_fold_lies_is_flagged() -> None:
    stream = _embedding_stream(30, test_tokens_seen_in_training=False)
    results = feed(ResidualStatistics([0], ("id", "onehot"), n_folds=2, vocab_size=40), stream).compute()
    for name in ("id", "onehot"):
        assert "determine the fit in only 4 of 12 directions" in results[name].ill_posed[0], name


def test_heldout_fit_rank_deficient_but_determined_on_the_test_fold_is_a_result() -> None:
    stream = _embedding_stream(31, test_tokens_seen_in_training=True)
    result = feed(ResidualStatistics([0], ("id",), n_folds=2, vocab_size=40), stream).compute()["id"]
    assert not result.ill_posed
    x, y, docs = stream.x, stream.t.astype(float), stream.docs
    scores = []
    for k in range(2):
        test = docs % 2 == k
        xt, yt = x[~test], y[~test]
        coef, *_ = np.linalg.lstsq(xt - xt.mean(0), yt - yt.mean(), rcond=None)
        pred = yt.mean() + (x[test] - xt.mean(0)) @ coef
        scores.append(((y[test] - pred) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum())
    assert relative_error(result.values[0], float(np.mean(scores))) < 1e-7
