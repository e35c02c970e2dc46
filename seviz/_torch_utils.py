"""Small torch helpers every room uses: the device to run on, eval mode, forward hooks.

:func:`eval_mode` and :func:`forward_hooks` are the only places seviz switches a
model to eval mode or registers forward hooks: both restore what they changed in
``finally`` (each submodule's own ``training`` flag; every hook handle removed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from seviz.errors import DeviceError

if TYPE_CHECKING:
    import torch
    from torch import nn


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} asked for, but no CUDA device is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"unknown --device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; restore each submodule's own flag after.

    ``model.train(flag)`` would reset every child to one flag, which is not a
    restore when some children were frozen in eval mode on purpose.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextmanager
def forward_hooks(
    hooks: Iterable[tuple[nn.Module, Callable[..., Any]]], *, pre: bool = False, with_kwargs: bool = False
) -> Iterator[list[Any]]:
    """Register forward (or forward-pre) hooks for the block; remove every handle in ``finally``.

    Args:
        hooks: (module, hook) pairs.
        pre: Register forward-pre hooks instead of forward hooks.
        with_kwargs: Pass ``with_kwargs=True`` to torch (forward hooks only).

    Yields:
        The handles, in the order of ``hooks``.
    """
    handles: list[Any] = []
    try:
        for module, hook in hooks:
            if pre:
                handles.append(module.register_forward_pre_hook(hook))
            elif with_kwargs:
                handles.append(module.register_forward_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(hook))
        yield handles
    finally:
        for handle in handles:
            handle.remove()
