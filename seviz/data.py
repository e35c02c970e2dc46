"""Find the images to record and turn them into model inputs.

``--data DIR`` may be:

* a tree of class folders named by WordNet id (ImageNet ``train/`` or ``val/``)
  or by class name (``cat/``, ``dog/``);
* a flat ImageNet validation folder with its ground truth
  ``LOC_val_solution.csv`` (in the folder or beside it).

Files are taken in sorted order, so ``--images-per-class N`` picks the same
images on every run. Preprocessing follows the model's data config (timm's
``create_transform``: resize, crop, interpolation, mean/std). Grayscale, CMYK,
palette and 16-bit images are converted to RGB, transparent pixels are
composited onto white, EXIF rotation is applied. A file that cannot be decoded
is skipped with a warning and listed in the store, never aborting a run.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from seviz.classes import ClassResolutionError, ClassSpace, resolve_classes
from seviz.models import LoadedModel

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
VAL_SOLUTION = "LOC_val_solution.csv"


class DataError(ValueError):
    """The data folder cannot provide the requested images."""


@dataclass(frozen=True)
class ImageItem:
    """One image to record, with its ground-truth class."""

    path: str
    label: int
    class_name: str


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _val_solution(data_dir: Path) -> Path | None:
    for candidate in (data_dir / VAL_SOLUTION, data_dir.parent / VAL_SOLUTION):
        if candidate.is_file():
            return candidate
    return None


def find_images(
    data_dir: str | Path,
    loaded: LoadedModel,
    classes: str | Sequence[str] | None = None,
    images_per_class: int | None = None,
) -> list[ImageItem]:
    """List the images to record, in a deterministic order (class, then file name).

    Args:
        data_dir: See the module docstring.
        loaded: The model whose classes label the images.
        classes: Class names to keep (all classes found when None).
        images_per_class: Keep the first N files of each class.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist.
        DataError: No image of a requested class, or no class folder recognised.
        ClassResolutionError: An unknown or ambiguous class name.
    """
    root = Path(data_dir).expanduser().resolve()  # the store names images by absolute path
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {str(data_dir)!r} does not exist; pass --data with a folder of images"
        )
    if images_per_class is not None and images_per_class < 1:
        raise DataError(f"--images-per-class must be at least 1, got {images_per_class}")
    space = ClassSpace(loaded)
    wanted = resolve_classes(classes, loaded) if classes else None

    by_class: dict[int, list[Path]] = {}
    solution = _val_solution(root)
    if solution is not None and loaded.class_ids and _image_files(root):
        ids = {wnid: i for i, wnid in enumerate(loaded.class_ids)}
        with open(solution, newline="") as handle:
            for row in csv.DictReader(handle):
                wnid = row["PredictionString"].split()[0]
                for suffix in (".JPEG", ".jpeg", ".jpg", ".png"):
                    image = root / f"{row['ImageId']}{suffix}"
                    if image.is_file():
                        by_class.setdefault(ids[wnid], []).append(image)
                        break
        for paths in by_class.values():
            paths.sort()
    else:
        unmatched = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            index = space.folder_class(folder.name)
            if index is None:
                unmatched.append(folder.name)
                continue
            by_class.setdefault(index, []).extend(_image_files(folder))
        if not by_class:
            hint = ""
            if {"train", "val", "test"} & set(unmatched):
                splits = sorted({"train", "val", "test"} & set(unmatched))
                hint = f" (it has {', '.join(s + '/' for s in splits)}: pass one of those as --data)"
            raise DataError(
                f"no class folder under {str(root)!r} matches the model's classes{hint}; expected folders named by "
                f"WordNet id (n01443537) or class name ({', '.join(loaded.class_names[:3])}, ...), or a flat "
                f"ImageNet val folder with {VAL_SOLUTION}"
            )
        if unmatched:
            log.warning(
                "ignoring %d folders that name no class of the model: %s",
                len(unmatched),
                ", ".join(unmatched[:5]),
            )

    chosen = [r.index for r in wanted] if wanted else sorted(by_class)
    items: list[ImageItem] = []
    for index in chosen:
        paths = by_class.get(index, [])
        if not paths:
            ref = space.ref(index)
            raise DataError(
                f"class {ref.describe()} has no images under {str(root)!r}; looked for a folder named "
                f"{ref.id or ref.name}/ holding .jpg/.png files"
            )
        for path in paths[:images_per_class]:
            items.append(ImageItem(str(path), index, loaded.class_names[index]))
    return items


def load_rgb(path: str | Path | BinaryIO) -> Image.Image:
    """Decode an image file to RGB: EXIF rotation applied, alpha on white, 16-bit scaled.

    Raises:
        OSError: The file is missing, truncated or not an image.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def make_transform(data_config: dict[str, Any]):
    """The model's eval preprocessing (timm ``create_transform``) as a PIL -> tensor callable."""
    from timm.data import create_transform

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return create_transform(**{k: data_config[k] for k in keys if k in data_config}, is_training=False)


class _ImageDataset:
    """Map-style dataset: (tensor or None, position, failure reason)."""

    def __init__(self, items: Sequence[ImageItem], transform) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int):
        item = self.items[position]
        try:
            return self.transform(load_rgb(item.path)), position, ""
        except Exception as error:  # any decoder failure: skip the file, keep the run
            return None, position, f"{type(error).__name__}: {error}"[:200]


class _BytesDataset(_ImageDataset):
    """Workers read file bytes only; decoding happens on the device (seviz.device_decode)."""

    def __getitem__(self, position: int):
        from seviz.device_decode import read_bytes

        try:
            return read_bytes(self.items[position].path), position, ""
        except Exception as error:
            return None, position, f"{type(error).__name__}: {error}"[:200]


def _collate_bytes(samples):
    return samples


def _collate(samples):
    import torch

    loaded = [(t, p) for t, p, _ in samples if t is not None]
    failed = [(p, reason) for t, p, reason in samples if t is None]
    images = torch.stack([t for t, _ in loaded]) if loaded else None
    return images, [p for _, p in loaded], failed, len(samples)


@dataclass
class Batch:
    """Preprocessed images and the list entries they came from."""

    images: torch.Tensor | None
    items: list[ImageItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    consumed: int = 0  # list entries covered, loaded or skipped


def iterate_batches(
    items: Sequence[ImageItem],
    data_config: dict[str, Any],
    batch_size: int = 32,
    workers: int = 0,
    start: int = 0,
    pin_memory: bool = False,
    decode_device: Any = None,
) -> Iterator[Batch]:
    """Decode and preprocess ``items[start:]`` in batches (in DataLoader workers when ``workers > 0``).

    With ``decode_device`` (a torch device) workers only read bytes and JPEGs
    are decoded and preprocessed on that device (see :mod:`seviz.device_decode`).
    Unreadable files are reported in ``Batch.skipped`` (and logged), never raised.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    remaining = list(items[start:])
    on_device = decode_device is not None
    # Map-style datasets by protocol (__len__, __getitem__), not torch Dataset subclasses.
    dataset: Any = (
        _BytesDataset(remaining, None) if on_device else _ImageDataset(remaining, make_transform(data_config))
    )
    loader: DataLoader[Any] = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=max(0, workers),
        collate_fn=_collate_bytes if on_device else _collate,
        pin_memory=pin_memory and not on_device,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    for loaded in loader:
        if on_device:
            from seviz.device_decode import decode_batch

            readable = [(data, p) for data, p, _ in loaded if data is not None]
            images, ok, bad = decode_batch([d for d, _ in readable], data_config, decode_device)
            positions = [readable[i][1] for i in ok]
            failed = [(p, reason) for data, p, reason in loaded if data is None]
            failed += [(readable[i][1], reason) for i, reason in bad]
            consumed = len(loaded)
        else:
            images, positions, failed, consumed = loaded
        skipped = [(remaining[p].path, reason) for p, reason in failed]
        for path, reason in skipped:
            log.warning("skipping unreadable image %s (%s)", path, reason)
        yield Batch(images, [remaining[p] for p in positions], skipped, consumed)


__all__ = [
    "Batch",
    "ClassResolutionError",
    "DataError",
    "ImageItem",
    "find_images",
    "iterate_batches",
    "load_rgb",
    "make_transform",
]
