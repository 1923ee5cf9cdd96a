"""Brute-force references for the tests: materialize every feature, then least squares in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nextlaw_task.pipeline.capture import NO_EMBEDDING_STATE, locate_states
from nextlaw_task.pipeline.normalize import FinalNorm, normalize_states
from nextlaw_task.schema import TARGETS


def hidden_state_samples(
    model, token_lists: Sequence[Sequence[int]], target: str = "next", normalize: str = "initialized_ln"
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Features of every state (from output_hidden_states, one document at a time) and targets."""
    layout = locate_states(model)
    norm = FinalNorm.of(layout.final_norm, layout.model_type) if normalize == "initialized_ln" else None
    offset, first, drop = TARGETS[target]
    features: dict[int, list[np.ndarray]] = {s: [] for s in range(layout.n_states)}
    targets = []
    for tokens in token_lists:
        positions = np.arange(first, len(tokens) - drop)
        if len(positions) == 0:
            continue
        ids = torch.tensor([list(tokens)])
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states
        assert layout.model_type not in NO_EMBEDDING_STATE
        for state, h in enumerate(hidden):
            z = normalize_states(h[0], state, layout.n_layers, normalize, norm)
            features[state].append(z[positions].double().numpy())
        targets.append(np.asarray(tokens)[positions + offset])
    return {s: np.concatenate(f) for s, f in features.items()}, np.concatenate(targets).astype(np.float64)


def ols_pr(x: np.ndarray, t: np.ndarray, rcond: float | None = None) -> float:
    """In-sample PR = RSS / TSS of least squares with an intercept (numpy lstsq).

    ``rcond`` drops directions of the column-standardized design below that relative singular
    value: a float32 LayerNorm output's null direction holds only rounding noise (about 1e-7).
    """
    spread = x.std(axis=0)
    design = np.column_stack([x / np.where(spread > 0, spread, 1.0), np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(design, t, rcond=rcond)
    residual = t - design @ coef
    return float(residual @ residual / ((t - t.mean()) @ (t - t.mean())))
