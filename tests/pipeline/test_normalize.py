"""initialized-LN equals the model's own norm with unit gain and zero bias; the ablations."""

from __future__ import annotations

import copy

import pytest
import torch

from nextlaw_task.pipeline.capture import locate_states
from nextlaw_task.pipeline.normalize import FinalNorm, normalize_states, normalize_window


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3", "phi", "gpt_neox", "mamba", "rwkv"])
def test_initialized_ln_is_a_fresh_final_norm(tiny_models, arch):
    layout = locate_states(tiny_models[arch])
    norm = FinalNorm.of(layout.final_norm, layout.model_type)
    fresh = copy.deepcopy(layout.final_norm)
    with torch.no_grad():
        for name, param in fresh.named_parameters():
            # Gemma's RMSNorm scales by (1 + weight): unit gain there is weight 0.
            unit = 0.0 if arch == "gemma3" and name == "weight" else 1.0
            param.fill_(unit if name == "weight" else 0.0)
    hidden = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0)) * 7 + 2
    with torch.no_grad():
        expected = fresh(hidden).double()
    got = normalize_states(hidden, 1, layout.n_layers, "initialized_ln", norm)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the last state already went through the real final norm
    assert torch.equal(normalize_states(hidden, layout.n_layers, layout.n_layers, "initialized_ln", norm), hidden)


def test_kinds_and_eps(tiny_models):
    assert FinalNorm.of(locate_states(tiny_models["llama"]).final_norm, "llama").kind == "rms"
    gpt2 = FinalNorm.of(locate_states(tiny_models["gpt2"]).final_norm, "gpt2")
    assert (gpt2.kind, gpt2.eps, gpt2.recomputes_last) == ("layer", 1e-5, True)
    with pytest.raises(ValueError, match="nextlaw_normalize=none"):
        FinalNorm.of(None, "oddformer")
    with pytest.raises(ValueError, match="neither an RMSNorm nor a LayerNorm"):
        FinalNorm.of(torch.nn.Linear(2, 2), "oddformer")


def test_none_and_standardize():
    hidden = torch.randn(4, 16, dtype=torch.bfloat16)
    assert torch.equal(normalize_states(hidden, 0, 3, "none", None), hidden.double())
    z = normalize_states(hidden, 3, 3, "standardize", None)
    torch.testing.assert_close(z.mean(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(4, dtype=torch.float64), atol=1e-12, rtol=0)
    constant = normalize_states(torch.ones(2, 8), 0, 3, "standardize", None)
    assert torch.equal(constant, torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize_states(hidden, 0, 3, "whiten", None)


def test_last_state_recomputed_in_float64_from_the_norm_input(tiny_models):
    """State L of a LayerNorm model: the model's own norm, applied to its input in float64."""
    layout = locate_states(tiny_models["gpt2"])
    module = layout.final_norm
    with torch.no_grad():
        module.weight.copy_(torch.linspace(0.5, 2.0, 32))
        module.bias.copy_(torch.linspace(-1.0, 1.0, 32))
    norm = FinalNorm.of(module, "gpt2")
    block_output = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(3)) * 3 + 1
    got = normalize_states(block_output, 3, 3, "initialized_ln", norm, before_norm=True)
    assert got.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(got, module.double()(block_output.double()), rtol=1e-12, atol=1e-12)
        module.float()
    # the null direction of a LayerNorm output is exact in float64: sum_j (y_j - b_j) / w_j = 0
    null = ((got - module.bias.double()) / module.weight.double()).sum(-1)
    assert null.abs().max() < 1e-12


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("how", ["initialized_ln", "none", "standardize"])
@pytest.mark.parametrize("states", [(0, 1, 2), (1, 2, 3), (3,), (2,)])
def test_a_window_of_states_is_normalized_as_each_state_alone(tiny_models, arch, how, states):
    """States normalized together in one (k, n, d) call equal each state normalized alone; state L keeps its
    own treatment (left as it is, or recomputed from the norm's input for a LayerNorm model)."""
    layout = locate_states(tiny_models[arch])
    norm = FinalNorm.of(layout.final_norm, layout.model_type)
    before = norm.recomputes_last
    window = torch.randn(len(states), 6, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float32) * 5 + 3
    together = normalize_window(window, states, layout.n_layers, how, norm, before)
    assert len(together) == len(states)
    for j, state in enumerate(states):
        alone = normalize_states(window[j], state, layout.n_layers, how, norm, before)
        assert together[j].dtype == torch.float64 and together[j].shape == (6, 32)
        assert torch.equal(together[j], alone), (state, how)
