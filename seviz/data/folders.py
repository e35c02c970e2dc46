"""Find the images to record and turn them into model inputs.

``--data DIR`` may be:

* a tree of class folders named by WordNet id (ImageNet ``train/`` or ``val/``)
  or by class name (``cat/``, ``dog/``);
* a flat ImageNet validation folder with its ground truth
  ``LOC_val_solution.csv`` (in the folder or beside it).

Files are taken in sorted order, so ``--images-per-class N`` picks the same
images on every run.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seviz.data.images import IMAGE_SUFFIXES
from seviz.errors import DataError
from seviz.models import ClassSpace, LoadedModel, resolve_classes

log = logging.getLogger(__name__)

VAL_SOLUTION = "LOC_val_solution.csv"


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
    wanted = resolve_classes(classes, loaded) if classes is not None else None  # "" is refused there

    solution = _val_solution(root)
    if solution is not None and loaded.class_ids and _image_files(root):
        by_class = _images_by_val_solution(root, solution, loaded.class_ids)
    else:
        by_class = _images_by_class_folder(root, space, loaded)

    chosen = [r.index for r in wanted] if wanted else sorted(by_class)
    return _chosen_items(root, space, loaded, by_class, chosen, images_per_class)


def _images_by_val_solution(root: Path, solution: Path, class_ids: Sequence[str]) -> dict[int, list[Path]]:
    """The images of a flat ImageNet val folder by class index, as its ground-truth CSV labels them."""
    by_class: dict[int, list[Path]] = {}
    ids = {wnid: i for i, wnid in enumerate(class_ids)}
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
    return by_class


def _images_by_class_folder(root: Path, space: ClassSpace, loaded: LoadedModel) -> dict[int, list[Path]]:
    """The images of each class folder under ``root`` by class index; folders naming no class are ignored."""
    by_class: dict[int, list[Path]] = {}
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
    return by_class


def _chosen_items(
    root: Path,
    space: ClassSpace,
    loaded: LoadedModel,
    by_class: dict[int, list[Path]],
    chosen: list[int],
    images_per_class: int | None,
) -> list[ImageItem]:
    """The first ``images_per_class`` images of each chosen class, in that order; a class without any is an error."""
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
