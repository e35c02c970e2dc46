"""The registry of SE implementations seviz recognises: one :class:`SEAdapter` per kind.

Built in: timm ``SEModule``, ``EffectiveSEModule``, ``SqueezeExciteCl``, the legacy
``senet.SEModule``, EfficientNet/MobileNet ``SqueezeExcite``, torchvision
``SqueezeExcitation``, and hand-written blocks found by structure. A new SE
variant is one :func:`register_se_adapter` call; the adapter says how to find
the block (``matches``) and which submodule is its gate (``gate_of``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class SEAdapter:
    """How to recognise one SE implementation and reach its gate.

    Attributes:
        kind: Short name stored with each block (``timm.SEModule``...).
        matches: True for a module that is this kind of SE block.
        gate_of: The submodule whose output is the excitation ``s``.
        scales_input: True when the block returns ``x * s`` (replaceable by a
            pass-through or a fixed scale); False when the block returns ``s``
            itself and its parent does the multiplication.
    """

    kind: str
    matches: Callable[[nn.Module], bool]
    gate_of: Callable[[nn.Module], nn.Module]
    scales_input: bool = True


_ADAPTERS: list[SEAdapter] = []


def register_se_adapter(adapter: SEAdapter) -> SEAdapter:
    """Add an SE implementation to the registry (checked before the built-in structural match)."""
    _ADAPTERS.insert(len(_ADAPTERS) - len(_STRUCTURAL), adapter)
    return adapter


def _class_matcher(module_path: str, class_name: str) -> Callable[[nn.Module], bool]:
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


_BUILTIN = [
    SEAdapter("timm.SEModule", _class_matcher("timm.layers.squeeze_excite", "SEModule"), _child("gate")),
    SEAdapter(
        "timm.EffectiveSEModule",
        _class_matcher("timm.layers.squeeze_excite", "EffectiveSEModule"),
        _child("gate"),
    ),
    SEAdapter(
        "timm.SqueezeExciteCl",
        _class_matcher("timm.layers.squeeze_excite", "SqueezeExciteCl"),
        _child("gate"),
    ),
    SEAdapter("timm.legacy.SEModule", _class_matcher("timm.models.senet", "SEModule"), _child("sigmoid")),
    SEAdapter(
        "timm.SqueezeExcite",
        _class_matcher("timm.models._efficientnet_blocks", "SqueezeExcite"),
        _child("gate"),
    ),
    SEAdapter(
        "torchvision.SqueezeExcitation",
        _class_matcher("torchvision.ops.misc", "SqueezeExcitation"),
        _child("scale_activation"),
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
