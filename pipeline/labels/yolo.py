"""YOLO txt: one file per image, a line ``class cx cy w h`` per box, normalised to [0, 1].

YOLO files do not store the image size, so the reader takes it from the image file
with the same stem in the images folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from pipeline.files import atomic_write_bytes
from pipeline.images import ImageError, image_size
from pipeline.labels.coco import LabelFormatError
from pipeline.labels.model import LabelBox, LabelledImage
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def parse_yolo_text(
    text: str, width: int, height: int, face_class: int = 0, source: str = "<text>"
) -> list[LabelBox]:
    """Return the face boxes of one YOLO label text in pixels; other classes are left out."""
    boxes = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 5:
            raise LabelFormatError(
                f"{source}:{line_number}: expected 'class cx cy w h', got {line!r}"
            )
        try:
            class_id = int(fields[0])
            cx, cy, box_width, box_height = (float(v) for v in fields[1:5])
        except ValueError as error:
            raise LabelFormatError(f"{source}:{line_number}: {error}") from error
        if class_id != face_class:
            continue
        boxes.append(
            LabelBox(
                (cx - box_width / 2) * width,
                (cy - box_height / 2) * height,
                (cx + box_width / 2) * width,
                (cy + box_height / 2) * height,
            )
        )
    return boxes


def read_yolo_folder(
    labels_folder: str | Path,
    images_folder: str | Path,
    face_class: int = 0,
    skips: SkipCounter | None = None,
) -> list[LabelledImage]:
    """Read every ``*.txt`` in ``labels_folder``, sizing boxes by the matching image.

    A label file without a readable image of the same stem is skipped and counted.
    ``file_name`` is relative to ``images_folder``.
    """
    skips = skips or SkipCounter(logger)
    images_folder = Path(images_folder)
    images = []
    for path in sorted(Path(labels_folder).glob("*.txt")):
        if path.name == "classes.txt":
            continue
        image_path = _find_image(images_folder, path.stem)
        if image_path is None:
            skips.skip(path.name, "image_not_found", f"no image named {path.stem}.* in {images_folder}")
            continue
        try:
            width, height = image_size(image_path)
            boxes = parse_yolo_text(path.read_text(encoding="utf-8"), width, height, face_class, str(path))
        except ImageError as error:
            skips.skip(image_path.name, error.reason, str(error))
            continue
        except LabelFormatError as error:
            skips.skip(path.name, "invalid_label_file", str(error))
            continue
        images.append(LabelledImage(image_path.name, width, height, boxes))
    return images


def format_yolo_text(image: LabelledImage, face_class: int = 0) -> str:
    """Return the YOLO label text for one image's boxes."""
    lines = []
    for box in image.boxes:
        cx = (box.x1 + box.x2) / 2 / image.width
        cy = (box.y1 + box.y2) / 2 / image.height
        lines.append(
            f"{face_class} {cx:.6f} {cy:.6f} "
            f"{box.width / image.width:.6f} {box.height / image.height:.6f}"
        )
    return "".join(line + "\n" for line in lines)


def write_yolo_folder(folder: str | Path, images: Iterable[LabelledImage], face_class: int = 0) -> None:
    """Write one ``<image stem>.txt`` per image into ``folder``."""
    for image in images:
        path = Path(folder) / f"{Path(image.file_name).stem}.txt"
        atomic_write_bytes(path, format_yolo_text(image, face_class).encode("utf-8"))


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None
