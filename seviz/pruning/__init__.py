"""Pruning: verdicts from statistics, edits of a model's SE blocks, and their verification.

Rooms: :mod:`~seviz.pruning.recommendation` (:class:`Thresholds`, verdicts,
:class:`Recommendation`: the one reader and writer of ``rec.json``),
:mod:`~seviz.pruning.edits` (what an edit is asked to do; a recommendation's edits for one model), :mod:`~seviz.pruning.apply`
(:func:`prune`: making the edits, folding constants into BatchNorm),
:mod:`~seviz.pruning.counting` (parameters and FLOPs), :mod:`~seviz.pruning.verify`
(:func:`evaluate`: accuracy, agreement, KL of the edited model against the original;
the reader of its JSON), :mod:`~seviz.pruning.recorded` (the store's own model: verifying
a recommendation on it).
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
    needed_statistics,
    recommend,
    recommend_command,
    threshold_flag,
)
from seviz.pruning.recorded import evaluate_recommendation, load_recorded_model, recorded_model
from seviz.pruning.verify import (
    EvaluationReport,
    compare_models,
    evaluate,
    find_evaluations,
    read_evaluation,
    recorded_preprocessing,
)

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
    "evaluate_recommendation",
    "find_evaluations",
    "load_recommendation",
    "load_recorded_model",
    "needed_statistics",
    "prune",
    "prune_blocks",
    "prune_from_recommendation",
    "read_evaluation",
    "read_saved_edits",
    "recommend",
    "recorded_preprocessing",
    "recommend_command",
    "recorded_model",
    "save_pruned",
    "select_blocks",
    "threshold_flag",
]
