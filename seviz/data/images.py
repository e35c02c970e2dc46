"""Decoding one image file to RGB, whatever its mode: the leaf of the data room.

Grayscale, CMYK, palette and 16-bit images are converted to RGB, transparent
pixels are composited onto white, EXIF rotation is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


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


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (PIL opens lazily: no pixel is decoded); None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return opened.size
    except Exception:  # any unreadable file: the decoder reports it when the image is loaded
        return None
