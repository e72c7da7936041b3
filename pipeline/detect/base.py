"""Interface shared by every face detector in the ensemble."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from pipeline.registry import Registry


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the upright image, ``x2``/``y2`` exclusive."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    detector: str

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


class Detector(Protocol):
    """Find faces in one RGB uint8 image of shape (H, W, 3)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Box]: ...


# A factory takes the member's validated params section and returns a Detector.
DETECTORS: Registry[Callable[[Any], Detector]] = Registry("detector")


# Params dataclass of a member whose detect.<name> section DetectParams keeps as a plain
# mapping (maskrcnn, and members added later). The ensemble parses the mapping with it
# before calling the factory; a member without an entry gets the mapping as it is.
DETECTOR_PARAMS: Registry[type] = Registry("detector params class")
