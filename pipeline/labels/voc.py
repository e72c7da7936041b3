"""Pascal VOC XML: one file per image, ``<object>`` entries with ``<bndbox>``.

VOC coordinates are 1-based and inclusive, so ``xmin = x1 + 1`` and ``xmax = x2``
for a box whose ``x2`` is exclusive in 0-based pixels.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterable

from pipeline.files import atomic_write_bytes
from pipeline.labels.coco import LabelFormatError
from pipeline.labels.model import LabelBox, LabelledImage
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)


def read_voc_file(path: str | Path, face_names: Iterable[str] = ("face",)) -> LabelledImage:
    """Read one VOC XML file; objects whose name is not in ``face_names`` are left out."""
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise LabelFormatError(f"{path}: not valid XML ({error})") from error

    names = {name.lower() for name in face_names}
    try:
        image = LabelledImage(
            file_name=_text(root, "filename", path),
            width=int(_text(root, "size/width", path)),
            height=int(_text(root, "size/height", path)),
        )
        for element in root.findall("object"):
            if _text(element, "name", path).strip().lower() not in names:
                continue
            xmin = float(_text(element, "bndbox/xmin", path))
            ymin = float(_text(element, "bndbox/ymin", path))
            xmax = float(_text(element, "bndbox/xmax", path))
            ymax = float(_text(element, "bndbox/ymax", path))
            image.boxes.append(LabelBox(xmin - 1.0, ymin - 1.0, xmax, ymax))
    except ValueError as error:
        raise LabelFormatError(f"{path}: invalid number ({error})") from error
    return image


def read_voc_folder(
    folder: str | Path,
    face_names: Iterable[str] = ("face",),
    skips: SkipCounter | None = None,
) -> list[LabelledImage]:
    """Read every ``*.xml`` in ``folder``; an invalid file is skipped and counted."""
    skips = skips or SkipCounter(logger)
    images = []
    for path in sorted(Path(folder).glob("*.xml")):
        try:
            images.append(read_voc_file(path, face_names))
        except LabelFormatError as error:
            skips.skip(path.name, "invalid_label_file", str(error))
    return images


def write_voc_file(path: str | Path, image: LabelledImage, face_name: str = "face") -> None:
    """Write one image's boxes as VOC XML."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = image.file_name
    size = ElementTree.SubElement(root, "size")
    ElementTree.SubElement(size, "width").text = str(image.width)
    ElementTree.SubElement(size, "height").text = str(image.height)
    ElementTree.SubElement(size, "depth").text = "3"
    for box in image.boxes:
        element = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(element, "name").text = face_name
        ElementTree.SubElement(element, "difficult").text = "0"
        bndbox = ElementTree.SubElement(element, "bndbox")
        for key, value in (
            ("xmin", box.x1 + 1.0),
            ("ymin", box.y1 + 1.0),
            ("xmax", box.x2),
            ("ymax", box.y2),
        ):
            ElementTree.SubElement(bndbox, key).text = _number(value)
    ElementTree.indent(root)
    atomic_write_bytes(path, ElementTree.tostring(root, encoding="utf-8") + b"\n")


def write_voc_folder(folder: str | Path, images: Iterable[LabelledImage]) -> None:
    """Write one ``<image stem>.xml`` per image into ``folder``."""
    for image in images:
        write_voc_file(Path(folder) / f"{Path(image.file_name).stem}.xml", image)


def _text(element: ElementTree.Element, tag: str, path: Path) -> str:
    found = element.find(tag)
    if found is None or found.text is None:
        raise LabelFormatError(f"{path}: missing <{tag}>")
    return found.text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
