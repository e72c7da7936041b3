"""COCO JSON, the project's label format, with one category ``face`` and optional masks.

Besides the standard COCO keys, every image entry stores ``root`` (the name of the
image folder that ``file_name`` is relative to), ``label_kind``, ``labels_complete``
and ``split``, and an annotation may store ``score`` for a pseudo-label. COCO tools
ignore the extra keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from pipeline.files import atomic_write_bytes
from pipeline.labels.model import LabelBox, LabelledImage

FACE_CATEGORY_ID = 1
CATEGORIES = [{"id": FACE_CATEGORY_ID, "name": "face", "supercategory": "face"}]


class LabelFormatError(ValueError):
    """A label file that does not follow its format; the message names the file and entry."""


def to_coco(images: Iterable[LabelledImage]) -> dict[str, Any]:
    """Return a COCO dataset dict for ``images``; ids are assigned from 1 in order."""
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(images, start=1):
        coco_images.append(
            {
                "id": image_id,
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                "root": image.root,
                "label_kind": image.kind,
                "labels_complete": image.complete,
                "split": image.split,
            }
        )
        for box in image.boxes:
            annotation: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": FACE_CATEGORY_ID,
                "bbox": [box.x1, box.y1, box.width, box.height],
                "area": box.width * box.height,
                "iscrowd": 0,
            }
            if box.segmentation is not None:
                annotation["segmentation"] = box.segmentation
            if box.score is not None:
                annotation["score"] = box.score
            annotations.append(annotation)
    return {"images": coco_images, "annotations": annotations, "categories": CATEGORIES}


def from_coco(data: dict[str, Any], source: str = "<dict>") -> list[LabelledImage]:
    """Read face labels from a COCO dataset dict; non-face categories are ignored.

    Raises LabelFormatError naming ``source`` and the entry when a key is missing.
    """
    face_ids = _face_category_ids(data, source)
    images: dict[int, LabelledImage] = {}
    for entry in data.get("images", []):
        try:
            images[entry["id"]] = LabelledImage(
                file_name=str(entry["file_name"]),
                width=int(entry["width"]),
                height=int(entry["height"]),
                root=str(entry.get("root", "")),
                kind=str(entry.get("label_kind", "")),
                complete=bool(entry.get("labels_complete", True)),
                split=str(entry.get("split", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise LabelFormatError(f"{source}: invalid image entry {entry!r} ({error})") from error

    for annotation in data.get("annotations", []):
        if annotation.get("category_id") not in face_ids:
            continue
        try:
            x, y, width, height = (float(v) for v in annotation["bbox"])
            image = images[annotation["image_id"]]
        except (KeyError, TypeError, ValueError) as error:
            raise LabelFormatError(
                f"{source}: invalid annotation {annotation.get('id')!r} ({error!r})"
            ) from error
        score = annotation.get("score")
        image.boxes.append(
            LabelBox(
                x,
                y,
                x + width,
                y + height,
                score=None if score is None else float(score),
                segmentation=annotation.get("segmentation") or None,
            )
        )
    return list(images.values())


def write_coco(path: str | Path, images: Iterable[LabelledImage]) -> None:
    """Write ``images`` as COCO JSON, atomically."""
    text = json.dumps(to_coco(images), indent=1) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_coco(path: str | Path) -> list[LabelledImage]:
    """Read face labels from a COCO JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LabelFormatError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise LabelFormatError(f"{path}: a COCO file must contain a JSON object")
    return from_coco(data, str(path))


def _face_category_ids(data: dict[str, Any], source: str) -> set[int]:
    categories = data.get("categories") or CATEGORIES
    face_ids = {c["id"] for c in categories if str(c.get("name", "")).lower() == "face"}
    if not face_ids:
        names = [c.get("name") for c in categories]
        raise LabelFormatError(f"{source}: no category named 'face'; categories: {names}")
    return face_ids
