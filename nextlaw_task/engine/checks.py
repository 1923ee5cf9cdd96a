"""Checks of what an accumulator is built with and fed: every bad input is a ValueError that says
what is wrong and how to fix it, raised before the sums change."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from nextlaw_task.engine.jackknife import CellSplit
from nextlaw_task.schema import MEASURE_NAMES


def batch(
    state: int, states: Sequence[int], hidden_size: int | None, by_document: str | None,
    features: Tensor, targets: Tensor, documents: Tensor | CellSplit | None,
) -> tuple[Tensor, Tensor, Tensor | CellSplit | None]:
    """``features`` (n, d) float, ``targets`` (n,) integer ids and, when the sums are split ``by_document``
    (folds or jackknife groups, named in the message), ``documents`` (n,) or their split over the cells."""
    if state not in states:
        raise ValueError(f"state {state!r} is not measured; the accumulator was built for states {list(states)}")
    features, targets = torch.as_tensor(features), torch.as_tensor(targets)
    if features.ndim != 2:
        raise ValueError(
            f"state {state}: features must be 2-D (n, d), got shape {tuple(features.shape)}; "
            "flatten batch and positions first, e.g. h.reshape(-1, h.shape[-1])"
        )
    if not features.is_floating_point():
        raise ValueError(f"state {state}: features must be floating point, got {features.dtype}")
    n, d = features.shape
    if hidden_size is not None and d != hidden_size:
        raise ValueError(f"state {state}: features have hidden size {d}, earlier batches had {hidden_size}")
    if targets.shape != (n,) or targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(
            f"state {state}: targets must be integer token ids of shape ({n},), "
            f"got {targets.dtype} of shape {tuple(targets.shape)}"
        )
    if by_document:
        if documents is None:
            raise ValueError(f"state {state}: {by_document} needs documents (n,) to split the sums by document")
        documents = documents if isinstance(documents, CellSplit) else torch.as_tensor(documents)
        rows = documents.fold if isinstance(documents, CellSplit) else documents
        if rows.shape != (n,) or rows.is_floating_point():
            raise ValueError(
                f"state {state}: documents must be integer document indices of shape ({n},), "
                f"got {rows.dtype} of shape {tuple(rows.shape)}"
            )
    return features, targets.long(), documents


def cell_split(state: int, documents: Tensor | CellSplit, n_cells: int, device: torch.device) -> CellSplit:
    """The split of a batch's rows over ``n_cells`` cells on ``device``: ``documents``' own, or made of them."""
    if not isinstance(documents, CellSplit):
        return CellSplit.of(documents.to(device), n_cells)
    if len(documents.sizes) != n_cells:
        raise ValueError(f"state {state}: the CellSplit is over {len(documents.sizes)} cells, the accumulator keeps "
                         f"{n_cells}: make it with CellSplit.of(documents, {n_cells})")
    return documents.to(device)


def extra_values(state: int, extra: Tensor | None, n: int, extra_columns: int) -> Tensor | None:
    """The extra columns' values (n, extra_columns), or None when the accumulator keeps none."""
    if extra is None and not extra_columns:
        return None
    if extra is None:
        raise ValueError(f"state {state}: the accumulator keeps {extra_columns} extra columns: pass extra (n, k)")
    extra = torch.as_tensor(extra)
    if extra.shape != (n, extra_columns):
        raise ValueError(f"state {state}: extra must have shape ({n}, {extra_columns}), got {tuple(extra.shape)}")
    return extra


def target_range(state: int, targets: Tensor, vocab_size: int | None) -> None:
    """Token ids must be in 0 .. vocab_size - 1 (one wait for the device)."""
    low, high = (int(v) for v in torch.stack([targets.min(), targets.max()]).tolist())
    if low < 0:
        raise ValueError(f"state {state}: target ids must be >= 0, got {low} (mask padding before feeding)")
    if vocab_size is not None and high >= vocab_size:
        raise ValueError(f"state {state}: target id {high} >= vocab_size {vocab_size}")


def finite(state: int, features: Tensor, column_sums: Tensor) -> None:
    """Refuse NaN or infinite features, read off the batch's float64 column sums."""
    # A float64 sum of finite 16/32-bit values cannot overflow: a non-finite sum means a non-finite input.
    if bool(torch.isfinite(column_sums[: features.shape[1]]).all()):
        return
    bad = int((~torch.isfinite(features)).sum())
    raise ValueError(
        f"state {state}: {bad} feature values are NaN or infinite (dtype {features.dtype}); "
        "the model overflowed: run it in a wider dtype (bfloat16 or float32 instead of float16)"
    )


def states_list(states: Sequence[int]) -> tuple[int, ...]:
    """Distinct integer state labels."""
    labels = tuple(int(s) for s in states)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"states must be a non-empty sequence of distinct ints, got {list(states)!r}")
    return labels


def measures_list(measures: Sequence[str]) -> tuple[str, ...]:
    """Distinct known measure names."""
    if isinstance(measures, str):
        measures = (measures,)
    chosen = tuple(measures)
    unknown = [m for m in chosen if m not in MEASURE_NAMES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"measures must be distinct names from {MEASURE_NAMES}, got {chosen!r}")
    return chosen


def group_count(n_groups: int) -> int:
    """0 (no jackknife) or G >= 2 groups."""
    if not isinstance(n_groups, int) or n_groups < 0 or n_groups == 1:
        raise ValueError(f"n_groups must be 0 (no standard errors) or an int >= 2 (jackknife groups), got {n_groups!r}")
    return n_groups


def fold_count(n_folds: int) -> int:
    """0 (in-sample) or K >= 2 folds."""
    if not isinstance(n_folds, int) or n_folds < 0 or n_folds == 1:
        raise ValueError(f"n_folds must be 0 (in-sample) or an int >= 2 (held-out), got {n_folds!r}")
    return n_folds
