"""Load the network to study: paper names, timm and torchvision models, user code.

``--model`` accepts:

* the paper's names, mapped to the original authors' weights as ported to timm
  (``se_resnet50`` is timm ``legacy_seresnet50``, see :data:`MODEL_ALIASES`);
* ``se_resnet50_cifar10``, the offline demo model shipped with seviz;
* any timm model name, with an optional pretrained tag (``seresnet50.a1_in1k``);
* ``torchvision:NAME`` (``torchvision:efficientnet_b0``);
* ``path/to/file.py:factory`` or ``package.module:factory``, a callable that
  returns an ``nn.Module``.

``--weights`` is ``pretrained`` (timm's Hugging Face cache or a download;
``HF_HUB_OFFLINE=1`` is honoured), ``random`` (seeded: the same network on
every call), or a file (``.safetensors``, or ``.pt``/``.pth`` read with
``torch.load(weights_only=True)``).

``data_config`` sets the preprocessing (see :mod:`seviz.models.preprocessing`):
explicit values > a ``--data-config`` file > a store's recorded preprocessing >
the model's own config > the ImageNet default.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seviz.errors import ModelLoadError
from seviz.models.builders import BUILT_IN, FALLBACK, KNOWN_CLASSES, _is_factory
from seviz.models.classes import ModelClasses, resolve_classes
from seviz.models.loaded import LoadedModel
from seviz.models.preprocessing import (
    FROM_MODEL,
    DataConfigLike,
    DataConfigRequest,
    as_request,
    resolve_preprocessing,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Builder:
    """A registered model family: builds a network from a spec."""

    matches: Callable[[str], bool]
    build: Callable[..., LoadedModel]


_BUILDERS: list[_Builder] = [_Builder(matches, build) for matches, build in BUILT_IN]


def register_model_builder(matches: Callable[[str], bool]):
    """Register a builder for model specs that ``matches`` accepts (first match wins)."""

    def decorator(build: Callable[..., LoadedModel]) -> Callable[..., LoadedModel]:
        _BUILDERS.append(_Builder(matches, build))
        return build

    return decorator


def load_model(
    spec: str,
    weights: str = "pretrained",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "cpu",
    data_config: DataConfigLike = None,
) -> LoadedModel:
    """Build a model from a spec and load its weights.

    Args:
        spec: See the module docstring.
        weights: ``pretrained``, ``random`` or a weights file.
        num_classes: Output size for a user's model, or to override timm's head.
        class_names: Names of the outputs (for non-ImageNet models).
        device: Where to put the model.
        data_config: Preprocessing to use instead of the model's own: a mapping
            with any of ``input_size``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``,
            ``interpolation``; a JSON file with those keys; or a
            :class:`~seviz.models.preprocessing.DataConfigRequest`.

    Returns:
        The model in eval mode, with provenance; ``data_config`` is the resolved
        preprocessing and ``preprocessing_source`` says where each value came from.

    Raises:
        ModelLoadError: Unknown model, unavailable pretrained weights, or a weights
            file that does not fit the model.
        DataConfigError: A bad ``data_config`` (raised before any model is built).
    """
    request = as_request(data_config)  # a bad value fails here, before any model work
    if not spec or not spec.strip():
        raise ModelLoadError("--model is empty; name a model such as se_resnet50 or se_resnet50_cifar10")
    spec = spec.strip()
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise ModelLoadError(
            f"--num-classes {num_classes} is not a number of outputs; give at least 1, or drop it to keep "
            "the model's own head"
        )
    # Registered families first; timm, which knows the most names, is the fallback.
    build = next((b.build for b in _BUILDERS if b.matches(spec)), FALLBACK)
    if weights == "random":
        import torch

        # Seeded, so that "random" names one network: its sha256 is stable and an
        # interrupted --weights random run can be --resume'd. The caller's RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            loaded = build(spec, weights=weights, num_classes=num_classes, class_names=class_names)
    else:
        loaded = build(spec, weights=weights, num_classes=num_classes, class_names=class_names)
    loaded.model.to(device).eval()
    return _with_preprocessing(loaded, request, explain_defaults=weights != "random")


def classes_before_building(
    spec: str, num_classes: int | None = None, class_names: Sequence[str] | None = None
) -> ModelClasses | None:
    """The classes :func:`load_model` would give ``spec``'s model, known without building it or fetching weights.

    Known for the built-in families: the demo's CIFAR-10 classes, a timm model's
    (its pretrained config's head, named by timm's ImageNet info), and whatever
    ``class_names`` gives. None where only the build can tell (user code, a
    torchvision head, a registered builder, an unknown name).
    """
    spec = (spec or "").strip()
    build = next((b.build for b in _BUILDERS if b.matches(spec)), FALLBACK)
    known = KNOWN_CLASSES.get(build)
    found = known(spec, num_classes, class_names) if spec and known is not None else None
    return ModelClasses(*found) if found is not None else None


def check_classes(
    spec: str,
    classes: str | Sequence[str] | None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Refuse an unknown or ambiguous name in ``classes`` before any model is built or downloaded.

    Where the classes are known only once the model is built, the names are
    checked then (by :func:`seviz.data.find_images`).

    Raises:
        ClassResolutionError: As :func:`~seviz.models.resolve_classes` does.
    """
    if classes is None:
        return
    known = classes_before_building(spec, num_classes, class_names)
    if known is not None:
        resolve_classes(classes, known)


def _with_preprocessing(
    loaded: LoadedModel, request: DataConfigRequest, explain_defaults: bool
) -> LoadedModel:
    """``loaded`` with its resolved preprocessing, its sources and notes; says so in the log."""
    resolved = resolve_preprocessing(
        loaded.data_config, request, model=f"the model {loaded.spec!r}", explain_defaults=explain_defaults
    )
    for note in resolved.notes:
        log.warning("%s", note)
    told = any(origin != FROM_MODEL for origin in resolved.sources.values())
    log.log(
        logging.INFO if told else logging.DEBUG, "preprocessing of %s: %s", loaded.spec, resolved.describe()
    )
    return dataclasses.replace(
        loaded,
        data_config=resolved.config,
        preprocessing_source=resolved.sources,
        preprocessing_notes=resolved.notes,
    )


def runs_user_code(spec: str) -> bool:
    """Whether building ``spec`` imports and runs code named by it (``file.py:factory``, ``module:factory``).

    A spec read from a data file (a store's ``model_spec``) must not be built
    that way unless the user says so: the file may come from someone else.
    """
    return _is_factory(spec.strip())


def weights_for_source(weights_source: str) -> str:
    """The ``weights`` argument of :func:`load_model` that loads the weights a ``weights_source`` names.

    ``weights_source`` is what :class:`LoadedModel` records (and a store keeps):
    ``pretrained:NAME`` (timm), ``torchvision:ENTRY``, ``demo`` (the shipped
    demo weights), ``random`` (seeded, so the same network), or the weights
    file's path. The first three load with ``pretrained``; the others are
    passed as they are. An empty source means ``pretrained``. Which tensors
    were loaded is for the caller to check against the recorded SHA-256
    (:meth:`LoadedModel.has_weights`).
    """
    source = weights_source.strip()
    if not source or source.startswith(("pretrained", "torchvision:")) or source == "demo":
        return "pretrained"
    return source
