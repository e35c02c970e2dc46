"""Attention that is not a Squeeze-and-Excitation gate, and why: the reasons a model is refused.

An SE gate gives each channel one value in [0, 1] per image, from the whole
feature map, and multiplies the channel by it (Hu et al., arXiv 1709.01507). Many
attention modules look alike but are not that: a softmax across branches
(selective kernel, split attention with radix > 1) weighs branches against each
other; coordinate and strip attention gate rows and columns; gather-excite with a
local extent gates each region; global context without a fused scale only adds;
self-attention mixes positions or tokens. seviz does not record those. When a
model holds no SE gate, :func:`seviz.se.discover_se_gates` names what it found
here and why it is not one.

Modules are matched by class (imported lazily, as in :mod:`seviz.se.adapters`)
or, for self-attention written in a model's own file, by structure: a
query/key/value projection among its children (``qkv``, or ``q``, ``k`` and ``v``...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seviz.se.adapters import all_of, class_matcher

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class NonSEAttention:
    """One kind of attention that is not an SE gate.

    Attributes:
        kind: Short name shown to the user (``timm.SelectiveKernel``).
        matches: True for a module of this kind.
        reason: Why such a module is not a per-channel SE gate (may read the module).
    """

    kind: str
    matches: Callable[[nn.Module], bool]
    reason: Callable[[nn.Module], str]


def _fixed(text: str) -> Callable[[nn.Module], str]:
    return lambda _module: text


def _radix_above_1(module: nn.Module) -> bool:
    radix = getattr(module, "radix", None)
    return isinstance(radix, int) and radix > 1


def _local_extent(module: nn.Module) -> bool:
    extent = getattr(module, "extent", None)
    return isinstance(extent, int) and extent > 0


def _no_fused_scale(module: nn.Module) -> bool:
    return getattr(module, "mlp_scale", "absent") is None


# Query/key/value projections as self-attention modules name them: one fused projection,
# or a complete set of separate ones (any module type: a Linear, a Conv, a conv-norm).
_FUSED_QKV = ("qkv", "qkv_proj", "to_qkv")
_SPLIT_QKV = (
    ("q", "k", "v"),
    ("q", "kv"),
    ("qk", "v"),
    ("q_proj", "k_proj", "v_proj"),
    ("query", "key", "value"),
    ("to_q", "to_kv"),
    ("to_query", "to_key"),
)


def _is_self_attention(module: nn.Module) -> bool:
    """Structure shared by self-attention modules: a query/key/value projection among the children."""
    from torch import nn

    if isinstance(module, nn.MultiheadAttention):
        return True
    children = module._modules
    if any(children.get(name) is not None for name in _FUSED_QKV):
        return True
    return any(all(children.get(name) is not None for name in names) for names in _SPLIT_QKV)


_SOFTMAX_OVER_BRANCHES = (
    "a softmax across {n} branches: it weighs the branches' features against each other (the values of a "
    "channel sum to 1 over the branches), it does not scale a channel on its own by a gate in [0, 1]"
)
_SELF_ATTENTION = (
    "self-attention: it mixes positions (or tokens) by query-key affinities; there is no per-channel gate"
)
_ROWS_AND_COLUMNS = (
    "coordinate attention: it gates each channel per row and per column (a spatial map), "
    "not once per channel for the whole image"
)

NON_SE_ATTENTION: list[NonSEAttention] = [
    NonSEAttention(
        "timm.SelectiveKernel",
        class_matcher("timm.layers.selective_kernel", "SelectiveKernel"),
        lambda m: _SOFTMAX_OVER_BRANCHES.format(n=getattr(m, "num_paths", "several")),
    ),
    NonSEAttention(
        "timm.SplitAttn(radix>1)",
        all_of(class_matcher("timm.layers.split_attn", "SplitAttn"), _radix_above_1),
        lambda m: _SOFTMAX_OVER_BRANCHES.format(n=f"radix={getattr(m, 'radix', '?')}"),
    ),
    NonSEAttention(
        "timm.GatherExcite(local extent)",
        all_of(class_matcher("timm.layers.gather_excite", "GatherExcite"), _local_extent),
        lambda m: (
            f"gather-excite over a local extent ({getattr(m, 'extent', '?')}): it gates each channel per "
            "region of the feature map, not once per channel"
        ),
    ),
    NonSEAttention(
        "timm.GlobalContext(add only)",
        all_of(class_matcher("timm.layers.global_context", "GlobalContext"), _no_fused_scale),
        _fixed(
            "global context without fuse_scale (the 'gca' form): it adds a transformed context to the "
            "features and multiplies nothing, so it has no gate"
        ),
    ),
    NonSEAttention(
        "timm.CoordAttn", class_matcher("timm.layers.coord_attn", "CoordAttn"), _fixed(_ROWS_AND_COLUMNS)
    ),
    NonSEAttention(
        "timm.SimpleCoordAttn",
        class_matcher("timm.layers.coord_attn", "SimpleCoordAttn"),
        _fixed(_ROWS_AND_COLUMNS),
    ),
    NonSEAttention(
        "timm.EfficientLocalAttn",
        class_matcher("timm.layers.coord_attn", "EfficientLocalAttn"),
        _fixed(_ROWS_AND_COLUMNS),
    ),
    NonSEAttention(
        "timm.StripAttn", class_matcher("timm.layers.coord_attn", "StripAttn"), _fixed(_ROWS_AND_COLUMNS)
    ),
    NonSEAttention(
        "timm.NonLocalAttn",
        class_matcher("timm.layers.non_local_attn", "NonLocalAttn"),
        _fixed(
            "non-local attention: a position-by-position affinity added to the features; no per-channel gate"
        ),
    ),
    NonSEAttention(
        "timm.BatNonLocalAttn",
        class_matcher("timm.layers.non_local_attn", "BatNonLocalAttn"),
        _fixed("bilinear non-local attention: a spatial transform of the features; no per-channel gate"),
    ),
    NonSEAttention(
        "timm.LambdaLayer",
        class_matcher("timm.layers.lambda_layer", "LambdaLayer"),
        _fixed("a lambda layer: it replaces a convolution by linear attention over positions; no gate"),
    ),
    NonSEAttention(
        "timm.BottleneckAttn",
        class_matcher("timm.layers.bottleneck_attn", "BottleneckAttn"),
        _fixed(f"BoTNet bottleneck {_SELF_ATTENTION}"),
    ),
    NonSEAttention(
        "timm.HaloAttn",
        class_matcher("timm.layers.halo_attn", "HaloAttn"),
        _fixed(f"halo (blocked local) {_SELF_ATTENTION}"),
    ),
    # ViT-style attention written in any model's file, found by structure.
    NonSEAttention("self-attention", _is_self_attention, _fixed(_SELF_ATTENTION)),
]


def non_se_attention(module: nn.Module) -> NonSEAttention | None:
    """The first listed kind of non-SE attention ``module`` is, if any."""
    return next((entry for entry in NON_SE_ATTENTION if entry.matches(module)), None)
