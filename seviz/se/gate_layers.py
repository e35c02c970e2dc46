"""Modules whose outputs are the SE gates ``s``, for layer attribution (captum).

captum's layer methods (``LayerGradientXActivation`` in :mod:`seviz.recording.attribution`)
attribute to a module's output. For most SE implementations the gate is a module, the
block's sigmoid, whose output is ``s``. Where an implementation applies its sigmoid inline
(timm's LightCbam: ``x * F.sigmoid(self.fc2(...))``, ``gate_activation == "sigmoid"``), the
hooked module (``fc2``) outputs the pre-activation ``z``, and gradient x activation of ``z``
is not that of ``s``. Inside :func:`gate_layers` the sigmoid of that very tensor runs as an
``nn.Sigmoid`` probe, routed there by a torch-function mode, so ``s`` is the output of a
module captum can hook. The forward pass computes what it did before.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from seviz._torch_utils import forward_hooks
from seviz.se.adapters import GATE_ACTIVATIONS
from seviz.se.discover import SEGate

_SIGMOIDS = frozenset({torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid})


class _InlineSigmoids(TorchFunctionMode):
    """Runs the sigmoid of each awaited pre-activation tensor through that gate's probe."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: dict[nn.Module, torch.Tensor] = {}  # probe -> the pre-activation it waits for

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Collection[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in _SIGMOIDS and args and not kwargs:
            for probe, tensor in self.awaited.items():
                if args[0] is tensor:
                    del self.awaited[probe]
                    return probe(tensor)  # the mode is off inside its own handler: a plain sigmoid
        return func(*args, **kwargs)


def _await_sigmoid(
    mode: _InlineSigmoids, probe: nn.Module, _module: nn.Module, _inputs: tuple, output: torch.Tensor
) -> None:
    mode.awaited[probe] = output


@contextlib.contextmanager
def gate_layers(model: nn.Module, gates: Sequence[SEGate]) -> Iterator[list[nn.Module]]:
    """The module whose output is each gate's ``s``, in the order of ``gates``, for the block.

    A gate with an inline sigmoid gets an ``nn.Sigmoid`` probe that the forward passes run
    inside the block call; every hook is removed and the mode left on exit, normal or not.

    Raises:
        ValueError: A gate names an activation seviz does not know.
    """
    mode = _InlineSigmoids()
    layers: list[nn.Module] = []
    hooks = []
    for gate in gates:
        module = model.get_submodule(gate.gate_path)
        if gate.gate_activation is None:
            layers.append(module)
        elif gate.gate_activation == "sigmoid":
            probe = nn.Sigmoid()
            layers.append(probe)
            hooks.append((module, functools.partial(_await_sigmoid, mode, probe)))
        else:
            raise ValueError(
                f"gate {gate.name} has activation {gate.gate_activation!r}; choose one of {GATE_ACTIVATIONS}"
            )
    with forward_hooks(hooks), mode if hooks else contextlib.nullcontext():
        yield layers
