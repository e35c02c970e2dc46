"""Batches of model inputs from a list of images: timm's transform, optional DataLoader workers.

Preprocessing follows the model's data config (timm's ``create_transform``:
resize, crop, interpolation, mean/std). A file that cannot be decoded is skipped
with a warning and reported with the batch, never aborting a run.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seviz.data.folders import ImageItem
from seviz.data.images import image_size, load_rgb
from seviz.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def decoding_workers(device_type: str, workers: int | None = None) -> int:
    """DataLoader worker processes for decoding when the model runs on ``device_type``.

    ``workers`` (``--workers``) wins when given. On CUDA the forward pass leaves the
    CPU free, so ``min(4, cores)`` workers decode ahead; on a CPU torch runs the
    forward pass on every core and worker processes would only preempt it, so
    images are decoded inline (0).
    """
    if workers is not None:
        if workers < 0:
            raise DataError(f"--workers must be 0 or more, got {workers}")
        return int(workers)
    return min(4, os.cpu_count() or 1) if device_type == "cuda" else 0


def make_transform(data_config: dict[str, Any]):
    """The model's eval preprocessing (timm ``create_transform``) as a PIL -> tensor callable."""
    from timm.data import create_transform

    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return create_transform(**{k: data_config[k] for k in keys if k in data_config}, is_training=False)


def upscaling_note(items: Sequence[ImageItem], data_config: dict[str, Any], sample: int = 64) -> str | None:
    """A warning when the images are much smaller than the model's input (so they are upscaled).

    Reads the headers of up to ``sample`` files spread over ``items``; warns when
    their median shorter side is under half the input's shorter side.

    Returns:
        The warning in plain words, with the flags that change the input size, or None.
    """
    if not items:
        return None
    step = max(1, len(items) // sample)
    sizes = [image_size(item.path) for item in items[::step][:sample]]
    sides = [min(size) for size in sizes if size]
    if not sides:
        return None
    median = int(statistics.median(sides))
    _, height, width = (int(v) for v in data_config["input_size"])
    if median * 2 >= min(height, width):
        return None
    return (
        f"the images are being upscaled: their median shorter side is {median} px ({len(sides)} of "
        f"{len(items):,} files sampled), under half of the model input {height}x{width}, so each is enlarged "
        f"about {min(height, width) / max(median, 1):.0f}x before the model sees it. If the model was trained on "
        f"images this small, pass --input-size 3 {median} {median} with its --mean and --std "
        "(or a --data-config FILE)"
    )


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
    """Workers read file bytes only; decoding happens on the device (seviz.data.gpu_decode)."""

    def __getitem__(self, position: int):
        from seviz.data.gpu_decode import read_bytes

        try:
            return read_bytes(self.items[position].path), position, ""
        except Exception as error:
            return None, position, f"{type(error).__name__}: {error}"[:200]


def _ignore_interrupts(_worker_id: int) -> None:
    # Ctrl-C in a terminal signals the whole process group. A worker that died of it
    # would break the main process's next batch; the main process decides when to stop
    # (a recording finishes its current batch first) and shuts its workers down.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    are decoded and preprocessed on that device (see :mod:`seviz.data.gpu_decode`).
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
        worker_init_fn=_ignore_interrupts if workers > 0 else None,
    )
    for loaded in loader:
        if on_device:
            from seviz.data.gpu_decode import decode_batch

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
