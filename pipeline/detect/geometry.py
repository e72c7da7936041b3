"""Box and image helpers shared by the detectors and the fusion."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.detect.base import Box


def check_rgb_image(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is an RGB uint8 array of shape (H, W, 3)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an RGB uint8 numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 array of shape (H, W, 3), got dtype {image.dtype} and "
            f"shape {image.shape}; decode files with pipeline.images.load_rgb"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has no pixels (shape {image.shape})")


def shrink_to_max_side(image: np.ndarray, max_side_px: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side_px`` (0 = no limit).

    Returns the image and the factor that maps its pixel coordinates back to the input.
    """
    height, width = image.shape[:2]
    longest = max(height, width)
    if max_side_px <= 0 or longest <= max_side_px:
        return image, 1.0
    scale = max_side_px / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), longest / max_side_px


def make_box(
    xyxy: tuple[float, float, float, float],
    score: float,
    detector: str,
    image_size: tuple[int, int],
    box_scale: float = 1.0,
) -> Box | None:
    """Build a Box scaled about its centre and clipped to ``image_size`` (width, height).

    Returns None when nothing of the box lies inside the image.
    """
    x1, y1, x2, y2 = (float(value) for value in xyxy)
    if box_scale != 1.0:
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        half_width, half_height = (x2 - x1) * box_scale / 2, (y2 - y1) * box_scale / 2
        x1, x2 = centre_x - half_width, centre_x + half_width
        y1, y2 = centre_y - half_height, centre_y + half_height
    width, height = image_size
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return Box(x1, y1, x2, y2, float(score), detector)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    overlap_width = min(a.x2, b.x2) - max(a.x1, b.x1)
    overlap_height = min(a.y2, b.y2) - max(a.y1, b.y1)
    if overlap_width <= 0 or overlap_height <= 0:
        return 0.0
    overlap = overlap_width * overlap_height
    return overlap / (a.width * a.height + b.width * b.height - overlap)
