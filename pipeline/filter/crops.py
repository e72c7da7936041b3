"""Crop geometry (face box to crop box) and cutting and resizing crops out of images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.filter.params import FilterParams

# Pillow filters are antialiased when shrinking (their support grows with the scale),
# which OpenCV's INTER_LANCZOS4 and INTER_CUBIC are not.
PIL_FILTERS = {
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


@dataclass(frozen=True)
class CropBox:
    """Integer crop rectangle in image pixels, ``x2``/``y2`` exclusive.

    It may reach outside the image when ``action`` is ``padded``. ``action`` is what the
    out-of-frame policy did: ``inside``, ``shifted``, ``shrunk``, ``padded`` or
    ``dropped``.
    """

    x1: int
    y1: int
    x2: int
    y2: int
    action: str

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


def compute_crop_box(
    box: Sequence[float], image_size: tuple[int, int], params: FilterParams
) -> CropBox:
    """Turn a face box ``(x1, y1, x2, y2)`` into the crop box for an image of ``(width, height)``.

    Adds the margins, makes the box square by ``params.square_mode``, rounds to
    whole pixels and applies the ``params.out_of_frame`` policy.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    box_width, box_height = x2 - x1, y2 - y1

    # Margins, as fractions of the face box.
    x1 -= params.margin_side * box_width
    x2 += params.margin_side * box_width
    y1 -= params.margin_top * box_height
    y2 += params.margin_bottom * box_height

    left, top, right, bottom = _make_square(x1, y1, x2, y2, params.square_mode)
    return _fit_in_frame(left, top, right, bottom, image_size, params)


def _make_square(
    x1: float, y1: float, x2: float, y2: float, square_mode: str
) -> tuple[int, int, int, int]:
    if square_mode == "stretch":
        left, top = _round(x1), _round(y1)
        return left, top, max(_round(x2), left + 1), max(_round(y2), top + 1)

    width, height = x2 - x1, y2 - y1
    side = max(width, height) if square_mode == "expand" else min(width, height)
    side_px = max(1, _round(side))
    left = _round((x1 + x2) / 2 - side_px / 2)
    top = _round((y1 + y2) / 2 - side_px / 2)
    return left, top, left + side_px, top + side_px


def _fit_in_frame(
    left: int,
    top: int,
    right: int,
    bottom: int,
    image_size: tuple[int, int],
    params: FilterParams,
) -> CropBox:
    image_width, image_height = image_size
    if left >= 0 and top >= 0 and right <= image_width and bottom <= image_height:
        return CropBox(left, top, right, bottom, "inside")

    if params.out_of_frame == "drop":
        return CropBox(left, top, right, bottom, "dropped")

    if params.out_of_frame in ("pad_edge", "pad_constant"):
        inside_width = max(0, min(right, image_width) - max(left, 0))
        inside_height = max(0, min(bottom, image_height) - max(top, 0))
        outside_fraction = 1.0 - inside_width * inside_height / ((right - left) * (bottom - top))
        action = "padded" if outside_fraction <= params.max_pad_fraction else "dropped"
        return CropBox(left, top, right, bottom, action)

    # Shift: shrink about the centre first if the crop is larger than the image.
    width, height = right - left, bottom - top
    action = "shifted"
    if width > image_width or height > image_height:
        action = "shrunk"
        if params.square_mode == "stretch":
            new_width, new_height = min(width, image_width), min(height, image_height)
        else:
            new_width = new_height = min(width, image_width, image_height)
        left += (width - new_width) // 2
        top += (height - new_height) // 2
        width, height = new_width, new_height
    left = min(max(left, 0), image_width - width)
    top = min(max(top, 0), image_height - height)
    return CropBox(left, top, left + width, top + height, action)


def _round(value: float) -> int:
    # Round half up, so a crop box does not depend on the parity of a coordinate as
    # Python's round() to even would make it.
    return math.floor(value + 0.5)


def cut_crop(image: np.ndarray, crop: CropBox, params: FilterParams) -> np.ndarray:
    """Return the pixels of ``crop`` from an RGB image, padded by ``params.out_of_frame``."""
    image_height, image_width = image.shape[:2]
    left, top = max(crop.x1, 0), max(crop.y1, 0)
    right, bottom = min(crop.x2, image_width), min(crop.y2, image_height)
    pixels = image[top:bottom, left:right]
    if crop.action != "padded":
        return np.ascontiguousarray(pixels)

    pad_width = ((top - crop.y1, crop.y2 - bottom), (left - crop.x1, crop.x2 - right), (0, 0))
    if params.out_of_frame == "pad_edge" and pixels.size:
        return np.pad(pixels, pad_width, mode="edge")
    # A crop wholly outside the image has no edge to repeat, so it gets the constant fill.
    return np.pad(pixels, pad_width, mode="constant", constant_values=params.pad_value)


def resize_crop(pixels: np.ndarray, params: FilterParams) -> np.ndarray:
    """Resize an RGB crop to ``image_size`` x ``image_size`` with ``params.resize_filter``."""
    size = params.image_size
    height, width = pixels.shape[:2]
    if (width, height) == (size, size):
        return pixels

    name = params.resize_filter
    # A box filter enlarges like nearest neighbour, which makes blocks of a small crop.
    if name == "area" and (width < size or height < size):
        name = "bicubic"
    resized = Image.fromarray(pixels).resize((size, size), PIL_FILTERS[name])
    return np.asarray(resized, dtype=np.uint8)
