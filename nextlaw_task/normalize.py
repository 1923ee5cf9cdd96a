"""Per-token normalization of hidden states before the regression (the authors' ablations).

- ``initialized_ln`` (default, the authors' protocol): states 0..L-1 go through a fresh copy of
  the model's final norm with unit gain and zero bias, i.e. plain RMSNorm or LayerNorm with the
  model's epsilon; state L already went through the real final norm and is left as it is.
- ``none``: raw hidden states.
- ``standardize``: every state, L included, is standardized per token (mean 0, variance 1 over
  its hidden dimensions, no epsilon).

An affine per-dimension map does not change an OLS fit with intercept, so the unit gain and zero
bias lose nothing. Normalization runs in float32; the statistics are then accumulated in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Normalization = Literal["initialized_ln", "none", "standardize"]
NORMALIZATIONS: tuple[str, ...] = ("initialized_ln", "none", "standardize")


@dataclass(frozen=True)
class FinalNorm:
    """The kind and epsilon of a model's final norm, enough to rebuild it without its gain."""

    kind: Literal["rms", "layer"]
    eps: float

    @classmethod
    def of(cls, module: nn.Module | None, model_type: str) -> FinalNorm:
        """Read the kind and epsilon off the model's final norm module."""
        if module is None:
            raise ValueError(
                f"model type {model_type!r}: no final norm module was found, so "
                "nextlaw_normalize=initialized_ln cannot rebuild it; use nextlaw_normalize=none "
                "or nextlaw_normalize=standardize."
            )
        name = type(module).__name__.lower()
        if "rms" in name:
            kind = "rms"
        elif isinstance(module, nn.LayerNorm) or "layernorm" in name or "layer_norm" in name:
            kind = "layer"
        else:
            raise ValueError(
                f"model type {model_type!r}: the final norm {type(module).__name__} is neither an "
                "RMSNorm nor a LayerNorm; use nextlaw_normalize=none or standardize."
            )
        for attr in ("eps", "variance_epsilon", "epsilon"):
            value = getattr(module, attr, None)
            if isinstance(value, (int, float)):
                return cls(kind, float(value))
        raise ValueError(f"model type {model_type!r}: cannot read the epsilon of {type(module).__name__}.")


def normalize_states(
    hidden: torch.Tensor, state: int, last_state: int, how: str, norm: FinalNorm | None
) -> torch.Tensor:
    """Return ``hidden`` (..., d) normalized per token as ``how`` says, in float32."""
    x = hidden.float()
    if how == "none" or (how == "initialized_ln" and state == last_state):
        return x
    if how == "standardize":
        centered = x - x.mean(dim=-1, keepdim=True)
        std = centered.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return centered / torch.where(std > 0, std, torch.ones_like(std))
    if how != "initialized_ln":
        raise ValueError(f"unknown normalization {how!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if norm is None:
        raise ValueError("initialized_ln needs the model's final norm (FinalNorm.of)")
    if norm.kind == "layer":
        x = x - x.mean(dim=-1, keepdim=True)
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + norm.eps)
