"""Tests for seviz/discover.py: finding SE gates structurally and naming them like the paper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seviz.se import (
    NoSEBlocksError,
    SEAdapter,
    discover_se_gates,
    format_gate_table,
    register_se_adapter,
    stage_and_block,
)
from seviz.se.adapters import _ADAPTERS

PAPER_BLOCKS = [
    (f"SE_{stage}_{block}", channels)
    for stage, depth, channels in ((2, 3, 256), (3, 4, 512), (4, 6, 1024), (5, 3, 2048))
    for block in range(1, depth + 1)
]


class HandSE(nn.Module):
    """A hand-written SE block: pool, two 1x1 convolutions, sigmoid; returns x * s."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc2(self.relu(self.fc1(self.pool(x)))))


class HandNet(nn.Module):
    """Two hand-written SE blocks: a class with pool + sigmoid children, and a Sequential gate."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.attention = HandSE(8)
        self.conv = nn.Conv2d(8, 12, 3, padding=1)
        self.excite = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 12), nn.Sigmoid()
        )
        self.head = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(self.stem(x))
        x = self.conv(x)
        x = x * self.excite(x)[:, :, None, None]
        return self.head(x.mean((2, 3)))


def test_se_resnet50_has_the_16_paper_blocks():
    from seviz.models import load_model

    loaded = load_model("se_resnet50", "random")
    assert loaded.name.split(".")[0] == "legacy_seresnet50"
    gates = discover_se_gates(loaded.model, (3, 224, 224))
    assert [(g.name, g.channels) for g in gates] == PAPER_BLOCKS
    for gate in gates:
        assert gate.kind == "timm.legacy.SEModule"
        assert gate.module_path == f"layer{gate.stage - 1}.{gate.block - 1}.se_module"
        assert gate.gate_path == gate.module_path + ".sigmoid"
        se = loaded.model.get_submodule(gate.module_path)
        assert gate.params == sum(p.numel() for p in se.parameters())
    assert loaded.model.training is False  # the probe pass leaves the mode as it found it


def test_timm_resnet_with_se_layers_uses_paper_names():
    from timm.models.resnet import BasicBlock, ResNet

    model = ResNet(BasicBlock, layers=(2, 1, 1, 2), channels=(8, 16, 24, 32), block_args={"attn_layer": "se"})
    model.train()
    gates = discover_se_gates(model, (3, 32, 32))
    assert [(g.name, g.channels, g.kind) for g in gates] == [
        ("SE_2_1", 8, "timm.SEModule"),
        ("SE_2_2", 8, "timm.SEModule"),
        ("SE_3_1", 16, "timm.SEModule"),
        ("SE_4_1", 24, "timm.SEModule"),
        ("SE_5_1", 32, "timm.SEModule"),
        ("SE_5_2", 32, "timm.SEModule"),
    ]
    assert gates[1].gate_path == "layer1.1.se.gate"
    assert model.training is True


def test_timm_efficientnet_b0_is_discovered():
    import timm

    model = timm.create_model("efficientnet_b0", pretrained=False)
    gates = discover_se_gates(model, (3, 64, 64))
    se_modules = [(path, m) for path, m in model.named_modules() if path.endswith(".se")]
    assert len(gates) == len(se_modules) == 16
    assert {g.kind for g in gates} == {"timm.SqueezeExcite"}
    assert [g.gate_path for g in gates] == [f"{path}.gate" for path, _ in se_modules]
    assert [g.channels for g in gates] == [m.conv_reduce.in_channels for _, m in se_modules]
    assert (gates[0].name, gates[1].name, gates[-1].name) == ("SE_1_1", "SE_2_1", "SE_7_1")  # blocks.S.B
    assert len({g.name for g in gates}) == 16


def test_torchvision_efficientnet_b0_is_discovered():
    import torchvision
    from torchvision.ops.misc import SqueezeExcitation

    model = torchvision.models.efficientnet_b0(weights=None)
    gates = discover_se_gates(model, (3, 64, 64))
    se_modules = [(path, m) for path, m in model.named_modules() if isinstance(m, SqueezeExcitation)]
    assert len(gates) == len(se_modules) == 16
    assert {g.kind for g in gates} == {"torchvision.SqueezeExcitation"}
    assert [g.gate_path for g in gates] == [f"{path}.scale_activation" for path, _ in se_modules]
    assert [g.channels for g in gates] == [m.fc1.in_channels for _, m in se_modules]


def test_hand_written_se_blocks_are_discovered():
    gates = discover_se_gates(HandNet(), (3, 16, 16))
    assert [(g.module_path, g.gate_path, g.kind, g.channels, g.scales_input) for g in gates] == [
        ("attention", "attention.act", "structural.pool_sigmoid", 8, True),
        ("excite", "excite.5", "structural.sequential_gate", 12, False),
    ]
    assert [g.name for g in gates] == ["SE_1_1", "SE_1_2"]  # no indices in the paths: numbered in order


def test_a_sigmoid_classifier_head_is_not_an_se_block():
    # A binary classifier has a pool and a sigmoid as children, like an SE block; only
    # the SE block inside it gates channels.
    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3), HandSE(8), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 1)
            self.out = nn.Sigmoid()

        def forward(self, x):
            return self.out(self.fc(self.pool(self.features(x)).flatten(1)))

    gates = discover_se_gates(Classifier(), (3, 16, 16))
    assert [(g.module_path, g.gate_path, g.channels) for g in gates] == [("features.1", "features.1.act", 8)]
    sequential = nn.Sequential(
        nn.Conv2d(3, 8, 3), HandSE(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1), nn.Sigmoid()
    )
    assert [g.gate_path for g in discover_se_gates(sequential, (3, 16, 16))] == ["1.act"]


def test_spatial_attention_is_not_an_se_block():
    class SpatialGate(nn.Module):  # one gate per pixel, not per channel
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(8)
            self.conv = nn.Conv2d(4, 1, 1)
            self.act = nn.Sigmoid()

        def forward(self, x):
            return x * self.act(self.conv(self.pool(x)))

    with pytest.raises(NoSEBlocksError, match="none gates channels"):
        discover_se_gates(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SpatialGate()), (3, 8, 8))


def test_a_model_without_se_blocks_is_an_error():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    with pytest.raises(
        NoSEBlocksError, match=r"Sequential has no Squeeze-and-Excitation block.*register_se_adapter"
    ):
        discover_se_gates(model, (3, 16, 16))
    for module in model.modules():
        assert not module._forward_hooks


def test_a_registered_adapter_finds_a_new_se_variant():
    class Gate(nn.Module):
        def forward(self, z):
            return torch.sigmoid(z)

    class OddSE(nn.Module):  # no pool module, a custom gate: invisible to the structural match
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.fc = nn.Conv2d(channels, channels, 1)
            self.squash = Gate()

        def forward(self, x):
            return x * self.squash(self.fc(x.mean((2, 3), keepdim=True)))

    model = nn.Sequential(nn.Conv2d(3, 6, 3), OddSE(6))
    with pytest.raises(NoSEBlocksError):
        discover_se_gates(model, (3, 8, 8))
    adapter = register_se_adapter(SEAdapter("test.OddSE", lambda m: isinstance(m, OddSE), lambda m: m.squash))
    try:
        gates = discover_se_gates(model, (3, 8, 8))
    finally:
        _ADAPTERS.remove(adapter)
    assert [(g.gate_path, g.kind, g.channels) for g in gates] == [("1.squash", "test.OddSE", 6)]


@pytest.mark.parametrize(
    "path, expected",
    [
        ("layer1.0.se", (2, 1)),
        ("layer4.2.se_module", (5, 3)),
        ("blocks.3.1.se", (4, 2)),
        ("s2.b3.se", (2, 3)),
        ("features.5", (1, 6)),
        ("attention", None),
    ],
)
def test_stage_and_block_names(path, expected):
    assert stage_and_block(path) == expected


def test_gate_table_lists_every_block():
    table = format_gate_table(discover_se_gates(HandNet(), (3, 16, 16)))
    lines = table.splitlines()
    assert lines[0].split() == ["name", "channels", "params", "kind", "module"]
    assert lines[1].split()[:2] == ["SE_1_1", "8"] and lines[2].split()[:2] == ["SE_1_2", "12"]
    assert lines[-1].startswith("2 SE blocks")


def test_seviz_blocks_lists_the_se_resnet50_blocks(capsys):
    import signal

    from seviz.cli import main

    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["blocks", "--model", "se_resnet50"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    listed = [(row[0], int(row[1])) for row in rows if row and row[0].startswith("SE_")]
    assert listed == PAPER_BLOCKS
    assert any(row[-1] == "layer4.2.se_module.sigmoid" for row in rows)
    assert rows[-1][:3] == ["16", "SE", "blocks,"]
