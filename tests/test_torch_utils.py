"""seviz/_torch_utils.py: eval_mode restores each submodule's own flag; forward_hooks removes every hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seviz._torch_utils import eval_mode, forward_hooks, resolve_device
from seviz.errors import DeviceError


def _model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(4), nn.ReLU()))
    model.train()
    model[2][0].eval()  # a frozen BatchNorm: model.train(True) on exit would wrongly unfreeze it
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_restores_each_submodules_own_flag():
    model = _model()
    before = _flags(model)
    assert before.count(False) == 1
    with eval_mode(model):
        assert not any(_flags(model))
    assert _flags(model) == before


def test_eval_mode_restores_after_an_exception():
    model = _model()
    before = _flags(model)
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert _flags(model) == before


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_forward_hooks_run_inside_and_are_gone_after_a_normal_exit():
    model = _model()
    seen = []
    with forward_hooks([(model[0], lambda _m, _i, out: seen.append(tuple(out.shape)))]) as handles:
        assert len(handles) == 1 and _hook_count(model) == 1
        model(torch.zeros(2, 4))
    assert seen == [(2, 4)]
    assert _hook_count(model) == 0
    model(torch.zeros(2, 4))
    assert seen == [(2, 4)]


def test_forward_hooks_are_gone_after_an_exception_even_one_raised_while_registering():
    model = _model()
    with pytest.raises(ValueError, match="inside"), forward_hooks([(model[0], lambda *a: None)]):
        assert _hook_count(model) == 1
        raise ValueError("inside")
    assert _hook_count(model) == 0

    def pairs():
        yield model[0], lambda *a: None
        raise KeyError("registering")

    with pytest.raises(KeyError), forward_hooks(pairs()):
        pass
    assert _hook_count(model) == 0


def test_a_pre_hook_can_replace_the_input():
    model = nn.Identity()
    with forward_hooks([(model, lambda _m, inputs: (inputs[0] * 2,))], pre=True):
        assert model(torch.ones(1)).item() == 2.0
    assert model(torch.ones(1)).item() == 1.0


def test_recorder_and_discovery_leave_no_hook_and_the_flags_as_they_were():
    from timm.models.resnet import BasicBlock, ResNet

    from seviz.se import Recorder, discover_se_gates

    model = ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(8, 8, 8, 8), block_args={"attn_layer": "se"})
    model.train()
    model.layer1[0].bn1.eval()
    before = _flags(model)
    gates = discover_se_gates(model, (3, 32, 32))
    assert _flags(model) == before and _hook_count(model) == 0
    with pytest.raises(RuntimeError, match="stop"), Recorder(model, gates) as recorder:
        assert recorder.hooked == len(gates) and _hook_count(model) == len(gates)
        assert not any(_flags(model))
        raise RuntimeError("stop")
    assert _flags(model) == before and _hook_count(model) == 0


def test_resolve_device_errors_are_seviz_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown --device 'tpu'"):
        resolve_device("tpu")
