"""Checks a downloaded or copied file passes before the scraper keeps it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipeline.images import ImageError, load_rgb
from pipeline.scrape.params import ImageLimits

# Pillow format name -> file extension of the kept file.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


class Rejected(Exception):
    """A post or file that fails a check; ``reason`` is the skip-count key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageFacts:
    format: str
    extension: str
    width: int  # after EXIF rotation, as pipeline.images.load_rgb returns it
    height: int


def inspect_image(
    path: Path, limits: ImageLimits, *, expected_md5: str = "", md5: str = ""
) -> ImageFacts:
    """Verify and fully decode the file at ``path``; raise Rejected when a check fails.

    Checks, in order: the server's md5 (when given), pixel count before decoding
    (decompression bombs), Pillow verify and a full decode (corrupt and truncated files),
    the allowed formats and the minimum size.
    """
    if expected_md5 and md5 and expected_md5.lower() != md5.lower():
        raise Rejected("md5_mismatch", f"md5 {md5} differs from the server's {expected_md5}")

    data = path.read_bytes()
    try:
        pixels = load_rgb(data, max_pixels=limits.max_pixels)
    except ImageError as error:
        # load_rgb names bytes input "<bytes>: ..."; the skip log names the post instead.
        raise Rejected(error.reason, str(error).removeprefix("<bytes>: ")) from error
    height, width = pixels.shape[:2]

    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format or ""
    if image_format not in limits.formats:
        raise Rejected("unsupported_format", f"format {image_format!r} not in {limits.formats}")
    if width < limits.min_width or height < limits.min_height:
        raise Rejected(
            "too_small", f"{width}x{height} is below {limits.min_width}x{limits.min_height}"
        )
    return ImageFacts(image_format, EXTENSIONS[image_format], width, height)
