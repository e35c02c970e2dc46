"""Remove or fold SE branches, and save the edited model so seviz loads it back.

Hu et al. (arXiv 1709.01507, Sec. 7.2) found the last stage's excitations of
SE-ResNet-50 close to identity: removing those SE blocks cost <0.1% top-5
error and cut the SE parameter overhead from ~10% to ~4%. This module applies
such edits to any model seviz records:

* ``identity`` (the gate is ~1 for every input): the SE branch becomes a
  pass-through, ``nn.Identity`` for blocks that return ``x * s``, a gate of
  ones for modules that return ``s`` and leave the multiplication to their
  parent.
* ``constant`` (the gate is ~ a fixed per-channel vector ``s``): the branch
  becomes ``x * s`` (:class:`seviz._fixed_gates.ChannelScale`). Where a
  BatchNorm directly precedes the block (timm's Bottleneck ``bn3``, the legacy
  senet ``bn3``) ``s`` is folded into it, ``gamma' = s * gamma`` and
  ``beta' = s * beta``, and the branch disappears. The BatchNorm is found by
  structure (the nearest preceding sibling that has parameters is a
  BatchNorm2d of the block's width) and the fold is kept only if a probe
  forward pass matches the unfolded ``ChannelScale`` model; otherwise (an
  activation in between, a reused BatchNorm output) the ``ChannelScale``
  stays.

A pruned model is saved as safetensors whose metadata key ``seviz_edits`` holds
JSON::

    {"format": 1, "model": SPEC, "model_name": NAME, "base_weights_sha256": SHA,
     "edits": [{"name", "module_path", "action", "replacement", "folded_into",
                "channels", "channel_dim", "gate_shape"}, ...]}

:func:`seviz.models.load_weights_file` calls :func:`apply_saved_edits` to
rebuild the structure before loading the state dict (folded BatchNorm values
included) strictly, so ``load_model(SPEC, weights="pruned.safetensors")``
gives the model that was saved.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz.discover import SEGate, discover_se_gates

if TYPE_CHECKING:
    import torch
    from torch import nn

    from seviz.models import LoadedModel

log = logging.getLogger(__name__)

EDITS_FORMAT = 1
RECOMMENDATION_VERSION = 1
ACTIONS = ("identity", "constant")
# What stands in the SE module's place after an edit.
REPLACEMENTS = ("identity", "ones_gate", "channel_scale", "constant_gate")
# A fold is kept when it moves the probe logits by at most this much, relative to their largest magnitude.
FOLD_RTOL = 1e-4


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


@dataclass(frozen=True)
class PrunedModel:
    """A model with some SE branches removed or folded, and how it got there."""

    model: nn.Module
    edits: tuple[AppliedEdit, ...]
    base_spec: str | None = None
    base_name: str | None = None
    base_weights_sha256: str | None = None
    params_removed: int = 0

    def save(self, out_path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the pruned model (see :func:`save_pruned`)."""
        return save_pruned(
            self.model,
            self.edits,
            out_path,
            self.base_spec or "",
            model_name=self.base_name,
            base_weights_sha256=self.base_weights_sha256,
            overwrite=overwrite,
        )


# ---------------------------------------------------------------- choosing blocks


def select_blocks(gates: Sequence[SEGate], patterns: str | Sequence[str]) -> list[SEGate]:
    """The gates whose name (or module path) matches any glob pattern, in model order.

    Args:
        gates: From :func:`seviz.discover.discover_se_gates`.
        patterns: Globs such as ``SE_5_*``; a string may hold several, comma-separated.
            Names match case-insensitively.

    Raises:
        PruningError: No pattern given, or a pattern that matches no block.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    wanted = [p.strip() for text in patterns for p in str(text).split(",") if p.strip()]
    if not wanted:
        raise PruningError(
            "no SE block chosen: pass patterns such as 'SE_5_*' (the paper's stage-5 experiment)"
        )
    chosen: set[str] = set()
    for pattern in wanted:
        hits = [
            g.name
            for g in gates
            if fnmatch.fnmatchcase(g.name.lower(), pattern.lower())
            or fnmatch.fnmatchcase(g.module_path, pattern)
            or fnmatch.fnmatchcase(g.gate_path, pattern)
        ]
        if not hits:
            raise PruningError(
                f"block pattern {pattern!r} matches no SE block; the model has {_list_names(gates)}"
            )
        chosen.update(hits)
    return [g for g in gates if g.name in chosen]


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
    if check_weights and sha and loaded.weights_sha256 and sha != loaded.weights_sha256:
        raise PruningError(
            f"{where} was made for weights with SHA-256 {sha[:16]}..., but the weights loaded "
            f"({loaded.weights_source}) have {loaded.weights_sha256[:16]}...; pass the same --weights, "
            "or skip "
            "this check (check_weights=False) if they are the same tensors in another file"
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
            raise PruningError(f"{where}: block {name!r} is not in the model, which has {_list_names(gates)}")
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


# ---------------------------------------------------------------- editing


def prune(
    model: nn.Module,
    gates: Sequence[SEGate],
    edits: Sequence[BlockEdit],
    input_size: tuple[int, int, int] = (3, 224, 224),
    fold: bool = True,
) -> PrunedModel:
    """Apply ``edits`` to ``model`` in place.

    Args:
        model: The network; edited in place (pass a copy to keep the original).
        gates: Its SE gates, from :func:`seviz.discover.discover_se_gates`.
        edits: What to do to which block.
        input_size: (C, H, W) of one input, for the probe passes that read gate
            shapes and verify BatchNorm folds.
        fold: Fold constant scales into a preceding BatchNorm where that is exact.

    Returns:
        The edited model and the edits as applied (with ``folded_into``).

    Raises:
        PruningError: No edit, an unknown block or action, a block named
            twice, or a constant scale of the wrong length or not finite.
    """
    import torch
    from torch import nn

    from seviz._fixed_gates import ChannelScale, ConstantGate

    plan = _check_edits(edits, gates)
    shapes = _gate_shapes(model, [gate for gate, _ in plan], input_size)
    device, dtype = _device_and_dtype(model)
    applied: list[AppliedEdit] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for gate, edit in plan:
                gate_shape = shapes[gate.name]
                channels_last = len(gate_shape) == 3 and gate_shape[:2] == (1, 1) and gate_shape[2] > 1
                channel_dim = -1 if channels_last else 1
                if edit.action == "identity":
                    replacement = "identity" if gate.scales_input else "ones_gate"
                    values = torch.ones(gate.channels, device=device, dtype=dtype)
                else:
                    replacement = "channel_scale" if gate.scales_input else "constant_gate"
                    values = torch.tensor(edit.scale, device=device, dtype=dtype)
                if replacement == "identity":
                    new: nn.Module = nn.Identity()
                elif replacement == "channel_scale":
                    new = ChannelScale(values, channel_dim)
                else:
                    new = ConstantGate(values, gate_shape)
                _set_module(model, gate.module_path, new.to(device))
                applied.append(
                    AppliedEdit(
                        gate.name,
                        gate.module_path,
                        edit.action,
                        replacement,
                        None,
                        gate.channels,
                        channel_dim,
                        gate_shape,
                    )
                )
            if fold and any(e.action == "constant" for e in applied):
                applied = _fold_constants(model, applied, _probe_input(input_size, device, dtype))
    finally:
        model.train(was_training)
    by_name = {g.name: g for g in gates}
    removed = sum(by_name[e.name].params for e in applied)
    removed -= sum(e.channels for e in applied if e.replacement != "identity")
    for edit in applied:
        where = f" into {edit.folded_into}" if edit.folded_into else ""
        log.info("%s (%s): %s -> %s%s", edit.name, edit.module_path, edit.action, edit.replacement, where)
    return PrunedModel(model, tuple(applied), params_removed=int(removed))


def prune_blocks(
    loaded: LoadedModel,
    patterns: str | Sequence[str],
    action: str = "identity",
    constant_vectors: Mapping[str, Sequence[float]] | None = None,
    inplace: bool = False,
    fold: bool = True,
) -> PrunedModel:
    """Prune the SE blocks whose names match glob patterns (``SE_5_*``: the paper's stage-5 experiment).

    Args:
        loaded: From :func:`seviz.models.load_model`.
        patterns: Block-name globs (see :func:`select_blocks`).
        action: ``identity`` (remove the branches) or ``constant``.
        constant_vectors: Per-channel gate values by block name, needed for ``constant``.
        inplace: Edit ``loaded.model`` itself instead of a copy.
        fold: Fold constant scales into a preceding BatchNorm where that is exact.

    Raises:
        PruningError: A pattern matching nothing, an unknown action, or a
            ``constant`` block without its vector.
    """
    if action not in ACTIONS:
        raise PruningError(f"unknown action {action!r}; choose identity or constant")
    input_size = _input_size(loaded)
    gates = discover_se_gates(loaded.model, input_size)
    chosen = select_blocks(gates, patterns)
    vectors = constant_vectors or {}
    edits = []
    for gate in chosen:
        scale = None
        if action == "constant":
            if gate.name not in vectors:
                raise PruningError(
                    f"action 'constant' needs the per-channel gate of {gate.name}; pass constant_vectors, "
                    "or use a recommendation (seviz recommend) whose constant blocks carry them"
                )
            scale = tuple(float(v) for v in vectors[gate.name])
        edits.append(BlockEdit(gate.name, action, scale))
    return _prune_loaded(loaded, gates, edits, inplace, fold)


def prune_from_recommendation(
    loaded: LoadedModel,
    recommendation: str | os.PathLike | Mapping[str, Any],
    inplace: bool = False,
    check_weights: bool = True,
    fold: bool = True,
) -> PrunedModel:
    """Apply a ``seviz recommend`` verdict file: ``identity`` blocks removed, ``constant`` blocks folded.

    Args:
        loaded: From :func:`seviz.models.load_model`; must be the model the
            recommendation was made for.
        recommendation: The rec.json path, or its parsed content.
        inplace: Edit ``loaded.model`` itself instead of a copy.
        check_weights: Also refuse a recommendation made for other weights
            (when it records their SHA-256).
        fold: Fold constant scales into a preceding BatchNorm where that is exact.

    Raises:
        PruningError: See :func:`load_recommendation`, :func:`check_recommendation_model`
            and :func:`edits_from_recommendation`.
    """
    data = load_recommendation(recommendation)
    check_recommendation_model(data, loaded, check_weights)
    input_size = _input_size(loaded)
    gates = discover_se_gates(loaded.model, input_size)
    edits = edits_from_recommendation(data, gates)
    return _prune_loaded(loaded, gates, edits, inplace, fold)


def _prune_loaded(
    loaded: LoadedModel, gates: Sequence[SEGate], edits: Sequence[BlockEdit], inplace: bool, fold: bool
) -> PrunedModel:
    model = loaded.model if inplace else copy.deepcopy(loaded.model)
    pruned = prune(model, gates, edits, _input_size(loaded), fold)
    return dataclasses.replace(
        pruned, base_spec=loaded.spec, base_name=loaded.name, base_weights_sha256=loaded.weights_sha256
    )


def _check_edits(edits: Sequence[BlockEdit], gates: Sequence[SEGate]) -> list[tuple[SEGate, BlockEdit]]:
    if not edits:
        raise PruningError("no SE block chosen: nothing to prune (name blocks, or use a recommendation)")
    by_name = {g.name: g for g in gates}
    plan: list[tuple[SEGate, BlockEdit]] = []
    seen: set[str] = set()
    for edit in edits:
        gate = by_name.get(edit.name)
        if gate is None:
            raise PruningError(f"block {edit.name!r} is not in the model; it has {_list_names(gates)}")
        if edit.name in seen:
            raise PruningError(f"block {edit.name} is edited twice; give each block one action")
        seen.add(edit.name)
        if edit.action not in ACTIONS:
            raise PruningError(f"unknown action {edit.action!r} for {edit.name}; choose identity or constant")
        if edit.action == "constant":
            if edit.scale is None or len(edit.scale) != gate.channels:
                got = "none" if edit.scale is None else len(edit.scale)
                raise PruningError(
                    f"constant scale for {edit.name} has {got} values but the block has "
                    f"{gate.channels} channels"
                )
            if not all(math.isfinite(v) for v in edit.scale):
                raise PruningError(f"constant scale for {edit.name} holds NaN or infinite values")
        plan.append((gate, edit))
    return plan


def _fold_constants(model: nn.Module, applied: list[AppliedEdit], probe: torch.Tensor) -> list[AppliedEdit]:
    """Fold each constant scale into its preceding BatchNorm where the probe logits agree."""
    import torch
    from torch import nn

    from seviz._fixed_gates import ConstantGate

    with _no_tf32():
        reference = logits_of(model(probe))
    # Half-precision models round far more than float32 ones.
    rtol = max(FOLD_RTOL, 20 * torch.finfo(reference.dtype).eps)
    tolerance = rtol * max(float(reference.abs().max()), 1e-6)
    folded_norms: set[str] = set()
    result = list(applied)
    for index, edit in enumerate(applied):
        if edit.action != "constant":
            continue
        norm_path = _preceding_batchnorm(model, edit.module_path, edit.channels)
        if norm_path is None or norm_path in folded_norms:
            log.info(
                "%s: no BatchNorm directly before %s; kept a fixed per-channel scale",
                edit.name,
                edit.module_path,
            )
            continue
        norm = model.get_submodule(norm_path)
        scaled = model.get_submodule(edit.module_path)
        saved = (norm.weight.detach().clone(), norm.bias.detach().clone())
        scale = scaled.scale.to(norm.weight.dtype)
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)
        ones = scale.new_ones(scale.shape)
        gate_only = edit.replacement != "channel_scale"
        passthrough = ConstantGate(ones, edit.gate_shape) if gate_only else nn.Identity()
        _set_module(model, edit.module_path, passthrough)
        with _no_tf32():
            error = float((logits_of(model(probe)) - reference).abs().max())
        if error <= tolerance:
            folded_norms.add(norm_path)
            replacement = "identity" if edit.replacement == "channel_scale" else "ones_gate"
            result[index] = dataclasses.replace(edit, replacement=replacement, folded_into=norm_path)
        else:
            norm.weight.copy_(saved[0])
            norm.bias.copy_(saved[1])
            _set_module(model, edit.module_path, scaled)
            log.info(
                "%s: folding into %s moves the logits by %.3g (> %.3g); kept a fixed per-channel scale",
                edit.name,
                norm_path,
                error,
                tolerance,
            )
    return result


def _preceding_batchnorm(model: nn.Module, module_path: str, channels: int) -> str | None:
    """The BatchNorm2d registered just before the SE module in its parent, skipping parameter-free layers.

    Registration order is the forward order in timm's and torchvision's blocks;
    the probe check in :func:`_fold_constants` catches a block where it is not.
    """
    from torch import nn

    parent_path, _, attr = module_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    names = list(parent._modules)
    for name in reversed(names[: names.index(attr)]):
        sibling = parent._modules[name]
        if sibling is None:
            continue
        if isinstance(sibling, nn.BatchNorm2d):
            if not (sibling.affine and sibling.num_features == channels):
                return None
            return f"{parent_path}.{name}" if parent_path else name
        if next(sibling.parameters(), None) is not None:
            return None  # a layer with weights in between: nothing to fold into
    return None


# ---------------------------------------------------------------- saving and loading


def save_pruned(
    model: nn.Module,
    edits: Sequence[AppliedEdit],
    out_path: str | os.PathLike,
    base_spec: str,
    *,
    model_name: str | None = None,
    base_weights_sha256: str | None = None,
    overwrite: bool = False,
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

    Returns:
        The path written.

    Raises:
        FileExistsError: ``out_path`` exists and ``overwrite`` is False.
        PruningError: A wrong suffix, or a model that does not carry ``edits``.
    """
    from safetensors.torch import save_file

    path = Path(out_path).expanduser()
    if path.suffix != ".safetensors":
        raise PruningError(
            f"pruned models are saved as safetensors; name the file *.safetensors, not {path.name!r}"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} exists; choose another --out or pass overwrite=True (--overwrite)"
        )
    for edit in edits:
        expected = _replacement_class(edit.replacement)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        save_file(state, str(partial), metadata={"seviz_edits": json.dumps(metadata)})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
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

    from seviz._fixed_gates import ChannelScale, ConstantGate

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
        _set_module(model, edit.module_path, new.to(device) if device is not None else new)
    log.debug("rebuilt %d edited SE blocks of %s", len(edits), spec)
    return edits


# ---------------------------------------------------------------- helpers


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model's output (a tensor, a tuple led by one, or a dict with ``logits``)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}; return a tensor")


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Full float32 matmuls and convolutions on GPU: TF32 rounding (~1e-3) would hide a good fold."""
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _replacement_class(replacement: str) -> type:
    from torch import nn

    from seviz._fixed_gates import ChannelScale, ConstantGate

    return {"identity": nn.Identity, "channel_scale": ChannelScale}.get(replacement, ConstantGate)


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def _gate_shapes(
    model: nn.Module, gates: Sequence[SEGate], input_size: tuple[int, int, int]
) -> dict[str, tuple[int, ...]]:
    """Each gate's output shape without the batch dimension, from one probe pass."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    was_training = model.training
    try:
        for gate in gates:

            def hook(_module, _inputs, output, name=gate.name):
                shapes.setdefault(name, tuple(int(v) for v in output.shape[1:]))

            handles.append(model.get_submodule(gate.gate_path).register_forward_hook(hook))
        model.eval()
        device, dtype = _device_and_dtype(model)
        with torch.no_grad():
            model(_probe_input(input_size, device, dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    missing = [g.name for g in gates if g.name not in shapes]
    if missing:
        raise PruningError(
            f"blocks {', '.join(missing)} did not run in a forward pass of input size {input_size}; "
            "were the gates discovered on this model?"
        )
    return shapes


def _probe_input(input_size: tuple[int, int, int], device: Any, dtype: Any) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, *input_size, generator=generator).to(device=device, dtype=dtype)


def _device_and_dtype(model: nn.Module) -> tuple[Any, Any]:
    import torch

    parameter = next(model.parameters(), None)
    if parameter is None:
        return torch.device("cpu"), torch.float32
    return parameter.device, parameter.dtype


def _input_size(loaded: LoadedModel) -> tuple[int, int, int]:
    size = tuple(int(v) for v in loaded.data_config.get("input_size", (3, 224, 224)))
    return size  # type: ignore[return-value]


def _list_names(gates: Sequence[SEGate]) -> str:
    names = [g.name for g in gates]
    shown = ", ".join(names) if len(names) <= 20 else f"{', '.join(names[:10])}, ..., {names[-1]}"
    return f"{len(names)} SE blocks: {shown}"


__all__ = [
    "AppliedEdit",
    "BlockEdit",
    "PrunedModel",
    "PruningError",
    "apply_saved_edits",
    "check_recommendation_model",
    "edits_from_recommendation",
    "load_recommendation",
    "logits_of",
    "prune",
    "prune_blocks",
    "prune_from_recommendation",
    "read_saved_edits",
    "save_pruned",
    "select_blocks",
]
