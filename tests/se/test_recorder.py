"""Tests for seviz/recorder.py: hooks owned by a context manager, and the gates they capture."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from seviz.se import Recorder, SEGate, discover_se_gates


def tiny_se_resnet(block=BasicBlock) -> ResNet:
    torch.manual_seed(0)
    model = ResNet(block, layers=(1, 2, 1, 1), channels=(8, 16, 24, 32), block_args={"attn_layer": "se"})
    # BatchNorm with non-trivial running statistics, so train and eval mode give different gates.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def hook_counts(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(getattr(m, "_forward_hooks_with_kwargs", {}))
        for m in model.modules()
    )


@pytest.fixture()
def model_and_gates():
    model = tiny_se_resnet()
    gates = discover_se_gates(model, (3, 32, 32))
    assert [g.name for g in gates] == ["SE_2_1", "SE_3_1", "SE_3_2", "SE_4_1", "SE_5_1"]
    return model, gates


def manual_gates(
    model: torch.nn.Module, gates: list[SEGate], images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """s = sigmoid(fc2(relu(fc1(mean(x))))) computed by hand on each SE block's captured input."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(g.module_path).register_forward_pre_hook(
            lambda m, args, name=g.name: inputs.update({name: args[0].detach().clone()})
        )
        for g in gates
    ]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for g in gates:
        se = model.get_submodule(g.module_path)
        z = inputs[g.name].mean((2, 3), keepdim=True)
        result[g.name] = torch.sigmoid(
            F.conv2d(F.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias)
        ).flatten(1)
    return result


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck], ids=["BasicBlock", "Bottleneck"])
def test_gates_equal_a_manual_forward(block):
    # timm's blocks add the shortcut in place after the SE module; the gate output is what is kept.
    model = tiny_se_resnet(block).eval()
    gates = discover_se_gates(model, (3, 32, 32))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad(), Recorder(model, gates) as recorder:
        model(images)
        captured = recorder.pop()
    expected = manual_gates(model, gates, images)
    assert list(captured) == [g.name for g in gates]
    for g in gates:
        values = captured[g.name]
        assert values.shape == (3, g.channels)
        assert ((values > 0) & (values < 1)).all()
        assert values.std() > 1e-3  # not a flat gate: the comparison below means something
        torch.testing.assert_close(values, expected[g.name], rtol=0, atol=1e-6)


def test_gates_are_detached_and_from_eval_mode(model_and_gates):
    model, gates = model_and_gates
    model.train()
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    with Recorder(model, gates) as recorder:
        assert model.training is False
        model(images)
        captured = recorder.pop()
    assert model.training is True
    assert all(not t.requires_grad and t.grad_fn is None for t in captured.values())
    expected = manual_gates(model.eval(), gates, images.detach())
    for name, values in captured.items():
        torch.testing.assert_close(values, expected[name], rtol=0, atol=1e-6)


def test_no_hook_remains_after_a_normal_run(model_and_gates):
    model, gates = model_and_gates
    model.train()
    assert hook_counts(model) == 0
    with torch.no_grad(), Recorder(model, gates) as recorder:
        assert recorder.hooked == len(gates)
        assert hook_counts(model) == len(gates)
        model(torch.randn(1, 3, 32, 32))
        recorder.pop()
    assert hook_counts(model) == 0 and recorder.hooked == 0
    assert model.training is True and all(m.training for m in model.modules())


def test_no_hook_remains_after_an_exception(model_and_gates):
    model, gates = model_and_gates
    model.train()
    with pytest.raises(ValueError, match="boom"):
        with Recorder(model, gates):
            model(torch.randn(1, 3, 32, 32))
            raise ValueError("boom")
    assert hook_counts(model) == 0
    assert model.training is True and all(m.training for m in model.modules())
    model.eval()
    with pytest.raises(KeyboardInterrupt):
        with Recorder(model, gates):
            raise KeyboardInterrupt
    assert hook_counts(model) == 0 and model.training is False


def test_a_failed_enter_removes_the_hooks_it_made(model_and_gates):
    model, gates = model_and_gates
    model.train()
    bogus = SEGate("SE_9_9", "layer9.0.se", "layer9.0.se.gate", 9, 9, 8, "timm.SEModule", True, 0, 0)
    with pytest.raises(AttributeError):
        with Recorder(model, [*gates, bogus]):
            pass
    assert hook_counts(model) == 0 and model.training is True


def test_remove_hooks_is_idempotent_and_spares_other_hooks(model_and_gates):
    model, gates = model_and_gates
    seen = []
    mine = model.get_submodule(gates[0].gate_path).register_forward_hook(lambda *args: seen.append(1))
    recorder = Recorder(model, gates).__enter__()
    assert hook_counts(model) == len(gates) + 1
    recorder.remove_hooks()
    recorder.remove_hooks()
    recorder.__exit__(None, None, None)
    recorder.__exit__(None, None, None)
    assert hook_counts(model) == 1  # the user's own hook stays
    model.eval()(torch.randn(1, 3, 32, 32))
    assert seen == [1]
    mine.remove()


def test_pop_without_a_forward_pass_says_so(model_and_gates):
    model, gates = model_and_gates
    with Recorder(model, gates) as recorder:
        with pytest.raises(RuntimeError, match="run a forward pass"):
            recorder.pop()
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
        assert set(recorder.pop()) == {g.name for g in gates}
        with pytest.raises(RuntimeError):  # pop() clears: gates never leak into the next batch
            recorder.pop()
