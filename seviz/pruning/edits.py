"""What an edit of an SE block is, and the edits a recommendation asks of one model.

:class:`BlockEdit` is the request that :mod:`seviz.pruning.apply` carries out
(and :mod:`seviz.models.pruned_weights` saves as it was applied).
:func:`edits_from_recommendation` turns the verdicts of a ``rec.json`` (read
by :func:`seviz.pruning.load_recommendation`, the one reader of that format)
into edits for the model at hand, after :func:`check_recommendation_model` has
checked that the recommendation was made for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seviz.errors import PruningError, RecommendationError
from seviz.models import MODEL_ALIASES
from seviz.models.pruned_weights import ACTIONS
from seviz.pruning.recommendation import Recommendation

if TYPE_CHECKING:
    from seviz.models import LoadedModel
    from seviz.se import SEGate

log = logging.getLogger(__name__)


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


def check_recommendation_model(
    recommendation: Recommendation, loaded: LoadedModel, check_weights: bool = True, where: str = ""
) -> None:
    """Refuse a recommendation made for another model (or other weights).

    Raises:
        RecommendationError: The names differ, or (with ``check_weights``) the weights' SHA-256 differ.
    """
    where = where or "the recommendation"
    names = {
        n for n in (recommendation.model, recommendation.model_spec, recommendation.store.get("model")) if n
    }
    ours = {loaded.name, loaded.spec, MODEL_ALIASES.get(loaded.spec, loaded.spec)}
    ours |= {alias for alias, target in MODEL_ALIASES.items() if target in ours}
    untagged = {n.split(".", 1)[0] for n in ours}
    same = any(isinstance(n, str) and (n in ours or ("." not in n and n in untagged)) for n in names)
    if not same:
        raise RecommendationError(
            f"{where} was made for model {recommendation.model!r}, but the model loaded is {loaded.name!r} "
            f"(--model {loaded.spec!r}); prune the model it was made for, or record and recommend this one"
        )
    sha = recommendation.weights_sha256
    if check_weights and sha and loaded.weights_sha256 and not loaded.has_weights(sha):
        raise RecommendationError(
            f"{where} was made for weights with SHA-256 {sha[:16]}..., but the weights loaded "
            f"({loaded.weights_source}) have {loaded.weights_sha256[:16]}...; pass the weights the store "
            "was recorded with (--weights), or skip this check (check_weights=False)"
        )


def edits_from_recommendation(
    recommendation: Recommendation, gates: Sequence[SEGate], where: str = ""
) -> list[BlockEdit]:
    """One edit per ``identity`` / ``constant`` verdict (``keep`` blocks stay).

    Raises:
        PruningError: A block that is not in the model, or is another module
            or of another width there, or nothing to prune.
    """
    where = where or "the recommendation"
    by_name = {g.name: g for g in gates}
    edits: list[BlockEdit] = []
    for block in recommendation.blocks:
        if block.verdict == "keep":
            continue
        gate = by_name.get(block.name)
        if gate is None:
            raise PruningError(
                f"{where}: block {block.name!r} is not in the model, which has {list_names(gates)}"
            )
        if block.module and block.module not in (gate.module_path, gate.gate_path):
            raise PruningError(
                f"{where}: block {block.name} is module {block.module!r} there but {gate.module_path!r} in "
                "this model; was the recommendation made for another model?"
            )
        if block.channels and block.channels != gate.channels:
            raise PruningError(
                f"{where}: block {block.name} has {block.channels} channels there but {gate.channels} in this "
                "model; was the recommendation made for another model?"
            )
        edits.append(BlockEdit(block.name, block.verdict, block.constant_vector))
    if not edits:
        raise PruningError(f"{where} keeps every block (no identity or constant verdict): nothing to prune")
    return edits


__all__ = ["ACTIONS", "BlockEdit", "check_recommendation_model", "edits_from_recommendation", "list_names"]
