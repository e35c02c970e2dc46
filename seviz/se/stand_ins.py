"""The modules that take a pruned SE branch's place.

Kept apart from :mod:`seviz.pruning.apply` because they subclass ``torch.nn.Module``
and so import torch at module level; :mod:`seviz.pruning.apply` imports this module
only inside the functions that edit a model, so ``import seviz`` stays light.

Both hold their per-channel values in a persistent buffer named ``scale``, so a
pruned model's state dict carries them and ``load_state_dict(strict=True)``
restores them after :func:`seviz.pruned_files.apply_saved_edits` rebuilt the
structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seviz.errors import PruningError


class ChannelScale(nn.Module):
    """``x * s`` for a fixed per-channel vector ``s``: an SE block whose gate never changes.

    Args:
        scale: One value per channel.
        channel_dim: Where the channels are in the input: 1 (NCHW, NC) or -1
            (channels-last, as timm's ``SqueezeExciteCl``).
    """

    scale: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, scale: torch.Tensor, channel_dim: int = 1) -> None:
        super().__init__()
        if channel_dim not in (1, -1):
            raise PruningError(
                f"channel_dim must be 1 (channels first) or -1 (channels last), got {channel_dim}"
            )
        self.channel_dim = channel_dim
        self.register_buffer("scale", scale.detach().clone().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_dim == -1:
            return x * self.scale.to(x.dtype)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.to(x.dtype).view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}, channel_dim={self.channel_dim}"


class ConstantGate(nn.Module):
    """Returns a fixed gate ``s`` of the original gate's shape, for SE modules whose parent multiplies.

    Some hand-written SE branches return the gate itself (``x * self.se(x)`` in
    the parent); pruning such a branch keeps the parent's multiplication and
    feeds it a constant (all ones for an ``identity`` verdict).

    Args:
        scale: One value per channel.
        gate_shape: The gate's shape without the batch dimension, e.g.
            ``(C, 1, 1)``, ``(C,)`` or ``(1, 1, C)``.
    """

    scale: torch.Tensor  # a buffer, registered in __init__

    def __init__(self, scale: torch.Tensor, gate_shape: Sequence[int]) -> None:
        super().__init__()
        self.gate_shape = tuple(int(v) for v in gate_shape)
        self.register_buffer("scale", scale.detach().clone().reshape(-1))
        if self.scale.numel() != _prod(self.gate_shape):
            raise PruningError(
                f"a gate of shape {self.gate_shape} needs {_prod(self.gate_shape)} values, "
                f"got {self.scale.numel()}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.scale.to(x.dtype).view(1, *self.gate_shape)
        # A fresh tensor, as the original gate was: the parent may modify it in place.
        return gate.expand(x.shape[0], *self.gate_shape).clone()

    def extra_repr(self) -> str:
        return f"gate_shape={self.gate_shape}"


def _prod(values: Sequence[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result
