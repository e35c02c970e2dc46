"""Which gate channels drive a class? Captum attributions on the SE gate outputs.

For each recorded image, captum's ``LayerGradientXActivation`` takes the
gradient of the image's true-class logit with respect to every SE gate output
``s`` and multiplies it by ``s`` (the gate itself, also where an implementation
applies its sigmoid inline: :mod:`seviz.se.gate_layers`): the first-order contribution of each gate
channel to that logit. Averaged over a class's images this ranks, per class
and block, the channels whose gates most drive the class. Results go into the
store (``/attributions/<block>``) for ``seviz plot``, the report and the app.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seviz.errors import ModelLoadError, UsageError
from seviz.models.preprocessing import (
    STORE_PREFIX,
    DataConfigLike,
    DataConfigRequest,
    as_request,
    describe_preprocessing,
)
from seviz.store import Provenance, StoreError, open_store, write_attributions

if TYPE_CHECKING:
    import torch

    from seviz.data import ImageItem
    from seviz.models import LoadedModel
    from seviz.se import SEGate

log = logging.getLogger(__name__)

METHOD = "captum.LayerGradientXActivation(target=true class logit), mean over the class's images"


@dataclass(frozen=True)
class AttributionSummary:
    """What ``seviz attribute`` wrote."""

    store: str
    blocks: int
    classes: list[str]
    images: int
    method: str
    preprocessing: str = ""  # the data config used and where its values came from, in words


def attribute(
    store_path: str | Path,
    model: str | None = None,
    weights: str | None = None,
    images_per_class: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    data_config: DataConfigLike = None,
    trust_store_model: bool = False,
) -> AttributionSummary:
    """Attribute each class's logit to the SE gate channels of every recorded block.

    The model defaults to the one the store was recorded with; its weights
    must be the same (checked by SHA-256), or the attributions would describe
    another network. Images are preprocessed as the store recorded them unless
    ``data_config`` says otherwise.
    A store is a data file and may come from someone else,
    so a recorded ``file.py:factory`` or ``module:factory`` model (code) is
    only rebuilt when it is passed as ``model`` or ``trust_store_model`` is set.

    Args:
        store_path: A complete store from ``seviz record``.
        model: Model spec; default: the store's ``model_spec``.
        weights: Weights; default: the ones the store was recorded with
            (:func:`seviz.models.weights_for_source`).
        images_per_class: Use at most N of each class's recorded images.
        batch_size: Images per backward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        num_classes: For a user's own model.
        class_names: For a user's own model.
        progress: Show a progress bar.
        data_config: Preprocessing over the store's (see :func:`seviz.models.load_model`).
        trust_store_model: Run the code the store's ``model_spec`` names.

    Raises:
        StoreError: The store is incomplete or empty, none of its images can
            be read, or the weights differ from the recorded ones.
        ModelLoadError: The store's model is user code and neither ``model``
            nor ``trust_store_model`` was given.
    """
    from seviz._torch_utils import resolve_device
    from seviz.se import discover_se_gates

    if images_per_class is not None and images_per_class < 1:
        raise UsageError(f"images_per_class={images_per_class} (--images-per-class) must be at least 1")
    store_path = Path(store_path)
    request = as_request(data_config)  # a bad value is refused before any model work
    plan = _read_plan(store_path, model, weights, images_per_class, request, trust_store_model)
    torch_device = resolve_device(device)
    loaded = _load_recorded_weights(plan, num_classes, class_names, str(torch_device))
    gates = [
        g
        for g in discover_se_gates(loaded.model, tuple(loaded.data_config["input_size"]))
        if g.name in plan.block_names
    ]
    sums, counts = _class_sums(plan, loaded, gates, torch_device, batch_size, progress)
    if not counts.any():
        raise StoreError(
            f"none of the {len(plan.items)} images recorded in {str(store_path)!r} could be read now "
            f"(first: {plan.items[0].path!r}); were they moved? Nothing was written"
        )
    means = {name: total / np.maximum(counts, 1)[:, None] for name, total in sums.items()}
    write_attributions(
        store_path,
        means,
        plan.class_order,
        {"method": METHOD, "images": int(counts.sum()), "weights_sha256": loaded.weights_sha256},
    )
    return AttributionSummary(
        str(store_path),
        len(means),
        list(plan.class_order),
        int(counts.sum()),
        METHOD,
        describe_preprocessing(loaded.data_config, loaded.preprocessing_source),
    )


@dataclass(frozen=True)
class _Plan:
    """What a store says to attribute: the model and weights, the images, the blocks and the preprocessing."""

    spec: str
    weights: str
    recorded_sha: str
    class_order: list[str]
    items: list[ImageItem]
    block_names: list[str]
    request: DataConfigRequest


def _read_plan(
    store_path: Path,
    model: str | None,
    weights: str | None,
    images_per_class: int | None,
    request: DataConfigRequest,
    trust_store_model: bool,
) -> _Plan:
    """Read from a complete, non-empty store the model to rebuild and the images to attribute."""
    from seviz.data import ImageItem
    from seviz.models import weights_for_source

    with open_store(store_path) as store:
        if not store.complete:
            raise StoreError(f"store {str(store_path)!r} is incomplete; finish it with --resume first")
        if len(store) == 0:
            raise StoreError(
                f"store {str(store_path)!r} has no samples to attribute; record images into it first"
            )
        provenance = store.provenance
        spec = model or _recorded_model(provenance, store_path, trust_store_model)
        weights = weights or weights_for_source(provenance.weights_source)
        class_order = store.recorded_class_names
        rows = []
        for name in class_order:
            indices = np.flatnonzero(store.class_mask(name))
            rows.extend(indices[:images_per_class].tolist())
        rows.sort()
        return _Plan(
            spec=spec,
            weights=weights,
            recorded_sha=provenance.weights_sha256,
            class_order=class_order,
            items=[
                ImageItem(str(store.paths[i]), int(store.labels[i]), str(store.class_names[i])) for i in rows
            ],
            block_names=store.block_names,
            request=request.over(f"{STORE_PREFIX}{store_path}", provenance.preprocessing),
        )


def _load_recorded_weights(
    plan: _Plan, num_classes: int | None, class_names: Sequence[str] | None, device: str
) -> LoadedModel:
    """Build the plan's model and refuse weights other than the ones the store was recorded with."""
    from seviz.models import load_model

    loaded = load_model(
        plan.spec,
        plan.weights,
        num_classes=num_classes,
        class_names=class_names,
        device=device,
        data_config=plan.request,
    )
    if plan.recorded_sha and not loaded.has_weights(plan.recorded_sha):
        raise StoreError(
            f"weights of {plan.spec!r} ({plan.weights}) have SHA-256 {loaded.weights_sha256[:12]}..., but the "
            f"store was recorded with {plan.recorded_sha[:12]}...; pass the recorded weights with --weights"
        )
    return loaded


def _class_sums(
    plan: _Plan,
    loaded: LoadedModel,
    gates: list[SEGate],
    torch_device: torch.device,
    batch_size: int,
    progress: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum each gate channel's attribution per class over the plan's images, with each class's image count."""
    import torch
    from captum.attr import LayerGradientXActivation
    from tqdm.auto import tqdm

    from seviz._torch_utils import eval_mode
    from seviz.data import iterate_batches
    from seviz.se.gate_layers import gate_layers

    sums = {g.name: np.zeros((len(plan.class_order), g.channels), dtype=np.float64) for g in gates}
    counts = np.zeros(len(plan.class_order), dtype=np.int64)
    position = {name: i for i, name in enumerate(plan.class_order)}
    bar = tqdm(total=len(plan.items), unit="img", desc="attributing", disable=not progress)
    with eval_mode(loaded.model), bar:
        for batch in iterate_batches(plan.items, loaded.data_config, batch_size=batch_size):
            bar.update(batch.consumed)
            if batch.images is None:
                continue
            images = batch.images.to(torch_device)
            targets = torch.tensor([i.label for i in batch.items], device=torch_device)
            # Each gate's s is a module's output here, also where the sigmoid is applied inline
            # (LightCbam); the routing that needs is on for the model's passes only, not the decoding.
            with gate_layers(loaded.model, gates) as layers:
                outputs = LayerGradientXActivation(loaded.model, layers).attribute(images, target=targets)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            slots = np.asarray([position[i.class_name] for i in batch.items])
            for gate, values in zip(gates, outputs, strict=True):
                per_image = values.detach().flatten(1).double().cpu().numpy()
                np.add.at(sums[gate.name], slots, per_image)
            np.add.at(counts, slots, 1)
    return sums, counts


def _recorded_model(provenance: Provenance, store_path: Path, trust: bool) -> str:
    """The model spec a store was recorded with, refused when it is code and not trusted."""
    from seviz.models import runs_user_code

    spec = provenance.model_spec or provenance.model
    if not spec:
        raise StoreError(
            f"store {str(store_path)!r} names no model; pass the one it was recorded with (--model)"
        )
    if runs_user_code(spec) and not trust:
        raise ModelLoadError(
            f"store {str(store_path)!r} was recorded with {spec!r}, a model built by running code from a "
            "Python file or module. seviz does not run code that a data file names (a store may come from "
            f"someone else): pass --model {spec!r} (model=...) if you trust that code, or "
            "--trust-store-model (trust_store_model=True)"
        )
    return spec
