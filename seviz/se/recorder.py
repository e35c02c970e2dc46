"""Forward hooks on SE gates, owned by a context manager.

:class:`Recorder` hooks the gate of each SE block (see :mod:`seviz.se.discover`),
puts the model in eval mode, and on exit, normal or not, removes every hook
and restores the model's train/eval mode. After each forward pass
:meth:`Recorder.pop` hands back the excitation vectors of that batch as
(B, C) tensors, detached and still on the model's device: a gate's output of
(B, C, 1, 1), (B, 1, 1, C) or (B, 1, C) (ECA) is flattened, and where an
implementation applies its sigmoid inline (LightCbam) the hooked output is its
pre-activation and the sigmoid is applied here (:func:`gate_values`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from seviz._torch_utils import eval_mode, forward_hooks
from seviz.se.adapters import apply_gate_activation
from seviz.se.discover import SEGate

if TYPE_CHECKING:
    import torch
    from torch import nn


class Recorder:
    """Capture the excitation vectors of a model's SE gates.

    Example::

        with Recorder(model, gates) as recorder:
            logits = model(images)
            gates = recorder.pop()   # {"SE_2_1": (B, 256) tensor, ...}
    """

    def __init__(self, model: nn.Module, gates: Sequence[SEGate]) -> None:
        self.model = model
        self.gates = list(gates)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._captured: dict[str, torch.Tensor] = {}
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Recorder:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(eval_mode(self.model))
            hooks = ((self.model.get_submodule(g.gate_path), self._hook_for(g)) for g in self.gates)
            self._handles = list(stack.enter_context(forward_hooks(hooks)))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def _hook_for(self, gate: SEGate):
        captured = self._captured

        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[gate.name] = gate_values(gate, output)

        return hook

    def pop(self) -> dict[str, torch.Tensor]:
        """The gates of the last forward pass, by block name; clears them."""
        missing = [g.name for g in self.gates if g.name not in self._captured]
        if missing:
            raise RuntimeError(
                f"no gate output captured for {', '.join(missing[:5])}; run a forward pass of the model "
                "inside the Recorder before pop()"
            )
        captured = dict(self._captured)
        self._captured.clear()
        return captured

    def remove_hooks(self) -> None:
        """Remove every hook; safe to call more than once (the mode is restored on exit)."""
        while self._handles:
            self._handles.pop().remove()

    @property
    def hooked(self) -> int:
        """Number of hooks currently registered."""
        return len(self._handles)

    def __exit__(self, *exc: object) -> None:
        try:
            self.remove_hooks()
        finally:
            self._captured.clear()
            stack, self._stack = self._stack, None
            if stack is not None:
                stack.close()  # removes any hook left and restores each submodule's training flag


def gate_values(gate: SEGate, output: torch.Tensor) -> torch.Tensor:
    """The (B, C) excitation of one batch from the output of ``gate``'s hooked module.

    The gate's output is never mutated downstream; it is detached so that no
    graph is kept alive.
    """
    return apply_gate_activation(gate.gate_activation, output.detach()).flatten(1)
