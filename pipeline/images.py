"""Robust image decoding to RGB uint8 arrays.

Every stage reads pictures through :func:`load_rgb`, so EXIF rotation, grayscale,
palette, alpha, CMYK and 16-bit images all arrive as upright ``H x W x 3`` uint8.
Failures raise :class:`ImageError` with a short ``reason`` that callers count.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow's own decompression-bomb limit is a warning at 89 Mpx; callers pass a lower
# limit when they need one.
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(Exception):
    """An input that cannot be used as a picture; ``reason`` is a short count key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_rgb(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file or bytes to an upright RGB uint8 array of shape (H, W, 3).

    Raises ImageError with reason ``not_an_image``, ``corrupt``, ``truncated`` or
    ``too_many_pixels``.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    image = _open_verified(data, name, max_pixels)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except OSError as error:
        raise ImageError("truncated", f"{name}: image data is truncated ({error})") from error
    return np.asarray(to_rgb(image), dtype=np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        high = 1.0 if array.max() <= 1.0 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8))

    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def image_size(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Return (width, height) after EXIF rotation, verifying the file without decoding it."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    image = _open_verified(data, name, max_pixels)
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height


def _open_verified(data: bytes, name: str, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            probe = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError as error:
            raise ImageError("not_an_image", f"{name}: not a recognised image format") from error
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("too_many_pixels", f"{name}: {error}") from error
        except OSError as error:
            # A header cut short fails inside Image.open ("Truncated File Read").
            raise ImageError("corrupt", f"{name}: image header is unreadable ({error})") from error

        width, height = probe.size
        if width * height > max_pixels:
            raise ImageError(
                "too_many_pixels",
                f"{name}: {width}x{height} exceeds the limit of {max_pixels} pixels",
            )
        try:
            probe.verify()
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError("corrupt", f"{name}: image failed verification ({error})") from error

        # verify() leaves the image unusable, so open it again for decoding.
        return Image.open(io.BytesIO(data))
