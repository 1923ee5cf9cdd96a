"""Shared helpers for the engine tests: data streams, brute-force references, a gloo worker.

The references materialise the data in float64 numpy and use numpy.linalg.lstsq / pinv, so they
share no code with the streaming engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nextlaw_task.engine.reduce import all_reduce_statistics
from nextlaw_task.engine.stats import ResidualStatistics

ALL_MEASURES = ("id", "shuffled_id", "onehot", "separation_fuzziness")


@dataclass(frozen=True)
class Stream:
    """Materialised samples: features as fed (tensor), their float64 values, targets, documents."""

    features: torch.Tensor
    targets: torch.Tensor
    documents: torch.Tensor

    @property
    def x(self) -> np.ndarray:
        return self.features.double().numpy()

    @property
    def t(self) -> np.ndarray:
        return self.targets.numpy()

    @property
    def docs(self) -> np.ndarray:
        return self.documents.numpy()


def make_stream(
    seed: int,
    n: int = 600,
    d: int = 12,
    *,
    offset: float = 1e3,
    vocab: int = 40,
    zipf: float = 1.3,
    dtype: torch.dtype = torch.float32,
    n_documents: int = 30,
) -> Stream:
    """Features with a large mean offset and an outlier dimension, correlated with Zipf targets."""
    rng = np.random.default_rng(seed)
    targets = (rng.zipf(zipf, size=n) - 1) % vocab
    class_means = rng.normal(size=(vocab, d))
    x = rng.normal(size=(n, d)) + 0.7 * class_means[targets] + offset
    x[:, 0] *= 30.0
    documents = np.sort(rng.integers(0, n_documents, size=n))
    return Stream(
        torch.tensor(x, dtype=dtype),
        torch.tensor(targets, dtype=torch.int64),
        torch.tensor(documents, dtype=torch.int64),
    )


def feed(acc: ResidualStatistics, stream: Stream, states=None, batch: int = 97, order=None) -> ResidualStatistics:
    """Feed ``stream`` to every state of ``acc`` in batches (optionally in a permuted batch order)."""
    starts = list(range(0, stream.features.shape[0], batch))
    if order is not None:
        starts = [starts[i] for i in order]
    for start in starts:
        sl = slice(start, start + batch)
        for state in states if states is not None else acc.states:
            acc.partial_fit(state, stream.features[sl], stream.targets[sl], stream.documents[sl])
    return acc


def relative_error(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def with_intercept(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), x])


def onehot(t: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (t[:, None] == classes[None, :]).astype(float)


def ols_pr(x: np.ndarray, y: np.ndarray) -> float:
    """In-sample RSS / TSS of OLS with intercept (y: vector or matrix of outputs)."""
    design = with_intercept(x)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(((y - design @ coef) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def onehot_pr(x: np.ndarray, t: np.ndarray) -> float:
    return ols_pr(x, onehot(t, np.unique(t)))


def permuted_ids(t: np.ndarray, vocab: int, seed: int = 666) -> np.ndarray:
    perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed)).numpy()
    return perm[t].astype(float)


def heldout_pr(x: np.ndarray, y: np.ndarray, docs: np.ndarray, k_folds: int) -> tuple[float, float]:
    """Mean and population std over folds of RSS/TSS on fold k (TSS about fold k's mean) of an OLS fit on the rest."""
    scores = []
    design = with_intercept(x)
    for k in range(k_folds):
        test = docs % k_folds == k
        coef = np.linalg.lstsq(design[~test], y[~test], rcond=None)[0]
        resid = y[test] - design[test] @ coef
        scores.append(float((resid**2).sum() / ((y[test] - y[test].mean(0)) ** 2).sum()))
    return float(np.mean(scores)), float(np.std(scores))


def fuzziness(x: np.ndarray, t: np.ndarray) -> float:
    """Tr(SS_w pinv(SS_b)) from explicit scatter matrices."""
    mean = x.mean(0)
    d = x.shape[1]
    between, within = np.zeros((d, d)), np.zeros((d, d))
    for c in np.unique(t):
        xc = x[t == c]
        mc = xc.mean(0)
        between += len(xc) * np.outer(mc - mean, mc - mean)
        within += (xc - mc).T @ (xc - mc)
    return float(np.trace(within @ np.linalg.pinv(between, rcond=d * np.finfo(float).eps, hermitian=True)))


def results_close(a: dict, b: dict, rtol: float = 1e-9) -> None:
    """Assert two compute() outputs agree (values and fold spreads) to ``rtol``."""
    assert a.keys() == b.keys()
    for name in a:
        for state, value in b[name].values.items():
            assert relative_error(a[name].values[state], value) < rtol, (name, state, a[name].values[state], value)
        if b[name].fold_std is not None:
            for state, value in b[name].fold_std.items():
                assert abs(a[name].fold_std[state] - value) < rtol * max(1.0, abs(value)), (name, state)


def allreduce_worker(rank: int, world: int, init_file: str, out_file: str, fold_counts: tuple[int, ...]) -> None:
    """One gloo rank: per fold count, feed this rank's stream, all_reduce, save compute() (rank 0)."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        saved = {}
        for n_folds in fold_counts:
            acc = ResidualStatistics([0, 1, 2], ALL_MEASURES, n_folds=n_folds, vocab_size=60)
            feed(acc, distributed_stream(rank), states=[0, 1] if rank == 0 else [0, 1, 2])
            results = all_reduce_statistics(acc).compute()
            saved[n_folds] = {
                "values": {m: r.values for m, r in results.items()},
                "fold_std": {m: r.fold_std for m, r in results.items()},
                "counts": acc.counts,
            }
        if rank == 0:
            torch.save(saved, out_file)
    finally:
        torch.distributed.destroy_process_group()


def distributed_stream(rank: int) -> Stream:
    """Rank 0 sees only even token ids, rank 1 only odd ones: different class sets per rank."""
    stream = make_stream(100 + rank, n=400, d=6, vocab=60, n_documents=20)
    targets = stream.targets * 2 % 60 + rank
    return Stream(stream.features, targets, stream.documents + 1000 * rank)
