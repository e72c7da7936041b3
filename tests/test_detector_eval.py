"""Detector evaluation: metrics on hand-made predictions, and the evaluate_detector stage."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from pipeline.detect.base import Box
from pipeline.detect.evaluation import (
    PRECISION_OMITTED_REASON,
    DetectorRun,
    ScoredImage,
    coco_ap50,
    count_matches,
    match_predictions,
    precision_recall_curve,
    precision_recall_f1,
    score_detector,
    score_group,
)
from pipeline.detect.finetune import finetune_detector
from pipeline.detect.finetune_params import AugmentParams, FinetuneParams
from pipeline.images import image_size
from pipeline.labels.boxes_csv import read_boxes_csv
from pipeline.labels.coco import write_coco
from pipeline.labels.model import LabelBox, LabelledImage

from conftest import REPO_ROOT


def box(x1: float, y1: float, x2: float, y2: float, score: float) -> Box:
    return Box(x1, y1, x2, y2, score, "test")


def hand_made_images() -> list[ScoredImage]:
    """Three labelled faces on two images; detections: hit (0.9), miss (0.8), hit (0.7).

    Ranked by score, precision is 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3.
    """
    return [
        ScoredImage(
            [LabelBox(0, 0, 10, 10), LabelBox(20, 20, 30, 30)],
            [box(0, 0, 10, 10, 0.9), box(50, 50, 60, 60, 0.8)],
        ),
        ScoredImage([LabelBox(0, 0, 10, 10)], [box(1, 0, 11, 10, 0.7)]),
    ]


def test_counts_at_operating_threshold() -> None:
    assert count_matches(hand_made_images(), 0.5, min_score=0.0) == (2, 1, 1)
    assert count_matches(hand_made_images(), 0.5, min_score=0.75) == (1, 1, 2)
    # The 0.7 detection overlaps its face at IoU 9/11 = 0.82 only.
    assert count_matches(hand_made_images(), 0.85, min_score=0.0) == (1, 2, 2)


def test_precision_recall_f1_hand_computed() -> None:
    rates = precision_recall_f1(2, 1, 1)
    assert rates["precision"] == pytest.approx(2 / 3)
    assert rates["recall"] == pytest.approx(2 / 3)
    assert rates["f1"] == pytest.approx(2 / 3)
    rates = precision_recall_f1(1, 1, 2)
    assert rates["precision"] == pytest.approx(0.5)
    assert rates["recall"] == pytest.approx(1 / 3)
    assert rates["f1"] == pytest.approx(0.4)
    assert precision_recall_f1(0, 0, 0) == {"precision": None, "recall": None, "f1": None}
    assert precision_recall_f1(0, 3, 2)["f1"] == 0.0


def test_ap50_matches_hand_computed_coco_value() -> None:
    # COCO interpolates precision at 101 recall points: 1.0 for the 34 points up to
    # recall 1/3, 2/3 for the 33 points up to recall 2/3, and 0 beyond.
    assert coco_ap50(hand_made_images()) == pytest.approx((34 + 33 * 2 / 3) / 101, abs=1e-6)


def test_ap50_edge_cases() -> None:
    perfect = [ScoredImage([LabelBox(0, 0, 10, 10)], [box(0, 0, 10, 10, 0.5)])]
    assert coco_ap50(perfect) == pytest.approx(1.0)
    assert coco_ap50([ScoredImage([LabelBox(0, 0, 10, 10)], [])]) == 0.0
    assert coco_ap50([ScoredImage([], [box(0, 0, 10, 10, 0.5)])]) is None


def test_duplicate_detection_is_false_positive() -> None:
    truths = [LabelBox(0, 0, 10, 10)]
    predictions = [box(0, 0, 10, 10, 0.6), box(0, 0, 10, 10, 0.9)]
    assert match_predictions(predictions, truths, 0.5) == [False, True]


def test_precision_recall_curve_points() -> None:
    points = precision_recall_curve(hand_made_images(), 0.5)
    assert [p["threshold"] for p in points] == [0.9, 0.8, 0.7]
    assert [p["precision"] for p in points] == pytest.approx([1.0, 0.5, 2 / 3])
    assert [p["recall"] for p in points] == pytest.approx([1 / 3, 1 / 3, 2 / 3])


def test_complete_group_reports_everything() -> None:
    result = score_group(hand_made_images(), complete=True, operating_threshold=0.0, iou_threshold=0.5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["ap50"] == pytest.approx(56 / 101, abs=1e-6)
    assert result["faces"] == 3
    assert "precision_omitted_reason" not in result


def test_incomplete_group_reports_recall_only() -> None:
    result = score_group(hand_made_images(), complete=False, operating_threshold=0.0, iou_threshold=0.5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["precision_omitted_reason"] == PRECISION_OMITTED_REASON
    for key in ("precision", "f1", "ap50", "false_positives"):
        assert key not in result


def test_score_detector_splits_by_completeness() -> None:
    images = [
        LabelledImage("a.png", 100, 100, [LabelBox(0, 0, 10, 10)], complete=True),
        LabelledImage("b.png", 100, 100, [LabelBox(0, 0, 10, 10)], complete=False),
    ]
    run = DetectorRun({0: [box(0, 0, 10, 10, 0.9)], 1: [box(50, 50, 60, 60, 0.9)]}, seconds=0.5)
    result = score_detector(run, images, 0.5)
    assert result["images_per_second"] == pytest.approx(4.0)
    assert result["complete_labels"]["precision"] == 1.0
    assert result["incomplete_labels"]["recall"] == 0.0
    assert "precision" not in result["incomplete_labels"]


@pytest.fixture(scope="module")
def evaluation_setup(shared_dir: Path, tmp_path_factory):
    """A labels file of four real test images and a one-iteration Mask R-CNN checkpoint."""
    folder = tmp_path_factory.mktemp("evaluation")
    boxes_dir = shared_dir / "data" / "boxes"
    everything = read_boxes_csv(boxes_dir / "all_boxes_xyxy.csv")
    single = [i for i in everything if i.kind == "gt_human_single_box_per_image"][:2]
    weak = [i for i in everything if i.kind == "pseudo_model_prediction"][:1]
    empty = [i for i in everything if i.kind == "pseudo_no_detections"][:1]
    images = [*single, *weak, *empty]
    for image in images:
        image.root, image.split = "boxes", "test"
    write_coco(folder / "labels.json", images)

    params = FinetuneParams(
        architecture="mobilenet_v3_large_fpn", init="scratch", download_weights=False,
        min_size_px=64, max_size_px=64, max_iterations=1, val_fraction=0.0, rpn_batch_size_per_image=16, box_batch_size_per_image=16,
        test_proposals_per_image=50, augment=AugmentParams(grayscale_probability=0.0),
    )
    checkpoint = folder / "maskrcnn.pt"
    # The model must train on some picture; a test picture would be left out of training.
    finetune_detector(params, [dataclasses.replace(images[0], split="train")], {"boxes": boxes_dir}, checkpoint)
    return folder, boxes_dir, checkpoint


def run_stage(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("stage_evaluate_detector", REPO_ROOT / "stages" / "evaluate_detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def write_params(path: Path, cascade_path: Path, **evaluate) -> None:
    sections = {
        "detect": {"cascade_path": str(cascade_path), "maskrcnn": {"device": "cpu"}},
        "evaluate_detector": {
            "members": ["cascade", "animeface", "maskrcnn"],
            "ensembles": {"ensemble": ["cascade", "animeface", "maskrcnn"], "classic": ["cascade", "animeface"]},
            **evaluate,
        },
    }
    path.write_text(yaml.safe_dump(sections))


def test_evaluate_stage_writes_metrics_and_curves(
    evaluation_setup, cascade_path: Path, tmp_path: Path, monkeypatch
) -> None:
    folder, boxes_dir, checkpoint = evaluation_setup
    # DVCLive runs `dvc init` inside a Git repository without DVC, so run outside it.
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", cascade_path)
    out = tmp_path / "metrics" / "detector.json"
    code = run_stage([
        "--labels", str(folder / "labels.json"), "--image-root", f"boxes={boxes_dir}",
        "--checkpoint", str(checkpoint), "--out", str(out), "--live", str(tmp_path / "live"),
        "--params", str(tmp_path / "params.yaml"),
    ])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["detectors"]) == {"cascade", "animeface", "maskrcnn", "ensemble", "classic"}
    for name, scores in metrics["detectors"].items():
        assert scores["images"] == 4, name
        assert scores["images_per_second"] > 0, name
        assert scores["incomplete_labels"]["images"] == 2, name
        assert "precision" not in scores["incomplete_labels"], name
        assert scores["incomplete_labels"]["precision_omitted_reason"], name
        assert scores["complete_labels"]["images"] == 2, name
        assert "ap50" in scores["complete_labels"], name
    assert metrics["detectors"]["maskrcnn"]["operating_threshold"] == 0.5
    assert metrics["labels"]["gt_human_single_box_per_image"] == {"images": 2, "faces": 2, "complete": False}
    assert metrics["protocol"]["iou_threshold"] == 0.5
    curves = list((tmp_path / "live" / "plots" / "custom").glob("pr_*.json"))
    assert curves
    assert {"precision", "recall"} <= set(json.loads(curves[0].read_text())[0])
    assert not (tmp_path / ".dvc").exists()


def test_evaluate_stage_rejects_name_clash(evaluation_setup, cascade_path: Path, tmp_path: Path, monkeypatch) -> None:
    folder, boxes_dir, checkpoint = evaluation_setup
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", cascade_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["evaluate_detector"] = {"members": ["cascade"], "ensembles": {"cascade": ["cascade"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code = run_stage([
        "--labels", str(folder / "labels.json"), "--image-root", f"boxes={boxes_dir}",
        "--checkpoint", str(checkpoint), "--out", str(tmp_path / "d.json"), "--live", str(tmp_path / "live"),
        "--params", str(tmp_path / "params.yaml"),
    ])
    assert code == 2
    assert not (tmp_path / "d.json").exists()


def test_evaluate_stage_missing_image_root(evaluation_setup, cascade_path: Path, tmp_path: Path, monkeypatch) -> None:
    folder, _, checkpoint = evaluation_setup
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path / "params.yaml", cascade_path, members=["cascade"], ensembles={})
    code = run_stage([
        "--labels", str(folder / "labels.json"), "--image-root", f"raw={tmp_path}",
        "--checkpoint", str(checkpoint), "--out", str(tmp_path / "d.json"), "--live", str(tmp_path / "live"),
        "--params", str(tmp_path / "params.yaml"),
    ])
    assert code == 2


def test_loose_iou_recall_counts_wider_framing() -> None:
    # The detection covers the face and the body below it: IoU 100 / 250 = 0.4.
    images = [ScoredImage([LabelBox(0, 0, 10, 10)], [box(0, 0, 10, 25, 0.9)])]
    result = score_group(images, complete=False, operating_threshold=0.0, iou_threshold=0.5,
                         loose_iou_threshold=0.3)
    assert result["recall"] == 0.0
    assert result["recall_loose_iou"] == 1.0
