"""seviz/se/gate_layers.py: captum attributes to each gate's ``s``, inline sigmoids included."""

from __future__ import annotations

import pytest
import torch
from _timm_models import light_cbam_gradient_x_gate, tiny_resnet
from captum.attr import LayerGradientXActivation
from torch import nn

from seviz.se import discover_se_gates
from seviz.se.gate_layers import gate_layers


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 32, 32, generator=generator), torch.tensor([0, 3, 7])


def test_an_inline_sigmoid_is_attributed_at_the_gate_not_its_pre_activation():
    model = tiny_resnet("lcbam")
    gates = discover_se_gates(model)
    assert gates and all(g.gate_activation == "sigmoid" for g in gates)
    images, targets = _images()
    with torch.no_grad():
        before = model(images)
    with gate_layers(model, gates) as layers:
        assert all(isinstance(layer, nn.Sigmoid) for layer in layers)
        explainer = LayerGradientXActivation(model, layers)
        attributed = explainer.attribute(images, target=targets)
        with torch.no_grad():
            torch.testing.assert_close(model(images), before)  # the probes change no output
    expected = light_cbam_gradient_x_gate(model, images, targets)
    assert len(attributed) == len(expected) == len(gates)
    for ours, theirs in zip(attributed, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)
        assert theirs.abs().max() > 0
    # What seviz attributed before: gradient x activation of fc2's output, which is another number.
    on_fc2 = LayerGradientXActivation(model, [model.get_submodule(g.gate_path) for g in gates])
    assert not torch.allclose(on_fc2.attribute(images, target=targets)[0], expected[0], rtol=1e-2)


def test_a_gate_module_is_its_own_layer():
    model = tiny_resnet("se")
    gates = discover_se_gates(model)
    with gate_layers(model, gates) as layers:
        assert layers == [model.get_submodule(g.gate_path) for g in gates]
        assert not torch._C._is_torch_function_mode_enabled()  # no mode where no sigmoid is inline


def test_nothing_is_left_hooked_after_an_error():
    model = tiny_resnet("lcbam")
    gates = discover_se_gates(model)
    fc2 = model.get_submodule(gates[0].gate_path)
    with pytest.raises(RuntimeError, match="inside"), gate_layers(model, gates):
        assert len(fc2._forward_hooks) == 1 and torch._C._is_torch_function_mode_enabled()
        raise RuntimeError("inside")
    assert not fc2._forward_hooks and not torch._C._is_torch_function_mode_enabled()


def test_an_unknown_activation_is_refused():
    model = tiny_resnet("se")
    gates = [g.__class__(**{**vars(g), "gate_activation": "tanh"}) for g in discover_se_gates(model)[:1]]
    with pytest.raises(ValueError, match="'tanh'"), gate_layers(model, gates):
        pass
