"""Turn a recommendation from ``seviz recommend`` (``rec.json``) into edits for one model.

The file is read as a mapping and checked only for what pruning needs (its
format version, the model and weights it was made for, each block's verdict
and constant vector), so a hand-edited recommendation prunes too; the full
object, thresholds and scores included, is :func:`seviz.recommend.load_recommendation`'s.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz.errors import PruningError
from seviz.pruning.edits import ACTIONS, BlockEdit, list_names
from seviz.pruning.recommendation import RECOMMENDATION_VERSION

if TYPE_CHECKING:
    from seviz.models import LoadedModel
    from seviz.se import SEGate

log = logging.getLogger(__name__)


def load_recommendation(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read and check a recommendation written by ``seviz recommend``.

    Args:
        source: The JSON file, or its already parsed content.

    Raises:
        PruningError: Not readable, not a seviz recommendation, or from a newer seviz.
    """
    where = "recommendation"
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source).expanduser()
        where = str(path)
        if not path.is_file():
            raise PruningError(
                f"recommendation file {where!r} does not exist; write one with `seviz recommend STORE`"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise PruningError(
                f"{where!r} is not JSON ({error}); pass the rec.json written by seviz recommend"
            ) from None
    if not isinstance(data, dict) or "seviz_recommendation" not in data:
        raise PruningError(
            f"{where!r} is not a seviz recommendation (no 'seviz_recommendation' key); "
            "write one with `seviz recommend STORE --out rec.json`"
        )
    version = data["seviz_recommendation"]
    if not isinstance(version, int) or version > RECOMMENDATION_VERSION:
        raise PruningError(
            f"{where!r} has recommendation format {version!r}; this seviz reads format "
            f"{RECOMMENDATION_VERSION} (upgrade seviz)"
        )
    blocks = data.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "name" in b for b in blocks):
        raise PruningError(
            f"{where!r} has no 'blocks' list of {{name, verdict, ...}} entries; re-run seviz recommend"
        )
    data["_source"] = where
    return data


def check_recommendation_model(
    recommendation: Mapping[str, Any], loaded: LoadedModel, check_weights: bool = True
) -> None:
    """Refuse a recommendation made for another model (or other weights).

    Raises:
        PruningError: The names differ, or (with ``check_weights``) the weights' SHA-256 differ.
    """
    from seviz.models import MODEL_ALIASES

    where = recommendation.get("_source", "recommendation")
    names, sha = _recommendation_identity(recommendation)
    if not names:
        log.warning("%s names no model; cannot check that it was made for %s", where, loaded.name)
    else:
        ours = {loaded.name, loaded.spec, MODEL_ALIASES.get(loaded.spec, loaded.spec)}
        ours |= {alias for alias, target in MODEL_ALIASES.items() if target in ours}
        untagged = {n.split(".", 1)[0] for n in ours}
        same = any(n in ours or ("." not in n and n in untagged) for n in names)
        if not same:
            raise PruningError(
                f"{where} was made for model {sorted(names)[0]!r}, but the model loaded is {loaded.name!r} "
                f"(--model {loaded.spec!r}); prune the model it was made for, or record and recommend "
                "this one"
            )
    if check_weights and sha and loaded.weights_sha256 and not loaded.has_weights(sha):
        raise PruningError(
            f"{where} was made for weights with SHA-256 {sha[:16]}..., but the weights loaded "
            f"({loaded.weights_source}) have {loaded.weights_sha256[:16]}...; pass the weights the store "
            "was recorded with (--weights), or skip this check (check_weights=False)"
        )


def _recommendation_identity(recommendation: Mapping[str, Any]) -> tuple[set[str], str | None]:
    """(model names, weights SHA-256) a recommendation says it was made for."""
    names: set[str] = set()
    sha = recommendation.get("weights_sha256")
    for field in ("model", "model_spec", "store"):
        value = recommendation.get(field)
        if isinstance(value, str) and field != "store":
            names.add(value)
        elif isinstance(value, Mapping):
            keys = ("name", "model", "spec", "model_spec")
            names.update(str(value[k]) for k in keys if isinstance(value.get(k), str))
            sha = sha or value.get("weights_sha256")
    return names, sha if isinstance(sha, str) else None


def edits_from_recommendation(recommendation: Mapping[str, Any], gates: Sequence[SEGate]) -> list[BlockEdit]:
    """One edit per ``identity`` / ``constant`` verdict (``keep`` blocks stay).

    Raises:
        PruningError: A block not in the model, an unknown verdict, a constant
            block without a usable ``constant_vector``, or nothing to prune.
    """
    where = recommendation.get("_source", "recommendation")
    by_name = {g.name: g for g in gates}
    edits: list[BlockEdit] = []
    for block in recommendation.get("blocks", []):
        name, verdict = block["name"], block.get("verdict")
        if verdict == "keep":
            continue
        if verdict not in ACTIONS:
            raise PruningError(
                f"{where}: block {name} has verdict {verdict!r}; expected identity, constant or keep"
            )
        gate = by_name.get(name)
        if gate is None:
            raise PruningError(f"{where}: block {name!r} is not in the model, which has {list_names(gates)}")
        module = block.get("module")
        if module and module not in (gate.module_path, gate.gate_path):
            raise PruningError(
                f"{where}: block {name} is module {module!r} there but {gate.module_path!r} in this model; "
                "was the recommendation made for another model?"
            )
        scale = None
        if verdict == "constant":
            vector = block.get("constant_vector")
            if not isinstance(vector, list):
                raise PruningError(
                    f"{where}: block {name} is 'constant' but has no constant_vector; re-run seviz recommend"
                )
            scale = tuple(float(v) for v in vector)
        edits.append(BlockEdit(name, verdict, scale))
    if not edits:
        raise PruningError(f"{where} keeps every block (no identity or constant verdict): nothing to prune")
    return edits


__all__ = ["check_recommendation_model", "edits_from_recommendation", "load_recommendation"]
