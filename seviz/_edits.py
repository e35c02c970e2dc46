"""What an edit of an SE block is: the request, the record of what was done, their errors.

Shared by :mod:`seviz.pruning` (making edits), :mod:`seviz.pruned_files`
(saving and rebuilding them) and :mod:`seviz.recommended_edits` (reading them
from ``seviz recommend``'s verdicts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from seviz.discover import SEGate

EDITS_FORMAT = 1
ACTIONS = ("identity", "constant")
# What stands in the SE module's place after an edit.
REPLACEMENTS = ("identity", "ones_gate", "channel_scale", "constant_gate")


class PruningError(ValueError):
    """An edit cannot be made as asked; the message names the bad value and the way out."""


@dataclass(frozen=True)
class BlockEdit:
    """One requested change to one SE block.

    Attributes:
        name: The block's seviz name (``SE_5_2``).
        action: ``identity`` (remove the branch) or ``constant`` (a fixed per-channel scale).
        scale: The per-channel gate values for ``constant``.
    """

    name: str
    action: str = "identity"
    scale: tuple[float, ...] | None = None


@dataclass(frozen=True)
class AppliedEdit:
    """What was done to one SE block; saved in the pruned file's metadata.

    Attributes:
        name: The block's seviz name.
        module_path: The SE module's path (``layer4.1.se``).
        action: ``identity`` or ``constant``.
        replacement: The module now at ``module_path``: ``identity``
            (``nn.Identity``), ``ones_gate`` / ``constant_gate``
            (:class:`~seviz._fixed_gates.ConstantGate`) or ``channel_scale``
            (:class:`~seviz._fixed_gates.ChannelScale`).
        folded_into: The BatchNorm that absorbed a constant scale, or None.
        channels: Channels of the block.
        channel_dim: 1 for channels-first inputs, -1 for channels-last.
        gate_shape: The gate's shape without the batch dimension.
    """

    name: str
    module_path: str
    action: str
    replacement: str
    folded_into: str | None
    channels: int
    channel_dim: int = 1
    gate_shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        record = dataclasses.asdict(self)
        record["gate_shape"] = list(self.gate_shape)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> AppliedEdit:
        """Read one saved edit, checking its fields."""
        try:
            edit = cls(
                name=str(record["name"]),
                module_path=str(record["module_path"]),
                action=str(record["action"]),
                replacement=str(record["replacement"]),
                folded_into=record.get("folded_into"),
                channels=int(record["channels"]),
                channel_dim=int(record.get("channel_dim", 1)),
                gate_shape=tuple(int(v) for v in record.get("gate_shape") or (record["channels"], 1, 1)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PruningError(
                f"saved edit {dict(record)!r} is malformed ({type(error).__name__}: {error}); "
                "the file was not written by seviz prune, or by an incompatible version"
            ) from None
        if edit.replacement not in REPLACEMENTS:
            raise PruningError(
                f"saved edit of {edit.name} has unknown replacement {edit.replacement!r}; "
                f"this seviz knows {', '.join(REPLACEMENTS)} (upgrade seviz?)"
            )
        return edit


def replacement_class(replacement: str) -> type:
    from torch import nn

    from seviz._fixed_gates import ChannelScale, ConstantGate

    return {"identity": nn.Identity, "channel_scale": ChannelScale}.get(replacement, ConstantGate)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def list_names(gates: Sequence[SEGate]) -> str:
    names = [g.name for g in gates]
    shown = ", ".join(names) if len(names) <= 20 else f"{', '.join(names[:10])}, ..., {names[-1]}"
    return f"{len(names)} SE blocks: {shown}"
