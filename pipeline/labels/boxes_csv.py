"""The merged boxes CSV: ``image,width,height,x1,y1,x2,y2,label,score,kind,source_repo``.

One row per box in pixel ``x1,y1,x2,y2``. A row with empty coordinates records an
image in which the labelling source found no face. ``image`` is relative to the
folder of the CSV file. ``kind`` names where a row came from, for example
``gt_human`` (hand-drawn, every face boxed), ``gt_human_single_box_per_image``
(hand-drawn, one face boxed per image, others not), ``pseudo_model_prediction`` and
``pseudo_no_detections`` (another detector's output).
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Iterable

from pipeline.files import atomic_write_bytes
from pipeline.labels.coco import LabelFormatError
from pipeline.labels.model import LabelBox, LabelledImage
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

COLUMNS = ["image", "width", "height", "x1", "y1", "x2", "y2", "label", "score", "kind", "source_repo"]


def read_boxes_csv(
    path: str | Path,
    kinds: Iterable[str] | None = None,
    face_labels: Iterable[str] = ("face",),
    incomplete_kinds: Iterable[str] = ("gt_human_single_box_per_image",),
    skips: SkipCounter | None = None,
) -> list[LabelledImage]:
    """Read face labels grouped by image, in file order.

    Rows of a kind not in ``kinds`` (None keeps all) are left out. Rows whose label is not
    in ``face_labels`` (eyes, mouths) are left out too, and counted in one log line. Images of a kind in
    ``incomplete_kinds`` are marked ``complete=False``. A row with an invalid number is
    skipped and counted.
    """
    path = Path(path)
    skips = skips or SkipCounter(logger)
    selected_kinds = None if kinds is None else set(kinds)
    labels = {label.lower() for label in face_labels}
    incomplete = set(incomplete_kinds)

    with path.open(encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [column for column in ("image", "width", "height", "x1", "y1", "x2", "y2", "label", "kind")
                   if column not in (reader.fieldnames or [])]
        if missing:
            raise LabelFormatError(f"{path}: missing columns {missing}; expected {COLUMNS}")
        rows = list(reader)

    images: dict[str, LabelledImage] = {}
    other_labels: Counter[str] = Counter()
    for row_number, row in enumerate(rows, start=2):
        kind = row["kind"]
        if selected_kinds is not None and kind not in selected_kinds:
            continue
        row_id = f"{path.name}:{row_number}"
        try:
            image = images.get(row["image"]) or LabelledImage(
                file_name=row["image"],
                width=int(float(row["width"])),
                height=int(float(row["height"])),
                kind=kind,
                complete=kind not in incomplete,
            )
            box = _parse_box(row)
        except ValueError as error:
            skips.skip(row_id, "invalid_row", str(error))
            continue
        images.setdefault(row["image"], image)
        if image.kind != kind:
            skips.skip(row_id, "mixed_kinds_in_image", f"{row['image']}: {image.kind} and {kind}")
            continue
        if box is None:
            continue
        if row["label"].strip().lower() not in labels:
            other_labels[row["label"]] += 1
            continue
        image.boxes.append(box)
    if other_labels:
        logger.info("%s: left out rows with labels other than %s: %s", path.name, sorted(labels), dict(other_labels))
    return list(images.values())


def format_boxes_csv(images: Iterable[LabelledImage], source_repo: str = "") -> str:
    """Return CSV text with one row per box and one empty row per image without boxes."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    for image in images:
        common = [image.file_name, image.width, image.height]
        if not image.boxes:
            writer.writerow([*common, "", "", "", "", "", "", image.kind, source_repo])
        for box in image.boxes:
            score = "" if box.score is None else box.score
            writer.writerow(
                [*common, box.x1, box.y1, box.x2, box.y2, "face", score, image.kind, source_repo]
            )
    return stream.getvalue()


def write_boxes_csv(path: str | Path, images: Iterable[LabelledImage], source_repo: str = "") -> None:
    """Write ``images`` in the boxes CSV layout, atomically."""
    atomic_write_bytes(path, format_boxes_csv(images, source_repo).encode("utf-8"))


def _parse_box(row: dict[str, str]) -> LabelBox | None:
    coordinates = [row[key].strip() for key in ("x1", "y1", "x2", "y2")]
    if not any(coordinates):
        return None
    x1, y1, x2, y2 = (float(value) for value in coordinates)
    score = (row.get("score") or "").strip()
    return LabelBox(x1, y1, x2, y2, score=float(score) if score else None)
