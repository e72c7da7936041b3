"""Fusion of hand-made member boxes, with expected outputs worked out by hand."""

import pytest

from pipeline.detect.base import Box
from pipeline.detect.fusion import fuse_boxes
from pipeline.detect.params import FusionParams

IMAGE_SIZE = (100, 100)


def members(cascade=(), animeface=()):
    return {"cascade": list(cascade), "animeface": list(animeface)}


# Two members agree on one face (IoU 0.82); the cascade alone finds a second one.
CASCADE_FACE = Box(10, 10, 50, 50, 0.5, "cascade")
CASCADE_ONLY = Box(70, 70, 90, 90, 0.6, "cascade")
ANIMEFACE_FACE = Box(12, 12, 52, 52, 1.0, "animeface")
TWO_FACES = members([CASCADE_FACE, CASCADE_ONLY], [ANIMEFACE_FACE])


def coords_and_score(box):
    return (box.x1, box.y1, box.x2, box.y2, box.score)


def test_wbf_averages_matched_boxes():
    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, FusionParams(method="wbf"))

    assert len(fused) == 2
    # Coordinates are score-weighted means: x1 = (12 * 1.0 + 10 * 0.5) / 1.5.
    assert coords_and_score(fused[0]) == pytest.approx(
        (34 / 3, 34 / 3, 154 / 3, 154 / 3, 0.75), abs=1e-4
    )
    assert fused[0].detector == "ensemble"
    assert fused[0].members == ("cascade", "animeface")
    assert fused[0].agreement == 2
    # A lone box keeps its place; its score is halved because one of two members found it.
    assert coords_and_score(fused[1]) == pytest.approx((70, 70, 90, 90, 0.3), abs=1e-6)
    assert fused[1].members == ("cascade",)
    assert fused[1].agreement == 1


def test_wbf_applies_member_weights():
    params = FusionParams(method="wbf", weights={"animeface": 3.0})

    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, params)

    # x1 = (12 * 3.0 + 10 * 0.5) / 3.5; score = mean(3.0, 0.5) * 2 / (3 + 1).
    assert coords_and_score(fused[0]) == pytest.approx(
        (41 / 3.5, 41 / 3.5, 181 / 3.5, 181 / 3.5, 0.875), abs=1e-4
    )
    assert fused[1].score == pytest.approx(0.6 / 4)


@pytest.mark.parametrize("method", ["wbf", "voting"])
def test_min_agreement_drops_single_member_boxes(method):
    params = FusionParams(method=method, min_agreement=2)

    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, params)

    assert len(fused) == 1
    assert fused[0].members == ("cascade", "animeface")


def test_voting_keeps_best_box_of_cluster():
    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, FusionParams(method="voting"))

    assert len(fused) == 2
    assert coords_and_score(fused[0]) == pytest.approx((12, 12, 52, 52, 0.75))
    assert fused[0].members == ("cascade", "animeface")
    assert coords_and_score(fused[1]) == pytest.approx((70, 70, 90, 90, 0.3))
    assert fused[1].members == ("cascade",)


def test_voting_ranks_by_weighted_score():
    params = FusionParams(method="voting", weights={"cascade": 4.0})

    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, params)

    # Weighted scores: cascade 0.5 * 4 beats animeface 1.0 * 1, so the cascade box is kept.
    assert coords_and_score(fused[0]) == pytest.approx((10, 10, 50, 50, (4 * 0.5 + 1.0) / 5))
    assert fused[0].members == ("cascade", "animeface")


@pytest.mark.parametrize("method", ["wbf", "voting"])
def test_skip_threshold_removes_low_scores(method):
    params = FusionParams(method=method, skip_threshold=0.55)

    fused = fuse_boxes(TWO_FACES, IMAGE_SIZE, params)

    assert [box.members for box in fused] == [("animeface",), ("cascade",)]
    assert [box.score for box in fused] == pytest.approx([0.5, 0.3])


@pytest.mark.parametrize("method", ["wbf", "voting"])
def test_agreement_counts_distinct_members(method):
    # Two animeface boxes on the same face count as one supporting member.
    boxes = members(
        [CASCADE_FACE],
        [ANIMEFACE_FACE, Box(11, 11, 51, 51, 0.9, "animeface")],
    )

    fused = fuse_boxes(boxes, IMAGE_SIZE, FusionParams(method=method))

    assert len(fused) == 1
    assert fused[0].agreement == 2


@pytest.mark.parametrize("method", ["wbf", "voting"])
def test_no_boxes_gives_no_fused_boxes(method):
    assert fuse_boxes(members(), IMAGE_SIZE, FusionParams(method=method)) == []


@pytest.mark.parametrize("method", ["wbf", "voting"])
def test_iou_threshold_separates_boxes(method):
    # IoU of these boxes is 0.82, so a threshold of 0.9 keeps them apart.
    params = FusionParams(method=method, iou_threshold=0.9)

    fused = fuse_boxes(members([CASCADE_FACE], [ANIMEFACE_FACE]), IMAGE_SIZE, params)

    assert len(fused) == 2
    assert all(box.agreement == 1 for box in fused)


def test_wbf_single_member_keeps_its_boxes():
    fused = fuse_boxes({"cascade": [CASCADE_FACE]}, IMAGE_SIZE, FusionParams())

    assert coords_and_score(fused[0]) == pytest.approx((10, 10, 50, 50, 0.5))
    assert fused[0].members == ("cascade",)


def test_zero_score_box_is_ignored():
    boxes = members([Box(10, 10, 50, 50, 0.0, "cascade")], [])

    assert fuse_boxes(boxes, IMAGE_SIZE, FusionParams()) == []
