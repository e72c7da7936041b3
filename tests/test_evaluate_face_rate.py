"""Face rate with the LBP anime-face cascade on real crops, noise and bad cascade files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.params import DetectParams
from pipeline.evaluate.face_rate import (
    CascadeFaceDetector,
    build_face_detector,
    compute_face_rate,
    pad_image,
)
from pipeline.evaluate.params import EvaluateParams
from pipeline.images import load_rgb
from pipeline.skips import SkipCounter


def load_crops(folder: Path, count: int) -> np.ndarray:
    files = sorted(folder.glob("*.png"))[:count]
    return np.stack([load_rgb(path) for path in files])


@pytest.fixture(scope="module")
def detector(cascade_path) -> CascadeFaceDetector:
    params = EvaluateParams(face_cascade_path=str(cascade_path))
    return build_face_detector(params)


@pytest.fixture
def skips() -> SkipCounter:
    return SkipCounter(logging.getLogger("test"))


def test_face_rate_high_on_real_crops(detector, faces_dir, skips):
    crops = load_crops(
        faces_dir / "jonathonyan__Anime-Face-Detection-and-Recognition" / "positive", 60
    )
    assert compute_face_rate(crops, detector, skips) >= 0.9
    assert skips.total == 0


def test_face_rate_high_on_other_source(detector, faces_dir, skips):
    crops = load_crops(faces_dir / "bchao1__Anime-Face-Dataset", 40)
    assert compute_face_rate(crops, detector, skips) >= 0.9


def test_face_rate_zero_on_noise(detector, skips):
    noise = np.random.default_rng(0).integers(0, 256, (60, 64, 64, 3), dtype=np.uint8)
    assert compute_face_rate(noise, detector, skips) == 0.0


def test_face_rate_zero_on_flat_images(detector, skips):
    flat = np.full((10, 64, 64, 3), 128, dtype=np.uint8)
    assert compute_face_rate(flat, detector, skips) == 0.0


def test_pad_image_adds_border():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    padded, pad_px = pad_image(image, 0.125)
    assert padded.shape == (80, 80, 3)
    assert pad_px == 8
    unpadded, zero_px = pad_image(image, 0.0)
    assert unpadded is image
    assert zero_px == 0


def test_cascade_boxes_in_image_coordinates(detector, faces_dir):
    crop = load_crops(faces_dir / "bchao1__Anime-Face-Dataset", 1)[0]
    boxes = detector.detect(crop)
    assert boxes
    for box in boxes:
        # The face fills the crop, so its box centre lies inside the unpadded image.
        assert 0 <= (box.x1 + box.x2) / 2 < 64
        assert 0 <= (box.y1 + box.y2) / 2 < 64


def test_ensemble_face_rate_real_and_noise(cascade_path, faces_dir, skips):
    detect_params = DetectParams(detectors=["cascade", "animeface"], cascade_path=str(cascade_path))
    detector = build_face_detector(EvaluateParams(face_detector="ensemble"), detect_params)
    crops = load_crops(faces_dir / "bchao1__Anime-Face-Dataset", 10)
    noise = np.random.default_rng(1).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    assert compute_face_rate(crops, detector, skips) >= 0.8
    assert compute_face_rate(noise, detector, skips) == 0.0


def test_ensemble_needs_detect_params():
    with pytest.raises(ValueError, match="needs the detect section"):
        build_face_detector(EvaluateParams(face_detector="ensemble"))


def test_empty_cascade_path_names_params():
    with pytest.raises(ValueError, match=r"evaluate\.face_cascade_path and detect\.cascade_path"):
        build_face_detector(EvaluateParams(face_cascade_path=""))


def test_missing_cascade_file_names_param(tmp_path):
    params = EvaluateParams(face_cascade_path=str(tmp_path / "missing.xml"))
    with pytest.raises(FileNotFoundError, match=r"not found; set evaluate\.face_cascade_path"):
        build_face_detector(params)


def test_non_cascade_file_rejected(tmp_path):
    bogus = tmp_path / "bogus.xml"
    bogus.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="could not load a cascade"):
        build_face_detector(EvaluateParams(face_cascade_path=str(bogus)))
