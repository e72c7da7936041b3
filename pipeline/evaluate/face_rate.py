"""Face rate: the share of images in which a face detector finds at least one face.

Two detectors are available (``evaluate.face_detector``):

- ``cascade``: the LBP anime-face cascade (nagadomi/lbpcascade_animeface) through OpenCV
  on the histogram-equalised grey image, with settings of its own in the ``evaluate``
  section, so the metric does not move when the detect stage is retuned. A 64 px crop
  whose face fills the frame leaves the cascade no margin, so each image gets a
  replicated border first (``face_pad_fraction``).
- ``ensemble``: the detect stage's ensemble with the ``detect`` section's settings; an
  image counts when the fusion keeps a box.

NOTE: the training crops were cut by this same cascade, so the rate on real crops is
close to 1 by construction. The rate measures "looks like a face to the detector", not
image quality.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pipeline.config import ConfigError
from pipeline.detect.base import Box, Detector
from pipeline.detect.params import DetectParams
from pipeline.evaluate.params import EvaluateParams
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)


class CascadeFaceDetector:
    """The LBP anime-face cascade as a :class:`Detector`."""

    name = "cascade"

    def __init__(
        self,
        cascade_path: str,
        scale_factor: float,
        min_neighbors: int,
        min_size_px: int,
        pad_fraction: float,
    ) -> None:
        if not cascade_path:
            raise ConfigError(
                "no cascade file for the face rate: evaluate.face_cascade_path and "
                "detect.cascade_path are both empty; set one to lbpcascade_animeface.xml "
                "(github.com/nagadomi/lbpcascade_animeface)"
            )
        if not Path(cascade_path).is_file():
            raise FileNotFoundError(
                f"cascade file {cascade_path!r} not found; set evaluate.face_cascade_path "
                "(or detect.cascade_path, used when the former is empty) to "
                "lbpcascade_animeface.xml"
            )
        self.classifier = cv2.CascadeClassifier()
        try:
            loaded = self.classifier.load(str(cascade_path))
        except cv2.error as error:
            loaded = False
            reason = str(error).strip()
        else:
            reason = "no cascade in the file"
        if not loaded or self.classifier.empty():
            raise ConfigError(
                f"OpenCV could not load a cascade from {cascade_path!r} ({reason}); set "
                "evaluate.face_cascade_path or detect.cascade_path to lbpcascade_animeface.xml"
            )
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_px = min_size_px
        self.pad_fraction = pad_fraction

    def detect(self, image: np.ndarray) -> list[Box]:
        """Return face boxes in the image's coordinates; a box may reach into the border."""
        padded, pad_px = pad_image(np.ascontiguousarray(image), self.pad_fraction)
        grey = cv2.equalizeHist(cv2.cvtColor(padded, cv2.COLOR_RGB2GRAY))
        boxes = self.classifier.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size_px, self.min_size_px),
        )
        found = []
        for x, y, width, height in boxes:
            left, top = float(x - pad_px), float(y - pad_px)
            found.append(Box(left, top, left + width, top + height, 1.0, self.name))
        return found


class EnsembleFaceDetector:
    """The detect stage's ensemble as a :class:`Detector` that returns the fused boxes."""

    name = "ensemble"

    def __init__(self, detect_params: DetectParams) -> None:
        from pipeline.detect.ensemble import build_ensemble

        # The ensemble pads small images itself (detect.small_image_pad_fraction).
        self.ensemble = build_ensemble(detect_params)

    def detect(self, image: np.ndarray) -> list[Box]:
        return list(self.ensemble.detect(image).fused)


def build_face_detector(
    params: EvaluateParams, detect_params: DetectParams | None = None
) -> Detector:
    """Create the detector named by ``evaluate.face_detector``.

    ``detect_params`` is the validated ``detect`` section, needed only by the ensemble.
    """
    if params.face_detector == "cascade":
        return CascadeFaceDetector(
            params.face_cascade_path,
            params.face_scale_factor,
            params.face_min_neighbors,
            params.face_min_size_px,
            params.face_pad_fraction,
        )
    if detect_params is None:
        raise ValueError("evaluate.face_detector = 'ensemble' needs the detect section's params")
    return EnsembleFaceDetector(detect_params)


def pad_image(image: np.ndarray, pad_fraction: float) -> tuple[np.ndarray, int]:
    """Add a replicated border of ``pad_fraction`` of the longer side; return it and its width."""
    pad_px = int(round(pad_fraction * max(image.shape[:2])))
    if pad_px == 0:
        return image, 0
    padded = cv2.copyMakeBorder(image, pad_px, pad_px, pad_px, pad_px, cv2.BORDER_REPLICATE)
    return padded, pad_px


def compute_face_rate(
    images: np.ndarray, detector: Detector, skips: SkipCounter, desc: str = "face rate"
) -> float:
    """Return the share of uint8 N x H x W x 3 images with at least one detected face.

    An image on which the detector raises cv2.error is skipped, counted under
    ``face_detector_error`` and left out of the share.
    """
    found = 0
    checked = 0
    for index, image in enumerate(tqdm(images, desc=desc, unit="image")):
        try:
            boxes = detector.detect(image)
        except cv2.error as error:
            skips.skip(f"{desc} image {index}", "face_detector_error", str(error).strip())
            continue
        checked += 1
        found += bool(boxes)
    if checked == 0:
        raise ValueError(f"{desc}: the face detector failed on all {len(images)} images")
    return found / checked
