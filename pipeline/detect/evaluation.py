"""Detector quality against labelled images: precision, recall, F1, AP@0.5, PR curves, speed.

Matching follows COCO: predictions in descending score order each take the unmatched
labelled box of highest IoU, if that IoU is at least the threshold. AP@0.5 comes from
pycocotools' COCOeval (101-point interpolated precision, at most 100 detections per
image, all box areas).

Images whose labels box only some of the faces (``complete=False``) give recall only.
A detection that matches no label there may be an unlabelled face, so it cannot be
counted as a false positive. Precision, F1 and AP are therefore left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipeline.config import parse_section
from pipeline.detect.ensemble import build_ensemble
from pipeline.detect.fusion import fuse_boxes
from pipeline.detect.maskrcnn import MaskRCNNMemberParams
from pipeline.detect.params import DetectParams
from pipeline.images import ImageError, load_rgb
from pipeline.labels.coco import FACE_CATEGORY_ID
from pipeline.labels.model import LabelBox, LabelledImage, box_iou, resolve_image_path
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

PRECISION_OMITTED_REASON = (
    "labels of these images box only some faces (one box per image), so a detection "
    "that matches no label may be an unlabelled face; precision, F1 and AP would be "
    "underestimated and are not reported"
)
AP_PROTOCOL = (
    "COCO AP at IoU 0.5 from pycocotools COCOeval: 101-point interpolated precision, "
    "at most 100 detections per image, all box areas"
)


@dataclass
class ScoredImage:
    """One image's labelled boxes and one detector's predictions on it."""

    truths: Sequence[LabelBox]
    predictions: Sequence[Any]  # objects with x1, y1, x2, y2 and score, such as Box


def match_predictions(
    predictions: Sequence[Any], truths: Sequence[Any], iou_threshold: float
) -> list[bool]:
    """Return, for each prediction in input order, whether it matches a labelled box."""
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i].score)
    matched_truths: set[int] = set()
    is_match = [False] * len(predictions)
    for index in order:
        best_iou, best_truth = iou_threshold, -1
        for truth_index, truth in enumerate(truths):
            if truth_index in matched_truths:
                continue
            overlap = box_iou(predictions[index], truth)
            if overlap >= best_iou:
                best_iou, best_truth = overlap, truth_index
        if best_truth >= 0:
            matched_truths.add(best_truth)
            is_match[index] = True
    return is_match


def count_matches(
    images: Iterable[ScoredImage], iou_threshold: float, min_score: float = 0.0
) -> tuple[int, int, int]:
    """Return (true positives, false positives, false negatives) over predictions >= ``min_score``."""
    true_positives = false_positives = truth_count = 0
    for image in images:
        kept = [p for p in image.predictions if p.score >= min_score]
        flags = match_predictions(kept, image.truths, iou_threshold)
        true_positives += sum(flags)
        false_positives += len(flags) - sum(flags)
        truth_count += len(image.truths)
    return true_positives, false_positives, truth_count - true_positives


def precision_recall_f1(
    true_positives: int, false_positives: int, false_negatives: int
) -> dict[str, float | None]:
    """Return precision, recall and F1; a ratio with a zero denominator is None."""
    predicted = true_positives + false_positives
    labelled = true_positives + false_negatives
    precision = true_positives / predicted if predicted else None
    recall = true_positives / labelled if labelled else None
    if precision is None or recall is None:
        f1 = None
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def coco_ap50(images: Sequence[ScoredImage]) -> float | None:
    """Return COCO AP at IoU 0.5 over ``images``; None when no image has a labelled box."""
    if not any(image.truths for image in images):
        return None
    if not any(image.predictions for image in images):
        return 0.0

    ground_truth: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": FACE_CATEGORY_ID, "name": "face"}]}
    detections = []
    for image_id, image in enumerate(images, start=1):
        ground_truth["images"].append({"id": image_id})
        for truth in image.truths:
            ground_truth["annotations"].append(
                {
                    "id": len(ground_truth["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": FACE_CATEGORY_ID,
                    "bbox": [truth.x1, truth.y1, truth.x2 - truth.x1, truth.y2 - truth.y1],
                    "area": (truth.x2 - truth.x1) * (truth.y2 - truth.y1),
                    "iscrowd": 0,
                }
            )
        for prediction in image.predictions:
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": FACE_CATEGORY_ID,
                    "bbox": [prediction.x1, prediction.y1, prediction.x2 - prediction.x1, prediction.y2 - prediction.y1],
                    "score": float(prediction.score),
                }
            )

    # pycocotools prints progress to stdout; keep it out of the stage's output.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_truth = COCO()
        coco_truth.dataset = ground_truth
        coco_truth.createIndex()
        coco_detections = coco_truth.loadRes(detections)
        evaluator = COCOeval(coco_truth, coco_detections, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])


def precision_recall_curve(images: Sequence[ScoredImage], iou_threshold: float) -> list[dict[str, float]]:
    """Return precision and recall after each prediction, in descending score order.

    Each point's ``threshold`` is the score of the last prediction counted, so keeping
    predictions scored at or above it gives that precision and recall.
    """
    truth_count = sum(len(image.truths) for image in images)
    ranked: list[tuple[float, bool]] = []
    for image in images:
        flags = match_predictions(image.predictions, image.truths, iou_threshold)
        ranked.extend((float(p.score), flag) for p, flag in zip(image.predictions, flags))
    ranked.sort(key=lambda item: -item[0])

    points = []
    true_positives = 0
    for rank, (score, is_match) in enumerate(ranked, start=1):
        true_positives += is_match
        points.append(
            {
                "threshold": score,
                "precision": true_positives / rank,
                "recall": true_positives / truth_count if truth_count else 0.0,
            }
        )
    return points


def score_group(
    images: Sequence[ScoredImage],
    complete: bool,
    operating_threshold: float,
    iou_threshold: float,
    loose_iou_threshold: float | None = None,
) -> dict[str, Any]:
    """Return the metrics of one label group at the operating threshold.

    A complete group gets precision, recall, F1 and AP@0.5 (AP uses every prediction,
    also those below the operating threshold). An incomplete group gets recall only and
    a ``precision_omitted_reason``. With ``loose_iou_threshold``, ``recall_loose_iou``
    is the recall at that lower IoU, which counts faces found with a different framing
    than the label's (hair in or out, for example).
    """
    true_positives, false_positives, false_negatives = count_matches(images, iou_threshold, operating_threshold)
    rates = precision_recall_f1(true_positives, false_positives, false_negatives)
    result: dict[str, Any] = {
        "images": len(images),
        "faces": true_positives + false_negatives,
        "true_positives": true_positives,
        "false_negatives": false_negatives,
        "recall": rates["recall"],
    }
    if loose_iou_threshold is not None:
        loose_true_positives, _, loose_false_negatives = count_matches(
            images, loose_iou_threshold, operating_threshold
        )
        result["recall_loose_iou"] = precision_recall_f1(
            loose_true_positives, 0, loose_false_negatives
        )["recall"]
    if complete:
        result.update(
            false_positives=false_positives,
            precision=rates["precision"],
            f1=rates["f1"],
            ap50=coco_ap50(images),
        )
    else:
        result["precision_omitted_reason"] = PRECISION_OMITTED_REASON
    return result


@dataclass
class DetectorRun:
    """One detector's predictions on the evaluation images and the time it took."""

    predictions: dict[int, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0
    operating_threshold: float = 0.0


def score_detector(
    run: DetectorRun,
    images: Sequence[LabelledImage],
    iou_threshold: float,
    loose_iou_threshold: float | None = None,
) -> dict[str, Any]:
    """Return one detector's metrics, split by label completeness, with its speed."""
    result: dict[str, Any] = {
        "images": len(images),
        "operating_threshold": run.operating_threshold,
        "images_per_second": len(images) / run.seconds if run.seconds > 0 else None,
    }
    for group_name, complete in (("complete_labels", True), ("incomplete_labels", False)):
        group = [
            ScoredImage(image.boxes, run.predictions.get(index, []))
            for index, image in enumerate(images)
            if image.complete == complete
        ]
        if group:
            result[group_name] = score_group(
                group, complete, run.operating_threshold, iou_threshold, loose_iou_threshold
            )
    return result


def curve_for(run: DetectorRun, images: Sequence[LabelledImage], iou_threshold: float) -> list[dict[str, float]]:
    """Return the PR curve of one detector on the completely labelled images."""
    group = [
        ScoredImage(image.boxes, run.predictions.get(index, []))
        for index, image in enumerate(images)
        if image.complete
    ]
    return precision_recall_curve(group, iou_threshold)


def summarize_labels(images: Sequence[LabelledImage]) -> dict[str, Any]:
    """Return image and face counts of the evaluation set by label kind and completeness."""
    by_kind: dict[str, dict[str, Any]] = {}
    for image in images:
        entry = by_kind.setdefault(image.kind or "unknown", {"images": 0, "faces": 0, "complete": image.complete})
        entry["images"] += 1
        entry["faces"] += len(image.boxes)
    return by_kind


def ensure_names_distinct(members: Iterable[str], ensembles: Mapping[str, Any]) -> None:
    """Raise ValueError when an ensemble name repeats a member name."""
    clashes = sorted(set(members) & set(ensembles))
    if clashes:
        raise ValueError(f"ensemble name {clashes[0]!r} is also a member name; rename the ensemble")


def run_detectors(
    images: Sequence[LabelledImage],
    roots: Mapping[str, Any],
    detect_params: DetectParams,
    members: Sequence[str],
    ensembles: Mapping[str, Sequence[str]],
    ap_min_score: float,
    ensemble_operating_threshold: float,
    skips: SkipCounter,
    maskrcnn_checkpoint: str | None = None,
) -> tuple[list[LabelledImage], dict[str, DetectorRun]]:
    """Run members and ensembles on ``images``; return the images that decoded and the runs.

    Every detector needed is built once, through DETECTORS by name, from the sections of
    ``detect_params`` (a DetectParams), and run through pipeline.detect.ensemble on each
    image. Each ensemble fuses its members' boxes with ``detect_params.fusion``.
    ``maskrcnn_checkpoint`` replaces ``detect.maskrcnn.checkpoint_path``. To measure AP
    below the operating point, the maskrcnn member keeps boxes down to ``ap_min_score``.
    Its precision, recall and F1, and its input to the ensembles, use only boxes at or
    above its own ``score_threshold``. Images that fail to decode are skipped and counted.
    """
    ensure_names_distinct(members, ensembles)
    needed = list(dict.fromkeys([*members, *(name for group in ensembles.values() for name in group)]))
    operating = {name: 0.0 for name in needed}
    maskrcnn_section = dict(detect_params.maskrcnn)
    if "maskrcnn" in needed:
        if maskrcnn_checkpoint is not None:
            maskrcnn_section["checkpoint_path"] = str(maskrcnn_checkpoint)
        member_params = parse_section(MaskRCNNMemberParams, maskrcnn_section, "detect.maskrcnn")
        operating["maskrcnn"] = member_params.score_threshold
        maskrcnn_section["score_threshold"] = min(ap_min_score, member_params.score_threshold)

    # Validate each ensemble as a detect section of its own (fusion weights, agreement).
    for group in ensembles.values():
        dataclasses.replace(detect_params, detectors=list(group), maskrcnn=maskrcnn_section)
    ensemble = build_ensemble(dataclasses.replace(detect_params, detectors=needed, maskrcnn=maskrcnn_section))

    runs = {name: DetectorRun(operating_threshold=operating[name]) for name in members}
    for name in ensembles:
        runs[name] = DetectorRun(operating_threshold=ensemble_operating_threshold)
    kept: list[LabelledImage] = []
    for image in images:
        try:
            pixels = load_rgb(resolve_image_path(image, roots))
        except (ImageError, FileNotFoundError) as error:
            skips.skip(image.file_name, getattr(error, "reason", "image_not_found"), str(error))
            continue
        index = len(kept)
        kept.append(image)
        result = ensemble.detect(pixels)
        for name in members:
            runs[name].predictions[index] = result.member_boxes[name]
            runs[name].seconds += result.seconds[name]
        for name, group in ensembles.items():
            start = time.perf_counter()
            fused = fuse_boxes(
                {m: [b for b in result.member_boxes[m] if b.score >= operating[m]] for m in group},
                (pixels.shape[1], pixels.shape[0]),
                detect_params.fusion,
            )
            runs[name].predictions[index] = fused
            runs[name].seconds += time.perf_counter() - start + sum(result.seconds[m] for m in group)
    return kept, runs


def evaluate_runs(
    images: Sequence[LabelledImage],
    runs: Mapping[str, DetectorRun],
    iou_threshold: float,
    loose_iou_threshold: float | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, float]]]]:
    """Return the metrics of every run and their PR curves on the complete labels."""
    detectors = {
        name: score_detector(run, images, iou_threshold, loose_iou_threshold)
        for name, run in runs.items()
    }
    curves = {name: curve_for(run, images, iou_threshold) for name, run in runs.items()}
    metrics = {
        "protocol": {
            "iou_threshold": iou_threshold,
            "loose_iou_threshold": loose_iou_threshold,
            "ap": AP_PROTOCOL,
            "matching": "greedy by descending score, one label per detection",
            "images_per_second": "images / seconds spent in detect(), decoding excluded, "
            "single process",
        },
        "labels": summarize_labels(images),
        "detectors": detectors,
    }
    return metrics, curves
