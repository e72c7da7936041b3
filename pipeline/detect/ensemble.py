"""Build the detector members from ``DetectParams`` and run them and the fusion on images.

Other stages call this too: ``build_ensemble(params).detect(image)`` works on any RGB
uint8 array, including 64x64 generated faces, and :func:`face_rate` scores a batch.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import cv2
import numpy as np

# Importing the classical members registers them in DETECTORS.
import pipeline.detect.animeface_detector  # noqa: F401
import pipeline.detect.cascade  # noqa: F401
from pipeline.config import ConfigError, parse_section
from pipeline.detect.base import DETECTOR_PARAMS, DETECTORS, Box, Detector
from pipeline.detect.fusion import FusedBox, fuse_boxes
from pipeline.detect.geometry import check_rgb_image, make_box
from pipeline.detect.params import DetectParams


@dataclass
class EnsembleResult:
    """Boxes found on one image, in its pixel coordinates."""

    member_boxes: dict[str, list[Box]]
    fused: list[FusedBox]
    # Seconds spent per member and in the fusion ("fusion").
    seconds: dict[str, float] = field(default_factory=dict)


class Ensemble:
    """The detector members and the fusion of their boxes, run together on one image."""

    def __init__(self, members: list[Detector], params: DetectParams) -> None:
        self.members = members
        self.params = params

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]

    def detect(self, image: np.ndarray) -> EnsembleResult:
        check_rgb_image(image)
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        padded, offset_px = pad_small_image(
            image, self.params.small_image_side_px, self.params.small_image_pad_fraction
        )

        member_boxes: dict[str, list[Box]] = {}
        seconds: dict[str, float] = {}
        for member in self.members:
            start = time.perf_counter()
            found = member.detect(padded)
            seconds[member.name] = time.perf_counter() - start
            member_boxes[member.name] = _unpad_boxes(found, member.name, offset_px, (width, height))

        start = time.perf_counter()
        fused = fuse_boxes(member_boxes, (width, height), self.params.fusion)
        seconds["fusion"] = time.perf_counter() - start
        return EnsembleResult(member_boxes, fused, seconds)


def build_ensemble(params: DetectParams) -> Ensemble:
    """Build each member in ``params.detectors`` from its section, in that order."""
    members = [build_member(name, params) for name in params.detectors]
    return Ensemble(members, params)


def build_member(name: str, params: DetectParams) -> Detector:
    """Build one registered member; unknown names raise ConfigError listing valid ones."""
    import_member_module(name)
    if name not in DETECTORS:
        raise ConfigError(
            f"detect.detectors names unknown detector {name!r}; valid names: {DETECTORS.names()}"
        )
    section = _member_section(name, params)
    detector = DETECTORS.get(name)(section)
    # Rows and fusion weights are keyed by the registered name, so insist on it.
    if getattr(detector, "name", None) != name:
        raise TypeError(
            f"the factory registered as {name!r} built a detector named "
            f"{getattr(detector, 'name', None)!r}; its name attribute must be {name!r}"
        )
    return detector


def face_rate(ensemble: Ensemble, images: Iterable[np.ndarray] | np.ndarray) -> float:
    """Return the fraction of ``images`` with at least one fused face (0.0 for none).

    ``images`` is an iterable of RGB uint8 arrays or one array of shape (N, H, W, 3).
    """
    total = with_face = 0
    for image in images:
        total += 1
        with_face += bool(ensemble.detect(image).fused)
    return with_face / total if total else 0.0


def pad_small_image(
    image: np.ndarray, min_side_px: int, pad_fraction: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """Add a replicated border to an image whose shorter side is below ``min_side_px``.

    Returns the image and the (x, y) offset of the original inside it. The border on
    each side is ``pad_fraction`` of the image's width (left, right) or height (top,
    bottom).
    """
    height, width = image.shape[:2]
    if min(height, width) >= min_side_px or pad_fraction <= 0:
        return image, (0, 0)
    pad_x, pad_y = round(width * pad_fraction), round(height * pad_fraction)
    padded = cv2.copyMakeBorder(image, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
    return padded, (pad_x, pad_y)


def _unpad_boxes(
    boxes: list[Box], name: str, offset_px: tuple[int, int], image_size: tuple[int, int]
) -> list[Box]:
    """Move boxes back to the unpadded image; drop those mostly in the border."""
    offset_x, offset_y = offset_px
    inside = []
    for box in boxes:
        moved = (box.x1 - offset_x, box.y1 - offset_y, box.x2 - offset_x, box.y2 - offset_y)
        clipped = make_box(moved, box.score, name, image_size)
        # A face found mostly in the replicated border is an artefact of the padding.
        if clipped is not None and clipped.width * clipped.height >= 0.5 * box.width * box.height:
            inside.append(clipped)
    return inside


def import_member_module(name: str) -> None:
    """Import pipeline.detect.<name> (or its known module) so it registers itself."""
    if name in DETECTORS:
        return
    module = {"animeface": "animeface_detector"}.get(name, name)
    try:
        importlib.import_module(f"pipeline.detect.{module}")
    except ModuleNotFoundError as error:
        if error.name != f"pipeline.detect.{module}":
            raise


def _member_section(name: str, params: DetectParams) -> Any:
    section = params.member_section(name)
    if isinstance(section, dict) and name in DETECTOR_PARAMS:
        section = parse_section(DETECTOR_PARAMS.get(name), section, f"detect.{name}")
    return section
