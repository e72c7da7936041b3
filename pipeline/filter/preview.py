"""Preview grid of kept crops, for a person to check the crop policy at a glance."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def preview_positions(total: int, count: int) -> list[int]:
    """Return up to ``count`` positions spread evenly over ``range(total)``."""
    if total <= count:
        return list(range(total))
    return [int(i * total / count) for i in range(count)]


def make_grid_png(crops: np.ndarray, gap_px: int = 2) -> bytes:
    """Lay out ``(N, S, S, 3)`` uint8 crops in a near-square grid on white; return PNG bytes."""
    count, size = crops.shape[0], crops.shape[1]
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    step = size + gap_px
    grid = np.full((rows * step + gap_px, columns * step + gap_px, 3), 255, dtype=np.uint8)
    for i in range(count):
        top = gap_px + (i // columns) * step
        left = gap_px + (i % columns) * step
        grid[top : top + size, left : left + size] = crops[i]
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    return buffer.getvalue()
