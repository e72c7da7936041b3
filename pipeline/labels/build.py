"""Assemble the face label set for detector fine-tuning and evaluation.

Human and weak labels come from the boxes CSV; pseudo-labels come from detector
agreement on scraped pictures. Each CSV kind is split into train and test by a seeded
shuffle. Pseudo-labels are always training data, because scoring detectors on boxes
that two of them proposed would flatter those two.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from pipeline.detect.base import Detector
from pipeline.images import ImageError, image_size, load_rgb
from pipeline.labels.boxes_csv import read_boxes_csv
from pipeline.labels.masks import encode_mask, make_mask
from pipeline.labels.model import SPLIT_TEST, SPLIT_TRAIN, LabelledImage, resolve_image_path
from pipeline.labels.params import LabelsParams
from pipeline.labels.pseudo import file_sha256, pseudo_label_folder
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

# Image root names stored in the COCO file; stages map them to folders.
BOXES_ROOT = "boxes"
RAW_ROOT = "raw"


def assign_test_split(images: list[LabelledImage], test_fraction: float, seed: int) -> None:
    """Set ``split`` on images without one: ``test_fraction`` of each kind becomes test.

    Images are sorted by name before the seeded shuffle, so the split depends only on
    the set of names, the seed and the fraction.
    """
    by_kind: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in images:
        if not image.split:
            by_kind[image.kind].append(image)
    for kind, group in sorted(by_kind.items()):
        group.sort(key=lambda image: image.file_name)
        random.Random(f"{seed}:{kind}").shuffle(group)
        test_count = round(len(group) * test_fraction)
        for index, image in enumerate(group):
            image.split = SPLIT_TEST if index < test_count else SPLIT_TRAIN


def check_images(
    images: list[LabelledImage], roots: Mapping[str, str | Path], skips: SkipCounter
) -> list[LabelledImage]:
    """Keep images whose file exists, decodes and has the labelled size; count the rest."""
    kept = []
    for image in images:
        path = resolve_image_path(image, roots)
        try:
            size = image_size(path)
        except FileNotFoundError:
            skips.skip(image.file_name, "image_not_found", str(path))
            continue
        except ImageError as error:
            skips.skip(image.file_name, error.reason, str(error))
            continue
        if size != (image.width, image.height):
            skips.skip(
                image.file_name,
                "size_mismatch",
                f"labels say {image.width}x{image.height}, file is {size[0]}x{size[1]}",
            )
            continue
        invalid = [box for box in image.boxes if not box.is_valid(image.width, image.height)]
        for box in invalid:
            skips.skip(image.file_name, "invalid_box", str(box))
        image.boxes = [box for box in image.boxes if box.is_valid(image.width, image.height)]
        kept.append(image)
    return kept


def add_masks(
    images: list[LabelledImage],
    roots: Mapping[str, str | Path],
    method: str,
    grabcut_iterations: int,
    skips: SkipCounter,
) -> list[LabelledImage]:
    """Give every box without a segmentation a mask made by ``method``, as COCO RLE.

    An image that GrabCut needs but cannot decode is dropped and counted.
    """
    kept = []
    for image in tqdm(images, desc=f"masks ({method})", unit="image"):
        missing = [box for box in image.boxes if box.segmentation is None]
        pixels = None
        if missing and method == "grabcut":
            try:
                pixels = load_rgb(resolve_image_path(image, roots))
            except ImageError as error:
                skips.skip(image.file_name, error.reason, str(error))
                continue
        for box in missing:
            mask = make_mask(box, image.height, image.width, method, pixels, grabcut_iterations)
            box.segmentation = encode_mask(mask)
        kept.append(image)
    return kept


def build_label_set(
    params: LabelsParams,
    boxes_csv: str | Path,
    raw_folder: str | Path | None,
    members: Mapping[str, Detector],
    skips: SkipCounter,
) -> list[LabelledImage]:
    """Read the CSV labels, split them, add pseudo-labels from ``raw_folder`` and masks.

    CSV images use the image root ``boxes`` (the CSV's folder) and pseudo-labelled
    pictures the root ``raw``. ``members`` may be empty, which turns pseudo-labels off.
    """
    boxes_csv = Path(boxes_csv)
    roots: dict[str, Path] = {BOXES_ROOT: boxes_csv.parent}
    images = read_boxes_csv(
        boxes_csv, params.kinds, params.face_labels, params.incomplete_kinds, skips
    )
    for image in images:
        image.root = BOXES_ROOT
    images = check_images(images, roots, skips)
    assign_test_split(images, params.test_fraction, params.seed)

    if members and raw_folder is not None:
        roots[RAW_ROOT] = Path(raw_folder)
        labelled_sha256 = {file_sha256(resolve_image_path(image, roots)) for image in images}
        images += pseudo_label_folder(
            raw_folder,
            members,
            params.pseudo_min_iou,
            RAW_ROOT,
            exclude_sha256=labelled_sha256,
            max_images=params.pseudo_max_images,
            skips=skips,
        )
    images = add_masks(images, roots, params.mask_method, params.grabcut_iterations, skips)
    return images


def summarize(images: list[LabelledImage]) -> dict[str, dict[str, int]]:
    """Return image and box counts by split and kind, for the stage's metrics."""
    image_counts: Counter[str] = Counter()
    box_counts: Counter[str] = Counter()
    for image in images:
        key = f"{image.split}/{image.kind}"
        image_counts[key] += 1
        box_counts[key] += len(image.boxes)
    return {"images": dict(sorted(image_counts.items())), "boxes": dict(sorted(box_counts.items()))}
