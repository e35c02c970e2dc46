"""Synthetic images and a tiny SE network for the recording tests (no downloads).

``write_tiny_model`` writes a user model file (``--model FILE.py:factory``) holding
a timm ResNet with one SE BasicBlock per stage, so its gates are SE_2_1, SE_3_1,
SE_4_1 and SE_5_1 with 8/16/24/32 channels. Its factories plant behaviour:

* ``tiny``: the plain network (32x32 input from its ``pretrained_cfg``);
* ``paced``: each forward pass sleeps ``$TINY_SLEEP`` seconds (default 0.05), so a
  run can be interrupted mid-way;
* ``interrupted``: forward pass number ``$TINY_STOP_AT`` raises KeyboardInterrupt
  (pass 1 is seviz's probe pass);
* ``exploding``: any forward pass raises, to show that an error came before one.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

TINY_CHANNELS = {"SE_2_1": 8, "SE_3_1": 16, "SE_4_1": 24, "SE_5_1": 32}

TINY_MODEL_SOURCE = textwrap.dedent(
    """
    import os
    import time

    from timm.models.resnet import BasicBlock, ResNet


    def tiny(num_classes=2):
        model = ResNet(
            block=BasicBlock,
            layers=(1, 1, 1, 1),
            channels=(8, 16, 24, 32),
            num_classes=num_classes,
            block_args={"attn_layer": "se"},
        )
        model.pretrained_cfg = {
            "input_size": (3, 32, 32),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25),
        }
        return model


    def paced(num_classes=2):
        model = tiny(num_classes)
        seconds = float(os.environ.get("TINY_SLEEP", "0.05"))
        model.register_forward_pre_hook(lambda module, inputs: time.sleep(seconds))
        return model


    def interrupted(num_classes=2):
        model = tiny(num_classes)
        calls = [0]

        def hook(module, inputs):
            calls[0] += 1
            if calls[0] == int(os.environ.get("TINY_STOP_AT", "0")):
                raise KeyboardInterrupt

        model.register_forward_pre_hook(hook)
        return model


    def exploding(num_classes=2):
        model = tiny(num_classes)

        def hook(module, inputs):
            raise AssertionError("the model ran a forward pass")

        model.register_forward_pre_hook(hook)
        return model
    """
)


def write_tiny_model(folder: Path) -> Path:
    """Write the tiny model file into ``folder``; returns its path."""
    path = Path(folder) / "tiny_model.py"
    path.write_text(TINY_MODEL_SOURCE)
    return path


def noise_image(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """An RGB image of uniform noise, ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_class_folders(
    root: Path, classes: dict[str, int], size: tuple[int, int] = (64, 64), suffix: str = ".jpg"
) -> dict[str, list[Path]]:
    """``root/<class>/img_NNN<suffix>`` noise images; returns the paths by class, sorted."""
    written: dict[str, list[Path]] = {}
    for c, (name, count) in enumerate(classes.items()):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = []
        for i in range(count):
            path = folder / f"img_{i:03d}{suffix}"
            noise_image(size, seed=1000 * c + i).save(path)
            written[name].append(path)
    return written


def write_real_world_images(folder: Path) -> dict[str, Path]:
    """One file per awkward kind of real-world image; returns {kind: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = noise_image((50, 30), seed=7)
    paths = {
        "grayscale": folder / "grayscale.png",
        "cmyk": folder / "cmyk.jpg",
        "palette": folder / "palette.png",
        "rgba": folder / "rgba.png",
        "exif_rotated": folder / "exif_rotated.jpg",
        "odd_size": folder / "odd_size.png",
        "one_pixel": folder / "one_pixel.png",
        "sixteen_bit": folder / "sixteen_bit.png",
    }
    base.convert("L").save(paths["grayscale"])
    base.convert("CMYK").save(paths["cmyk"])
    base.convert("P").save(paths["palette"])
    rgba = np.asarray(base.convert("RGBA")).copy()
    rgba[:, :10, 3] = 0  # the left 10 columns are fully transparent
    Image.fromarray(rgba).save(paths["rgba"])
    exif = base.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    base.save(paths["exif_rotated"], exif=exif, quality=95)
    noise_image((3, 301), seed=8).save(paths["odd_size"])
    noise_image((1, 1), seed=9).save(paths["one_pixel"])
    Image.fromarray(np.full((30, 50), 40000, dtype=np.uint16)).save(paths["sixteen_bit"])
    return paths


def write_broken_images(folder: Path, good: Path) -> dict[str, Path]:
    """Unreadable files with image suffixes: truncated JPEG, not an image, empty."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = Path(good).read_bytes()
    paths = {
        "truncated": folder / "truncated.jpg",
        "not_an_image": folder / "not_an_image.png",
        "empty": folder / "empty.jpg",
    }
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["not_an_image"].write_bytes(b"this is not an image\n" * 20)
    paths["empty"].write_bytes(b"")
    return paths
