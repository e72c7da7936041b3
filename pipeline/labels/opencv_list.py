"""OpenCV annotation lists, as written by ``opencv_annotation`` and read by
``opencv_createsamples``: one line ``path n x y w h [x y w h ...]`` per image.

Coordinates are integer pixels (top-left corner, width, height). Paths are relative
to the folder of the list file. The list does not store the image size, so the reader
takes it from the image file.
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


def parse_opencv_line(line: str, source: str = "<text>") -> tuple[str, list[LabelBox]]:
    """Return the image path and boxes of one annotation line."""
    fields = line.split()
    try:
        count = int(fields[1])
        numbers = [float(v) for v in fields[2:]]
    except (IndexError, ValueError) as error:
        raise LabelFormatError(f"{source}: expected 'path n x y w h ...', got {line!r}") from error
    if len(numbers) != 4 * count:
        raise LabelFormatError(
            f"{source}: line declares {count} boxes but has {len(numbers)} numbers "
            f"(expected {4 * count}): {line!r}"
        )
    boxes = []
    for index in range(count):
        x, y, width, height = numbers[4 * index : 4 * index + 4]
        boxes.append(LabelBox(x, y, x + width, y + height))
    return fields[0], boxes


def read_opencv_list(path: str | Path, skips: SkipCounter | None = None) -> list[LabelledImage]:
    """Read an annotation list; a line with an invalid entry or unreadable image is skipped."""
    skips = skips or SkipCounter(logger)
    path = Path(path)
    images = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            file_name, boxes = parse_opencv_line(line, f"{path}:{line_number}")
        except LabelFormatError as error:
            skips.skip(f"{path.name}:{line_number}", "invalid_label_line", str(error))
            continue
        image_path = path.parent / file_name
        try:
            width, height = image_size(image_path)
        except FileNotFoundError:
            skips.skip(file_name, "image_not_found", str(image_path))
            continue
        except ImageError as error:
            skips.skip(file_name, error.reason, str(error))
            continue
        images.append(LabelledImage(file_name, width, height, boxes))
    return images


def format_opencv_list(images: Iterable[LabelledImage]) -> str:
    """Return the annotation list text; coordinates are rounded to whole pixels."""
    lines = []
    for image in images:
        numbers = []
        for box in image.boxes:
            x, y = round(box.x1), round(box.y1)
            numbers += [x, y, round(box.x2) - x, round(box.y2) - y]
        lines.append(" ".join([image.file_name, str(len(image.boxes)), *map(str, numbers)]))
    return "".join(line + "\n" for line in lines)


def write_opencv_list(path: str | Path, images: Iterable[LabelledImage]) -> None:
    """Write an annotation list; ``file_name`` paths must not contain spaces."""
    images = list(images)
    for image in images:
        if any(character.isspace() for character in image.file_name):
            raise LabelFormatError(
                f"{image.file_name!r} contains whitespace, which the OpenCV list format "
                "cannot store; rename the file"
            )
    atomic_write_bytes(path, format_opencv_list(images).encode("utf-8"))
