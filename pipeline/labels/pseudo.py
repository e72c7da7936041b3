"""Pseudo-labels: face boxes proposed where independent detectors agree.

Two weak detectors with different failure modes (the LBP cascade and animeface's
feature matcher) are less likely to fire on the same wrong spot than either alone, so
a box both report with high overlap is a fair training label. Faces that only one of
them finds stay unlabelled, so pseudo-labelled images are marked incomplete.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping

from tqdm import tqdm

from pipeline.detect.base import Box, Detector
from pipeline.detect.ensemble import build_member
from pipeline.detect.params import DetectParams
from pipeline.images import ImageError, load_rgb
from pipeline.labels.model import SPLIT_TRAIN, LabelBox, LabelledImage, box_iou
from pipeline.skips import SkipCounter
from pipeline.files import file_sha256

logger = logging.getLogger(__name__)

PSEUDO_KIND = "pseudo_agreement"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def agreed_boxes(boxes_by_member: Mapping[str, list[Box]], min_iou: float) -> list[LabelBox]:
    """Return one box per face that every member reports with IoU >= ``min_iou``.

    The first member's boxes, highest score first, each take the unused box of highest
    IoU from every other member. The agreed box is the mean of the matched boxes, and its
    score is their mean score.
    """
    members = list(boxes_by_member)
    if not members:
        return []
    anchors = sorted(boxes_by_member[members[0]], key=lambda box: -box.score)
    used: dict[str, set[int]] = {name: set() for name in members[1:]}
    agreed = []
    for anchor in anchors:
        matches: list[tuple[str, int]] = []
        for name in members[1:]:
            candidates = [
                (box_iou(anchor, other), index)
                for index, other in enumerate(boxes_by_member[name])
                if index not in used[name]
            ]
            best_iou, best_index = max(candidates, default=(0.0, -1))
            if best_iou < min_iou:
                break
            matches.append((name, best_index))
        else:
            matched = [anchor] + [boxes_by_member[name][index] for name, index in matches]
            for name, index in matches:
                used[name].add(index)
            count = len(matched)
            agreed.append(
                LabelBox(
                    sum(box.x1 for box in matched) / count,
                    sum(box.y1 for box in matched) / count,
                    sum(box.x2 for box in matched) / count,
                    sum(box.y2 for box in matched) / count,
                    score=sum(box.score for box in matched) / count,
                )
            )
    return agreed


def build_members(names: Iterable[str], detect_params: DetectParams) -> dict[str, Detector]:
    """Create each named detector through DETECTORS from its ``detect.<name>`` section."""
    return {name: build_member(name, detect_params) for name in names}


def pseudo_label_folder(
    folder: str | Path,
    members: Mapping[str, Detector],
    min_iou: float,
    root_name: str,
    exclude_sha256: Iterable[str] = (),
    max_images: int = 0,
    skips: SkipCounter | None = None,
) -> list[LabelledImage]:
    """Pseudo-label the pictures in ``folder`` where all ``members`` agree.

    Pictures whose bytes match ``exclude_sha256`` (already labelled, perhaps held out
    for testing) are skipped, so a copy of a test picture does not leak into training.
    NOTE: only byte-identical copies are caught, not re-encoded or resized ones.
    Pictures with no agreed box are skipped as ``no_agreed_face``, because the
    detectors' silence is no evidence that the picture has no face. ``max_images`` > 0
    stops after that many files. The returned images are in the training split.
    """
    skips = skips or SkipCounter(logger)
    excluded = set(exclude_sha256)
    paths = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    if max_images > 0:
        paths = paths[:max_images]
    if not paths:
        logger.warning("no files to pseudo-label in %s", folder)

    labelled = []
    for path in tqdm(paths, desc="pseudo-label", unit="image"):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skips.skip(path.name, "not_an_image_suffix", path.suffix)
            continue
        if file_sha256(path) in excluded:
            skips.skip(path.name, "already_labelled")
            continue
        try:
            image = load_rgb(path)
        except ImageError as error:
            skips.skip(path.name, error.reason, str(error))
            continue
        boxes_by_member = {name: member.detect(image) for name, member in members.items()}
        boxes = agreed_boxes(boxes_by_member, min_iou)
        if not boxes:
            skips.skip(path.name, "no_agreed_face")
            continue
        height, width = image.shape[:2]
        labelled.append(
            LabelledImage(
                file_name=path.name,
                width=width,
                height=height,
                boxes=boxes,
                root=root_name,
                kind=PSEUDO_KIND,
                complete=False,
                split=SPLIT_TRAIN,
            )
        )
    logger.info("pseudo-labelled %d of %d pictures in %s", len(labelled), len(paths), folder)
    return labelled
