"""A loaded network with its provenance: what was asked for, what was built, its weights and preprocessing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A network ready to record, with its provenance.

    Attributes:
        model: The network, in eval mode.
        spec: What the user asked for (``se_resnet50``).
        name: What was built (``legacy_seresnet50.in1k``).
        weights_source: ``pretrained``, ``random``, ``demo`` or the weights file path.
        weights_sha256: SHA-256 of the loaded state dict's tensors (sorted by
            key), whatever their source: the same weights from the hub or from a
            local file have the same hash.
        weights_file_sha256: SHA-256 of the weights file's bytes, when they came from one.
        class_names: One name per output, in output order.
        class_ids: WordNet ids for ImageNet outputs, else ``None``.
        data_config: timm-style preprocessing (input_size, interpolation,
            crop_pct, crop_mode, mean, std); a builder gives the model's own
            (possibly partial) config, :func:`~seviz.models.load_model` the resolved one
            (see :mod:`seviz.models.preprocessing`).
        preprocessing_source: Where each ``data_config`` value came from
            (``flags``, ``argument``, ``file:PATH``, ``store:PATH``, ``model``, ``default``).
        preprocessing_notes: Plain-words warnings about the preprocessing (a fallback
            to the ImageNet default), each naming the flags that change it.
    """

    model: nn.Module
    spec: str
    name: str
    weights_source: str
    weights_sha256: str
    class_names: tuple[str, ...]
    class_ids: tuple[str, ...] | None
    data_config: dict[str, Any] = field(default_factory=dict)
    weights_file_sha256: str | None = None
    preprocessing_source: dict[str, str] = field(default_factory=dict)
    preprocessing_notes: tuple[str, ...] = ()

    @property
    def is_imagenet(self) -> bool:
        return self.class_ids is not None

    def has_weights(self, sha256: str) -> bool:
        """Whether ``sha256`` names these weights: their tensors' hash, or their file's."""
        return bool(sha256) and sha256 in (self.weights_sha256, self.weights_file_sha256)

    def provenance(self) -> dict[str, Any]:
        """Store attributes describing this model."""
        return {
            "model": self.name,
            "model_spec": self.spec,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "weights_file_sha256": self.weights_file_sha256,
            "num_classes": len(self.class_names),
            "preprocessing": self.data_config,
            "preprocessing_source": self.preprocessing_source,
            "preprocessing_notes": list(self.preprocessing_notes),
        }
