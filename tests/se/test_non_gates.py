"""Tests for seviz/se/non_gates.py: a model whose only attention is not an SE gate is refused, with why."""

from __future__ import annotations

import functools
import re

import pytest
import timm
import torch
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from seviz.se import NoSEBlocksError, discover_se_gates
from seviz.se.non_gates import non_se_attention


def timm_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=10).eval()


def tiny_resnet(attn_layer) -> nn.Module:
    torch.manual_seed(0)
    model = ResNet(
        BasicBlock, layers=(1, 1, 1, 1), channels=(16, 24, 32, 40), block_args={"attn_layer": attn_layer}
    )
    return model.eval()


def assert_no_hooks(model: nn.Module) -> None:
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    "name, count, kind, why",
    [
        ("skresnet18", 8, "timm.SelectiveKernel", "softmax across 2 branches"),
        ("resnest14d", 4, r"timm.SplitAttn\(radix>1\)", "softmax across radix=2 branches"),
        ("botnet26t_256", 3, "timm.BottleneckAttn", "self-attention"),
        ("halonet26t", 3, "timm.HaloAttn", "self-attention"),
        ("lambda_resnet26t", 3, "timm.LambdaLayer", "linear attention over positions"),
        ("vit_tiny_patch16_224", 12, "self-attention", "mixes positions"),
        ("gcresnet33ts", 10, r"timm.GlobalContext\(add only\)", "multiplies nothing"),
        ("bat_resnext26ts", 8, "timm.BatNonLocalAttn", "no per-channel gate"),
    ],
)
def test_a_model_whose_only_attention_is_not_a_gate_is_refused_with_the_reason(name, count, kind, why):
    model = timm_model(name)
    with pytest.raises(NoSEBlocksError) as raised:
        discover_se_gates(model, (3, 64, 64))
    message = str(raised.value)
    assert (
        "has no Squeeze-and-Excitation gate seviz can record; the attention it has is not a per-channel"
        in message
    )
    assert why in message
    assert re.search(rf"{count} {kind} \(", message), message
    assert "register it with seviz.register_se_adapter" in message
    assert_no_hooks(model)


def test_gather_excite_over_a_local_extent_is_refused():
    from timm.layers import GatherExcite

    # use_mlp=False: timm 1.0.31's GatherExcite cannot build its MLP (see tests/se/test_adapters.py).
    model = tiny_resnet(functools.partial(GatherExcite, extent=2, use_mlp=False))
    with pytest.raises(
        NoSEBlocksError, match=r"4 timm.GatherExcite\(local extent\).*extent \(2\).*per region"
    ):
        discover_se_gates(model, (3, 64, 64))


@pytest.mark.parametrize("attn", ["coord", "scoord", "ela", "strip"])
def test_coordinate_attention_is_refused(attn):
    model = tiny_resnet(attn)
    with pytest.raises(
        NoSEBlocksError, match="coordinate attention: it gates each channel per row and per column"
    ):
        discover_se_gates(model, (3, 64, 64))


def test_non_gate_attention_beside_an_se_gate_is_left_out_not_refused():
    from timm.layers import EcaModule, SelectiveKernel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SelectiveKernel(8, 8), EcaModule(8)).eval()
    gates = discover_se_gates(model, (3, 16, 16))
    assert [(g.module_path, g.kind) for g in gates] == [("2", "timm.EcaModule")]


def test_torch_multihead_attention_is_self_attention():
    entry = non_se_attention(nn.MultiheadAttention(8, 2))
    assert entry is not None and entry.kind == "self-attention"
    assert non_se_attention(nn.Linear(8, 8)) is None
