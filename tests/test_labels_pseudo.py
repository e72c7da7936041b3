"""Pseudo-labels from detector agreement, and the labels stage end to end."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_section
from pipeline.detect.base import Box
from pipeline.detect.params import DetectParams
from pipeline.labels.coco import read_coco
from pipeline.labels.pseudo import PSEUDO_KIND, agreed_boxes, build_members, file_sha256, pseudo_label_folder
from pipeline.skips import SkipCounter
from stages.labels import main as labels_stage

# Small real pictures on which the cascade and animeface agree on one face.
AGREED_PICTURES = [
    "Rannichan__AnimeFacePP__data_test_0.jpeg",
    "jonathonyan__Anime-Face-Detection-and-Recognition__datasets_detection_detect_03.jpg",
]
# A real picture with no face (a mecha), on which neither member fires.
NO_FACE_PICTURE = "Kiteretsu77__APISR____assets___lr_inputs_f91.jpg"
# A picture that is also in the boxes CSV, so it must not be pseudo-labelled.
LABELLED_PICTURE = "jerryli27__AniSeg__samples_inputs_s_-_799900.jpg"


def box(x1: float, y1: float, x2: float, y2: float, score: float = 1.0, name: str = "a") -> Box:
    return Box(x1, y1, x2, y2, score, name)


@pytest.fixture
def raw_folder(raw_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in [*AGREED_PICTURES, NO_FACE_PICTURE, LABELLED_PICTURE]:
        shutil.copy(raw_dir / name, folder / name)
    (folder / "truncated.png").write_bytes((raw_dir / AGREED_PICTURES[0]).read_bytes()[:300])
    (folder / "manifest.csv").write_text("file\n")
    return folder


@pytest.fixture
def detect_params(cascade_path: Path) -> DetectParams:
    return parse_section(DetectParams, {"cascade_path": str(cascade_path)}, "detect")


def test_agreement_needs_every_member() -> None:
    found = {
        "a": [box(0, 0, 10, 10, 0.9), box(50, 50, 60, 60, 0.8), box(100, 100, 110, 110)],
        "b": [box(1, 1, 11, 11, 0.5, "b"), box(200, 200, 210, 210, 1.0, "b"), box(101, 101, 111, 111, 0.7, "b")],
    }
    agreed = agreed_boxes(found, min_iou=0.5)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in agreed] == [(100.5, 100.5, 110.5, 110.5), (0.5, 0.5, 10.5, 10.5)]
    assert agreed[1].score == pytest.approx(0.7)


def test_agreement_matches_each_box_once() -> None:
    found = {"a": [box(0, 0, 10, 10, 0.9), box(1, 0, 11, 10, 0.8)], "b": [box(0, 0, 10, 10, 1, "b")]}
    assert len(agreed_boxes(found, min_iou=0.5)) == 1


def test_agreement_below_iou_rejected() -> None:
    found = {"a": [box(0, 0, 10, 10)], "b": [box(6, 0, 16, 10, 1, "b")]}
    assert agreed_boxes(found, min_iou=0.5) == []
    assert agreed_boxes({}, min_iou=0.5) == []
    assert agreed_boxes({"a": [], "b": [box(0, 0, 1, 1)]}, min_iou=0.5) == []


def test_pseudo_labels_from_real_members(raw_folder: Path, detect_params: DetectParams) -> None:
    members = build_members(["cascade", "animeface"], detect_params)
    skips = SkipCounter(logging.getLogger("test"))
    labelled = pseudo_label_folder(
        raw_folder, members, 0.5, "raw",
        exclude_sha256={file_sha256(raw_folder / LABELLED_PICTURE)}, skips=skips,
    )
    assert sorted(image.file_name for image in labelled) == sorted(AGREED_PICTURES)
    assert all(image.kind == PSEUDO_KIND and not image.complete for image in labelled)
    assert all(image.split == "train" and image.root == "raw" for image in labelled)
    assert all(len(image.boxes) == 1 for image in labelled)
    assert skips.counts["already_labelled"] == 1
    assert skips.counts["no_agreed_face"] == 1
    assert skips.counts["not_an_image_suffix"] == 1
    assert skips.counts["corrupt"] + skips.counts["truncated"] == 1


def test_pseudo_labels_empty_folder(tmp_path: Path, detect_params: DetectParams) -> None:
    members = build_members(["cascade"], detect_params)
    assert pseudo_label_folder(tmp_path, members, 0.5, "raw") == []


def test_unknown_member_lists_valid_names(detect_params: DetectParams) -> None:
    with pytest.raises(Exception, match="unknown detector 'yolo'"):
        build_members(["yolo"], detect_params)


def test_labels_stage_end_to_end(
    raw_folder: Path, shared_dir: Path, cascade_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "detect": {"cascade_path": str(cascade_path)},
                "labels": {"test_fraction": 0.3, "mask_method": "ellipse"},
            }
        )
    )
    out, metrics = tmp_path / "labels.json", tmp_path / "metrics.json"
    boxes_csv = shared_dir / "data" / "boxes" / "all_boxes_xyxy.csv"
    code = labels_stage(
        ["--boxes-csv", str(boxes_csv), "--raw", str(raw_folder), "--out", str(out),
         "--metrics", str(metrics), "--params", str(params)]
    )
    assert code == 0
    images = read_coco(out)
    kinds = {image.kind for image in images}
    assert {"gt_human_single_box_per_image", "pseudo_model_prediction", PSEUDO_KIND} <= kinds
    assert all(box.segmentation is not None for image in images for box in image.boxes)
    assert not any(image.split == "test" and image.kind == PSEUDO_KIND for image in images)
    written = json.loads(metrics.read_text())
    assert written["images"]["train/pseudo_agreement"] == 2
    assert written["images"]["test/gt_human_single_box_per_image"] == 19
    assert written["skipped"]["already_labelled"] == 1
    assert written["config"]["test_fraction"] == 0.3


def test_labels_stage_unknown_key(tmp_path: Path, raw_folder: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("labels:\n  pseudo_members: []\n  colour: red\n")
    code = labels_stage(
        ["--boxes-csv", "x.csv", "--raw", str(raw_folder), "--out", str(tmp_path / "o.json"),
         "--metrics", str(tmp_path / "m.json"), "--params", str(params)]
    )
    assert code == 2
    assert not (tmp_path / "o.json").exists()
