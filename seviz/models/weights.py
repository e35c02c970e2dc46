"""Weights files: reading tensors only (safetensors, or torch.load(weights_only=True)), strict loading, hashes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

from seviz.errors import ModelLoadError

log = logging.getLogger(__name__)


def _state_dict_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a weights file: (state dict, safetensors metadata or {})."""
    import torch

    if not path.is_file():
        raise ModelLoadError(
            f"weights file {str(path)!r} does not exist; pass an existing .safetensors/.pth file"
        )
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types
            raise ModelLoadError(f"cannot read safetensors file {str(path)!r}: {error}") from None
        return state, metadata
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load {str(path)!r} with torch.load(weights_only=True): {error}. seviz loads tensors only "
            "(no pickled code); save a state_dict, or convert to .safetensors"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelLoadError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict of tensors")
    return state, {}


def load_weights_file(model: nn.Module, path: Path) -> str:
    """Load a weights file into ``model`` strictly; returns the loaded state dict's SHA-256.

    Pruned models saved by ``seviz prune`` carry their edits in the
    safetensors metadata; they are applied to ``model`` before loading.
    """
    state, metadata = read_state_dict(path)
    if "seviz_edits" in metadata:
        from seviz.models.pruned_weights import apply_saved_edits  # imports torch

        apply_saved_edits(model, metadata["seviz_edits"])
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:5])})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} of another shape (first: {'; '.join(wrong_shape[:5])})")
        raise ModelLoadError(
            f"weights {str(path)!r} do not fit model {type(model).__name__}: "
            + "; ".join(parts)
            + ". Check --model (and --num-classes) match the checkpoint"
        )
    model.load_state_dict(state, strict=True)
    return _state_dict_sha256(model)


def _apply_weights(model: nn.Module, weights: str) -> tuple[str, str, str | None]:
    """Load ``weights`` (random or a file) into model; returns (source, sha256, file sha256)."""
    if weights == "random":
        return "random", _state_dict_sha256(model), None
    path = Path(weights).expanduser()
    return str(path.resolve()), load_weights_file(model, path), file_sha256(path)
