"""Instance masks for face boxes, stored as COCO run-length encoding (RLE).

A label keeps its own mask when it has one. Otherwise the mask is made from the box,
either as the ellipse inscribed in it (fast, no image needed) or by GrabCut seeded
with the box (follows the face and hair outline, needs the image, slower).
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from pipeline.labels.model import LabelBox

logger = logging.getLogger(__name__)

MASK_METHODS = ("ellipse", "grabcut")

# GrabCut runs on a crop around the box, shrunk so its long side is at most this many
# pixels, and the mask is scaled back up. Larger crops cost more time.
GRABCUT_MAX_SIDE_PX = 256
# Below this box side GrabCut has too few pixels to model colours, so the ellipse is used.
GRABCUT_MIN_SIDE_PX = 8


def ellipse_mask(box: LabelBox, height: int, width: int) -> np.ndarray:
    """Return a bool (height, width) mask of the ellipse inscribed in ``box``."""
    mask = np.zeros((height, width), dtype=np.uint8)
    center = (round((box.x1 + box.x2) / 2), round((box.y1 + box.y2) / 2))
    axes = (max(1, round(box.width / 2)), max(1, round(box.height / 2)))
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def grabcut_mask(image: np.ndarray, box: LabelBox, iterations: int = 3) -> np.ndarray:
    """Return a bool mask of the foreground GrabCut finds inside ``box``.

    Falls back to :func:`ellipse_mask` when the box is smaller than
    GRABCUT_MIN_SIDE_PX or GrabCut marks nothing as foreground.
    """
    height, width = image.shape[:2]
    if box.width < GRABCUT_MIN_SIDE_PX or box.height < GRABCUT_MIN_SIDE_PX:
        return ellipse_mask(box, height, width)

    # Crop the box with a margin of a quarter of its size, so the crop includes background.
    margin_x, margin_y = box.width / 4, box.height / 4
    left, top = max(0, int(box.x1 - margin_x)), max(0, int(box.y1 - margin_y))
    right, bottom = min(width, int(np.ceil(box.x2 + margin_x))), min(height, int(np.ceil(box.y2 + margin_y)))
    crop = image[top:bottom, left:right]
    scale = min(1.0, GRABCUT_MAX_SIDE_PX / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    rect_x = max(0, int((box.x1 - left) * scale))
    rect_y = max(0, int((box.y1 - top) * scale))
    rect_w = min(crop.shape[1] - rect_x, max(1, int(box.width * scale)))
    rect_h = min(crop.shape[0] - rect_y, max(1, int(box.height * scale)))
    labels = np.zeros(crop.shape[:2], dtype=np.uint8)
    background_model = np.zeros((1, 65), dtype=np.float64)
    foreground_model = np.zeros((1, 65), dtype=np.float64)
    try:
        cv2.grabCut(
            np.ascontiguousarray(crop[:, :, ::-1]),
            labels,
            (rect_x, rect_y, rect_w, rect_h),
            background_model,
            foreground_model,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error as error:
        logger.warning("GrabCut failed on box %s (%s); using the inscribed ellipse", box, error)
        return ellipse_mask(box, height, width)

    foreground = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if not foreground.any():
        return ellipse_mask(box, height, width)
    foreground = cv2.resize(foreground, (right - left, bottom - top), interpolation=cv2.INTER_NEAREST)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = foreground.astype(bool)
    return mask


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Return the COCO RLE of a bool (H, W) mask, with ``counts`` as a JSON-ready string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Return a bool (height, width) mask from a COCO polygon list or RLE dict."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"segmentation size {mask.shape} does not match the image {(height, width)}")
    return mask


def make_mask(
    box: LabelBox, height: int, width: int, method: str, image: np.ndarray | None = None,
    grabcut_iterations: int = 3,
) -> np.ndarray:
    """Return the mask for ``box``: its own segmentation if present, else one made by ``method``."""
    if box.segmentation is not None:
        return decode_segmentation(box.segmentation, height, width)
    if method == "ellipse":
        return ellipse_mask(box, height, width)
    if method == "grabcut":
        if image is None:
            raise ValueError("the grabcut mask method needs the image")
        return grabcut_mask(image, box, grabcut_iterations)
    raise ValueError(f"unknown mask method {method!r}; choose one of {list(MASK_METHODS)}")
