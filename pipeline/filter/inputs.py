"""Reading the scrape manifest and the detections table, with the box-level checks."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.filter.params import FilterParams
from pipeline.skips import SkipCounter

MANIFEST_COLUMNS = ["id", "path"]
DETECTION_COLUMNS = ["image_id", "x1", "y1", "x2", "y2", "score", "detector", "agreement"]


class InputTableError(ValueError):
    """The manifest or detections CSV lacks a column the filter stage reads."""


@dataclass(frozen=True)
class FaceBox:
    """One detections.csv row that passed the box-level checks."""

    row: int
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    agreement: int

    @property
    def coordinates(self) -> tuple[float, float, float, float]:
        return self.x1, self.y1, self.x2, self.y2

    @property
    def face_px(self) -> float:
        """Shorter side of the box in source pixels."""
        return min(self.x2 - self.x1, self.y2 - self.y1)


def read_manifest(raw_dir: str | Path) -> pd.DataFrame:
    """Return the ``id`` and ``path`` columns of ``<raw_dir>/manifest.csv``, in file order."""
    path = Path(raw_dir) / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; run the scrape stage first")
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise InputTableError(
            f"{path} lacks the columns {missing}; found {list(manifest.columns)}. "
            "Rerun the scrape stage"
        )
    return manifest[MANIFEST_COLUMNS]


def is_inside_folder(relative_path: str) -> bool:
    """Return whether a manifest path stays inside the raw folder (no absolute path, no ``..``)."""
    normal = os.path.normpath(relative_path)
    return bool(relative_path) and not os.path.isabs(normal) and normal.split(os.sep)[0] != ".."


def read_detections(
    path: str | Path, params: FilterParams, drops: SkipCounter
) -> tuple[dict[str, list[FaceBox]], int, int]:
    """Read the boxes of ``params.detector``, applying the checks that need no pixels.

    Drops rows with an invalid box, agreement below ``min_agreement``, score below
    ``min_score`` or a face smaller than ``min_face_px``, counting each in ``drops``.
    Returns the passing boxes grouped by image id, the number of rows of the chosen
    detector and the number of rows of other detectors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections file {path} not found; run the detect stage first")
    table = pd.read_csv(path, dtype={"image_id": str, "detector": str}, keep_default_na=False)
    missing = [column for column in DETECTION_COLUMNS if column not in table.columns]
    if missing:
        raise InputTableError(
            f"{path} lacks the columns {missing}; found {list(table.columns)}. "
            "Rerun the detect stage"
        )

    chosen = table[table["detector"] == params.detector]
    if len(table) and not len(chosen):
        raise ConfigError(
            f"filter.detector = {params.detector!r}, but {path} has no rows with detector "
            f"{params.detector!r}; detectors present: {sorted(table['detector'].unique())}. "
            "Set filter.detector to one of them"
        )

    boxes: dict[str, list[FaceBox]] = defaultdict(list)
    for row in chosen.itertuples():
        item_id = f"{row.image_id} row {row.Index}"
        box = _parse_box(row)
        if box is None:
            drops.skip(item_id, "invalid_box", f"x1={row.x1} y1={row.y1} x2={row.x2} y2={row.y2}")
        elif box.agreement < params.min_agreement:
            drops.skip(item_id, "low_agreement", f"agreement {box.agreement}")
        elif box.score < params.min_score:
            drops.skip(item_id, "low_score", f"score {box.score:.3g}")
        elif box.face_px < params.min_face_px:
            drops.skip(item_id, "too_small", f"face {box.face_px:.0f} px")
        else:
            boxes[row.image_id].append(box)
    return dict(boxes), len(chosen), len(table) - len(chosen)


def _parse_box(row) -> FaceBox | None:
    try:
        x1, y1, x2, y2 = (float(row.x1), float(row.y1), float(row.x2), float(row.y2))
        score = float(row.score) if row.score != "" else 0.0
        # A member row may leave agreement empty; it is one detector's box.
        agreement = int(float(row.agreement)) if row.agreement != "" else 1
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    return FaceBox(int(row.Index), x1, y1, x2, y2, score, agreement)
