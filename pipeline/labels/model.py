"""In-memory face labels shared by every label format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

SPLIT_TRAIN = "train"
SPLIT_TEST = "test"


@dataclass
class LabelBox:
    """A face box in pixels of the upright image, ``x2``/``y2`` exclusive.

    ``score`` is None for a human label and the proposing model's confidence for a
    pseudo-label. ``segmentation`` is a COCO segmentation (RLE dict or polygon list)
    or None when the label has no mask.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    score: float | None = None
    segmentation: Any = None

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def is_valid(self, image_width: int, image_height: int) -> bool:
        """Return True when the box has positive size and overlaps the image."""
        return (
            self.x2 > self.x1
            and self.y2 > self.y1
            and self.x2 > 0
            and self.y2 > 0
            and self.x1 < image_width
            and self.y1 < image_height
        )


@dataclass
class LabelledImage:
    """One picture and its face boxes.

    ``file_name`` is relative to the image root named ``root``; callers map root names
    to folders (see :func:`resolve_image_path`). ``complete`` is False when some faces
    in the picture are not boxed, so precision cannot be measured on it. ``kind`` names
    where the labels came from, and ``split`` is ``"train"``, ``"test"`` or empty.
    """

    file_name: str
    width: int
    height: int
    boxes: list[LabelBox] = field(default_factory=list)
    root: str = ""
    kind: str = ""
    complete: bool = True
    split: str = ""


def resolve_image_path(image: LabelledImage, roots: Mapping[str, str | Path]) -> Path:
    """Return the file path of ``image`` under the folder its root name maps to."""
    if image.root not in roots:
        raise KeyError(
            f"image {image.file_name!r} uses image root {image.root!r}, which was not given; "
            f"given roots: {sorted(roots)}. Pass --image-root {image.root or 'NAME'}=FOLDER"
        )
    return Path(roots[image.root]) / image.file_name


def parse_image_roots(values: list[str]) -> dict[str, Path]:
    """Parse ``NAME=FOLDER`` command-line values into a root-name mapping.

    A value without ``=`` maps the empty root name, the default of single-source files.
    """
    roots: dict[str, Path] = {}
    for value in values:
        name, separator, folder = value.partition("=")
        if not separator:
            name, folder = "", value
        if not folder:
            raise ValueError(f"image root {value!r} has no folder; use NAME=FOLDER")
        if name in roots:
            raise ValueError(f"image root {name!r} given twice")
        roots[name] = Path(folder)
    return roots


def box_iou(a: Any, b: Any) -> float:
    """Return the intersection over union of two boxes with ``x1, y1, x2, y2`` attributes."""
    width = min(a.x2, b.x2) - max(a.x1, b.x1)
    height = min(a.y2, b.y2) - max(a.y1, b.y1)
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - intersection
    return intersection / union if union > 0 else 0.0
