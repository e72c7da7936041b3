"""Each member and the ensemble on real pictures: known faces, no faces, small images."""

import csv

import numpy as np
import pytest

from pipeline.detect import animeface_detector
from pipeline.detect.base import Box
from pipeline.detect.ensemble import build_ensemble, face_rate, pad_small_image
from pipeline.detect.geometry import iou
from pipeline.detect.params import AnimefaceParams, CascadeParams, DetectParams
from pipeline.images import load_rgb

MEMBERS = ["cascade", "animeface"]
# One face, boxed in the labelled-box table (by another face detector, so a weak label).
FACE_PICTURE = "jerryli27__AniSeg__samples_inputs_s_-_799900.jpg"
FACE_LABEL_IMAGE = "jerryli27__AniSeg__pseudolabels/images/s_-_799900.jpg"
# A poster with five faces, two of them partly covered.
GROUP_PICTURE = "kanosawa__anime_face_landmark_detection__test.png"
# Mecha in a forest, and two mecha fighting: no human face.
NO_FACE_PICTURES = [
    "Kiteretsu77__APISR____assets___lr_inputs_f91.jpg",
    "Kiteretsu77__APISR____assets___lr_inputs_image-00440.png",
]
FACE_CROPS = "jonathonyan__Anime-Face-Detection-and-Recognition/positive"


@pytest.fixture(scope="module")
def ensemble(cascade_path):
    return build_ensemble(DetectParams(cascade_path=str(cascade_path)))


@pytest.fixture(scope="module")
def members(ensemble):
    return {member.name: member for member in ensemble.members}


@pytest.fixture(scope="module")
def labelled_face(shared_dir):
    with (shared_dir / "data" / "boxes" / "all_boxes_xyxy.csv").open(newline="") as stream:
        for row in csv.DictReader(stream):
            if row["image"] == FACE_LABEL_IMAGE and row["label"] == "face":
                return Box(*(float(row[k]) for k in ("x1", "y1", "x2", "y2")), 1.0, "label")
    pytest.fail(f"no face row for {FACE_LABEL_IMAGE} in all_boxes_xyxy.csv")


@pytest.mark.parametrize("name", MEMBERS)
def test_member_finds_labelled_face(members, raw_dir, labelled_face, name):
    boxes = members[name].detect(load_rgb(raw_dir / FACE_PICTURE))

    assert len(boxes) == 1
    assert iou(boxes[0], labelled_face) >= 0.5
    assert boxes[0].detector == name
    assert 0 < boxes[0].score <= 1


@pytest.mark.parametrize("name", MEMBERS)
def test_member_finds_most_group_faces(members, raw_dir, name):
    boxes = members[name].detect(load_rgb(raw_dir / GROUP_PICTURE))

    assert 4 <= len(boxes) <= 5


def test_ensemble_fuses_agreeing_members(ensemble, raw_dir, labelled_face):
    result = ensemble.detect(load_rgb(raw_dir / FACE_PICTURE))

    assert len(result.fused) == 1
    assert result.fused[0].agreement == 2
    assert iou(result.fused[0], labelled_face) >= 0.5
    assert set(result.seconds) == {"cascade", "animeface", "fusion"}


@pytest.mark.parametrize("picture", NO_FACE_PICTURES)
def test_no_face_picture_gives_no_boxes(ensemble, raw_dir, picture):
    result = ensemble.detect(load_rgb(raw_dir / picture))

    assert result.member_boxes == {"cascade": [], "animeface": []}
    assert result.fused == []


def test_face_rate_on_64px_crops(ensemble, faces_dir):
    paths = sorted((faces_dir / FACE_CROPS).glob("*.png"))[:8]
    crops = np.stack([load_rgb(path) for path in paths])
    assert crops.shape == (8, 64, 64, 3)

    assert face_rate(ensemble, crops) >= 0.75


def test_small_image_boxes_stay_inside(ensemble, faces_dir):
    crop = load_rgb(sorted((faces_dir / FACE_CROPS).glob("*.png"))[0])

    result = ensemble.detect(crop)

    assert result.fused
    for box in [*result.fused, *result.member_boxes["cascade"], *result.member_boxes["animeface"]]:
        assert 0 <= box.x1 < box.x2 <= 64
        assert 0 <= box.y1 < box.y2 <= 64


def test_shrunk_no_face_picture_has_no_face(ensemble, raw_dir):
    picture = load_rgb(raw_dir / NO_FACE_PICTURES[0])
    small = np.ascontiguousarray(picture[::8, ::8])

    assert face_rate(ensemble, [small]) == 0.0


def test_face_rate_of_nothing_is_zero(ensemble):
    assert face_rate(ensemble, []) == 0.0


def test_pad_small_image_offsets():
    image = np.zeros((64, 40, 3), np.uint8)

    padded, offset = pad_small_image(image, min_side_px=128, pad_fraction=0.25)

    assert padded.shape == (96, 60, 3)
    assert offset == (10, 16)
    assert pad_small_image(image, min_side_px=32, pad_fraction=0.25)[1] == (0, 0)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((32, 32), np.uint8),
        np.zeros((32, 32, 3), np.float32),
        np.zeros((0, 5, 3), np.uint8),
    ],
    ids=["grey-2d", "float", "empty"],
)
def test_detect_rejects_non_rgb_arrays(ensemble, image):
    with pytest.raises(ValueError, match="image"):
        ensemble.detect(image)


@pytest.mark.parametrize("name", MEMBERS)
def test_max_side_maps_boxes_back(cascade_path, raw_dir, labelled_face, name):
    params = DetectParams(cascade_path=str(cascade_path))
    getattr(params, name).max_side_px = 400
    member = build_ensemble(params).members[MEMBERS.index(name)]

    boxes = member.detect(load_rgb(raw_dir / FACE_PICTURE))

    assert len(boxes) == 1
    assert iou(boxes[0], labelled_face) >= 0.5


def test_cascade_constant_score(cascade_path, raw_dir):
    params = DetectParams(
        detectors=["cascade"],
        cascade_path=str(cascade_path),
        cascade=CascadeParams(score="constant", constant_score=0.25),
    )
    cascade = build_ensemble(params).members[0]

    boxes = cascade.detect(load_rgb(raw_dir / GROUP_PICTURE))

    assert boxes
    assert {box.score for box in boxes} == {0.25}


def fake_face(likelihood, x, y, side):
    result = {
        "likelihood": likelihood,
        "face_box": (x, y, side, side),
        "skin_color": (0, 0, 0),
        "hair_color": (0, 0, 0),
        "left_eye_box": (0, 0, 1, 1),
        "left_eye_color": (0, 0, 0),
        "right_eye_box": (0, 0, 1, 1),
        "right_eye_color": (0, 0, 0),
        "mouth_box": (0, 0, 1, 1),
        "nose_point": (0, 0),
        "chin_point": (0, 0),
    }
    return animeface_detector.animeface.Face(result)


def test_animeface_likelihood_filter_and_box_scale(monkeypatch):
    faces = [fake_face(0.9, 10, 10, 20), fake_face(0.4, 50, 50, 10)]
    monkeypatch.setattr(animeface_detector.animeface, "detect", lambda image: faces)
    detector = animeface_detector.AnimefaceDetector(
        AnimefaceParams(min_likelihood=0.5, box_scale=1.5)
    )

    boxes = detector.detect(np.zeros((100, 100, 3), np.uint8))

    assert boxes == [Box(5.0, 5.0, 35.0, 35.0, 0.9, "animeface")]


def test_animeface_rejects_pillow_12(monkeypatch):
    versions = {"pillow": "12.0.0", "animeface": "2.0.3"}
    monkeypatch.setattr(animeface_detector, "version", versions.__getitem__)

    with pytest.raises(RuntimeError, match="pillow<12"):
        animeface_detector.AnimefaceDetector(AnimefaceParams())
