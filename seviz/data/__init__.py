"""The images seviz records: finding them in folders, decoding them, batching model inputs.

Rooms: :mod:`~seviz.data.images` (decode one file to RGB, a leaf),
:mod:`~seviz.data.folders` (:func:`find_images`: which files, which classes),
:mod:`~seviz.data.loader` (:func:`iterate_batches`: preprocessing and batches),
:mod:`~seviz.data.gpu_decode` (batched JPEG decoding on the GPU).
"""

from seviz.data.folders import VAL_SOLUTION, ImageItem, find_images
from seviz.data.images import IMAGE_SUFFIXES, image_size, load_rgb
from seviz.data.loader import Batch, decoding_workers, iterate_batches, make_transform, upscaling_note
from seviz.errors import ClassResolutionError, DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "VAL_SOLUTION",
    "Batch",
    "ClassResolutionError",
    "DataError",
    "ImageItem",
    "decoding_workers",
    "find_images",
    "image_size",
    "iterate_batches",
    "load_rgb",
    "make_transform",
    "upscaling_note",
]
