"""Every image mode that load_rgb decodes reaches both members as a detectable picture.

The variants are made from one real picture with one face and written as files, so
the whole path from file to boxes runs: decode, EXIF rotation, mode conversion, detect.
"""

import numpy as np
import pytest
from PIL import Image

from pipeline.detect.ensemble import build_ensemble
from pipeline.detect.geometry import iou
from pipeline.detect.params import DetectParams
from pipeline.images import load_rgb

# 220x264 (not square, so a missed rotation changes the shape) with one face that both
# members find.
PICTURE = "jonathonyan__Anime-Face-Detection-and-Recognition__datasets_detection_detect_03.jpg"
# EXIF orientation 6: the stored pixels must be turned 90 degrees clockwise to view them.
ORIENTATION_TAG = 0x0112


def save_exif_rotated(upright, path):
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    stored.save(path, quality=95, exif=exif)


def save_alpha(upright, path):
    rgba = upright.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:12, :] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)


def save_16_bit(upright, path):
    grey = np.asarray(upright.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path)


VARIANTS = {
    "exif_rotated.jpg": save_exif_rotated,
    "grey.png": lambda image, path: image.convert("L").save(path),
    "palette.png": lambda image, path: image.convert(
        "P", palette=Image.Palette.ADAPTIVE
    ).save(path),
    "alpha.png": save_alpha,
    "cmyk.jpg": lambda image, path: image.convert("CMYK").save(path, quality=95),
    "grey_16bit.png": save_16_bit,
}
EXPECTED_MODES = {
    "exif_rotated.jpg": "RGB",
    "grey.png": "L",
    "palette.png": "P",
    "alpha.png": "RGBA",
    "cmyk.jpg": "CMYK",
    "grey_16bit.png": "I;16",
}


@pytest.fixture(scope="module")
def ensemble(cascade_path):
    return build_ensemble(DetectParams(cascade_path=str(cascade_path)))


@pytest.fixture(scope="module")
def upright_result(ensemble, raw_dir):
    return ensemble.detect(load_rgb(raw_dir / PICTURE))


@pytest.mark.parametrize("filename", sorted(VARIANTS))
def test_mode_variant_keeps_face(ensemble, upright_result, raw_dir, tmp_path, filename):
    upright = Image.open(raw_dir / PICTURE).convert("RGB")
    path = tmp_path / filename
    VARIANTS[filename](upright, path)
    with Image.open(path) as written:
        assert written.mode == EXPECTED_MODES[filename]
        stored_size = written.size
    if filename == "exif_rotated.jpg":
        assert stored_size == (upright.height, upright.width)

    image = load_rgb(path)
    result = ensemble.detect(image)

    assert image.shape == (upright.height, upright.width, 3)
    for name in ("cascade", "animeface"):
        boxes = result.member_boxes[name]
        assert len(boxes) == 1, f"{name} found {len(boxes)} faces"
        assert iou(boxes[0], upright_result.member_boxes[name][0]) >= 0.7
    assert len(result.fused) == 1
