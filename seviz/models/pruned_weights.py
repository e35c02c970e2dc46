"""The pruned-model file format: one writer (:func:`save_pruned`) and one reader.

It lives with the models because :func:`~seviz.models.load_model` must rebuild a
pruned network wherever seviz loads one; :mod:`seviz.pruning` makes the edits.

A pruned model is saved as safetensors whose metadata key ``seviz_edits`` holds
JSON::

    {"format": 1, "model": SPEC, "model_name": NAME, "base_weights_sha256": SHA,
     "edits": [{"name", "module_path", "action", "replacement", "folded_into",
                "channels", "channel_dim", "gate_shape"}, ...]}

:func:`seviz.models.weights.load_weights_file` calls :func:`apply_saved_edits` to
rebuild the structure before loading the state dict (folded BatchNorm values
included) strictly, so ``load_model(SPEC, weights="pruned.safetensors")``
gives the model that was saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz._files import atomic_write_with, check_output
from seviz.errors import PruningError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

EDITS_FORMAT = 1


# What stands in the SE module's place after an edit.
REPLACEMENTS = ("identity", "ones_gate", "channel_scale", "constant_gate")


@dataclass(frozen=True)
class AppliedEdit:
    """What was done to one SE block; saved in the pruned file's metadata.

    Attributes:
        name: The block's seviz name.
        module_path: The SE module's path (``layer4.1.se``).
        action: ``identity`` or ``constant``.
        replacement: The module now at ``module_path``: ``identity``
            (``nn.Identity``), ``ones_gate`` / ``constant_gate``
            (:class:`~seviz.se.stand_ins.ConstantGate`) or ``channel_scale``
            (:class:`~seviz.se.stand_ins.ChannelScale`).
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

    from seviz.se.stand_ins import ChannelScale, ConstantGate  # imports torch

    return {"identity": nn.Identity, "channel_scale": ChannelScale}.get(replacement, ConstantGate)


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def save_pruned(
    model: nn.Module,
    edits: Sequence[AppliedEdit],
    out_path: str | os.PathLike,
    base_spec: str,
    *,
    model_name: str | None = None,
    base_weights_sha256: str | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> Path:
    """Write a pruned model as safetensors, its edits in the ``seviz_edits`` metadata.

    Args:
        model: The edited model (from :func:`prune`).
        edits: The applied edits (``PrunedModel.edits``).
        out_path: Where to write (``.safetensors``).
        base_spec: The ``--model`` spec that builds the unpruned network.
        model_name: What that spec resolved to, for the record.
        base_weights_sha256: The unpruned weights' hash, for the record.
        overwrite: Replace an existing file.
        inputs: Files it may not replace (the base weights, a rec.json, a model file).

    Returns:
        The path written.

    Raises:
        OutputError: ``out_path`` exists and ``overwrite`` is False, or is one of ``inputs``.
        PruningError: A wrong suffix, or a model that does not carry ``edits``.
    """
    from safetensors.torch import save_file

    path = Path(out_path).expanduser()
    if path.suffix != ".safetensors":
        raise PruningError(
            f"pruned models are saved as safetensors; name the file *.safetensors, not {path.name!r}"
        )
    check_output(path, inputs=inputs, overwrite=overwrite, param="out_path", what="pruned model")
    for edit in edits:
        expected = replacement_class(edit.replacement)
        try:
            present = model.get_submodule(edit.module_path)
        except AttributeError:
            present = None
        if not isinstance(present, expected):
            raise PruningError(
                f"the model does not carry the edit of {edit.name}: {edit.module_path!r} is "
                f"{type(present).__name__}, not {expected.__name__}; save the model returned by prune()"
            )
    metadata = {
        "format": EDITS_FORMAT,
        "model": base_spec,
        "model_name": model_name,
        "base_weights_sha256": base_weights_sha256,
        "edits": [e.to_dict() for e in edits],
    }
    # clone() unties shared tensors, which safetensors refuses to write.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_with(
        path, lambda temp: save_file(state, str(temp), metadata={"seviz_edits": json.dumps(metadata)})
    )
    log.info("wrote %s (%d edited SE blocks of %s)", path, len(edits), base_spec)
    return path


def read_saved_edits(path: str | os.PathLike) -> list[AppliedEdit]:
    """The edits recorded in a pruned safetensors file (empty for an unpruned one).

    Raises:
        PruningError: The file cannot be read as safetensors.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(Path(path).expanduser()), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types
        raise PruningError(f"cannot read {str(path)!r} as safetensors: {error}") from None
    if "seviz_edits" not in metadata:
        return []
    saved = json.loads(metadata["seviz_edits"])
    records = saved.get("edits", []) if isinstance(saved, Mapping) else saved
    return [AppliedEdit.from_dict(r) for r in records]


def apply_saved_edits(
    model: nn.Module, saved: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> list[AppliedEdit]:
    """Rebuild a pruned model's structure before its state dict is loaded.

    Replaces each edited SE module with an empty stand-in of the right shape;
    the saved state dict then fills in the fixed scales and the folded
    BatchNorm values.

    Args:
        model: The unpruned network built from the saved ``model`` spec.
        saved: The parsed ``seviz_edits`` metadata (or its ``edits`` list).

    Returns:
        The edits applied.

    Raises:
        PruningError: Unknown format, malformed edits, or an edited module
            path the model does not have (the file belongs to another model).
    """
    import torch
    from torch import nn

    from seviz.se.stand_ins import ChannelScale, ConstantGate

    if isinstance(saved, Mapping):
        version = saved.get("format", EDITS_FORMAT)
        if not isinstance(version, int) or version > EDITS_FORMAT:
            raise PruningError(
                f"pruned-model edits format {version!r} is newer than this seviz reads ({EDITS_FORMAT}); "
                "upgrade seviz"
            )
        records = saved.get("edits", [])
        spec = saved.get("model") or "its base model"
    else:
        records, spec = saved, "its base model"
    edits = [AppliedEdit.from_dict(r) for r in records]
    for edit in edits:
        try:
            current = model.get_submodule(edit.module_path)
        except AttributeError:
            raise PruningError(
                f"the pruned weights edit {edit.name} at {edit.module_path!r}, which "
                f"{type(model).__name__} does not have; load them with --model {spec!r}"
            ) from None
        parameter = next(current.parameters(), None)
        device = parameter.device if parameter is not None else None
        if edit.replacement == "identity":
            new: nn.Module = nn.Identity()
        elif edit.replacement == "channel_scale":
            new = ChannelScale(torch.zeros(edit.channels), edit.channel_dim)
        else:  # ones_gate / constant_gate: values come from the state dict
            new = ConstantGate(torch.zeros(edit.channels), edit.gate_shape)
        set_module(model, edit.module_path, new.to(device) if device is not None else new)
    log.debug("rebuilt %d edited SE blocks of %s", len(edits), spec)
    return edits


__all__ = [
    "EDITS_FORMAT",
    "REPLACEMENTS",
    "AppliedEdit",
    "apply_saved_edits",
    "read_saved_edits",
    "replacement_class",
    "save_pruned",
    "set_module",
]
