"""What an edit of an SE block is: the request, the record of what was done, their errors.

Shared by :mod:`seviz.pruning.apply` (making edits), :mod:`seviz.models.pruned_weights`
(saving and rebuilding them) and :mod:`seviz.pruning._from_recommendation` (reading them
from ``seviz recommend``'s verdicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seviz.se import SEGate

ACTIONS = ("identity", "constant")


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


def list_names(gates: Sequence[SEGate]) -> str:
    names = [g.name for g in gates]
    shown = ", ".join(names) if len(names) <= 20 else f"{', '.join(names[:10])}, ..., {names[-1]}"
    return f"{len(names)} SE blocks: {shown}"
