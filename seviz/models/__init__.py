"""The networks seviz studies: building them, loading their weights, their class space.

Rooms: :mod:`~seviz.models.registry` (:func:`load_model`, the model families),
:mod:`~seviz.models.builders` (timm, torchvision, user factories, the demo),
:mod:`~seviz.models.weights` (weights files and hashes),
:mod:`~seviz.models.pruned_weights` (the pruned-model file format, so any loader
rebuilds a pruned network), :mod:`~seviz.models.preprocessing` (data configs),
:mod:`~seviz.models.classes` (class names, ids and synonyms),
:mod:`~seviz.models.demo_network` (the shipped CIFAR-10 SE-ResNet-50).
"""

from seviz.errors import ClassResolutionError, DataConfigError, ModelLoadError
from seviz.models.builders import MODEL_ALIASES, imagenet_names
from seviz.models.classes import ClassRef, ClassSpace, ModelClasses, resolve_classes, split_class_list
from seviz.models.loaded import LoadedModel
from seviz.models.preprocessing import (
    DATA_CONFIG_KEYS,
    IMAGENET_DEFAULT_CFG,
    DataConfigRequest,
    Preprocessing,
    resolve_preprocessing,
)
from seviz.models.registry import (
    check_classes,
    classes_before_building,
    load_model,
    register_model_builder,
    runs_user_code,
    weights_for_source,
)
from seviz.models.weights import file_sha256, load_weights_file, read_state_dict

__all__ = [
    "DATA_CONFIG_KEYS",
    "IMAGENET_DEFAULT_CFG",
    "MODEL_ALIASES",
    "ClassRef",
    "ClassResolutionError",
    "ClassSpace",
    "DataConfigError",
    "DataConfigRequest",
    "LoadedModel",
    "ModelClasses",
    "ModelLoadError",
    "Preprocessing",
    "check_classes",
    "classes_before_building",
    "file_sha256",
    "imagenet_names",
    "load_model",
    "load_weights_file",
    "read_state_dict",
    "register_model_builder",
    "resolve_classes",
    "resolve_preprocessing",
    "runs_user_code",
    "split_class_list",
    "weights_for_source",
]
