"""Per-token normalization of hidden states before the regression (the authors' ablations).

The measurement as a whole, and where nextlaw follows the authors' code: ``docs/protocol.md``.

- ``initialized_ln`` (default, the authors' protocol): states 0..L-1 go through a fresh copy of
  the model's final norm with unit gain and zero bias, i.e. plain RMSNorm or LayerNorm with the
  model's epsilon; state L already went through the real final norm and is left as it is.
- ``none``: raw hidden states.
- ``standardize``: every state, L included, is standardized per token (mean 0, variance 1 over
  its hidden dimensions, no epsilon).

An affine per-dimension map does not change an OLS fit with intercept, so the unit gain and zero
bias lose nothing.

LayerNorm models (GPT-2, GPT-NeoX, Phi, RWKV) need care at state L: a LayerNorm output is an
affine image of a vector that sums to zero, so state L is exactly rank-deficient, and in the
model's float32 that null direction holds rounding noise that an OLS fit would "explain" (the
last layer's PR then depends on the solver at 1e-4). For an ``nn.LayerNorm`` final norm we
therefore read state L at the norm's input and apply the model's own norm (its gain, bias and
epsilon) in float64: the same state, without the rounding. Normalization runs in float64, like the statistics: a LayerNorm output sums to
zero over its dimensions, so the OLS problem is exactly rank-deficient, and only float64 rounding
keeps that null direction far enough below the solver's rank tolerance to be dropped, as a
brute-force least-squares fit drops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from nextlaw_task.errors import NextlawError
from nextlaw_task.schema import NORMALIZATIONS


class NormalizationError(NextlawError, ValueError):
    """The model's final norm cannot be rebuilt for ``initialized_ln``; the message names the alternatives."""



@dataclass(frozen=True)
class FinalNorm:
    """The kind and epsilon of a model's final norm, enough to rebuild it without its gain."""

    kind: Literal["rms", "layer"]
    eps: float
    #: gain and bias of an ``nn.LayerNorm`` final norm, in float64, to recompute state L exactly
    weight: torch.Tensor | None = field(default=None, compare=False, repr=False)
    bias: torch.Tensor | None = field(default=None, compare=False, repr=False)
    recomputes_last: bool = False

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The model's own final norm (an ``nn.LayerNorm``) applied in float64."""
        y = _unit_norm(x, self)
        if self.weight is not None:
            y = y * self.weight.to(y.device)
        if self.bias is not None:
            y = y + self.bias.to(y.device)
        return y

    @classmethod
    def of(cls, module: nn.Module | None, model_type: str) -> FinalNorm:
        """Read the kind and epsilon off the model's final norm module."""
        if module is None:
            raise NormalizationError(
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
            raise NormalizationError(
                f"model type {model_type!r}: the final norm {type(module).__name__} is neither an "
                "RMSNorm nor a LayerNorm; use nextlaw_normalize=none or standardize."
            )
        for attr in ("eps", "variance_epsilon", "epsilon"):
            value = getattr(module, attr, None)
            if isinstance(value, (int, float)):
                if isinstance(module, nn.LayerNorm):
                    params = {k: None if p is None else p.detach().double() for k, p in (("weight", module.weight), ("bias", module.bias))}
                    return cls(kind, float(value), recomputes_last=True, **params)
                return cls(kind, float(value))
        raise NormalizationError(f"model type {model_type!r}: cannot read the epsilon of {type(module).__name__}; "
                                 "use nextlaw_normalize=none or nextlaw_normalize=standardize")


def _unit_norm(x: torch.Tensor, norm: FinalNorm) -> torch.Tensor:
    """``x`` (any float dtype) over its root mean square per token (centered first for a LayerNorm), in float64.

    For an RMSNorm this reads ``x`` twice and writes the result once: the sum of squares and the
    product are taken in float64 straight from the model's dtype, without a float64 copy first.
    """
    if norm.kind == "layer":
        x = x.double()
        x = x - x.mean(dim=-1, keepdim=True)
    mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float64).square_().div_(x.shape[-1])
    return torch.mul(x, mean_square.add_(norm.eps).rsqrt_())


def normalize_states(
    hidden: torch.Tensor, state: int, last_state: int, how: str, norm: FinalNorm | None, before_norm: bool = False
) -> torch.Tensor:
    """Return ``hidden`` (..., d) normalized per token as ``how`` says, in float64.

    ``before_norm``: state L was read at the final norm's input; the norm is applied here first.
    """
    x = norm.apply(hidden.double()) if state == last_state and before_norm else hidden
    if how == "none" or (how == "initialized_ln" and state == last_state):
        return x.double()
    if how == "standardize":
        x = x.double()
        centered = x - x.mean(dim=-1, keepdim=True)
        std = centered.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return centered / torch.where(std > 0, std, torch.ones_like(std))
    if how != "initialized_ln":
        raise ValueError(f"unknown normalization {how!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if norm is None:
        raise ValueError("initialized_ln needs the model's final norm (FinalNorm.of)")
    return _unit_norm(x, norm)


def normalize_window(
    hidden: torch.Tensor, states: Sequence[int], last_state: int, how: str, norm: FinalNorm | None,
    before_norm: bool = False,
) -> list[torch.Tensor]:
    """:func:`normalize_states` for a window of states stacked in ``hidden`` (k, n, d), in increasing order:
    the states before ``last_state`` are normalized alike, in one call for all of them; one (n, d) float64
    tensor per state."""
    plain = len(states) - (states[-1] == last_state)
    out = list(normalize_states(hidden[:plain], states[0], last_state, how, norm).unbind(0)) if plain else []
    if plain < len(states):
        out.append(normalize_states(hidden[plain], last_state, last_state, how, norm, before_norm))
    return out
