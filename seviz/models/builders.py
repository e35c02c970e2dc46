"""Builders of the model families seviz loads: the demo, user factories, torchvision, timm."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

from seviz.errors import ModelLoadError
from seviz.models.loaded import LoadedModel
from seviz.models.preprocessing import model_data_config
from seviz.models.weights import _apply_weights, _state_dict_sha256, file_sha256, load_weights_file

log = logging.getLogger(__name__)


# The paper's model names -> timm's ports of the authors' Caffe weights.
MODEL_ALIASES: dict[str, str] = {
    "se_resnet50": "legacy_seresnet50.in1k",
    "se_resnet101": "legacy_seresnet101.in1k",
    "se_resnet152": "legacy_seresnet152.in1k",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d.in1k",
    "se_resnext101_32x4d": "legacy_seresnext101_32x4d.in1k",
    "senet154": "legacy_senet154.in1k",
}


def imagenet_names(
    num_classes: int, model: nn.Module | Mapping[str, Any] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(names, WordNet ids) for an ImageNet-labelled head, from timm's ImageNet info."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model) if model is not None else None
    subset = subset or ("imagenet-1k" if num_classes == 1000 else None)
    if subset is None:
        return None
    info = ImageNetInfo(subset)
    if info.num_classes() != num_classes:
        return None
    ids = tuple(info.label_names())
    names = tuple(info.index_to_description(i).split(",")[0].strip() for i in range(num_classes))
    return names, ids


def _head_classes(
    model: nn.Module, num_classes: int, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    if class_names:
        names = tuple(n.strip() for n in class_names)
        if len(names) != num_classes:
            raise ModelLoadError(
                f"--class-names gives {len(names)} names but the model has {num_classes} outputs; "
                "give one name per output"
            )
        return names, None
    imagenet = imagenet_names(num_classes, model)
    if imagenet is not None:
        return imagenet
    return tuple(str(i) for i in range(num_classes)), None


def _num_outputs(model: nn.Module) -> int:
    count = getattr(model, "num_classes", None)
    if isinstance(count, int) and count > 0:
        return count
    last = [v for v in (getattr(m, "out_features", None) for m in model.modules()) if isinstance(v, int)]
    if last:
        return last[-1]
    raise ModelLoadError(f"cannot tell how many classes {type(model).__name__} predicts; pass --num-classes")


def _is_demo(spec: str) -> bool:
    from seviz.models.demo_network import DEMO_MODEL_NAME

    return spec == DEMO_MODEL_NAME


def _build_demo(
    spec: str, weights: str, num_classes: int | None, class_names: Sequence[str] | None
) -> LoadedModel:
    from seviz.models import demo_network as demo_model

    config = demo_model.load_config()
    names = tuple(config["class_names"])
    # The demo's head is fixed (10 CIFAR-10 classes), so options that would change it are refused, not ignored.
    if num_classes is not None and num_classes != len(names):
        raise ModelLoadError(
            f"--num-classes {num_classes}: the demo model {spec!r} has {len(names)} outputs (CIFAR-10); "
            "drop --num-classes"
        )
    if class_names is not None and tuple(n.strip() for n in class_names) != names:
        raise ModelLoadError(
            f"--class-names: the demo model {spec!r} has its own classes ({', '.join(names)}); "
            "drop --class-names"
        )
    model = demo_model.build_demo_model()
    if weights == "pretrained":
        path = demo_model.weights_path()
        if not path.is_file():
            raise ModelLoadError(
                f"the demo weights {str(path)!r} are missing from this installation; reinstall seviz or train them "
                "with data/train_demo_model.py"
            )
        source, sha = "demo", load_weights_file(model, path)
        file_sha: str | None = file_sha256(path)
    else:
        source, sha, file_sha = _apply_weights(model, weights)
    names = tuple(config["class_names"])
    data_config = dict(config["pretrained_cfg"])  # load_model resolves it (the shipped JSON holds lists)
    return LoadedModel(model, spec, spec, source, sha, names, None, data_config, file_sha)


def _is_factory(spec: str) -> bool:
    return (
        ":" in spec
        and not spec.startswith("torchvision:")
        and not spec.startswith("hf-hub:")
        and not spec.startswith("hf_hub:")
    )


def _build_factory(
    spec: str, weights: str, num_classes: int | None, class_names: Sequence[str] | None
) -> LoadedModel:
    import torch

    target, _, factory_name = spec.rpartition(":")
    if target.endswith(".py") or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"model file {target!r} does not exist (from --model {spec!r})")
        module_spec = importlib.util.spec_from_file_location(f"seviz_user_model_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ModelLoadError(f"cannot import {target!r} as a Python module (from --model {spec!r})")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise ModelLoadError(f"cannot import {target!r} for --model {spec!r}: {error}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        available = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ModelLoadError(
            f"{target!r} has no callable {factory_name!r}; it has {', '.join(available[:10]) or 'none'}"
        )
    model = factory(num_classes=num_classes) if num_classes is not None else factory()
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"{spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if weights == "pretrained":
        raise ModelLoadError(
            f"a model from your own code ({spec!r}) has no 'pretrained' weights; pass --weights FILE "
            "(.safetensors or .pth state dict) or --weights random"
        )
    source, sha, file_sha = _apply_weights(model, weights)
    names, ids = _head_classes(model, num_classes or _num_outputs(model), class_names)
    # The model's own timm-style pretrained_cfg / default_cfg, if any; load_model fills the rest.
    data_config = model_data_config(model)
    return LoadedModel(model, spec, spec, source, sha, names, ids, data_config, file_sha)


def _is_torchvision(spec: str) -> bool:
    return spec.startswith("torchvision:")


def _build_torchvision(
    spec: str, weights: str, num_classes: int | None, class_names: Sequence[str] | None
) -> LoadedModel:
    import torchvision

    name = spec.split(":", 1)[1]
    available = torchvision.models.list_models()
    if name not in available:
        import difflib

        close = difflib.get_close_matches(name, available, n=3)
        raise ModelLoadError(
            f"unknown torchvision model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    data_config: dict[str, Any] = {}  # without torchvision's weights, none of its own
    kwargs: dict[str, Any] = {"num_classes": num_classes} if num_classes else {}
    if weights == "pretrained":
        entry = torchvision.models.get_model_weights(name).DEFAULT
        try:
            model = torchvision.models.get_model(name, weights=entry, **kwargs)
        except Exception as error:
            raise _unavailable(spec, error) from None
        source, sha, file_sha = f"torchvision:{entry}", _state_dict_sha256(model), None
        data_config.update(_torchvision_transform_cfg(entry))
    else:
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        source, sha, file_sha = _apply_weights(model, weights)
    names, ids = _head_classes(model, num_classes or _num_outputs(model), class_names)
    return LoadedModel(model, spec, spec, source, sha, names, ids, data_config, file_sha)


def _torchvision_transform_cfg(entry: Any) -> dict[str, Any]:
    transform = entry.transforms()
    crop = transform.crop_size[0]
    resize = transform.resize_size[0]
    return {
        "input_size": (3, crop, crop),
        "crop_pct": crop / resize,
        "interpolation": transform.interpolation.value,
        "mean": tuple(transform.mean),
        "std": tuple(transform.std),
    }


def _build_timm(
    spec: str, weights: str, num_classes: int | None, class_names: Sequence[str] | None
) -> LoadedModel:
    import timm

    name = MODEL_ALIASES.get(spec, spec)
    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        import difflib

        known = list(MODEL_ALIASES) + timm.list_models()
        close = difflib.get_close_matches(spec, known, n=3, cutoff=0.6)
        raise ModelLoadError(
            f"unknown model {spec!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
            + " Use a timm name, torchvision:NAME, or path/to/file.py:factory"
        )
    kwargs: dict[str, Any] = {"num_classes": num_classes} if num_classes else {}
    if weights == "pretrained":
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as error:
            raise _unavailable(name, error) from None
        source, sha, file_sha = f"pretrained:{name}", _state_dict_sha256(model), None
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
        source, sha, file_sha = _apply_weights(model, weights)
    from timm.data import resolve_model_data_config

    data_config = resolve_model_data_config(model)
    names, ids = _head_classes(model, _num_outputs(model), class_names)
    return LoadedModel(model, spec, name, source, sha, names, ids, data_config, file_sha)


def _unavailable(name: str, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not fetch pretrained weights for {name!r} ({type(error).__name__}: {str(error)[:300]}). "
        "seviz takes them from the Hugging Face cache or downloads them; with no network (or HF_HUB_OFFLINE=1) "
        "download them elsewhere and pass the file: --weights path/to/model.safetensors (or .pth)"
    )


# ---------------------------------------------------------------- classes known before a build


def _given_classes(
    spec: str, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None] | None:
    """The outputs' names ``class_names`` gives (the build checks their count), or None: only the build can tell."""
    return (tuple(n.strip() for n in class_names), None) if class_names else None


def _demo_classes(
    spec: str, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None] | None:
    """The demo model's CIFAR-10 classes, from its shipped config (other names or counts are the build's error)."""
    from seviz.models import demo_network as demo_model

    names = tuple(demo_model.load_config()["class_names"])
    if class_names is not None and tuple(n.strip() for n in class_names) != names:
        return None
    return names, None


def _timm_classes(
    spec: str, num_classes: int | None, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None] | None:
    """A timm model's classes from its pretrained config's head size and timm's ImageNet names, as the build names them."""
    if class_names:
        return _given_classes(spec, num_classes, class_names)
    import timm
    from timm.models import get_pretrained_cfg

    name = MODEL_ALIASES.get(spec, spec)
    if not timm.is_model(name.split(".", 1)[0]):
        return None  # the build says which names there are
    config = get_pretrained_cfg(name)
    count = num_classes or (config.num_classes if config is not None else None)
    if not count:
        return None
    # The build's _head_classes on a model whose num_classes is ``count``.
    return imagenet_names(count, {"num_classes": count}) or (tuple(str(i) for i in range(count)), None)


# (matches, build) for each built-in family, in the order they are tried; timm,
# which knows the most names, is the fallback when none matches.
BUILT_IN: list[tuple[Callable[[str], bool], Callable[..., LoadedModel]]] = [
    (_is_demo, _build_demo),
    (_is_factory, _build_factory),
    (_is_torchvision, _build_torchvision),
]
FALLBACK = _build_timm
# For each built-in family: the classes a spec's model will have, where known without building it.
_Classes = tuple[tuple[str, ...], tuple[str, ...] | None]  # (names, WordNet ids or None)
KNOWN_CLASSES: dict[Callable[..., LoadedModel], Callable[..., _Classes | None]] = {
    _build_demo: _demo_classes,
    _build_factory: _given_classes,
    _build_torchvision: _given_classes,
    _build_timm: _timm_classes,
}
