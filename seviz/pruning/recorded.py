"""The network a store was recorded with: loading it again, and verifying a recommendation on it.

:func:`evaluate_recommendation` is ``seviz evaluate --model M --weights W
--recommendation rec.json --data DIR`` with the model and weights read from
the store's provenance: the app's "evaluate these edits" button calls it, and
the report is the same JSON the CLI writes (:meth:`EvaluationReport.to_json`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from seviz.errors import EvaluationError
from seviz.pruning.apply import prune_from_recommendation
from seviz.pruning.recommendation import Recommendation
from seviz.pruning.verify import EvaluationReport, evaluate
from seviz.store import Provenance, Store, open_store

if TYPE_CHECKING:
    from seviz.models import LoadedModel


def recorded_model(provenance: Provenance) -> tuple[str, str, str]:
    """``(model spec, weights, weights SHA-256)`` of the network a store's provenance names.

    The weights are what :func:`seviz.models.weights_for_source` gives for the recorded source.
    """
    from seviz.models import weights_for_source

    spec = provenance.model_spec or provenance.model
    return spec, weights_for_source(provenance.weights_source), provenance.weights_sha256


def load_recorded_model(store: Store, model: str | None = None, weights: str | None = None) -> LoadedModel:
    """The network ``store`` was recorded with (same weights: checked by SHA-256), with its preprocessing.

    Raises:
        ModelLoadError: The model cannot be built or its weights found.
        EvaluationError: The weights found differ from the recorded ones.
    """
    from seviz.models import load_model, runs_user_code
    from seviz.models.preprocessing import STORE_PREFIX, as_request

    spec, recorded_weights, sha = recorded_model(store.provenance)
    if not (model or spec):
        raise EvaluationError(f"store {str(store.path)!r} does not name its model; pass the model explicitly")
    if model is None and runs_user_code(spec):
        # A store is a data file and may come from someone else: never run the code it names.
        raise EvaluationError(
            f"store {str(store.path)!r} was recorded with {spec!r}, a model built by running code from a "
            "Python file or module; seviz does not run code a data file names: pass the model explicitly "
            "if you trust that code"
        )
    # The images are seen as they were recorded: the store's preprocessing, as `seviz evaluate --store`.
    request = as_request(None).over(f"{STORE_PREFIX}{store.path}", store.provenance.preprocessing)
    loaded = load_model(model or spec, weights or recorded_weights, data_config=request)
    if sha and not loaded.has_weights(sha):
        raise EvaluationError(
            f"the weights of {model or spec!r} ({weights or recorded_weights}) have SHA-256 "
            f"{loaded.weights_sha256[:12]}..., but {store.path.name} was recorded with {sha[:12]}...; "
            "pass the recorded weights"
        )
    return loaded


def evaluate_recommendation(
    store: Store | str | os.PathLike,
    recommendation: Recommendation,
    data: str | os.PathLike,
    *,
    classes: str | None = None,
    images_per_class: int | None = None,
    per_block: bool = False,
    batch_size: int = 32,
    model: str | None = None,
    weights: str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Measure what the edits of ``recommendation`` cost the store's model on the images in ``data``.

    Args:
        store: The store the recommendation was made from (it names the model and weights).
        recommendation: Verdicts, e.g. from :func:`~seviz.pruning.recommend`.
        data: Labelled image folder (as ``seviz evaluate --data``).
        classes: Restrict to these classes (comma-separated; default: all found).
        images_per_class: Use the first N images of each class.
        per_block: Also measure removing each SE block alone.
        batch_size: Images per forward pass.
        model, weights: Override the model and weights the store names.
        on_batch: Called after each batch with (batches done, batches in all).

    Raises:
        EvaluationError: No block to edit, other weights, or no readable image.
        ModelLoadError, DataError, FileNotFoundError: As ``seviz evaluate``.
    """
    from seviz.data import find_images

    if not isinstance(store, Store):
        with open_store(store, warn_incomplete=False) as opened:
            return evaluate_recommendation(
                opened,
                recommendation,
                data,
                classes=classes,
                images_per_class=images_per_class,
                per_block=per_block,
                batch_size=batch_size,
                model=model,
                weights=weights,
                on_batch=on_batch,
            )
    if not any(b.verdict != "keep" for b in recommendation.blocks) and not per_block:
        raise EvaluationError(
            "every block is `keep` under these thresholds, so there is no edit to evaluate; "
            "loosen a threshold or tick 'per block'"
        )
    loaded = load_recorded_model(store, model, weights)
    edited = prune_from_recommendation(loaded, json.loads(recommendation.to_json()))
    items = find_images(Path(data), loaded, classes, images_per_class)
    return evaluate(loaded, edited, items, batch_size=batch_size, per_block=per_block, on_batch=on_batch)
