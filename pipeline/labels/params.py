"""Parameters of the ``labels`` stage (``labels:`` in params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import param
from pipeline.labels.masks import MASK_METHODS


@dataclass
class LabelsParams:
    kinds: list[str] = param(
        ["gt_human_single_box_per_image", "gt_human", "pseudo_model_prediction", "pseudo_no_detections"],
        help="row kinds of the boxes CSV to use",
    )
    face_labels: list[str] = param(["face"], help="CSV labels that mean a face; other rows are skipped")
    incomplete_kinds: list[str] = param(
        ["gt_human_single_box_per_image"],
        help="kinds whose images have some faces unboxed, so precision is not measured on them",
    )
    test_fraction: float = param(
        0.3, min=0.0, max=1.0, help="share of each CSV kind held out for evaluate_detector"
    )
    seed: int = param(0, min=0, help="seed of the train/test split")
    mask_method: str = param("ellipse", choices=MASK_METHODS, help="mask for a box without one")
    grabcut_iterations: int = param(3, min=1, max=20)
    pseudo_members: list[str] = param(
        ["cascade", "animeface"],
        help="detectors that must agree on a pseudo-label; an empty list turns pseudo-labels off",
    )
    pseudo_min_iou: float = param(0.5, min=0.05, max=1.0, help="IoU at which two detectors agree")
    pseudo_max_images: int = param(0, min=0, help="pictures to pseudo-label; 0 means all")
