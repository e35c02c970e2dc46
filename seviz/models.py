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
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

IMAGENET_DEFAULT_CFG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}

# The paper's model names -> timm's ports of the authors' Caffe weights.
MODEL_ALIASES: dict[str, str] = {
    "se_resnet50": "legacy_seresnet50.in1k",
    "se_resnet101": "legacy_seresnet101.in1k",
    "se_resnet152": "legacy_seresnet152.in1k",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d.in1k",
    "se_resnext101_32x4d": "legacy_seresnext101_32x4d.in1k",
    "senet154": "legacy_senet154.in1k",
}


class ModelLoadError(ValueError):
    """A model or its weights could not be loaded; the message says how to fix it."""


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
            crop_pct, crop_mode, mean, std).
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
        }


@dataclass(frozen=True)
class _Builder:
    """A registered model family: builds a network from a spec."""

    matches: Callable[[str], bool]
    build: Callable[..., LoadedModel]


_BUILDERS: list[_Builder] = []


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
) -> LoadedModel:
    """Build a model from a spec and load its weights.

    Args:
        spec: See the module docstring.
        weights: ``pretrained``, ``random`` or a weights file.
        num_classes: Output size for a user's model, or to override timm's head.
        class_names: Names of the outputs (for non-ImageNet models).
        device: Where to put the model.

    Returns:
        The model in eval mode, with provenance.

    Raises:
        ModelLoadError: Unknown model, unavailable pretrained weights, or a weights
            file that does not fit the model.
    """
    if not spec or not spec.strip():
        raise ModelLoadError("--model is empty; name a model such as se_resnet50 or se_resnet50_cifar10")
    spec = spec.strip()
    # Registered families first; timm, which knows the most names, is the fallback.
    build = next((b.build for b in _BUILDERS if b.matches(spec)), _build_timm)
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
    return loaded


# ---------------------------------------------------------------- weights


def _state_dict_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Read a weights file: (state dict, safetensors metadata or {})."""
    import torch

    if not path.is_file():
        raise ModelLoadError(
            f"weights file {str(path)!r} does not exist; pass an existing .safetensors/.pth file"
        )
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types
            raise ModelLoadError(f"cannot read safetensors file {str(path)!r}: {error}") from None
        return state, metadata
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelLoadError(
            f"cannot load {str(path)!r} with torch.load(weights_only=True): {error}. seviz loads tensors only "
            "(no pickled code); save a state_dict, or convert to .safetensors"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelLoadError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict of tensors")
    return state, {}


def load_weights_file(model: nn.Module, path: Path) -> str:
    """Load a weights file into ``model`` strictly; returns the loaded state dict's SHA-256.

    Pruned models saved by ``seviz prune`` carry their edits in the
    safetensors metadata; they are applied to ``model`` before loading.
    """
    state, metadata = read_state_dict(path)
    if "seviz_edits" in metadata:
        from seviz.pruned_files import apply_saved_edits

        apply_saved_edits(model, json.loads(metadata["seviz_edits"]))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:5])})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} of another shape (first: {'; '.join(wrong_shape[:5])})")
        raise ModelLoadError(
            f"weights {str(path)!r} do not fit model {type(model).__name__}: "
            + "; ".join(parts)
            + ". Check --model (and --num-classes) match the checkpoint"
        )
    model.load_state_dict(state, strict=True)
    return _state_dict_sha256(model)


def _apply_weights(model: nn.Module, weights: str) -> tuple[str, str, str | None]:
    """Load ``weights`` (random or a file) into model; returns (source, sha256, file sha256)."""
    if weights == "random":
        return "random", _state_dict_sha256(model), None
    path = Path(weights).expanduser()
    return str(path.resolve()), load_weights_file(model, path), file_sha256(path)


# ---------------------------------------------------------------- class names


def imagenet_names(
    num_classes: int, model: nn.Module | None = None
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


# ---------------------------------------------------------------- builders


def _is_demo(spec: str) -> bool:
    from seviz.demo_model import DEMO_MODEL_NAME

    return spec == DEMO_MODEL_NAME


@register_model_builder(_is_demo)
def _build_demo(
    spec: str, weights: str, num_classes: int | None, class_names: Sequence[str] | None
) -> LoadedModel:
    from seviz import demo_model

    config = demo_model.load_config()
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
    data_config = _clean_data_config(dict(config["pretrained_cfg"]))  # the shipped JSON holds lists
    return LoadedModel(model, spec, spec, source, sha, names, None, data_config, file_sha)


def _is_factory(spec: str) -> bool:
    return (
        ":" in spec
        and not spec.startswith("torchvision:")
        and not spec.startswith("hf-hub:")
        and not spec.startswith("hf_hub:")
    )


@register_model_builder(_is_factory)
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
    data_config = dict(IMAGENET_DEFAULT_CFG)
    data_config.update(getattr(model, "pretrained_cfg", None) or {})
    return LoadedModel(model, spec, spec, source, sha, names, ids, _clean_data_config(data_config), file_sha)


def _is_torchvision(spec: str) -> bool:
    return spec.startswith("torchvision:")


@register_model_builder(_is_torchvision)
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
    data_config = dict(IMAGENET_DEFAULT_CFG)
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
    return LoadedModel(model, spec, spec, source, sha, names, ids, _clean_data_config(data_config), file_sha)


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
    from timm.data import resolve_data_config

    data_config = resolve_data_config({}, model=model)
    names, ids = _head_classes(model, _num_outputs(model), class_names)
    return LoadedModel(model, spec, name, source, sha, names, ids, _clean_data_config(data_config), file_sha)


def _unavailable(name: str, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not fetch pretrained weights for {name!r} ({type(error).__name__}: {str(error)[:300]}). "
        "seviz takes them from the Hugging Face cache or downloads them; with no network (or HF_HUB_OFFLINE=1) "
        "download them elsewhere and pass the file: --weights path/to/model.safetensors (or .pth)"
    )


def _clean_data_config(config: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")
    clean = {k: config[k] for k in keys if k in config}
    clean["input_size"] = tuple(int(v) for v in clean.get("input_size", (3, 224, 224)))
    clean["mean"] = tuple(float(v) for v in clean.get("mean", IMAGENET_DEFAULT_CFG["mean"]))
    clean["std"] = tuple(float(v) for v in clean.get("std", IMAGENET_DEFAULT_CFG["std"]))
    clean.setdefault("interpolation", "bilinear")
    clean.setdefault("crop_pct", 0.875)
    clean.setdefault("crop_mode", "center")
    return clean
