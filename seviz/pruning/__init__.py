"""Pruning: verdicts from statistics, edits of a model's SE blocks, and their verification.

Rooms: :mod:`~seviz.pruning.recommendation` (:class:`Thresholds`, verdicts,
:class:`Recommendation`: the one reader and writer of ``rec.json``),
:mod:`~seviz.pruning.edits` (what an edit is asked to do; a recommendation's edits for one model), :mod:`~seviz.pruning.apply`
(:func:`prune`: making the edits, folding constants into BatchNorm),
:mod:`~seviz.pruning.counting` (parameters and FLOPs), :mod:`~seviz.pruning.verify`
(:func:`evaluate`: accuracy, agreement, KL of the edited model against the original).
"""

from seviz.errors import EvaluationError, PruningError, RecommendationError
from seviz.models.pruned_weights import AppliedEdit, read_saved_edits, save_pruned
from seviz.pruning.apply import PrunedModel, prune, prune_blocks, prune_from_recommendation, select_blocks
from seviz.pruning.edits import BlockEdit
from seviz.pruning.recommendation import (
    VERDICTS,
    BlockVerdict,
    Recommendation,
    Thresholds,
    decide,
    load_recommendation,
    recommend,
)
from seviz.pruning.verify import EvaluationReport, compare_models, evaluate

__all__ = [
    "VERDICTS",
    "AppliedEdit",
    "BlockEdit",
    "BlockVerdict",
    "EvaluationError",
    "EvaluationReport",
    "PrunedModel",
    "PruningError",
    "Recommendation",
    "RecommendationError",
    "Thresholds",
    "compare_models",
    "decide",
    "evaluate",
    "load_recommendation",
    "prune",
    "prune_blocks",
    "prune_from_recommendation",
    "read_saved_edits",
    "recommend",
    "save_pruned",
    "select_blocks",
]
