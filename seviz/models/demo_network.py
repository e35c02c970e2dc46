"""The offline demo model: SE-ResNet-50's block structure, sized for CIFAR-10.

SE-ResNet-50 (Hu et al., arXiv 1709.01507, Table 1) has bottleneck blocks in
stages of 3, 4, 6 and 3 with an SE module in every block, so its gates are
named SE_2_1 ... SE_5_3. The demo model keeps exactly that structure (it *is*
a timm ``ResNet`` with ``attn_layer='se'``) and changes only what a 32x32
input and two CPU cores need:

* bottleneck widths 16/32/64/128 (outputs 64/128/256/512), a quarter of the
  original 64/128/256/512 (outputs 256/512/1024/2048);
* a CIFAR stem: one 3x3 stride-1 convolution and no max-pool, so stage 2 sees
  32x32 feature maps.

The weights are trained by ``data/train_demo_model.py`` and shipped in
``data/se_resnet50_cifar10.safetensors`` beside a JSON config holding the
class names and preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_MODEL_NAME = "se_resnet50_cifar10"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel statistics of the CIFAR-10 training images (the common values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
BOTTLENECK_WIDTHS = (16, 32, 64, 128)
STAGE_DEPTHS = (3, 4, 6, 3)


def data_dir() -> Path:
    """Folder holding the shipped demo weights, config and sample images.

    In a source checkout or editable install this is the repository's
    ``data/``; a built wheel carries the same files as ``seviz/_data``.
    """
    package = Path(__file__).resolve().parent.parent  # seviz/
    installed = package / "_data"
    return installed if installed.is_dir() else package.parent / "data"


def weights_path() -> Path:
    """Path of the shipped demo weights (safetensors)."""
    return data_dir() / f"{DEMO_MODEL_NAME}.safetensors"


def config_path() -> Path:
    """Path of the shipped demo config (class names, preprocessing, training record)."""
    return data_dir() / f"{DEMO_MODEL_NAME}.json"


def sample_dir() -> Path:
    """Folder of shipped CIFAR-10 test images, one sub-folder per class."""
    return data_dir() / "cifar10_sample"


def load_config() -> dict[str, Any]:
    """Read the shipped demo config, or the built-in defaults when it is absent."""
    path = config_path()
    if path.is_file():
        return json.loads(path.read_text())
    return {"class_names": list(CIFAR10_CLASSES), "pretrained_cfg": demo_pretrained_cfg()}


def demo_pretrained_cfg() -> dict[str, Any]:
    """timm-style data config: 32x32 input, no resize beyond 32, CIFAR mean/std."""
    return {
        "input_size": (3, 32, 32),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "num_classes": len(CIFAR10_CLASSES),
    }


def build_demo_model(num_classes: int = len(CIFAR10_CLASSES)):
    """Build the (untrained) demo network: SE-ResNet-50 blocks with a CIFAR stem.

    Args:
        num_classes: Size of the classifier head.

    Returns:
        A timm ``ResNet`` whose 16 SE gates are found as SE_2_1 ... SE_5_3.
    """
    from timm.models.resnet import Bottleneck, ResNet
    from torch import nn

    model = ResNet(
        block=Bottleneck,  # type: ignore[arg-type]  # timm's annotation says an instance; it takes the class
        layers=STAGE_DEPTHS,
        channels=BOTTLENECK_WIDTHS,
        num_classes=num_classes,
        block_args={"attn_layer": "se"},
    )
    # CIFAR stem: 32x32 inputs keep their resolution into stage 2. (timm
    # annotates conv1 and maxpool with the deep stem's types; the plain stem
    # built here is a Conv2d.)
    stem_width = int(getattr(model.conv1, "out_channels"))  # noqa: B009  # 64, timm's plain stem
    setattr(model, "conv1", nn.Conv2d(3, stem_width, 3, stride=1, padding=1, bias=False))  # noqa: B010
    setattr(model, "maxpool", nn.Identity())  # noqa: B010
    model.pretrained_cfg = demo_pretrained_cfg()  # type: ignore[assignment]  # timm keeps a dict here
    return model
