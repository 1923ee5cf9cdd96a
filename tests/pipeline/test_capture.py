"""Hooked states equal transformers' output_hidden_states, bit for bit, on every architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tiny import ARCHITECTURES, VOCAB
from nextlaw_task.pipeline.capture import NO_EMBEDDING_STATE, UnsupportedModelError, locate_states, run_decoder


def captured(model, ids, states):
    layout = locate_states(model)
    got: dict[int, torch.Tensor] = {}
    run_decoder(layout, ids, torch.ones_like(ids), states, lambda i, h: got.__setitem__(i, h.clone()))
    return layout, got


def reference_states(model, ids, layout) -> dict[int, torch.Tensor]:
    """Canonical states 0..L read off output_hidden_states, with the documented Mamba/RWKV map."""
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    assert len(hidden) == layout.n_states
    if layout.model_type not in NO_EMBEDDING_STATE:
        return dict(enumerate(hidden))
    reference = {layer: hidden[layer - 1] for layer in range(1, layout.n_layers)}
    reference[layout.n_layers] = hidden[layout.n_layers]
    with torch.no_grad():
        reference[0] = model.get_input_embeddings()(ids)
    return reference


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_states_equal_output_hidden_states(tiny_models, arch):
    model = tiny_models[arch]
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(1))
    layout, got = captured(model, ids, range(4))
    assert layout.uses_hooks and layout.n_layers == 3
    reference = reference_states(model, ids, layout)
    assert sorted(got) == sorted(reference) == [0, 1, 2, 3]
    for state, tensor in reference.items():
        assert torch.equal(got[state], tensor), f"{arch}: state {state} differs"


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mamba"])
def test_subset_of_states_stops_early(tiny_models, arch):
    model = tiny_models[arch]
    layout = locate_states(model)
    ran = []
    handle = layout.blocks[-1].register_forward_hook(lambda *a: ran.append(True))
    try:
        ids = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(2))
        _, got = captured(model, ids, [0, 2])
    finally:
        handle.remove()
    assert sorted(got) == [0, 2]
    assert not ran, "blocks above the highest requested state must not run"
    assert not layout.blocks[0]._forward_pre_hooks, "hooks are removed after the pass"


def test_no_lm_head_is_run(tiny_models):
    model = tiny_models["llama"]
    calls = []
    handle = model.lm_head.register_forward_hook(lambda *a: calls.append(True))
    try:
        captured(model, torch.randint(0, VOCAB, (1, 6)), range(4))
    finally:
        handle.remove()
    assert not calls


def test_unknown_architecture_falls_back_or_names_model_type():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "oddformer", "num_hidden_layers": 2})()
            self.embed = nn.Embedding(10, 4)
            self.stack = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))

        def forward(self, input_ids, output_hidden_states=False, **kwargs):
            h0 = self.embed(input_ids)
            h1 = self.stack[0](h0)
            h2 = self.stack[1](h1)
            return type("O", (), {"hidden_states": (h0, h1, h2)})()

    model = Odd()
    layout = locate_states(model)
    assert not layout.uses_hooks
    got = {}
    ids = torch.tensor([[1, 2, 3]])
    run_decoder(layout, ids, torch.ones_like(ids), [0, 2], lambda i, h: got.__setitem__(i, h))
    assert sorted(got) == [0, 2]
    assert torch.equal(got[0], model.embed(ids))

    model.config.num_hidden_layers = 5
    with pytest.raises(UnsupportedModelError, match="oddformer"):
        run_decoder(locate_states(model), ids, torch.ones_like(ids), [0], lambda i, h: None)
    model.config = type("C", (), {"model_type": "oddformer"})()
    with pytest.raises(UnsupportedModelError, match="oddformer"):
        locate_states(model)
