"""Fusion of the members' boxes into ensemble boxes with a member agreement count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ensemble_boxes import weighted_boxes_fusion

from pipeline.detect.base import Box
from pipeline.detect.geometry import iou, make_box
from pipeline.detect.params import FusionParams

ENSEMBLE_NAME = "ensemble"


@dataclass(frozen=True)
class FusedBox(Box):
    """An ensemble box and the distinct members whose boxes support it."""

    members: tuple[str, ...] = ()

    @property
    def agreement(self) -> int:
        return len(self.members)


def fuse_boxes(
    member_boxes: dict[str, list[Box]],
    image_size: tuple[int, int],
    params: FusionParams,
) -> list[FusedBox]:
    """Fuse each member's boxes on one image, best score first.

    ``member_boxes`` maps every member that ran to its boxes, empty lists included,
    because the fused scores are divided by the total weight of all members.
    ``image_size`` is (width, height). Boxes scored at or below 0 or below
    ``params.skip_threshold`` take no part. Only fused boxes supported by at least
    ``params.min_agreement`` distinct members are returned.
    """
    weights = {name: params.weights.get(name, 1.0) for name in member_boxes}
    usable = {
        name: [box for box in boxes if box.score > 0 and box.score >= params.skip_threshold]
        for name, boxes in member_boxes.items()
    }
    if params.method == "wbf":
        fused = _fuse_wbf(usable, weights, image_size, params.iou_threshold)
    elif params.method == "voting":
        fused = _fuse_voting(usable, weights, image_size, params.iou_threshold)
    else:
        raise ValueError(f"unknown fusion method {params.method!r}; choose 'wbf' or 'voting'")
    agreed = [box for box in fused if box.agreement >= params.min_agreement]
    return sorted(agreed, key=lambda box: box.score, reverse=True)


def _fuse_wbf(
    member_boxes: dict[str, list[Box]],
    weights: dict[str, float],
    image_size: tuple[int, int],
    iou_threshold: float,
) -> list[FusedBox]:
    """Weighted boxes fusion (ensemble-boxes), with the conf_type 'avg' scores."""
    width, height = image_size
    names = list(member_boxes)
    scale = np.array([width, height, width, height], dtype=np.float64)

    # ensemble-boxes expects x1, y1, x2, y2 normalised to [0, 1]; make_box has already
    # clipped every box to the image, so none is moved or dropped by its checks.
    boxes_list = [
        np.array([[b.x1, b.y1, b.x2, b.y2] for b in member_boxes[name]]).reshape(-1, 4) / scale
        for name in names
    ]
    scores_list = [[b.score for b in member_boxes[name]] for name in names]
    labels_list = [[0] * len(member_boxes[name]) for name in names]
    if not any(scores_list):
        return []
    fused_xyxy, fused_scores, _ = weighted_boxes_fusion(
        boxes_list,
        scores_list,
        labels_list,
        weights=[weights[name] for name in names],
        iou_thr=iou_threshold,
        skip_box_thr=0.0,
        conf_type="avg",
    )

    fused = []
    for xyxy, score in zip(fused_xyxy * scale, fused_scores):
        box = make_box(tuple(xyxy), float(score), ENSEMBLE_NAME, image_size)
        if box is not None:
            fused.append(box)
    supporters = _assign_supporters(member_boxes, fused)
    return [_with_members(box, supporters[i], names) for i, box in enumerate(fused)]


def _assign_supporters(
    member_boxes: dict[str, list[Box]], fused: list[Box]
) -> list[set[str]]:
    """Give each member box to the fused box it overlaps most.

    ensemble-boxes returns no cluster membership, so this recovers it: a fused box is
    the weighted mean of its cluster, which its own members overlap most.
    """
    # NOTE: when two faces' boxes overlap heavily, a box can overlap the neighbouring
    # cluster's mean more than its own. Its member then counts towards the neighbour.
    supporters: list[set[str]] = [set() for _ in fused]
    for name, boxes in member_boxes.items():
        for box in boxes:
            overlaps = [iou(box, candidate) for candidate in fused]
            if overlaps and max(overlaps) > 0:
                supporters[int(np.argmax(overlaps))].add(name)
    return supporters


def _fuse_voting(
    member_boxes: dict[str, list[Box]],
    weights: dict[str, float],
    image_size: tuple[int, int],
    iou_threshold: float,
) -> list[FusedBox]:
    """Cluster boxes greedily around the best weighted score and keep that box.

    A box joins a cluster when its IoU with the cluster's best box is above
    ``iou_threshold``. The fused score is the sum over the cluster's members of weight
    times that member's best score, divided by the total weight of all members.
    """
    names = list(member_boxes)
    total_weight = sum(weights.values())
    pending = [box for name in names for box in member_boxes[name]]
    pending.sort(key=lambda box: box.score * weights[box.detector], reverse=True)

    fused = []
    while pending:
        best = pending[0]
        cluster = [box for box in pending if box is best or iou(best, box) > iou_threshold]
        clustered = {id(box) for box in cluster}
        pending = [box for box in pending if id(box) not in clustered]

        best_score_per_member: dict[str, float] = {}
        for box in cluster:
            best_score_per_member[box.detector] = max(
                box.score, best_score_per_member.get(box.detector, 0.0)
            )
        score = sum(weights[name] * s for name, s in best_score_per_member.items())
        box = make_box(
            (best.x1, best.y1, best.x2, best.y2), score / total_weight, ENSEMBLE_NAME, image_size
        )
        if box is not None:
            fused.append(_with_members(box, set(best_score_per_member), names))
    return fused


def _with_members(box: Box, supporters: set[str], order: list[str]) -> FusedBox:
    members = tuple(name for name in order if name in supporters)
    return FusedBox(box.x1, box.y1, box.x2, box.y2, box.score, box.detector, members)
