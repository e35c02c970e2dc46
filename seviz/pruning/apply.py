"""Remove or fold SE branches of a model.

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

Edits come from block names (:func:`prune_blocks`) or from a recommendation
(:func:`prune_from_recommendation`: rec.json read by :func:`seviz.pruning.load_recommendation`,
turned into edits by :mod:`seviz.pruning.edits`);
:mod:`seviz.models.pruned_weights` saves the result so that ``seviz`` loads it back.
The names of those modules are re-exported here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seviz._torch_utils import eval_mode, forward_hooks
from seviz.errors import PruningError
from seviz.models.pruned_weights import (
    AppliedEdit,
    apply_saved_edits,
    read_saved_edits,
    save_pruned,
    set_module,
)
from seviz.pruning.edits import (
    ACTIONS,
    BlockEdit,
    check_recommendation_model,
    edits_from_recommendation,
    list_names,
)
from seviz.pruning.recommendation import Recommendation, load_recommendation
from seviz.se import SEGate, discover_se_gates

if TYPE_CHECKING:
    import torch
    from torch import nn

    from seviz.models import LoadedModel

log = logging.getLogger(__name__)

# A fold is kept when it moves the probe logits by at most this much, relative to their largest magnitude.
FOLD_RTOL = 1e-4


@dataclass(frozen=True)
class PrunedModel:
    """A model with some SE branches removed or folded, and how it got there."""

    model: nn.Module
    edits: tuple[AppliedEdit, ...]
    base_spec: str | None = None
    base_name: str | None = None
    base_weights_sha256: str | None = None
    params_removed: int = 0

    def save(
        self,
        out_path: str | os.PathLike,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike | None] = (),
    ) -> Path:
        """Write the pruned model (see :func:`save_pruned`; ``inputs`` are files it may not replace)."""
        return save_pruned(
            self.model,
            self.edits,
            out_path,
            self.base_spec or "",
            model_name=self.base_name,
            base_weights_sha256=self.base_weights_sha256,
            overwrite=overwrite,
            inputs=inputs,
        )


# ---------------------------------------------------------------- choosing blocks by name


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
                f"block pattern {pattern!r} matches no SE block; the model has {list_names(gates)}"
            )
        chosen.update(hits)
    return [g for g in gates if g.name in chosen]


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

    from seviz.se.stand_ins import ChannelScale, ConstantGate  # imports torch

    device, dtype = _device_and_dtype(model)
    plan = _check_edits(edits, gates, torch.finfo(dtype).max if dtype.is_floating_point else None)
    shapes = _gate_shapes(model, [gate for gate, _ in plan], input_size)
    applied: list[AppliedEdit] = []
    # Stand-ins take the training flag of the module they replace; eval_mode restores the rest.
    flags = {gate.module_path: model.get_submodule(gate.module_path).training for gate, _ in plan}
    with eval_mode(model), torch.no_grad():
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
            set_module(model, gate.module_path, new.to(device).train(flags[gate.module_path]))
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
    by_name = {g.name: g for g in gates}
    removed = sum(by_name[e.name].params for e in applied)
    removed -= sum(e.channels for e in applied if e.replacement != "identity")
    for done in applied:
        where = f" into {done.folded_into}" if done.folded_into else ""
        log.info("%s (%s): %s -> %s%s", done.name, done.module_path, done.action, done.replacement, where)
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
    recommendation: str | os.PathLike | Mapping[str, Any] | Recommendation,
    inplace: bool = False,
    check_weights: bool = True,
    fold: bool = True,
) -> PrunedModel:
    """Apply a ``seviz recommend`` verdict file: ``identity`` blocks removed, ``constant`` blocks folded.

    Args:
        loaded: From :func:`seviz.models.load_model`; must be the model the
            recommendation was made for.
        recommendation: The rec.json path, its parsed content, or a :class:`Recommendation`.
        inplace: Edit ``loaded.model`` itself instead of a copy.
        check_weights: Also refuse a recommendation made for other weights
            (when it records their SHA-256).
        fold: Fold constant scales into a preceding BatchNorm where that is exact.

    Raises:
        FileNotFoundError: No such file.
        RecommendationError: The file does not fit the schema
            (:func:`~seviz.pruning.load_recommendation`), or was made for another
            model or other weights (:func:`~seviz.pruning.edits.check_recommendation_model`).
        PruningError: Its verdicts cannot be applied to this model
            (:func:`~seviz.pruning.edits.edits_from_recommendation`).
    """
    where = (
        "the recommendation"
        if isinstance(recommendation, (Mapping, Recommendation))
        else repr(str(recommendation))
    )
    rec = load_recommendation(recommendation)
    check_recommendation_model(rec, loaded, check_weights, where)
    input_size = _input_size(loaded)
    gates = discover_se_gates(loaded.model, input_size)
    edits = edits_from_recommendation(rec, gates, where)
    return _prune_loaded(loaded, gates, edits, inplace, fold)


def _prune_loaded(
    loaded: LoadedModel, gates: Sequence[SEGate], edits: Sequence[BlockEdit], inplace: bool, fold: bool
) -> PrunedModel:
    model = loaded.model if inplace else copy.deepcopy(loaded.model)
    pruned = prune(model, gates, edits, _input_size(loaded), fold)
    return dataclasses.replace(
        pruned, base_spec=loaded.spec, base_name=loaded.name, base_weights_sha256=loaded.weights_sha256
    )


def _check_edits(
    edits: Sequence[BlockEdit], gates: Sequence[SEGate], largest: float | None = None
) -> list[tuple[SEGate, BlockEdit]]:
    """Check every edit before any is made; ``largest``: the biggest value the model's dtype holds."""
    if not edits:
        raise PruningError("no SE block chosen: nothing to prune (name blocks, or use a recommendation)")
    by_name = {g.name: g for g in gates}
    plan: list[tuple[SEGate, BlockEdit]] = []
    seen: set[str] = set()
    for edit in edits:
        gate = by_name.get(edit.name)
        if gate is None:
            raise PruningError(f"block {edit.name!r} is not in the model; it has {list_names(gates)}")
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
            too_large = next((v for v in edit.scale if largest is not None and abs(v) > largest), None)
            if too_large is not None:
                raise PruningError(
                    f"constant scale for {edit.name} holds {too_large:g}, beyond what the model's parameters "
                    f"hold (+-{largest:.4g}); it would become infinite"
                )
        plan.append((gate, edit))
    return plan


def _fold_constants(model: nn.Module, applied: list[AppliedEdit], probe: torch.Tensor) -> list[AppliedEdit]:
    """Fold each constant scale into its preceding BatchNorm where the probe logits agree."""
    import torch
    from torch import nn

    from seviz.se.stand_ins import ChannelScale, ConstantGate  # imports torch

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
        assert (
            isinstance(norm, nn.BatchNorm2d) and norm.weight is not None and norm.bias is not None
        )  # affine
        weight, bias = norm.weight, norm.bias
        scaled = model.get_submodule(edit.module_path)
        assert isinstance(scaled, (ChannelScale, ConstantGate))  # what a constant edit puts in
        saved = (weight.detach().clone(), bias.detach().clone())
        scale = scaled.scale.to(weight.dtype)
        weight.mul_(scale)
        bias.mul_(scale)
        ones = scale.new_ones(scale.shape)
        gate_only = edit.replacement != "channel_scale"
        passthrough = ConstantGate(ones, edit.gate_shape) if gate_only else nn.Identity()
        set_module(model, edit.module_path, passthrough)
        with _no_tf32():
            error = float((logits_of(model(probe)) - reference).abs().max())
        if error <= tolerance:
            folded_norms.add(norm_path)
            replacement = "identity" if edit.replacement == "channel_scale" else "ones_gate"
            result[index] = dataclasses.replace(edit, replacement=replacement, folded_into=norm_path)
        else:
            weight.copy_(saved[0])
            bias.copy_(saved[1])
            set_module(model, edit.module_path, scaled)
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


def _gate_shapes(
    model: nn.Module, gates: Sequence[SEGate], input_size: tuple[int, int, int]
) -> dict[str, tuple[int, ...]]:
    """Each gate's output shape without the batch dimension, from one probe pass."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(int(v) for v in output.shape[1:]))

        return hook

    hooks = [(model.get_submodule(g.gate_path), hook_for(g.name)) for g in gates]
    device, dtype = _device_and_dtype(model)
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        model(_probe_input(input_size, device, dtype))
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


__all__ = [
    "AppliedEdit",
    "BlockEdit",
    "PrunedModel",
    "PruningError",
    "apply_saved_edits",
    "logits_of",
    "prune",
    "prune_blocks",
    "prune_from_recommendation",
    "read_saved_edits",
    "save_pruned",
    "select_blocks",
]
