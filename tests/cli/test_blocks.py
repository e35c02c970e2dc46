"""Tests for seviz/cli/blocks.py: ``seviz blocks`` lists every SE block with its kind."""

from __future__ import annotations

import signal
import textwrap

import pytest

from seviz.cli import main

MIXED_MODEL = textwrap.dedent(
    """
    from timm.layers import CecaModule, EcaModule, SEModule, SelectiveKernel
    from timm.layers.cbam import LightCbamModule
    from timm.models.hgnet import EseModule
    from torch import nn


    def build(num_classes=10):
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=4, padding=1),
            EcaModule(8),
            SelectiveKernel(8, 8),  # attention, but no SE gate: not listed
            LightCbamModule(8, rd_ratio=0.5),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            EseModule(16),
            CecaModule(16),
            SEModule(16),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )
    """
)


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def test_blocks_shows_each_blocks_kind(tmp_path, capsys):
    path = tmp_path / "mixed.py"
    path.write_text(MIXED_MODEL)
    assert main(["blocks", "--model", f"{path}:build", "--weights", "random"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "channels", "params", "kind", "module"]
    rows = [line.split() for line in lines[1:] if line.startswith("SE_")]
    assert [(row[1], row[3], row[4]) for row in rows] == [
        ("8", "timm.EcaModule", "1.gate"),
        ("8", "timm.LightCbam.channel", "sigmoid(3.channel.fc2)"),
        ("16", "timm.hgnet.EseModule", "5.sigmoid"),
        ("16", "timm.CecaModule", "6.gate"),
        ("16", "timm.SEModule", "7.gate"),
    ]
    assert lines[-2] == (
        "kinds: timm.EcaModule x1, timm.LightCbam.channel x1, timm.hgnet.EseModule x1, timm.CecaModule x1, "
        "timm.SEModule x1"
    )
    assert lines[-1].startswith("5 SE blocks")


def test_blocks_refuses_a_model_without_se_gates_with_the_reason(capsys):
    assert main(["blocks", "--model", "skresnet18", "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert "8 timm.SelectiveKernel" in err and "softmax across 2 branches" in err
