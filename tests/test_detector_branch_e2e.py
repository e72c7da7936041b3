"""The detector branch through DVC: labels, a tiny Mask R-CNN fine-tune and its evaluation,
then the GAN pipeline's detect stage with all three members."""

from __future__ import annotations

import json

import pytest

from dvc_project import dvc, make_project, smoke_overrides
from pipeline.labels.pseudo import PSEUDO_KIND

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def test_detector_branch_then_three_member_detect(tmp_path, shared_dir):
    # The detector branch reads human labels from ../shared beside the project.
    (tmp_path / "shared").symlink_to(shared_dir, target_is_directory=True)
    overrides = smoke_overrides(shared_dir, max_images=12)
    overrides.update({
        "labels.pseudo_max_images": 6,
        "finetune_detector.architecture": "mobilenet_v3_large_fpn",
        "finetune_detector.init": "scratch",
        "finetune_detector.download_weights": False,
        "finetune_detector.min_size_px": 128,
        "finetune_detector.max_size_px": 160,
        "finetune_detector.max_iterations": 4,
        "finetune_detector.eval_every_iterations": 2,
        "finetune_detector.rpn_batch_size_per_image": 32,
        "finetune_detector.box_batch_size_per_image": 32,
        "finetune_detector.test_proposals_per_image": 100,
        "evaluate_detector.max_images": 6,
        "detect.detectors": ["cascade", "animeface", "maskrcnn"],
        "detect.maskrcnn": {"checkpoint_path": "data/detector/maskrcnn.pt", "score_threshold": 0.05},
    })
    root = make_project(tmp_path / "project", overrides)

    output = dvc(["repro", "detector/dvc.yaml"], root)
    labels = json.loads((root / "metrics" / "labels.json").read_text())
    pseudo_counts = [n for key, n in labels["images"].items() if key.endswith(PSEUDO_KIND)]
    assert sum(pseudo_counts) > 0, labels
    for stage in ["labels", "finetune_detector", "evaluate_detector"]:
        assert f"Running stage 'detector/dvc.yaml:{stage}'" in output, output[-3000:]
    scores = json.loads((root / "metrics" / "detector.json").read_text())
    assert set(scores["detectors"]) == {"cascade", "animeface", "maskrcnn", "ensemble"}

    output = dvc(["repro", "detect"], root)
    assert "Running stage 'detect'" in output, output[-3000:]
    detections = json.loads((root / "metrics" / "detect.json").read_text())
    assert set(detections["faces"]) == {"cascade", "animeface", "maskrcnn", "ensemble"}
