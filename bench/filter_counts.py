"""Print the filter stage's kept and dropped crop counts on the real test pictures.

Two runs with the default ``filter`` params (from params.yaml, or the dataclass defaults
where the section is absent):

1. ``raw``: every picture in <shared>/data/raw, boxes from the LBP anime-face cascade
   (scale factor 1.1, min neighbours 5, min size 24 px, on the histogram-equalised
   grayscale image), cropped from the ``cascade`` rows.
2. ``faces``: every crop in <shared>/data/faces as its own image with one full-frame
   box and no margins, so the near-duplicate check runs over real face crops.

    .venv/bin/python bench/filter_counts.py [--shared PATH] [--skip-faces]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml

from pipeline.config import parse_section
from pipeline.filter import FilterParams, filter_faces
from pipeline.filter.run import REMEDIES
from pipeline.images import ImageError, image_size, load_rgb

REPO_ROOT = Path(__file__).resolve().parent.parent
DETECTION_FIELDS = ["image_id", "x1", "y1", "x2", "y2", "score", "detector", "agreement"]


def load_params(**overrides) -> FilterParams:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text()) or {}
    params = parse_section(FilterParams, data.get("filter") or {}, "filter")
    return dataclasses.replace(params, **overrides)


def write_inputs(folder: Path, pictures: list[Path], boxes_for) -> int:
    """Write manifest.csv and detections.csv for ``pictures``; return the number of boxes."""
    raw_dir = folder / "raw"
    raw_dir.mkdir(parents=True)
    count = 0
    with (raw_dir / "manifest.csv").open("w", newline="") as manifest_stream, (
        folder / "detections.csv"
    ).open("w", newline="") as detections_stream:
        manifest = csv.writer(manifest_stream)
        manifest.writerow(["id", "path"])
        detections = csv.DictWriter(detections_stream, DETECTION_FIELDS)
        detections.writeheader()
        for number, picture in enumerate(pictures):
            image_id = f"{number:05d}"
            # The manifest path is relative to the raw folder, so link each picture in.
            (raw_dir / f"{image_id}{picture.suffix}").symlink_to(picture)
            manifest.writerow([image_id, f"{image_id}{picture.suffix}"])
            for x1, y1, x2, y2 in boxes_for(picture):
                detections.writerow(
                    dict(image_id=image_id, x1=x1, y1=y1, x2=x2, y2=y2, score=1.0,
                         detector="cascade", agreement=1)
                )
                count += 1
    return count


def cascade_boxes(cascade_path: Path):
    cascade = cv2.CascadeClassifier(str(cascade_path))
    if cascade.empty():
        sys.exit(f"could not load the cascade {cascade_path}")

    def boxes_for(picture: Path) -> list[tuple[int, int, int, int]]:
        try:
            gray = cv2.cvtColor(load_rgb(picture), cv2.COLOR_RGB2GRAY)
        except ImageError:
            return []
        found = cascade.detectMultiScale(
            cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)
        )
        return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]

    return boxes_for


def full_frame_box(picture: Path) -> list[tuple[int, int, int, int]]:
    try:
        width, height = image_size(picture)
    except ImageError:
        return []
    return [(0, 0, width, height)]


def run(name: str, pictures: list[Path], boxes_for, params: FilterParams) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        start = time.perf_counter()
        boxes = write_inputs(folder, pictures, boxes_for)
        detect_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = filter_faces(
            folder / "raw", folder / "detections.csv", params, folder / "faces.npy",
            folder / "faces.csv", folder / "preview.png", folder / "filter.json",
        )
        filter_s = time.perf_counter() - start
    print(f"\n== {name}: {len(pictures)} pictures, {boxes} boxes "
          f"(boxes in {detect_s:.1f} s, filter in {filter_s:.1f} s)")
    print(f"kept {metrics['kept']}")
    for reason in sorted(set(REMEDIES) | set(metrics["dropped"])):
        print(f"dropped {reason}: {metrics['dropped'].get(reason, 0)}")
    print(f"crop actions: {json.dumps(metrics['crop_actions'])}, "
          f"enlarged {metrics['enlarged_crops']}")
    print(f"images skipped: {json.dumps(metrics['images']['skipped'])}")
    print(f"Laplacian variance of kept crops: {json.dumps(metrics['laplacian_var_kept'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"))
    parser.add_argument("--shared", type=Path, default=default_shared,
                        help="folder holding data/ and models/ (default: ../shared)")
    parser.add_argument("--skip-faces", action="store_true", help="run only the raw pictures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    raw = sorted(p for p in (args.shared / "data" / "raw").iterdir() if p.is_file())
    cascade = cascade_boxes(args.shared / "models" / "lbpcascade_animeface.xml")
    run("raw pictures, cascade boxes", raw, cascade, load_params(detector="cascade"))

    if not args.skip_faces:
        faces = sorted(p for p in (args.shared / "data" / "faces").rglob("*")
                       if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        params = load_params(detector="cascade", margin_top=0.0, margin_bottom=0.0,
                             margin_side=0.0)
        run("shared face crops, full-frame boxes", faces, full_frame_box, params)


if __name__ == "__main__":
    main()
