"""Tests for seviz/data.py: the folder layouts, robust decoding and the batches fed to the model."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from _images import (
    noise_image,
    write_broken_images,
    write_class_folders,
    write_real_world_images,
    write_tiny_model,
)
from PIL import Image
from torch import nn

from seviz.data import DataError, find_images, iterate_batches, load_rgb, make_transform
from seviz.models import ClassResolutionError, LoadedModel, imagenet_names

SMALL_CONFIG = {
    "input_size": (3, 32, 32),
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.25, 0.25, 0.25),
}


@pytest.fixture(scope="module")
def imagenet():
    names, ids = imagenet_names(1000)
    return LoadedModel(
        nn.Identity(), "imagenet_head", "imagenet_head", "random", "", names, ids, SMALL_CONFIG
    )


@pytest.fixture(scope="module")
def cats_and_dogs():
    names = ("airplane", "cat", "dog")
    return LoadedModel(nn.Identity(), "pets", "pets", "random", "", names, None, SMALL_CONFIG)


# ---------------------------------------------------------------- layouts


def test_class_name_folders(tmp_path, imagenet):
    write_class_folders(tmp_path, {"goldfish": 3, "pug": 2, "holiday_photos": 2})
    items = find_images(tmp_path, imagenet)
    assert [(i.label, i.class_name) for i in items] == [(1, "goldfish")] * 3 + [(254, "pug")] * 2
    assert [os.path.basename(i.path) for i in items[:3]] == ["img_000.jpg", "img_001.jpg", "img_002.jpg"]


def test_wordnet_id_folders(tmp_path, imagenet):
    write_class_folders(tmp_path, {"n02110958": 2, "n01443537": 2})
    items = find_images(tmp_path, imagenet, classes="pug,goldfish")
    assert [(i.label, i.class_name) for i in items] == [(254, "pug")] * 2 + [(1, "goldfish")] * 2
    assert all(f"{os.sep}n02110958{os.sep}" in i.path for i in items[:2])


def write_flat_val(folder, labels: dict[str, str], csv_in_parent: bool = False):
    folder.mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    for i, (image_id, wnid) in enumerate(labels.items()):
        noise_image((20, 20), seed=i).save(folder / f"{image_id}.JPEG", format="JPEG")
        rows.append(f"{image_id},{wnid} 1 2 10 12 {wnid} 3 4 15 16")
    (folder.parent if csv_in_parent else folder).joinpath("LOC_val_solution.csv").write_text(
        "\n".join(rows) + "\n"
    )


@pytest.mark.parametrize("csv_in_parent", [False, True])
def test_flat_val_folder_with_its_solution_file(tmp_path, imagenet, csv_in_parent):
    labels = {
        "ILSVRC2012_val_00000004": "n02110958",
        "ILSVRC2012_val_00000001": "n01443537",
        "ILSVRC2012_val_00000003": "n01443537",
        "ILSVRC2012_val_00000002": "n01440764",
    }
    write_flat_val(tmp_path / "val", labels, csv_in_parent)
    items = find_images(tmp_path / "val", imagenet)
    assert [(os.path.basename(i.path), i.label) for i in items] == [
        ("ILSVRC2012_val_00000002.JPEG", 0),
        ("ILSVRC2012_val_00000001.JPEG", 1),
        ("ILSVRC2012_val_00000003.JPEG", 1),
        ("ILSVRC2012_val_00000004.JPEG", 254),
    ]
    chosen = find_images(tmp_path / "val", imagenet, classes="goldfish", images_per_class=1)
    assert [(os.path.basename(i.path), i.label) for i in chosen] == [("ILSVRC2012_val_00000001.JPEG", 1)]


def test_images_per_class_takes_the_first_files_in_sorted_order(tmp_path, cats_and_dogs):
    folder = tmp_path / "cat"
    folder.mkdir()
    for name in ["m.png", "b.jpg", "z.jpeg", "a.JPG", "k.bmp"]:  # created out of order
        noise_image((8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    first = find_images(tmp_path, cats_and_dogs, images_per_class=3)
    assert [os.path.basename(i.path) for i in first] == ["a.JPG", "b.jpg", "k.bmp"]
    assert find_images(tmp_path, cats_and_dogs, images_per_class=3) == first
    assert len(find_images(tmp_path, cats_and_dogs)) == 5
    with pytest.raises(DataError, match="at least 1"):
        find_images(tmp_path, cats_and_dogs, images_per_class=0)


def test_a_relative_data_folder_gives_absolute_image_paths(tmp_path, cats_and_dogs, monkeypatch):
    """The store names images so that `seviz attribute` and the app find them from any folder."""
    write_class_folders(tmp_path / "data", {"cat": 2})
    monkeypatch.chdir(tmp_path)
    items = find_images("data", cats_and_dogs)
    folder = (tmp_path / "data" / "cat").resolve()
    assert [i.path for i in items] == [str(folder / f"img_{k:03d}.jpg") for k in range(2)]


# ---------------------------------------------------------------- errors


def test_missing_folder_is_an_error(tmp_path, cats_and_dogs):
    with pytest.raises(FileNotFoundError, match="does not exist; pass --data"):
        find_images(tmp_path / "nowhere", cats_and_dogs)


def test_a_class_with_no_images_is_an_error(tmp_path, imagenet):
    write_class_folders(tmp_path, {"goldfish": 2})
    (tmp_path / "n02110958").mkdir()  # pug: an empty folder
    with pytest.raises(DataError, match=r"class 'pug' \(n02110958\) has no images"):
        find_images(tmp_path, imagenet, classes="goldfish,pug")
    with pytest.raises(DataError, match=r"class 'tench' \(n01440764\) has no images"):
        find_images(tmp_path, imagenet, classes="tench")


def test_no_class_folder_is_an_error_with_a_hint(tmp_path, imagenet):
    write_class_folders(tmp_path / "imagenet", {"train": 1, "val": 1})
    with pytest.raises(DataError, match="it has train/, val/: pass one of those as --data"):
        find_images(tmp_path / "imagenet", imagenet)


@pytest.mark.parametrize(
    "setup, error, message",
    [
        ("missing", FileNotFoundError, "does not exist"),
        ("empty_class", DataError, "has no images"),
        ("unknown_class", ClassResolutionError, "did you mean 'cat'"),
    ],
)
def test_data_errors_come_before_any_forward_pass(tmp_path, setup, error, message):
    from seviz.recording import record

    model_file = write_tiny_model(tmp_path)  # `exploding`: any forward pass raises AssertionError
    write_class_folders(tmp_path / "data", {"cat": 2})
    (tmp_path / "data" / "dog").mkdir()
    data = tmp_path / ("nowhere" if setup == "missing" else "data")
    classes = {"missing": None, "empty_class": "cat,dog", "unknown_class": "kat"}[setup]
    with pytest.raises(error, match=message):
        record(
            model=f"{model_file}:exploding",
            data=data,
            out=tmp_path / "store.h5",
            classes=classes,
            weights="random",
            class_names=["cat", "dog"],
            device="cpu",
            progress=False,
        )
    assert not (tmp_path / "store.h5").exists()


# ---------------------------------------------------------------- decoding real-world images


@pytest.fixture(scope="module")
def real_world(tmp_path_factory):
    return write_real_world_images(tmp_path_factory.mktemp("real"))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int64)


def test_grayscale_palette_and_cmyk_become_rgb(real_world):
    gray = load_rgb(real_world["grayscale"])
    assert gray.mode == "RGB"
    raw = pixels(Image.open(real_world["grayscale"]))
    assert (pixels(gray) == raw[:, :, None]).all()
    for kind in ("palette", "cmyk"):
        with Image.open(real_world[kind]) as raw_image:
            assert raw_image.mode in ("P", "CMYK")
            expected = pixels(raw_image.convert("RGB"))
        loaded = load_rgb(real_world[kind])
        assert loaded.mode == "RGB" and (pixels(loaded) == expected).all()


def test_transparent_pixels_are_composited_on_white(real_world):
    with Image.open(real_world["rgba"]) as raw_image:
        raw = pixels(raw_image)
    loaded = pixels(load_rgb(real_world["rgba"]))
    assert (loaded[:, :10] == 255).all()  # transparent columns
    assert (loaded[:, 10:] == raw[:, 10:, :3]).all()  # opaque ones untouched


def test_exif_rotation_is_applied(real_world):
    with Image.open(real_world["exif_rotated"]) as raw_image:
        assert raw_image.size == (50, 30)
        assert raw_image.getexif()[0x0112] == 6
        upright = pixels(raw_image.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    loaded = load_rgb(real_world["exif_rotated"])
    assert loaded.size == (30, 50)
    assert (pixels(loaded) == upright).all()


def test_sixteen_bit_png_is_scaled_to_eight_bits(real_world):
    with Image.open(real_world["sixteen_bit"]) as raw_image:
        assert raw_image.mode.startswith("I")
    loaded = pixels(load_rgb(real_world["sixteen_bit"]))
    assert (loaded == 40000 // 256).all()


@pytest.mark.parametrize("kind", ["odd_size", "one_pixel"])
def test_odd_sizes_become_model_inputs(real_world, kind):
    tensor = make_transform(SMALL_CONFIG)(load_rgb(real_world[kind]))
    assert tensor.shape == (3, 32, 32) and torch.isfinite(tensor).all()


def test_unreadable_files_raise_oserror(tmp_path):
    noise_image().save(tmp_path / "good.jpg")
    for path in write_broken_images(tmp_path, tmp_path / "good.jpg").values():
        with pytest.raises(OSError):
            load_rgb(path)


def test_transform_follows_the_data_config():
    config = {**SMALL_CONFIG, "input_size": (3, 24, 24), "mean": (0.2, 0.4, 0.6), "std": (0.5, 0.5, 0.5)}
    image = Image.new("RGB", (40, 30), (51, 102, 153))  # 0.2, 0.4, 0.6 exactly
    tensor = make_transform(config)(image)
    assert tensor.shape == (3, 24, 24)
    torch.testing.assert_close(tensor, torch.zeros(3, 24, 24), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- batches


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_keep_order_and_report_unreadable_files(tmp_path, cats_and_dogs, workers):
    images = write_class_folders(tmp_path, {"cat": 3, "dog": 2}, size=(40, 40))
    broken = write_broken_images(tmp_path / "cat", images["cat"][0])
    items = find_images(tmp_path, cats_and_dogs)
    assert len(items) == 8
    batches = list(iterate_batches(items, SMALL_CONFIG, batch_size=3, workers=workers))
    assert [b.consumed for b in batches] == [3, 3, 2]
    assert sum(len(b.items) for b in batches) == 5
    assert [i.path for b in batches for i in b.items] == [str(p) for p in images["cat"] + images["dog"]]
    assert {path for b in batches for path, _ in b.skipped} == {str(p) for p in broken.values()}
    for batch in batches:
        assert batch.images is None or batch.images.shape == (len(batch.items), 3, 32, 32)
    resumed = list(iterate_batches(items, SMALL_CONFIG, batch_size=3, workers=workers, start=3))
    assert [i.path for b in resumed for i in b.items] == [i.path for b in batches[1:] for i in b.items]
