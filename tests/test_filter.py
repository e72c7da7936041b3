"""Crop geometry, resizing, quality scores and duplicate search of the filter stage."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from pipeline.config import ConfigError, load_section, parse_section
from pipeline.filter import FilterParams, compute_crop_box, cut_crop, resize_crop
from pipeline.filter.crops import CropBox
from pipeline.filter.dedupe import HashIndex, find_duplicates
from pipeline.filter.quality import content_sha256, laplacian_variance, perceptual_hash
from pipeline.images import load_rgb

from conftest import REPO_ROOT

# A real screenshot and its face box from a face detector (the test data's weak labels).
SCREENSHOT = (
    "jerryli27__AniSeg__samples_inputs_PL0bHKk6wuUGL_Qd34mf0XsQnyiDk2OeGR_015_v79HxnWIuNY-0075.jpg"
)
SCREENSHOT_FACE = (141.8, 356.8, 311.4, 525.9)


def make_params(**values) -> FilterParams:
    return parse_section(FilterParams, values, "filter")


@pytest.fixture(scope="module")
def screenshot(raw_dir) -> np.ndarray:
    return load_rgb(raw_dir / SCREENSHOT)


def test_default_crop_extends_top_by_tenth():
    crop = compute_crop_box((100, 100, 200, 200), (640, 480), make_params())
    # 10 px (10% of the height) above the box; 5 px each side keeps the crop square.
    assert crop == CropBox(95, 90, 205, 200, "inside")


def test_default_crop_of_real_box():
    crop = compute_crop_box(SCREENSHOT_FACE, (1280, 720), make_params())
    # Box 169.6 x 169.1; top moves up 16.91 to 339.89; side 186.01 rounds to 186,
    # centred on x 226.6 and y 432.9.
    assert crop == CropBox(134, 340, 320, 526, "inside")


def test_default_crop_keeps_hair_top(screenshot):
    params = make_params()
    crop = compute_crop_box(SCREENSHOT_FACE, (1280, 720), params)
    x1, y1, x2, y2 = SCREENSHOT_FACE
    assert crop.y1 <= y1 - 0.1 * (y2 - y1) + 0.5
    assert crop.y2 >= y2 - 0.5
    assert crop.x1 <= x1
    assert crop.x2 >= x2
    assert cut_crop(screenshot, crop, params).shape == (186, 186, 3)


@pytest.mark.parametrize(
    "values, expected",
    [
        # Portrait: 40% above, 20% below, 25% each side, grown to a square of 160.
        (dict(margin_top=0.4, margin_bottom=0.2, margin_side=0.25), (70, 60, 230, 220)),
        # Tight: the detector's box as it is.
        (dict(margin_top=0.0), (100, 100, 200, 200)),
        # Trim keeps the shorter side (100) about the centre of the 100 x 110 box.
        (dict(square_mode="trim"), (100, 95, 200, 195)),
        # Stretch keeps the 100 x 110 margin box.
        (dict(square_mode="stretch"), (100, 90, 200, 200)),
    ],
)
def test_crop_policies(values, expected):
    crop = compute_crop_box((100, 100, 200, 200), (640, 480), make_params(**values))
    assert (crop.x1, crop.y1, crop.x2, crop.y2) == expected
    assert crop.action == "inside"


def test_crop_shifted_inside_at_top_edge():
    crop = compute_crop_box((10, 5, 110, 105), (640, 480), make_params())
    assert crop == CropBox(5, 0, 115, 110, "shifted")


def test_crop_larger_than_image_shrunk():
    crop = compute_crop_box((0, 0, 64, 64), (64, 64), make_params())
    assert crop == CropBox(0, 0, 64, 64, "shrunk")


def test_crop_leaving_frame_dropped():
    crop = compute_crop_box((10, 5, 110, 105), (640, 480), make_params(out_of_frame="drop"))
    assert crop.action == "dropped"


def test_pad_edge_repeats_border(screenshot):
    params = make_params(out_of_frame="pad_edge")
    crop = compute_crop_box((10, 5, 110, 105), (1280, 720), params)
    assert crop == CropBox(5, -5, 115, 105, "padded")
    pixels = cut_crop(screenshot, crop, params)
    assert pixels.shape == (110, 110, 3)
    for row in range(5):
        np.testing.assert_array_equal(pixels[row], screenshot[0, 5:115])


def test_pad_constant_fills_value(screenshot):
    params = make_params(out_of_frame="pad_constant", pad_value=7)
    crop = compute_crop_box((10, 5, 110, 105), (1280, 720), params)
    pixels = cut_crop(screenshot, crop, params)
    assert (pixels[:5] == 7).all()
    np.testing.assert_array_equal(pixels[5:], screenshot[0:105, 5:115])


def test_pad_beyond_max_fraction_dropped():
    params = make_params(out_of_frame="pad_edge", max_pad_fraction=0.05)
    # 50 of the crop's 110 rows lie above the image.
    crop = compute_crop_box((10, -45, 110, 55), (640, 480), params)
    assert crop.action == "dropped"


@pytest.mark.parametrize("resize_filter", ["area", "lanczos", "bicubic", "bilinear"])
def test_resize_shape_and_dtype(screenshot, resize_filter):
    params = make_params(resize_filter=resize_filter)
    for crop in [CropBox(134, 340, 320, 526, "inside"), CropBox(200, 400, 240, 440, "inside")]:
        resized = resize_crop(cut_crop(screenshot, crop, params), params)
        assert resized.shape == (64, 64, 3)
        assert resized.dtype == np.uint8


def test_blurred_face_scores_lower(screenshot):
    params = make_params()
    crop = cut_crop(screenshot, CropBox(134, 340, 320, 526, "inside"), params)
    pixels = resize_crop(crop, params)
    blurred = cv2.GaussianBlur(pixels, (0, 0), 1.5)
    assert laplacian_variance(pixels) > params.min_laplacian_var
    assert laplacian_variance(blurred) < params.min_laplacian_var


def test_content_sha256_tells_shapes_apart():
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    assert content_sha256(pixels) == content_sha256(pixels.copy())
    assert content_sha256(pixels) != content_sha256(pixels.reshape(8, 4, 3))


def test_perceptual_hash_matches_imagehash(screenshot):
    import imagehash
    from PIL import Image

    pixels = np.ascontiguousarray(screenshot[340:526, 134:320])
    expected = int(str(imagehash.phash(Image.fromarray(pixels))), 16)
    assert perceptual_hash(pixels, "phash") == expected


def test_hash_index_nearest():
    index = HashIndex(capacity=1)
    assert index.nearest(0) == (-1, 65)
    index.add(0b1111, owner=3)
    index.add(0xFFFF_FFFF_FFFF_FFFF, owner=5)
    assert len(index) == 2
    assert index.nearest(0b0111) == (3, 1)
    assert index.nearest(0xFFFF_FFFF_FFFF_FFF0) == (5, 4)


def test_find_duplicates_keeps_first_in_order():
    sha256s = ["a", "b", "a", "c", "d"]
    hashes = [0, 0xFF00, 0, 0b111, 0xFFFF_0000_0000_0000]
    matches = find_duplicates(sha256s, hashes, order=[1, 0, 2, 3, 4], max_distance=3)
    found = {(m.index, m.kept_index, m.reason, m.distance) for m in matches}
    assert found == {(2, 0, "duplicate_exact", 0), (3, 0, "duplicate_near", 3)}


def test_find_duplicates_near_check_off():
    matches = find_duplicates(["a", "b", "a"], [0, 1, 0], order=[0, 1, 2], max_distance=None)
    assert [(m.index, m.reason) for m in matches] == [(2, "duplicate_exact")]


def test_unknown_params_key_rejected():
    with pytest.raises(ConfigError, match=r"unknown key filter\.min_face_size"):
        parse_section(FilterParams, {"min_face_size": 20}, "filter")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"out_of_frame": "wrap"}, r"filter\.out_of_frame = 'wrap' is not allowed"),
        ({"margin_top": -0.1}, r"filter\.margin_top = -0\.1 is below the minimum"),
        ({"near_duplicate_max_distance": 65}, r"above the maximum 64"),
        ({"resize_filter": "nearest"}, r"filter\.resize_filter = 'nearest' is not allowed"),
    ],
)
def test_invalid_params_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(FilterParams, values, "filter")


def test_repository_params_parse():
    params = load_section(FilterParams, "filter", REPO_ROOT / "params.yaml")
    assert dataclasses.asdict(params)["image_size"] >= 8
    unchecked = parse_section(FilterParams, {"near_duplicate_max_distance": None}, "filter")
    assert unchecked.near_duplicate_max_distance is None
