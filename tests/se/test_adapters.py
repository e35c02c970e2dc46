"""Tests for seviz/se/adapters.py: each SE kind across the timm zoo, found and recorded exactly.

Every adapter is tried on a small random-weight timm model of a family that uses
it (a registered timm model where one exists, else timm's ResNet with that
``attn_layer``, the way timm builds its ECA/SE ResNets). For each: the number
of gates equals the number of such modules, and the recorded (B, C) gate equals
a hand computation from the module's own input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from _timm_models import live, timm_model, tiny_resnet
from timm.models.resnet import Bottleneck
from torch import nn

from seviz.se import Recorder, SEAdapter, SEGate, discover_se_gates

Expected = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def record_and_inputs(
    model: nn.Module, gates: list[SEGate], paths: list[str], images: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The recorded gates, and the input each module at ``paths`` received in the same pass."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(path).register_forward_pre_hook(
            lambda _m, args, path=path: inputs.__setitem__(path, args[0].detach().clone())
        )
        for path in paths
    ]
    try:
        with torch.no_grad(), Recorder(model, gates) as recorder:
            model(images)
            recorded = recorder.pop()
    finally:
        for handle in handles:
            handle.remove()
    return recorded, inputs


def check_against_hand(
    model: nn.Module,
    cls: type,
    kind: str,
    expected: Expected,
    input_size: tuple[int, int, int] = (3, 64, 64),
    module_of: Callable[[SEGate], str] = lambda g: g.module_path,
) -> list[SEGate]:
    """Gates found = modules of ``cls``; each recorded gate = ``expected(module, its input)``."""
    gates = discover_se_gates(model, input_size)
    modules = [path for path, m in model.named_modules() if type(m) is cls]
    assert modules and [module_of(g) for g in gates] == modules
    assert {g.kind for g in gates} == {kind}
    images = torch.randn(3, *input_size, generator=torch.Generator().manual_seed(1))
    recorded, inputs = record_and_inputs(model, gates, modules, images)
    spread = []
    for gate, path in zip(gates, modules, strict=True):
        values = recorded[gate.name]
        assert values.shape == (3, gate.channels)
        assert ((values >= 0) & (values <= 1)).all()
        want = expected(model.get_submodule(path), inputs[path])
        torch.testing.assert_close(values, want.flatten(1), rtol=1e-5, atol=1e-6)
        spread.append(float(values.std()))
    assert max(spread) > 1e-3  # gates that vary: a hook on the wrong tensor would not pass by chance
    return gates


# ---------------------------------------------------------------- hand computations


def eca_gate(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = x.mean((2, 3))[:, None, :]  # (B, 1, C)
    return torch.sigmoid(F.conv1d(y, se.conv.weight, padding=(se.conv.weight.shape[-1] - 1) // 2))


def ceca_gate(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = F.pad(x.mean((2, 3))[:, None, :], (se.padding, se.padding), mode="circular")
    return torch.sigmoid(F.conv1d(y, se.conv.weight, se.conv.bias))


def ese_gate(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(F.conv2d(x.mean((2, 3), keepdim=True), se.conv.weight, se.conv.bias))


def global_context_gate(gc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    weights = torch.softmax(gc.conv_attn(x).reshape(b, 1, h * w), dim=-1)  # attention pooling
    context = (x.reshape(b, c, h * w) * weights).sum(-1)[:, :, None, None]
    return torch.sigmoid(gc.mlp_scale(context))


def mlp(fc1: nn.Conv2d, fc2: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.relu(F.conv2d(z, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


def cbam_channel_gate(channel: nn.Module, x: torch.Tensor) -> torch.Tensor:
    avg, peak = x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return torch.sigmoid(mlp(channel.fc1, channel.fc2, avg) + mlp(channel.fc1, channel.fc2, peak))


def light_cbam_channel_gate(channel: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled = 0.5 * x.mean((2, 3), keepdim=True) + 0.5 * x.amax((2, 3), keepdim=True)
    return torch.sigmoid(mlp(channel.fc1, channel.fc2, pooled))


def gather_excite_gate(ge: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(ge.mlp(x.mean((2, 3), keepdim=True)))


def split_attn_gate(splat: nn.Module, x: torch.Tensor) -> torch.Tensor:
    features = splat.act0(splat.bn0(splat.conv(x)))
    z = splat.act1(splat.bn1(splat.fc1(features.mean((2, 3), keepdim=True))))
    return torch.sigmoid(splat.fc2(z))


def se_gate(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(se.fc2(se.act(se.bn(se.fc1(x.mean((2, 3), keepdim=True))))))


# ---------------------------------------------------------------- one test per adapter


def test_eca_resnet_records_the_eca_gate_as_n_by_c():
    from timm.layers import EcaModule

    model = timm_model("ecaresnet26t")
    gates = check_against_hand(model, EcaModule, "timm.EcaModule", eca_gate)
    assert len(gates) == 8
    # The gate's own output is (B, 1, C); what is stored is (B, C), one value per channel.
    shapes = []
    handle = model.get_submodule(gates[0].gate_path).register_forward_hook(
        lambda _m, _i, out: shapes.append(tuple(out.shape))
    )
    with torch.no_grad():
        model(torch.zeros(2, 3, 64, 64))
    handle.remove()
    assert shapes == [(2, 1, gates[0].channels)]


def test_circular_eca_resnet_records_the_ceca_gate():
    from timm.layers import CecaModule

    gates = check_against_hand(tiny_resnet("ceca", Bottleneck), CecaModule, "timm.CecaModule", ceca_gate)
    assert len(gates) == 5


def test_hgnet_ese_module_gate_is_its_sigmoid():
    from timm.models.hgnet import EseModule

    gates = check_against_hand(timm_model("hgnet_tiny"), EseModule, "timm.hgnet.EseModule", ese_gate)
    assert all(g.gate_path.endswith(".sigmoid") for g in gates)


def test_global_context_efficientnetv2_records_its_fused_scale_gate():
    from timm.layers import GlobalContext

    gates = check_against_hand(
        timm_model("gc_efficientnetv2_rw_t"), GlobalContext, "timm.GlobalContext", global_context_gate
    )
    assert len(gates) == 29 and all(g.scales_input for g in gates)


def test_global_context_with_scale_and_add_is_edited_at_its_gate():
    from timm.layers import GlobalContext

    model = tiny_resnet(functools.partial(GlobalContext, fuse_add=True, fuse_scale=True))
    gates = check_against_hand(
        model,
        GlobalContext,
        "timm.GlobalContext+add",
        global_context_gate,
        module_of=lambda g: g.module_path.rpartition(".")[0],
    )
    # The block also adds a context term, so removing the block is not a pass-through: an edit
    # replaces the gate by a fixed one, and removes no parameters.
    assert all(not g.scales_input and g.module_path == g.gate_path and g.params == 0 for g in gates)


def test_cbam_channel_gate_is_recorded_and_the_spatial_gate_is_not():
    from timm.layers.cbam import ChannelAttn

    gates = check_against_hand(
        tiny_resnet("cbam"), ChannelAttn, "timm.Cbam.channel", cbam_channel_gate, input_size=(3, 48, 48)
    )
    assert all(g.module_path.endswith("se.channel") for g in gates)


def test_light_cbam_gate_is_the_sigmoid_of_fc2():
    # LightChannelAttn computes ``x * F.sigmoid(fc2(...))``: its ``gate`` module is never called,
    # so the hook is on fc2 and the recorder applies the sigmoid.
    from timm.layers.cbam import LightChannelAttn

    gates = check_against_hand(
        tiny_resnet("lcbam"), LightChannelAttn, "timm.LightCbam.channel", light_cbam_channel_gate
    )
    assert all(g.gate_path.endswith("channel.fc2") and g.gate_activation == "sigmoid" for g in gates)


def gather_excite(channels: int, **kwargs) -> nn.Module:
    """timm's ``GatherExcite`` (``attn_layer='ge'``), built around a timm 1.0.31 bug.

    Its constructor passes ``*dd`` (the keys ``'device'``, ``'dtype'``) positionally to
    ``ConvMlp`` and fails; the module is built without its MLP and given the same ConvMlp after.
    """
    from timm.layers import ConvMlp, GatherExcite, make_divisible

    ge = GatherExcite(channels, use_mlp=False, **kwargs)
    ge.mlp = ConvMlp(channels, make_divisible(channels / 16, 1, round_limit=0.0), act_layer=nn.ReLU)
    return ge


def test_gather_excite_with_a_global_extent_is_an_se_gate():
    from timm.layers import GatherExcite

    gates = check_against_hand(
        tiny_resnet(gather_excite), GatherExcite, "timm.GatherExcite", gather_excite_gate
    )
    assert len(gates) == 5


def test_resnest_radix_1_split_attention_is_an_se_gate_edited_at_its_gate():
    from timm.layers import SplitAttn

    model = timm_model("resnest50d_1s4x24d")
    gates = check_against_hand(
        model,
        SplitAttn,
        "timm.SplitAttn(radix=1)",
        split_attn_gate,
        module_of=lambda g: g.module_path.rpartition(".")[0],
    )
    assert len(gates) == 16
    assert all(g.module_path.endswith("conv2.rsoftmax") and not g.scales_input for g in gates)


def test_nfnet_se_gate_is_the_sigmoid_not_the_gained_output():
    # NormFreeBlock returns attn_gain * se(x) (gain 2): the gate stored is the SE module's sigmoid.
    from timm.layers import SEModule

    model = timm_model("nf_regnet_b0")
    for module in model.modules():  # NF residual branches start silenced (conv gain 0)
        if isinstance(getattr(module, "gain", None), nn.Parameter):
            module.gain.data.fill_(1.0)
    gates = check_against_hand(model, SEModule, "timm.SEModule", se_gate)
    assert {model.get_submodule(g.module_path.rpartition(".")[0]).attn_gain for g in gates} == {2.0}


def test_torchvision_mobilenet_v3_squeeze_excitation_gate_is_its_hardsigmoid():
    import torchvision
    from torchvision.ops.misc import SqueezeExcitation

    torch.manual_seed(0)
    model = live(torchvision.models.mobilenet_v3_small(weights=None, num_classes=10))

    def expected(se: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(se.fc2(F.relu(se.fc1(x.mean((2, 3), keepdim=True)))))

    gates = check_against_hand(model, SqueezeExcitation, "torchvision.SqueezeExcitation", expected)
    assert len(gates) == 9


def test_an_adapter_with_an_unknown_gate_activation_is_refused():
    with pytest.raises(ValueError, match="gate_activation 'softmax'"):
        SEAdapter("test.bad", lambda m: False, lambda m: m, gate_activation="softmax")
