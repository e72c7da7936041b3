"""The detect stage's loop: run the ensemble over every picture in the raw manifest.

Output rows (``DETECTION_COLUMNS``) hold pixel boxes of the upright image that
``pipeline.images.load_rgb`` returns. Member rows carry the member name as
``detector`` and agreement 1. Fused rows carry ``ensemble`` and the number of
distinct members that support the box. An image without faces has no rows.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import pandas as pd
from tqdm import tqdm

from pipeline.config import to_dict
from pipeline.detect.ensemble import Ensemble, EnsembleResult, build_ensemble
from pipeline.detect.fusion import ENSEMBLE_NAME
from pipeline.detect.params import DetectParams
from pipeline.files import atomic_write_bytes
from pipeline.images import ImageError, load_rgb
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
# The manifest columns this stage reads; the scrape stage writes more.
REQUIRED_MANIFEST_COLUMNS = ("id", "path")
DETECTION_COLUMNS = ["image_id", "x1", "y1", "x2", "y2", "score", "detector", "agreement"]


@dataclass
class DetectTally:
    """Counts and timings gathered over the manifest, per member and for the ensemble."""

    images_listed: int = 0
    images_scanned: int = 0
    faces: Counter[str] = field(default_factory=Counter)
    images_with_face: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    # Fused faces by how many members support them.
    fused_by_agreement: Counter[int] = field(default_factory=Counter)

    def add(self, result: EnsembleResult) -> None:
        self.images_scanned += 1
        found = dict(result.member_boxes)
        found[ENSEMBLE_NAME] = result.fused
        for name, boxes in found.items():
            self.faces[name] += len(boxes)
            self.images_with_face[name] += bool(boxes)
        for name, seconds in result.seconds.items():
            self.seconds[name] += seconds
        self.fused_by_agreement.update(box.agreement for box in result.fused)


def read_manifest(raw_dir: Path) -> pd.DataFrame:
    """Read raw_dir/manifest.csv as strings, checking the columns this stage needs."""
    path = Path(raw_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} not found; run the scrape stage or pass --raw with the "
            f"folder that contains {MANIFEST_NAME}"
        )
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in REQUIRED_MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {missing}; it has {list(manifest.columns)}"
        )
    return manifest


def detect_manifest(
    raw_dir: Path, params: DetectParams, ensemble: Ensemble | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Detect faces in every manifest picture and return the rows and the metrics dict.

    Rows without an id, duplicate ids, paths outside ``raw_dir``, missing or
    undecodable files and OpenCV errors are logged and counted by reason as skips.
    """
    raw_dir = Path(raw_dir)
    manifest = read_manifest(raw_dir)
    ensemble = ensemble or build_ensemble(params)
    skips = SkipCounter(logger)
    tally = DetectTally(images_listed=len(manifest))
    rows: list[dict[str, Any]] = []
    seen_ids: set[str] = set()

    for record in tqdm(manifest.itertuples(index=False), total=len(manifest), desc="detect"):
        image_id, relative_path = str(record.id), str(record.path)
        if not image_id:
            skips.skip(f"row with path {relative_path!r}", "missing_id")
            continue
        if image_id in seen_ids:
            skips.skip(image_id, "duplicate_id")
            continue
        seen_ids.add(image_id)

        result = _detect_one(raw_dir, image_id, relative_path, params, ensemble, skips)
        if result is None:
            continue
        tally.add(result)
        rows.extend(_rows_for(image_id, result))

    detections = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    return detections, build_metrics(tally, skips, params, ensemble.names)


def build_metrics(
    tally: DetectTally, skips: SkipCounter, params: DetectParams, member_names: list[str]
) -> dict[str, Any]:
    """Assemble metrics/detect.json from the tally, the skips and the resolved config."""
    names = [*member_names, ENSEMBLE_NAME]
    # The ensemble's time is its members' plus the fusion, without decoding.
    tally.seconds[ENSEMBLE_NAME] = sum(tally.seconds[name] for name in [*member_names, "fusion"])
    images_per_second: dict[str, float | None] = {}
    for name in names:
        seconds = tally.seconds[name]
        images_per_second[name] = round(tally.images_scanned / seconds, 3) if seconds else None
    return {
        "images_listed": tally.images_listed,
        "images_scanned": tally.images_scanned,
        "images_with_face": tally.images_with_face[ENSEMBLE_NAME],
        "images_with_face_per_detector": {name: tally.images_with_face[name] for name in names},
        "faces": {name: tally.faces[name] for name in names},
        "ensemble_faces_by_agreement": {
            str(count): tally.fused_by_agreement[count] for count in range(1, len(member_names) + 1)
        },
        "images_per_second": images_per_second,
        "detect_seconds": {name: round(tally.seconds[name], 3) for name in [*names, "fusion"]},
        "skipped": skips.total,
        "skips": skips.as_dict(),
        "config": to_dict(params),
    }


def write_detections(path: str | Path, detections: pd.DataFrame) -> None:
    """Write the detections CSV atomically with exactly DETECTION_COLUMNS."""
    buffer = io.StringIO()
    detections[DETECTION_COLUMNS].to_csv(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _detect_one(
    raw_dir: Path,
    image_id: str,
    relative_path: str,
    params: DetectParams,
    ensemble: Ensemble,
    skips: SkipCounter,
) -> EnsembleResult | None:
    """Load and detect one picture; count a skip and return None when that fails."""
    posix_path = PurePosixPath(relative_path)
    if not relative_path or posix_path.is_absolute() or ".." in posix_path.parts:
        detail = f"path {relative_path!r} must be relative and stay inside the raw folder"
        skips.skip(image_id, "invalid_path", detail)
        return None
    path = raw_dir / posix_path
    if not path.is_file():
        skips.skip(image_id, "missing_file", str(path))
        return None

    try:
        image = load_rgb(path, max_pixels=params.max_pixels)
    except ImageError as error:
        skips.skip(image_id, error.reason, str(error))
        return None
    except OSError as error:
        skips.skip(image_id, "unreadable", str(error))
        return None

    try:
        return ensemble.detect(image)
    except cv2.error as error:
        skips.skip(image_id, "detector_error", " ".join(str(error).split()))
        return None


def _rows_for(image_id: str, result: EnsembleResult) -> list[dict[str, Any]]:
    rows = []
    for name, boxes in result.member_boxes.items():
        rows.extend(_row(image_id, box, name, agreement=1) for box in boxes)
    rows.extend(_row(image_id, box, ENSEMBLE_NAME, box.agreement) for box in result.fused)
    return rows


def _row(image_id: str, box: Any, detector: str, agreement: int) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "x1": round(box.x1, 2),
        "y1": round(box.y1, 2),
        "x2": round(box.x2, 2),
        "y2": round(box.y2, 2),
        "score": round(box.score, 4),
        "detector": detector,
        "agreement": agreement,
    }

