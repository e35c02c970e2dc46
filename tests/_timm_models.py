"""Small random-weight timm models for the SE tests (no downloads): live BatchNorm, seeded."""

from __future__ import annotations

import types

import timm
import torch
from timm.models.resnet import BasicBlock, ResNet
from torch import nn


def live(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm affine and statistics, so no block's output is zero and every gate varies.

    timm zero-initialises each residual block's last BatchNorm; an SE module right after it
    would see zeros and output sigmoid(0) = 0.5 everywhere.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def timm_model(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return live(timm.create_model(name, pretrained=False, num_classes=10, **kwargs))


def tiny_resnet(attn_layer, block=BasicBlock) -> nn.Module:
    torch.manual_seed(0)
    return live(
        ResNet(block, layers=(1, 2, 1, 1), channels=(16, 24, 32, 40), block_args={"attn_layer": attn_layer})
    )


def _explicit_gate_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's LightChannelAttn.forward with its sigmoid run as the module ``self.gate``."""
    pooled = 0.5 * x.mean((2, 3), keepdim=True) + 0.5 * x.amax((2, 3), keepdim=True)
    return x * self.gate(self.fc2(self.act(self.fc1(pooled))))


def light_cbam_gradient_x_gate(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor
) -> list[torch.Tensor]:
    """d logit[target] / d s * s at every LightCbam channel gate, with plain autograd on explicit gates."""
    from timm.layers.cbam import LightChannelAttn

    kept: list[torch.Tensor] = []
    handles = []
    for module in model.modules():
        if isinstance(module, LightChannelAttn):
            module.forward = types.MethodType(_explicit_gate_forward, module)
            handles.append(
                module.gate.register_forward_hook(lambda _m, _i, out: kept.append(out) or out.retain_grad())
            )
    try:
        logits = model(images)
        logits.gather(1, targets[:, None]).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
        for module in model.modules():
            if isinstance(module, LightChannelAttn):
                del module.forward
    return [(s.grad * s).detach() for s in kept]
