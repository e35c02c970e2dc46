"""Counting what an SE block costs: parameters and multiply-accumulates (FLOPs) per image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from seviz._torch_utils import eval_mode, forward_hooks
from seviz.errors import NoSEBlocksError
from seviz.se import discover_se_gates

if TYPE_CHECKING:
    from torch import nn

FLOPS_METHOD = (
    "multiply-accumulates per image (the paper's GFLOPs convention), counted by forward hooks: "
    "each Conv/Linear layer gives output elements x input channels per group x kernel size; each intact SE "
    "branch adds 2 x its input size (squeeze pooling and excitation scaling; its FCs are counted as layers); "
    "a fixed-scale stand-in adds 1 x its input size. BatchNorm, activations and pooling are not counted."
)


def count_params(model: nn.Module) -> int:
    """Parameters, plus the fixed per-channel scales that pruning put in (stored weights too)."""
    from seviz.se.stand_ins import ChannelScale, ConstantGate  # imports torch

    total = sum(p.numel() for p in model.parameters())
    total += sum(m.scale.numel() for m in model.modules() if isinstance(m, (ChannelScale, ConstantGate)))
    return int(total)


def count_flops(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-accumulates of one image's forward pass; see :data:`FLOPS_METHOD`."""
    import torch
    from torch import nn

    from seviz.se.stand_ins import ChannelScale, ConstantGate

    input_size = tuple(int(v) for v in input_size)
    try:
        se_paths = {g.module_path for g in discover_se_gates(model, input_size)}  # type: ignore[arg-type]
    except NoSEBlocksError:
        se_paths = set()
    total = 0

    def layer(module: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal total
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(module, nn.modules.conv._ConvNd):
            kernel = math.prod(module.kernel_size)
            total += output.numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    def elementwise(factor: int):
        def hook(_module: nn.Module, inputs: tuple, _output: Any) -> None:
            nonlocal total
            if inputs and isinstance(inputs[0], torch.Tensor):
                total += factor * inputs[0].numel()

        return hook

    hooks: list[tuple[nn.Module, Any]] = []
    for path, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            hooks.append((module, layer))
        elif path in se_paths:
            hooks.append((module, elementwise(2)))
        elif isinstance(module, (ChannelScale, ConstantGate)):
            hooks.append((module, elementwise(1)))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else "cpu"
    dtype = parameter.dtype if parameter is not None else torch.float32
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    return int(total)
