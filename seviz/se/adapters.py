"""The registry of SE implementations seviz recognises: one :class:`SEAdapter` per kind.

Built in: timm ``SEModule``, ``EffectiveSEModule``, ``SqueezeExciteCl``, the legacy
``senet.SEModule``, EfficientNet/MobileNet ``SqueezeExcite``, ``EcaModule`` and
``CecaModule``, HGNet's ``EseModule``, ``GlobalContext`` with a fused scale, the
channel halves of ``CbamModule`` and ``LightCbamModule``, ``GatherExcite`` with a
global extent, ``SplitAttn`` with radix 1, torchvision ``SqueezeExcitation``, and
hand-written blocks found by structure. A new SE variant is one
:func:`register_se_adapter` call; the adapter says how to find the block
(``matches``) and which submodule is its gate (``gate_of``).

Blocks that rescale an SE module's output (NFNet's ``attn_gain * se(x)``) need no
adapter of their own: the gate is still the sigmoid inside the SE module, and an
edit that replaces the SE module keeps the block's gain. Attention that is not a
per-channel gate is listed in :mod:`seviz.se.non_gates`, so that a model holding
only such attention is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class SEAdapter:
    """How to recognise one SE implementation and reach its gate.

    Attributes:
        kind: Short name stored with each block (``timm.SEModule``...).
        matches: True for a module that is this kind of SE block.
        gate_of: The submodule whose output is the excitation ``s`` (or its
            pre-activation, see ``gate_activation``).
        scales_input: True when the block returns ``x * s`` (replaceable by a
            pass-through or a fixed scale); False when the block (see
            ``block_of``) returns ``s`` itself and its parent does the
            multiplication.
        gate_activation: None when ``gate_of``'s output is ``s``; ``"sigmoid"``
            when the implementation applies its sigmoid inline (as a function,
            not a module), so the hooked output is the pre-activation and the
            recorder applies the sigmoid.
        block_of: The submodule a pruning edit replaces; None for the matched
            module itself. An SE gate inside a larger module (split attention's
            gate follows the module's convolution) is edited at its gate.
    """

    kind: str
    matches: Callable[[nn.Module], bool]
    gate_of: Callable[[nn.Module], nn.Module]
    scales_input: bool = True
    gate_activation: str | None = None
    block_of: Callable[[nn.Module], nn.Module] | None = None

    def __post_init__(self) -> None:
        if self.gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(
                f"SEAdapter {self.kind!r}: gate_activation {self.gate_activation!r} is not one of "
                f"{GATE_ACTIVATIONS}"
            )


# What a hooked gate output may still need: nothing, or the sigmoid an implementation applies inline.
GATE_ACTIVATIONS = (None, "sigmoid")

_ADAPTERS: list[SEAdapter] = []


def register_se_adapter(adapter: SEAdapter) -> SEAdapter:
    """Add an SE implementation to the registry (checked before the built-in structural match)."""
    _ADAPTERS.insert(len(_ADAPTERS) - len(_STRUCTURAL), adapter)
    return adapter


def class_matcher(module_path: str, class_name: str) -> Callable[[nn.Module], bool]:
    """isinstance check against a class imported lazily (absent libraries never match)."""
    cache: dict[str, type | None] = {}

    def matches(module: nn.Module) -> bool:
        if "cls" not in cache:
            try:
                imported = __import__(module_path, fromlist=[class_name])
                cache["cls"] = getattr(imported, class_name)
            except (ImportError, AttributeError):
                cache["cls"] = None
        cls = cache["cls"]
        return cls is not None and isinstance(module, cls)

    return matches


def all_of(*tests: Callable[[nn.Module], bool]) -> Callable[[nn.Module], bool]:
    """A matcher true where every test is (a class check first, then its structure)."""
    return lambda module: all(test(module) for test in tests)


def _is_sigmoid_like(module: nn.Module) -> bool:
    from torch import nn

    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return True
    try:
        from timm.layers.activations import HardSigmoid, Sigmoid
        from timm.layers.activations_me import HardSigmoidMe

        return isinstance(module, (Sigmoid, HardSigmoid, HardSigmoidMe))
    except ImportError:
        return False


def _sequential_ending_in_sigmoid(module: nn.Module) -> bool:
    from torch import nn

    return isinstance(module, nn.Sequential) and len(module) > 1 and _is_sigmoid_like(module[-1])


def _has_pool_and_sigmoid_child(module: nn.Module) -> bool:
    from torch import nn

    children = list(module.children())
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d, nn.AvgPool2d)
    return (
        not isinstance(module, nn.Sequential)
        and any(isinstance(c, pools) for c in children)
        and sum(_is_sigmoid_like(c) for c in children) == 1
    )


def _sigmoid_child(module: nn.Module) -> nn.Module:
    return next(c for c in module.children() if _is_sigmoid_like(c))


def _last_child(module: nn.Module) -> nn.Module:
    return list(module.children())[-1]


def _child(name: str) -> Callable[[nn.Module], nn.Module]:
    """The gate getter of a library SE module: its submodule ``name``."""

    def gate(module: nn.Module) -> nn.Module:
        from torch.nn import Module

        child = getattr(module, name)
        if not isinstance(child, Module):
            raise TypeError(f"{type(module).__name__}.{name} is not a module (got {type(child).__name__})")
        return child

    return gate


def _splitattn_radix_1(module: nn.Module) -> bool:
    return (
        getattr(module, "radix", None) == 1 and getattr(getattr(module, "rsoftmax", None), "radix", None) == 1
    )


def _gc_scale_only(module: nn.Module) -> bool:
    return getattr(module, "mlp_scale", None) is not None and getattr(module, "mlp_add", None) is None


def _gc_scale_and_add(module: nn.Module) -> bool:
    return getattr(module, "mlp_scale", None) is not None and getattr(module, "mlp_add", None) is not None


def _global_extent(module: nn.Module) -> bool:
    return getattr(module, "extent", None) == 0


_BUILTIN = [
    SEAdapter("timm.SEModule", class_matcher("timm.layers.squeeze_excite", "SEModule"), _child("gate")),
    SEAdapter(
        "timm.EffectiveSEModule",
        class_matcher("timm.layers.squeeze_excite", "EffectiveSEModule"),
        _child("gate"),
    ),
    SEAdapter(
        "timm.SqueezeExciteCl",
        class_matcher("timm.layers.squeeze_excite", "SqueezeExciteCl"),
        _child("gate"),
    ),
    SEAdapter("timm.legacy.SEModule", class_matcher("timm.models.senet", "SEModule"), _child("sigmoid")),
    SEAdapter(
        "timm.SqueezeExcite",
        class_matcher("timm.models._efficientnet_blocks", "SqueezeExcite"),
        _child("gate"),
    ),
    SEAdapter(
        "torchvision.SqueezeExcitation",
        class_matcher("torchvision.ops.misc", "SqueezeExcitation"),
        _child("scale_activation"),
    ),
    # ECA (Wang et al., arXiv 1910.03151): a 1-D convolution across the pooled channels; the
    # gate's output is (B, 1, C), stored as (B, C). Circular ECA pads the convolution circularly.
    SEAdapter("timm.EcaModule", class_matcher("timm.layers.eca", "EcaModule"), _child("gate")),
    SEAdapter("timm.CecaModule", class_matcher("timm.layers.eca", "CecaModule"), _child("gate")),
    # HGNet's effective SE: one 1x1 convolution of the pooled features, then ``.sigmoid``.
    SEAdapter("timm.hgnet.EseModule", class_matcher("timm.models.hgnet", "EseModule"), _child("sigmoid")),
    # Global context (Cao et al., arXiv 1904.11492) with ``fuse_scale``: x * gate(mlp(context)),
    # an SE gate whose squeeze is attention pooling. With ``fuse_add`` as well the block also adds
    # a context term, so a pruning edit replaces the gate itself, not the block (below).
    SEAdapter(
        "timm.GlobalContext",
        all_of(class_matcher("timm.layers.global_context", "GlobalContext"), _gc_scale_only),
        _child("gate"),
    ),
    SEAdapter(
        "timm.GlobalContext+add",
        all_of(class_matcher("timm.layers.global_context", "GlobalContext"), _gc_scale_and_add),
        _child("gate"),
        scales_input=False,
        block_of=_child("gate"),
    ),
    # CBAM (Woo et al., arXiv 1807.06521): the channel half is an SE gate over average- and
    # max-pooled features; the spatial half that follows it gates pixels and is left alone.
    # LightChannelAttn subclasses ChannelAttn, so it is listed first. It applies ``F.sigmoid``
    # inline (its ``gate`` module is never called): the hook is on ``fc2``, called once per
    # forward there, and the recorder applies the sigmoid to its output.
    SEAdapter(
        "timm.LightCbam.channel",
        class_matcher("timm.layers.cbam", "LightChannelAttn"),
        _child("fc2"),
        gate_activation="sigmoid",
    ),
    SEAdapter("timm.Cbam.channel", class_matcher("timm.layers.cbam", "ChannelAttn"), _child("gate")),
    # Gather-excite (Hu et al., arXiv 1810.12348) with a global extent is an SE gate; with a
    # local extent it gates each channel per region (refused in seviz.se.non_gates).
    SEAdapter(
        "timm.GatherExcite",
        all_of(class_matcher("timm.layers.gather_excite", "GatherExcite"), _global_extent),
        _child("gate"),
    ),
    # Split attention (ResNeSt, arXiv 2004.08955) with radix 1 scales the convolution's output
    # by a sigmoid: an SE gate inside the module, after its convolution. A pruning edit
    # therefore replaces the gate (``rsoftmax``) by a fixed one, keeping the convolution.
    # Radix > 1 is a softmax across branches (refused in seviz.se.non_gates).
    SEAdapter(
        "timm.SplitAttn(radix=1)",
        all_of(class_matcher("timm.layers.split_attn", "SplitAttn"), _splitattn_radix_1),
        _child("rsoftmax"),
        scales_input=False,
        block_of=_child("rsoftmax"),
    ),
]


# Hand-written blocks, found by structure; the probe pass confirms them.
_STRUCTURAL = [
    SEAdapter("structural.pool_sigmoid", _has_pool_and_sigmoid_child, _sigmoid_child),
    SEAdapter("structural.sequential_gate", _sequential_ending_in_sigmoid, _last_child, scales_input=False),
]

_ADAPTERS.extend(_BUILTIN + _STRUCTURAL)


def candidate_adapter(module: nn.Module) -> SEAdapter | None:
    """The first registered adapter that matches ``module``, if any."""
    return next((a for a in _ADAPTERS if a.matches(module)), None)


def is_structural(adapter: SEAdapter) -> bool:
    """Whether ``adapter`` finds blocks by structure (a guess until a probe pass confirms it)."""
    return adapter in _STRUCTURAL


def apply_gate_activation(name: str | None, values: torch.Tensor) -> torch.Tensor:
    """The gate ``s`` from a hooked output: ``values`` itself, or its sigmoid for an inline one."""
    if name is None:
        return values
    if name == "sigmoid":
        return values.sigmoid()
    raise ValueError(f"unknown gate activation {name!r}; choose one of {GATE_ACTIVATIONS}")
