"""Stream a decoder model's hidden states to a callback as the forward pass computes them.

The canonical states follow transformers' ``output_hidden_states`` for decoder models
(``docs/protocol.md``, "Features"): state 0 is what enters block 1 (the embedding output, after position
embeddings, dropout or Gemma's scaling), state l (0 < l < L) is the output of block l, and state L
is the output of block L after the model's final norm. We read them with hooks on the model's own
modules: a forward pre-hook on every block yields states 0..L-1 (the input of block l+1 is the
output of block l), a forward hook on the final norm yields state L. Each state is handed to the
callback and dropped, so no list of all layers is kept, and the LM head is never run.

Mamba and RWKV report ``hidden_states`` without the embedding state: there ``hidden_states[i]``
is the output of block i+1 for i < L, and ``hidden_states[L]`` is the normed last output. The
hooks give the same canonical states for them (state 0 = embedding output; state l =
``hidden_states[l-1]`` for 0 < l < L; state L = ``hidden_states[L]``), so layers are never
silently shifted. Models whose blocks or final norm cannot be found fall back to
``output_hidden_states`` when it has the canonical L+1 states, else fail naming the model type.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from nextlaw_task.errors import NextlawError

BLOCK_NAMES = ("layers", "h", "blocks", "block")
NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f", "ln_out")
# Architectures whose ``output_hidden_states`` omit the embedding state (see module docstring).
NO_EMBEDDING_STATE = frozenset({"mamba", "mamba2", "falcon_mamba", "rwkv"})

StateSink = Callable[[int, torch.Tensor], None]


class UnsupportedModelError(NextlawError, ValueError):
    """The model's hidden states cannot be mapped to the canonical states 0..L."""


class _StopForward(Exception):
    """Raised from a hook once every requested state was seen, to skip the remaining blocks."""


@dataclass(frozen=True)
class StateLayout:
    """Where the canonical hidden states of one model are read."""

    model_type: str
    n_layers: int
    decoder: nn.Module
    blocks: nn.ModuleList | None
    final_norm: nn.Module | None

    @property
    def n_states(self) -> int:
        """L + 1: the embedding state and one state per block."""
        return self.n_layers + 1

    @property
    def hidden_size(self) -> int:
        """d, the width of every state."""
        return int(_text_config(self.decoder).hidden_size)

    @property
    def uses_hooks(self) -> bool:
        """Whether states come from hooks (True) or from ``output_hidden_states`` (False)."""
        return self.blocks is not None and self.final_norm is not None


def _text_config(model: nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _decoder_candidates(model: nn.Module) -> Iterator[nn.Module]:
    """Modules that may hold the blocks, most specific first."""
    seen: set[int] = set()
    getters = (
        lambda m: m.get_decoder() if hasattr(m, "get_decoder") else None,
        lambda m: getattr(m, "language_model", None),
        lambda m: getattr(m, "base_model", None),
        lambda m: m,
    )
    for start in (model, getattr(model, "base_model", None)):
        if start is None:
            continue
        for get in getters:
            try:
                found = get(start)
            except (AttributeError, NotImplementedError, TypeError):
                found = None
            if isinstance(found, nn.Module) and id(found) not in seen:
                seen.add(id(found))
                yield found


def locate_states(model: nn.Module) -> StateLayout:
    """Find the blocks and final norm of a transformers causal LM (or its base model)."""
    config = _text_config(model)
    model_type = str(getattr(config, "model_type", type(model).__name__))
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if not n_layers:
        raise UnsupportedModelError(
            f"model type {model_type!r}: its config has no num_hidden_layers, so its hidden "
            "states cannot be numbered; nextlaw supports decoder-only language models."
        )
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"model type {model_type!r} is an encoder-decoder model; nextlaw measures decoder-only "
            "language models (a decoder without its encoder is not one): measure a causal LM, or run "
            "this model's standard tasks with --model hf"
        )
    for decoder in _decoder_candidates(model):
        blocks = next(
            (
                getattr(decoder, name)
                for name in BLOCK_NAMES
                if isinstance(getattr(decoder, name, None), nn.ModuleList)
                and len(getattr(decoder, name)) == n_layers
            ),
            None,
        )
        if blocks is None:
            continue
        norm = next(
            (getattr(decoder, n) for n in NORM_NAMES if isinstance(getattr(decoder, n, None), nn.Module)),
            None,
        )
        return StateLayout(model_type, int(n_layers), decoder, blocks, norm)
    return StateLayout(model_type, int(n_layers), getattr(model, "base_model", model), None, None)


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def streaming_states(
    layout: StateLayout, states: Sequence[int], sink: StateSink, last_before_norm: bool = False
) -> Iterator[None]:
    """Within the context, every forward pass of ``layout.decoder`` calls ``sink(state, tensor)``.

    Only the requested states are handed over, each as the (batch, time, hidden) tensor the model
    computed. After the highest requested state the forward pass is cut short (``run_decoder``
    catches that), so measuring the lower layers costs only their blocks. ``last_before_norm``
    hands over the final norm's input as state L instead of its output (see ``normalize``).
    """
    if not layout.uses_hooks:
        raise UnsupportedModelError(f"model type {layout.model_type!r}: no hooks; use run_decoder")
    wanted = frozenset(states)
    last = max(wanted)
    handles = []

    def pre_hook(index: int):
        def hook(_module, args, kwargs):
            if index in wanted:
                sink(index, _block_input(args, kwargs))
            if index == last:
                raise _StopForward
            return None

        return hook

    for index, block in enumerate(layout.blocks):
        if index > last:
            break
        handles.append(block.register_forward_pre_hook(pre_hook(index), with_kwargs=True))
    if layout.n_layers in wanted:

        if last_before_norm:

            def norm_pre_hook(_module, args, kwargs):
                sink(layout.n_layers, _block_input(args, kwargs))
                raise _StopForward

            handles.append(layout.final_norm.register_forward_pre_hook(norm_pre_hook, with_kwargs=True))
        else:

            def norm_hook(_module, _args, output):
                sink(layout.n_layers, output[0] if isinstance(output, tuple) else output)
                raise _StopForward

            handles.append(layout.final_norm.register_forward_hook(norm_hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _accepts(module: nn.Module, name: str) -> bool:
    params = inspect.signature(module.forward).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def run_decoder(
    layout: StateLayout,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    states: Sequence[int],
    sink: StateSink,
    last_before_norm: bool = False,
) -> None:
    """One forward pass of the base network that streams ``states`` into ``sink``.

    Sequences must be right-padded: causal models then never let padding reach a real token.
    """
    decoder = layout.decoder
    kwargs: dict = {"input_ids": input_ids}
    if _accepts(decoder, "attention_mask"):
        kwargs["attention_mask"] = attention_mask
    if _accepts(decoder, "use_cache"):
        kwargs["use_cache"] = False
    with torch.inference_mode():
        if layout.uses_hooks:
            with streaming_states(layout, states, sink, last_before_norm):
                try:
                    decoder(**kwargs)
                except _StopForward:
                    pass
            return
        hidden = decoder(**kwargs, output_hidden_states=True).hidden_states
        if hidden is None or len(hidden) != layout.n_states or layout.model_type in NO_EMBEDDING_STATE:
            raise UnsupportedModelError(
                f"model type {layout.model_type!r}: its blocks and final norm were not found and "
                f"its output_hidden_states has {0 if hidden is None else len(hidden)} entries "
                f"for {layout.n_layers} layers, so the states cannot be mapped to 0..L without "
                "guessing. Please open an issue naming this model type."
            )
        if last_before_norm and layout.n_layers in states:
            raise UnsupportedModelError(
                f"model type {layout.model_type!r}: the final norm's input is not reachable without hooks"
            )
        for index in sorted(frozenset(states)):
            sink(index, hidden[index])
