"""``python -m pipeline labels``: convert face labels between formats.

Example: ``python -m pipeline labels --from voc --input annotations/ --to coco
--out faces.json``. YOLO input also needs ``--images`` (the folder of the pictures,
for their sizes).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.files import setup_logging
from pipeline.labels.boxes_csv import read_boxes_csv, write_boxes_csv
from pipeline.labels.coco import LabelFormatError, read_coco, write_coco
from pipeline.labels.model import LabelledImage
from pipeline.labels.opencv_list import read_opencv_list, write_opencv_list
from pipeline.labels.voc import read_voc_folder, write_voc_folder
from pipeline.labels.yolo import read_yolo_folder, write_yolo_folder
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

FORMATS = {
    "coco": "COCO JSON file",
    "voc": "folder of Pascal VOC XML files",
    "yolo": "folder of YOLO txt files (reading needs --images)",
    "opencv": "OpenCV annotation list file (path n x y w h ...)",
    "boxes_csv": "boxes CSV file (image,width,height,x1,y1,x2,y2,label,score,kind,source_repo)",
}


def read_labels(
    format_name: str, path: Path, images: Path | None, face_class: int, skips: SkipCounter
) -> list[LabelledImage]:
    """Read labels in ``format_name`` from ``path``."""
    if format_name == "coco":
        return read_coco(path)
    if format_name == "voc":
        return read_voc_folder(path, skips=skips)
    if format_name == "yolo":
        if images is None:
            raise ValueError("reading YOLO labels needs --images FOLDER for the picture sizes")
        return read_yolo_folder(path, images, face_class, skips)
    if format_name == "opencv":
        return read_opencv_list(path, skips)
    if format_name == "boxes_csv":
        return read_boxes_csv(path, skips=skips)
    raise ValueError(f"unknown label format {format_name!r}; choose one of {sorted(FORMATS)}")


def write_labels(format_name: str, path: Path, images: list[LabelledImage], face_class: int) -> None:
    """Write ``images`` in ``format_name`` to ``path`` (a file or folder, by format)."""
    if format_name == "coco":
        write_coco(path, images)
    elif format_name == "voc":
        write_voc_folder(path, images)
    elif format_name == "yolo":
        write_yolo_folder(path, images, face_class)
    elif format_name == "opencv":
        write_opencv_list(path, images)
    elif format_name == "boxes_csv":
        write_boxes_csv(path, images)
    else:
        raise ValueError(f"unknown label format {format_name!r}; choose one of {sorted(FORMATS)}")


def main(argv: list[str] | None = None) -> int:
    formats_help = "; ".join(f"{name}: {text}" for name, text in FORMATS.items())
    parser = argparse.ArgumentParser(
        prog="python -m pipeline labels",
        description=f"Convert face labels between formats. Formats: {formats_help}.",
    )
    parser.add_argument("--from", dest="source_format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--input", required=True, type=Path, help="input file or folder")
    parser.add_argument("--to", dest="target_format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--out", required=True, type=Path, help="output file or folder")
    parser.add_argument("--images", type=Path, help="folder of the pictures (YOLO input)")
    parser.add_argument("--face-class", type=int, default=0, help="YOLO class id of faces")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    skips = SkipCounter(logger)
    try:
        images = read_labels(args.source_format, args.input, args.images, args.face_class, skips)
        write_labels(args.target_format, args.out, images, args.face_class)
    except (LabelFormatError, ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 1
    boxes = sum(len(image.boxes) for image in images)
    logger.info(
        "converted %d images and %d boxes from %s to %s; skipped: %s",
        len(images), boxes, args.source_format, args.target_format, skips.as_dict() or "none",
    )
    return 0
