"""seviz/data/loader.py: the warning that images much smaller than the model input are being upscaled."""

from __future__ import annotations

from _images import noise_image

from seviz.data import ImageItem, image_size, upscaling_note
from seviz.models import IMAGENET_DEFAULT_CFG


def _items(tmp_path, sizes):
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        noise_image(size, seed=i).save(path)
        items.append(ImageItem(str(path), 0, "x"))
    return items


def test_small_images_for_a_large_input_are_reported_as_upscaled(tmp_path):
    items = _items(tmp_path, [(32, 32)] * 5 + [(40, 30)] * 4 + [(500, 400)] * 2)
    note = upscaling_note(items, IMAGENET_DEFAULT_CFG)
    assert note is not None
    assert "being upscaled" in note
    assert "median shorter side is 32 px (11 of 11 files sampled)" in note
    assert "model input 224x224" in note and "about 7x" in note
    assert "--input-size 3 32 32" in note and "--data-config FILE" in note


def test_no_warning_when_the_images_are_at_least_half_the_input(tmp_path):
    items = _items(tmp_path, [(120, 112)] * 3)  # shorter side 112 = half of 224: not "much smaller"
    assert upscaling_note(items, IMAGENET_DEFAULT_CFG) is None
    assert upscaling_note(items, dict(IMAGENET_DEFAULT_CFG, input_size=(3, 230, 300))) is not None
    assert upscaling_note([], IMAGENET_DEFAULT_CFG) is None


def test_the_check_reads_a_sample_of_headers_only(tmp_path):
    items = _items(tmp_path, [(20, 20)] * 3)
    for i in range(200):  # 200 entries for the same three files: only a spread-out sample is read
        items.append(items[i % 3])
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "0.png").read_bytes()[:100])  # a header, no pixels
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert image_size(truncated) == (20, 20)  # PIL reads the header lazily
    assert image_size(broken) is None
    note = upscaling_note([ImageItem(str(broken), 0, "x"), *items], IMAGENET_DEFAULT_CFG, sample=16)
    assert note is not None and "(15 of 204 files sampled)" in note  # 16 read, the broken one left out
