"""LBP cascade member: OpenCV's CascadeClassifier with lbpcascade_animeface.xml."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ConfigError
from pipeline.detect.base import DETECTORS, Box
from pipeline.detect.geometry import check_rgb_image, make_box, shrink_to_max_side
from pipeline.detect.params import CASCADE_SHA256, CASCADE_URL, CascadeParams
from pipeline.files import atomic_write_bytes

logger = logging.getLogger(__name__)

CASCADE_FILENAME = "lbpcascade_animeface.xml"


def default_cache_dir() -> Path:
    """Return $XDG_CACHE_HOME/animeface-pipeline, or ~/.cache/animeface-pipeline."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "animeface-pipeline"


def resolve_cascade_file(
    cascade_path: str,
    *,
    url: str = CASCADE_URL,
    cache_dir: Path | None = None,
    sha256: str = CASCADE_SHA256,
    timeout_s: float = 60.0,
) -> Path:
    """Return the cascade file to load: ``cascade_path`` when set, else a checked download.

    The download is cached in ``cache_dir`` and reused while its sha256 matches. A
    failed download or a checksum mismatch raises ConfigError, whose message names
    detect.cascade_path as the fix.
    """
    if cascade_path:
        path = Path(cascade_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"detect.cascade_path = {cascade_path!r} is not a file; point it at "
                f"{CASCADE_FILENAME} or set it to '' to download it from {CASCADE_URL}"
            )
        return path

    cached = (cache_dir or default_cache_dir()) / CASCADE_FILENAME
    if cached.is_file():
        if _sha256(cached.read_bytes()) == sha256:
            return cached
        logger.warning("cached %s has the wrong sha256; downloading it again", cached)

    logger.info("downloading %s to %s", url, cached)
    data = _download(url, timeout_s)
    digest = _sha256(data)
    if digest != sha256:
        raise ConfigError(
            f"{url} returned a file with sha256 {digest}, expected {sha256}; download "
            f"{CASCADE_FILENAME} yourself, check it, and set detect.cascade_path to it"
        )
    atomic_write_bytes(cached, data)
    return cached


def load_cascade(path: Path) -> cv2.CascadeClassifier:
    """Load a cascade file, raising ConfigError when OpenCV cannot parse it."""
    try:
        classifier = cv2.CascadeClassifier(str(path))
    except (cv2.error, SystemError) as error:
        # OpenCV 4.x raises SystemError (wrapping cv2.error) for a file that is not XML.
        raise ConfigError(f"{path} is not an OpenCV cascade file ({error})") from error
    if classifier.empty():
        raise ConfigError(f"{path} is not an OpenCV cascade file; check detect.cascade_path")
    return classifier


class CascadeDetector:
    """Anime-face detector on OpenCV's LBP cascade, scored by neighbour count."""

    name = "cascade"

    def __init__(self, params: CascadeParams, cascade_file: Path) -> None:
        self.params = params
        self.classifier = load_cascade(cascade_file)

    def detect(self, image: np.ndarray) -> list[Box]:
        check_rgb_image(image)
        height, width = image.shape[:2]
        small, scale = shrink_to_max_side(image, self.params.max_side_px)

        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        if self.params.equalize_histogram:
            gray = cv2.equalizeHist(gray)
        min_size = (self.params.min_size_px, self.params.min_size_px)
        # detectMultiScale2 also returns how many raw hits were grouped into each face.
        rects, neighbors = self.classifier.detectMultiScale2(
            gray,
            scaleFactor=self.params.scale_factor,
            minNeighbors=self.params.min_neighbors,
            minSize=min_size,
        )

        boxes = []
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) * scale
        for (x, y, w, h), count in zip(rects, np.ravel(neighbors)):
            box = make_box(
                (x, y, x + w, y + h),
                self._score(int(count)),
                self.name,
                (width, height),
                self.params.box_scale,
            )
            if box is not None:
                boxes.append(box)
        return boxes

    def _score(self, neighbor_count: int) -> float:
        if self.params.score == "constant":
            return self.params.constant_score
        return min(1.0, neighbor_count / self.params.neighbors_for_full_score)


@DETECTORS.register("cascade")
def build_cascade(params: CascadeParams) -> CascadeDetector:
    return CascadeDetector(params, resolve_cascade_file(params.cascade_path))


def _download(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        raise ConfigError(
            f"downloading {url} failed ({error}); download {CASCADE_FILENAME} yourself "
            f"and set detect.cascade_path to it"
        ) from error


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
