"""Image grids saved as PNG: the sample grid and the nearest-pair picture."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.files import atomic_write_bytes


def tile_images(images: np.ndarray, num_columns: int, padding_px: int = 2) -> np.ndarray:
    """Arrange uint8 N x S x S x 3 images row by row on a white canvas."""
    count, height, width, _ = images.shape
    num_rows = max(1, math.ceil(count / num_columns))
    canvas = np.full(
        (
            num_rows * (height + padding_px) + padding_px,
            num_columns * (width + padding_px) + padding_px,
            3,
        ),
        255,
        dtype=np.uint8,
    )
    for index, image in enumerate(images):
        row, column = divmod(index, num_columns)
        top = padding_px + row * (height + padding_px)
        left = padding_px + column * (width + padding_px)
        canvas[top : top + height, left : left + width] = image
    return canvas


def save_png(path: str | Path, image: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
