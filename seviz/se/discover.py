"""Find every Squeeze-and-Excitation gate of a network, and name it.

An SE block (Hu et al., arXiv 1709.01507, Eq. 2-4) computes
``s = sigmoid(W2 ReLU(W1 GAP(x)))`` and scales each channel of ``x`` by ``s``.
seviz records ``s``: the output of the block's *gate* (its sigmoid), never the
block's output, because timm's Bottleneck adds the shortcut in place after the
SE module and would overwrite a stored block output.

SE implementations are matched by the adapters of :mod:`seviz.se.adapters`. Every candidate is confirmed by a probe
forward pass: its gate must output one value per channel, (B, C, 1, 1),
(B, 1, 1, C), (B, 1, C) (ECA) or (B, C). A model without one is refused with
:class:`NoSEBlocksError`, which names the attention it found instead (see
:mod:`seviz.se.non_gates`) and why that is not an SE gate.

Names follow the paper for ResNet-family models: ``SE_{stage}_{block}``, stage
2-5 for ``layer1``-``layer4``, block 1-based, so SE-ResNet-50 gives SE_2_1 ...
SE_5_3. Other models take stage and block from the first two indices of the
module path (``blocks.3.1.se`` is SE_4_2); the module path is always kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seviz._torch_utils import eval_mode, forward_hooks
from seviz.errors import NoSEBlocksError
from seviz.se.adapters import SEAdapter, candidate_adapter, is_structural
from seviz.se.non_gates import NonSEAttention, non_se_attention

if TYPE_CHECKING:
    from torch import nn

    _Candidate = tuple[nn.Module, SEAdapter]  # an SE candidate module and the adapter that matched it

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SEGate:
    """One SE block found in a model.

    ``module_path`` is what a pruning edit replaces: the SE block, or for an SE
    gate inside a larger module (split attention) the gate itself, in which case
    ``params`` and ``flops`` are what such an edit removes (none).
    ``gate_activation`` is ``"sigmoid"`` where the hooked module outputs the
    gate's pre-activation (LightCbam's inline ``F.sigmoid``); the recorder
    applies it.
    """

    name: str  # SE_{stage}_{block}
    module_path: str  # the SE block's path in the model (``layer4.1.se``)
    gate_path: str  # the hooked gate's path (``layer4.1.se.gate``)
    stage: int
    block: int
    channels: int
    kind: str
    scales_input: bool
    params: int
    flops: int
    gate_activation: str | None = None


_RESNET_PATH = re.compile(r"^layer(\d+)\.(\d+)\.")
_NUMBERED_PART = re.compile(r"^[a-z]{1,2}(\d+)$")


def stage_and_block(module_path: str) -> tuple[int, int] | None:
    """Paper-style (stage, block) for a module path, or None when the path has no indices."""
    match = _RESNET_PATH.match(module_path)
    if match:  # ResNet family: layer1 is the paper's stage 2 (conv2_x)
        return int(match.group(1)) + 1, int(match.group(2)) + 1
    indices = []
    for part in module_path.split("."):
        if part.isdigit():  # a position in a Sequential/ModuleList: 0-based
            indices.append(int(part) + 1)
        elif (named := _NUMBERED_PART.match(part)) is not None:  # ``s1``, ``b2`` (RegNet): 1-based
            indices.append(int(named.group(1)))
    if len(indices) >= 2:
        return indices[0], indices[1]
    if len(indices) == 1:
        return 1, indices[0]
    return None


def _candidates(
    model: nn.Module,
) -> tuple[list[tuple[str, nn.Module, SEAdapter]], list[tuple[str, nn.Module, NonSEAttention]]]:
    """SE candidates by adapter, and the attention modules that are not SE gates."""
    found: list[tuple[str, nn.Module, SEAdapter]] = []
    others: list[tuple[str, nn.Module, NonSEAttention]] = []
    claimed: set[int] = set()
    for path, module in model.named_modules():
        if id(module) in claimed:
            continue
        adapter = candidate_adapter(module)
        if adapter is None:
            other = non_se_attention(module)
            if other is not None:
                others.append((path, module, other))
            continue
        found.append((path, module, adapter))
        if not is_structural(adapter):
            # A structural match is a guess until the probe pass confirms it (a
            # classifier with a pooled sigmoid head looks like one), so it must not
            # hide the SE blocks inside it.
            claimed.update(id(m) for m in module.modules())
    return found, others


def _channels(shape: tuple[int, ...]) -> int | None:
    """The channel count of a per-channel gate output, or None for any other shape."""
    if len(shape) == 2:  # (B, C)
        return shape[1]
    if len(shape) == 3 and shape[1] == 1:  # (B, 1, C): ECA's 1-D convolution over channels
        return shape[2]
    if len(shape) == 4 and shape[2:] == (1, 1):  # (B, C, 1, 1)
        return shape[1]
    if len(shape) == 4 and shape[1:3] == (1, 1):  # (B, 1, 1, C): channels last
        return shape[3]
    return None


def _refusal(others: list[tuple[str, nn.Module, NonSEAttention]], model_name: str, lead: str) -> str:
    """The NoSEBlocksError message: what the model holds instead of an SE gate, and why it is not one."""
    if not others:
        return f"{model_name} {lead}; register a new kind with seviz.register_se_adapter"
    by_kind: dict[str, list[tuple[str, nn.Module, NonSEAttention]]] = {}
    for entry in others:
        by_kind.setdefault(entry[2].kind, []).append(entry)
    parts = []
    for kind, entries in by_kind.items():
        path, module, other = entries[0]
        more = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
        parts.append(f"{len(entries)} {kind} ({path or '<model>'}{more}): {other.reason(module)}")
    return (
        f"{model_name} has no Squeeze-and-Excitation gate seviz can record; the attention it has is not a "
        f"per-channel gate: {'; '.join(parts)}. An SE gate scales each channel by one value in [0, 1] per "
        "image; if this model has one of a kind seviz does not know, register it with "
        "seviz.register_se_adapter"
    )


def discover_se_gates(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224)) -> list[SEGate]:
    """Find and name every SE gate of ``model``.

    Args:
        model: Any ``nn.Module``.
        input_size: (C, H, W) of one input image, for the probe pass that
            confirms each gate and measures its channels and spatial size.

    Returns:
        The gates in forward order.

    Raises:
        NoSEBlocksError: No SE gate was found.
    """
    candidates, others = _candidates(model)
    if not candidates:
        raise NoSEBlocksError(
            _refusal(
                others,
                type(model).__name__,
                "has no Squeeze-and-Excitation block seviz recognises (timm SEModule/SqueezeExcite/"
                "EcaModule and the other kinds of seviz.se.adapters, torchvision SqueezeExcitation, or a "
                "block that scales its input by a sigmoid of pooled features)",
            )
        )
    gate_shapes, input_shapes, order = _probe(model, candidates, input_size)
    by_path = {path: (module, adapter) for path, module, adapter in candidates}
    accepted = _confirmed(by_path, gate_shapes, input_shapes, order)
    gates = _named_gates(by_path, accepted, input_shapes)
    if not gates:
        raise NoSEBlocksError(
            _refusal(
                others,
                type(model).__name__,
                "has sigmoid modules but none gates channels (no (B, C, 1, 1), (B, 1, C) or (B, C) "
                "output), so it has no SE block seviz can record",
            )
        )
    if others:
        log.info(
            "%s: also holds attention that is not an SE gate, not recorded: %s",
            type(model).__name__,
            ", ".join(sorted({other.kind for _, _, other in others})),
        )
    return gates


def _probe(
    model: nn.Module,
    candidates: list[tuple[str, nn.Module, SEAdapter]],
    input_size: tuple[int, int, int],
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], list[str]]:
    """One forward pass of a zero image: each candidate's gate output and block input shapes, and the call order."""
    import torch

    gate_shapes: dict[str, tuple[int, ...]] = {}
    input_shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    hooks: list[tuple[nn.Module, Callable[..., None]]] = []
    for path, module, adapter in candidates:

        def on_gate(_module, _inputs, output, path=path):
            gate_shapes[path] = tuple(output.shape)
            order.append(path)

        def on_block(_module, inputs, _output, path=path):
            input_shapes[path] = tuple(inputs[0].shape) if inputs else ()

        hooks += [(adapter.gate_of(module), on_gate), (module, on_block)]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        model(torch.zeros(1, *input_size, device=device))
    return gate_shapes, input_shapes, order


def _confirmed(
    by_path: dict[str, _Candidate],
    gate_shapes: dict[str, tuple[int, ...]],
    input_shapes: dict[str, tuple[int, ...]],
    order: list[str],
) -> dict[str, int]:
    """The outermost candidates whose probe output is one gate per channel, with their channel counts."""
    accepted: dict[str, int] = {}
    for path in dict.fromkeys(order):  # forward order, first call of each
        _module, adapter = by_path[path]
        shape = gate_shapes[path]
        channels = _channels(shape)
        if channels is None:
            log.debug("skipping %s: gate output %s is not one value per channel", path, shape)
            continue
        block_input = input_shapes.get(path, ())
        scaled = (block_input[1], block_input[-1]) if len(block_input) in (2, 4) else (channels,)
        if is_structural(adapter) and channels not in scaled:  # not one gate per input channel
            log.debug("skipping %s: %d gate values for an input of shape %s", path, channels, block_input)
            continue
        accepted[path] = int(channels)
    # A confirmed block may hold a structural match of its own; the outer block is the SE block.
    return {
        path: channels
        for path, channels in accepted.items()
        if not any(other != path and (other == "" or path.startswith(other + ".")) for other in accepted)
    }


def _named_gates(
    by_path: dict[str, _Candidate], accepted: dict[str, int], input_shapes: dict[str, tuple[int, ...]]
) -> list[SEGate]:
    """Name (SE_stage_block, unique) and measure (parameters, FLOPs) each confirmed gate, in forward order."""
    gates: list[SEGate] = []
    names: set[str] = set()
    for path, channels in accepted.items():
        module, adapter = by_path[path]
        block = adapter.block_of(module) if adapter.block_of is not None else module
        block_path = _path_within(module, path, block)
        position = stage_and_block(block_path) or (1, len(gates) + 1)
        name = _unique(f"SE_{position[0]}_{position[1]}", names)
        names.add(name)
        params = sum(p.numel() for p in block.parameters())
        # pool (C*H*W adds) + the excitation FCs (~1 MAC per weight) + the scale (C*H*W); an edit
        # of a gate inside a larger module removes none of them
        spatial = _spatial_size(input_shapes.get(path, ())) if block is module else 0
        gates.append(
            SEGate(
                name=name,
                module_path=block_path,
                gate_path=_path_within(module, path, adapter.gate_of(module)),
                stage=position[0],
                block=position[1],
                channels=int(channels),
                kind=adapter.kind,
                scales_input=adapter.scales_input,
                params=int(params),
                flops=int(2 * channels * spatial + params),
                gate_activation=adapter.gate_activation,
            )
        )
    return gates


def _path_within(module: nn.Module, path: str, submodule: nn.Module) -> str:
    """The dotted path of ``submodule`` (``module`` itself or one of its descendants) in the model."""
    return next(p for p, m in module.named_modules(prefix=path) if m is submodule)


def _spatial_size(shape: tuple[int, ...]) -> int:
    if len(shape) == 4:
        return int(shape[2] * shape[3])
    return 1


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    suffix = 2
    while f"{name}_{suffix}" in taken:
        suffix += 1
    return f"{name}_{suffix}"


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (``layer4.1.se``)."""
    return model.get_submodule(path)


def format_gate_table(gates: list[SEGate]) -> str:
    """A plain-text table of gates, for ``seviz blocks``: name, channels, parameters, kind, hooked module.

    A gate whose sigmoid the implementation applies inline shows its module as
    ``sigmoid(path)``: the hooked module's output, then the sigmoid seviz applies.
    """
    rows = [("name", "channels", "params", "kind", "module")]
    rows += [
        (
            g.name,
            str(g.channels),
            str(g.params),
            g.kind,
            f"{g.gate_activation}({g.gate_path})" if g.gate_activation else g.gate_path,
        )
        for g in gates
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    kinds: dict[str, int] = {}
    for gate in gates:
        kinds[gate.kind] = kinds.get(gate.kind, 0) + 1
    lines.append("kinds: " + ", ".join(f"{kind} x{count}" for kind, count in kinds.items()))
    lines.append(f"{len(gates)} SE blocks, {sum(g.params for g in gates):,} SE parameters")
    return "\n".join(lines)
