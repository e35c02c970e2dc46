"""JPEG decoding and preprocessing on the model's device (``seviz record --decode gpu``).

On a GPU the model outruns CPU JPEG decoding, so decoding becomes the
bottleneck. With ``--decode gpu`` the DataLoader workers only read file bytes;
the main process decodes a whole batch with ``torchvision.io.decode_jpeg`` on
the device (nvJPEG on CUDA) and resizes, crops and normalises there, following
the same data config as the CPU path (resize the shorter side to
``input_size / crop_pct``, centre crop, mean/std). Files that are not JPEG, or
that the device decoder rejects, are decoded on the CPU (PIL) one by one, and
unreadable ones are skipped as on the CPU path. EXIF rotation is not applied
on this path (nvJPEG ignores it); use the default ``--decode cpu`` for photos
that rely on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from seviz.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8"


def read_bytes(path: str) -> torch.Tensor:
    """A file's bytes as a uint8 tensor (what DataLoader workers do on this path)."""
    import torchvision

    return torchvision.io.read_file(path)


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(3, H, W) uint8 on ``device``; JPEG on the device, anything else through PIL."""
    import io

    import numpy as np
    import torch
    import torchvision

    if bytes(data[:2].tolist()) == _JPEG_MAGIC:
        try:
            return torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device=device)
        except RuntimeError:
            pass  # progressive/CMYK/odd JPEGs some decoders refuse: PIL below
    from seviz.data.images import load_rgb

    image = load_rgb(io.BytesIO(data.numpy().tobytes()))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).to(device)


_TENSOR_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def check_preprocessing(data_config: dict[str, Any]) -> None:
    """Refuse preprocessing the on-device path does not reproduce (it resizes and centre-crops squares).

    Raises:
        DataError: A crop mode other than ``center``, a non-square input size, or an
            interpolation tensors do not have (box, hamming, lanczos are PIL's).
    """
    _, height, width = (int(v) for v in data_config["input_size"])
    mode = data_config.get("crop_mode", "center")
    interpolation = data_config.get("interpolation", "bilinear")
    if mode != "center" or height != width or interpolation not in _TENSOR_INTERPOLATIONS:
        raise DataError(
            "--decode gpu reproduces timm's centre crop of a square input with bilinear, bicubic or nearest "
            f"resizing only; this preprocessing has crop mode {mode!r}, input {height}x{width} and "
            f"{interpolation} resizing: use --decode cpu"
        )


def preprocess(image: torch.Tensor, data_config: dict[str, Any]) -> torch.Tensor:
    """Resize, centre-crop and normalise one (3, H, W) uint8 image like timm's eval transform."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    size = int(data_config["input_size"][-1])
    scale = math.floor(size / float(data_config.get("crop_pct", 1.0)))
    mode = InterpolationMode(str(data_config.get("interpolation", "bilinear")))
    image = F.resize(image, [scale], interpolation=mode, antialias=True)
    image = F.center_crop(image, [size, size])
    image = image.float().div_(255)
    mean = torch.tensor(data_config["mean"], device=image.device).view(3, 1, 1)
    std = torch.tensor(data_config["std"], device=image.device).view(3, 1, 1)
    return (image - mean) / std


def decode_batch(
    encoded: Sequence[torch.Tensor], data_config: dict[str, Any], device: torch.device
) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """Decode and preprocess a batch of encoded files on ``device``.

    Returns:
        (images or None, positions that loaded, (position, reason) of the files skipped).
    """
    import torch

    check_preprocessing(data_config)
    decoded: dict[int, torch.Tensor] = {}
    jpegs = [i for i, data in enumerate(encoded) if bytes(data[:2].tolist()) == _JPEG_MAGIC]
    if device.type == "cuda" and len(jpegs) > 1:
        import torchvision

        try:  # one batched nvJPEG call; any refusal falls back to file-by-file below
            batch = torchvision.io.decode_jpeg(
                [encoded[i] for i in jpegs], mode=torchvision.io.ImageReadMode.RGB, device=device
            )
            decoded = dict(zip(jpegs, batch, strict=True))
        except RuntimeError:
            decoded = {}
    images, loaded, failed = [], [], []
    for position, data in enumerate(encoded):
        if position in decoded:
            images.append(preprocess(decoded[position], data_config))
            loaded.append(position)
            continue
        try:
            images.append(preprocess(_decode_one(data, device), data_config))
            loaded.append(position)
        except Exception as error:  # any decoder failure: skip the file, keep the run
            failed.append((position, f"{type(error).__name__}: {error}"[:200]))
    return (torch.stack(images) if images else None), loaded, failed
