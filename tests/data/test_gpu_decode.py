"""seviz/device_decode.py: device-side decoding matches the CPU (PIL + timm) path.

The CUDA decoder is exercised where a GPU is present; here the same code runs
with ``device=cpu`` (torchvision's CPU JPEG decoder), which checks everything
but nvJPEG itself: byte reading, the PIL fallback, resize/crop/normalise, and
skipping unreadable files.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seviz.data import ImageItem, iterate_batches, load_rgb, make_transform
from seviz.data.gpu_decode import decode_batch, read_bytes
from seviz.models import IMAGENET_DEFAULT_CFG

CONFIG = dict(IMAGENET_DEFAULT_CFG, input_size=(3, 64, 64), crop_pct=0.875, interpolation="bilinear")


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    # Smooth images: resize filters differ slightly between PIL and torch on noise, not on content like this.
    y, x = np.mgrid[0:90, 0:120]
    paths = []
    for k in range(3):
        pixels = np.stack([(x * (k + 1)) % 256, (y * 2) % 256, ((x + y) * 3) % 256], axis=-1).astype(np.uint8)
        jpg = tmp_path / f"{k}.jpg"
        Image.fromarray(pixels).save(jpg, quality=95)
        paths.append(jpg)
    png = tmp_path / "palette.png"
    Image.fromarray(rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)).convert("P").save(png)
    paths.append(png)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths.append(bad)
    return paths


def test_device_path_matches_the_cpu_transform(files):
    encoded = [read_bytes(str(p)) for p in files]
    images, loaded, failed = decode_batch(encoded, CONFIG, torch.device("cpu"))
    assert loaded == [0, 1, 2, 3]
    assert [position for position, _ in failed] == [4]
    assert images.shape == (4, 3, 64, 64)
    reference = torch.stack([make_transform(CONFIG)(load_rgb(p)) for p in files[:4]])
    difference = (images - reference).abs()
    # Same resize/crop/normalise; the JPEG decoders and resize kernels differ by a few grey levels.
    assert difference.mean() < 0.05
    assert difference.max() < 0.5


def test_iterate_batches_on_device_reports_skipped_files(files):
    items = [ImageItem(str(p), 0, "x") for p in files]
    batches = list(iterate_batches(items, CONFIG, batch_size=3, decode_device=torch.device("cpu")))
    assert [b.consumed for b in batches] == [3, 2]
    assert sum(len(b.items) for b in batches) == 4
    assert [path for b in batches for path, _ in b.skipped] == [str(files[4])]


@pytest.mark.parametrize(
    "change",
    [{"crop_mode": "squash"}, {"input_size": (3, 64, 48)}, {"interpolation": "lanczos"}],
)
def test_device_path_refuses_preprocessing_it_does_not_reproduce(files, change):
    from seviz.data.gpu_decode import check_preprocessing
    from seviz.errors import DataError

    config = {**CONFIG, **change}
    with pytest.raises(DataError, match="use --decode cpu"):
        check_preprocessing(config)
    with pytest.raises(DataError, match="use --decode cpu"):  # not a skipped image: the whole batch
        decode_batch([read_bytes(str(files[0]))], config, torch.device("cpu"))
    check_preprocessing(dict(CONFIG, interpolation="bicubic"))
