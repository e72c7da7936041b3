"""The filter stage end to end on real pictures with real face boxes."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.config import ConfigError, parse_section
from pipeline.filter import BOX_REFINERS, FilterParams, NoCropsKeptError, filter_faces

from conftest import REPO_ROOT

# Real screenshots and illustrations with the face boxes a face detector drew on them.
SAMPLES = "jerryli27__AniSeg__samples_inputs_"
PICTURES = {
    "frame15": (
        f"{SAMPLES}PL0bHKk6wuUGL_Qd34mf0XsQnyiDk2OeGR_015_v79HxnWIuNY-0075.jpg",
        (141.8, 356.8, 311.4, 525.9),
    ),
    "frame19": (
        f"{SAMPLES}PL0bHKk6wuUGL_Qd34mf0XsQnyiDk2OeGR_019_-FC7r2xpHeM-0020.jpg",
        (456.0, 198.2, 617.5, 359.3),
    ),
    "frame42": (
        f"{SAMPLES}PL0bHKk6wuUGL_Qd34mf0XsQnyiDk2OeGR_042_KI2r0WTbatw-0016.jpg",
        (879.3, 229.6, 973.2, 326.5),
    ),
    "drawing": (f"{SAMPLES}s_-_799906.jpg", (309.9, 140.0, 423.1, 254.4)),
}
DETECTION_FIELDS = ["image_id", "x1", "y1", "x2", "y2", "score", "detector", "agreement"]


class Inputs:
    """A raw folder with manifest.csv and a detections.csv, built picture by picture."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.raw = root / "raw"
        (self.raw / "images").mkdir(parents=True)
        self.manifest: list[dict] = []
        self.detections: list[dict] = []

    def add_file(self, image_id: str, data: bytes | None, suffix: str = ".jpg") -> None:
        path = f"images/{image_id}{suffix}"
        if data is not None:
            (self.raw / path).write_bytes(data)
        self.manifest.append({"id": image_id, "path": path})

    def add_box(self, image_id, box, detector="ensemble", agreement=2, score=0.9) -> None:
        x1, y1, x2, y2 = box
        self.detections.append(
            dict(image_id=image_id, x1=x1, y1=y1, x2=x2, y2=y2, score=score,
                 detector=detector, agreement=agreement)
        )

    def write(self) -> None:
        with (self.raw / "manifest.csv").open("w", newline="") as stream:
            writer = csv.DictWriter(stream, ["id", "path"])
            writer.writeheader()
            writer.writerows(self.manifest)
        with (self.root / "detections.csv").open("w", newline="") as stream:
            writer = csv.DictWriter(stream, DETECTION_FIELDS)
            writer.writeheader()
            writer.writerows(self.detections)

    def run(self, **values) -> dict:
        self.write()
        out = self.root / "out"
        return filter_faces(
            self.raw, self.root / "detections.csv", parse_section(FilterParams, values, "filter"),
            out / "faces.npy", out / "faces.csv", out / "preview.png", out / "filter.json",
        )


@pytest.fixture
def inputs(tmp_path) -> Inputs:
    return Inputs(tmp_path)


def picture_bytes(raw_dir: Path, name: str) -> bytes:
    return (raw_dir / PICTURES[name][0]).read_bytes()


def add_picture(inputs: Inputs, raw_dir: Path, name: str, image_id: str | None = None) -> None:
    image_id = image_id or name
    inputs.add_file(image_id, picture_bytes(raw_dir, name))
    inputs.add_box(image_id, PICTURES[name][1])


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def load_stage_main():
    path = REPO_ROOT / "stages" / "filter.py"
    spec = importlib.util.spec_from_file_location("filter_stage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_stage_writes_contract_outputs(inputs, raw_dir, tmp_path):
    for name in PICTURES:
        add_picture(inputs, raw_dir, name)
    inputs.write()
    params_path = tmp_path / "params.yaml"
    params_path.write_text("filter:\n  image_size: 32\n  min_laplacian_var: 50\n")
    out = tmp_path / "out"

    status = load_stage_main()([
        "--raw", str(inputs.raw), "--detections", str(tmp_path / "detections.csv"),
        "--out", str(out / "faces.npy"), "--index", str(out / "faces.csv"),
        "--preview", str(out / "preview.png"), "--metrics", str(out / "filter.json"),
        "--params", str(params_path),
    ])

    assert status == 0
    faces = np.load(out / "faces.npy", mmap_mode="r")
    assert faces.shape == (4, 32, 32, 3)
    assert faces.dtype == np.uint8
    index = pd.read_csv(out / "faces.csv")
    assert list(index["index"]) == [0, 1, 2, 3]
    assert list(index["image_id"]) == list(PICTURES)
    assert {"x1", "crop_x1", "laplacian_var", "phash", "crop_action"} <= set(index.columns)
    metrics = json.loads((out / "filter.json").read_text())
    assert metrics["kept"] == 4
    assert metrics["candidates"] == metrics["kept"] + metrics["dropped_total"]
    assert metrics["config"]["image_size"] == 32
    assert Image.open(out / "preview.png").size == (2 + 2 * 34, 2 + 2 * 34)


def test_crop_pixels_match_index(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.run(min_laplacian_var=0)
    row = pd.read_csv(inputs.root / "out" / "faces.csv").iloc[0]
    assert (row.crop_x1, row.crop_y1, row.crop_x2, row.crop_y2) == (134, 340, 320, 526)
    source = np.asarray(Image.open(raw_dir / PICTURES["frame15"][0]).convert("RGB"))
    expected = Image.fromarray(source[340:526, 134:320]).resize((64, 64), Image.Resampling.BOX)
    faces = np.load(inputs.root / "out" / "faces.npy")
    np.testing.assert_array_equal(faces[0], np.asarray(expected))


def test_blurred_face_dropped(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    pixels = np.asarray(Image.open(raw_dir / PICTURES["frame42"][0]).convert("RGB")).copy()
    x1, y1, x2, y2 = (int(v) for v in PICTURES["frame42"][1])
    # Blur the face and its surroundings by about 3 pixels of the 64 px crop.
    region = np.s_[y1 - 30 : y2 + 30, x1 - 30 : x2 + 30]
    pixels[region] = cv2.GaussianBlur(pixels[region], (0, 0), 3 * (x2 - x1) / 64)
    inputs.add_file("blurred", encode(pixels, "PNG"), ".png")
    inputs.add_box("blurred", PICTURES["frame42"][1])

    metrics = inputs.run()

    assert metrics["kept"] == 1
    assert metrics["dropped"] == {"blurry": 1}


def test_exact_and_near_duplicates_dropped(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame19", "original")
    add_picture(inputs, raw_dir, "frame19", "copy")
    pixels = np.asarray(Image.open(raw_dir / PICTURES["frame19"][0]).convert("RGB"))
    inputs.add_file("recompressed", encode(pixels, "JPEG", quality=70))
    inputs.add_box("recompressed", PICTURES["frame19"][1])
    add_picture(inputs, raw_dir, "drawing")

    metrics = inputs.run()

    assert metrics["dropped"] == {"duplicate_exact": 1, "duplicate_near": 1}
    assert metrics["kept"] == 2
    index = pd.read_csv(inputs.root / "out" / "faces.csv")
    assert list(index["image_id"]) == ["original", "drawing"]


def test_near_duplicates_kept_when_check_off(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame19", "original")
    pixels = np.asarray(Image.open(raw_dir / PICTURES["frame19"][0]).convert("RGB"))
    inputs.add_file("recompressed", encode(pixels, "JPEG", quality=70))
    inputs.add_box("recompressed", PICTURES["frame19"][1])

    metrics = inputs.run(near_duplicate_max_distance=None)

    assert metrics["kept"] == 2
    assert metrics["dropped"] == {}


def test_duplicate_keeps_largest_face(inputs, raw_dir):
    pixels = np.asarray(Image.open(raw_dir / PICTURES["frame19"][0]).convert("RGB"))
    half = np.asarray(Image.fromarray(pixels).resize((640, 360), Image.Resampling.LANCZOS))
    inputs.add_file("half", encode(half, "PNG"), ".png")
    inputs.add_box("half", [v / 2 for v in PICTURES["frame19"][1]])
    add_picture(inputs, raw_dir, "frame19", "full")

    metrics = inputs.run(near_duplicate_max_distance=8)

    assert metrics["dropped"] == {"duplicate_near": 1}
    index = pd.read_csv(inputs.root / "out" / "faces.csv")
    assert list(index["image_id"]) == ["full"]


def test_too_small_face_dropped(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.add_box("frame15", (600, 100, 620, 125))

    metrics = inputs.run()

    assert metrics["dropped"] == {"too_small": 1}
    assert metrics["kept"] == 1


def test_low_agreement_and_score_dropped(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.add_file("frame19", picture_bytes(raw_dir, "frame19"))
    inputs.add_box("frame19", PICTURES["frame19"][1], agreement=1)
    inputs.add_file("drawing", picture_bytes(raw_dir, "drawing"))
    inputs.add_box("drawing", PICTURES["drawing"][1], score=0.2)

    metrics = inputs.run(min_agreement=2, min_score=0.5)

    assert metrics["dropped"] == {"low_agreement": 1, "low_score": 1}
    assert metrics["images"]["with_boxes"] == 1


def test_member_rows_chosen_by_detector(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.add_box("frame15", (150, 360, 310, 520), detector="cascade", agreement="")

    metrics = inputs.run(detector="cascade")

    assert metrics["kept"] == 1
    assert metrics["other_detector_rows"] == 1
    index = pd.read_csv(inputs.root / "out" / "faces.csv")
    assert index["x1"].tolist() == [150]
    assert index["agreement"].tolist() == [1]


def test_absent_detector_rejected(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    with pytest.raises(ConfigError, match=r"no rows with detector 'maskrcnn'.*\['ensemble'\]"):
        inputs.run(detector="maskrcnn")


NOT_A_CHECKPOINT = "not a checkpoint of the finetune_detector stage"


@pytest.mark.parametrize(
    ("params_text", "expected"),
    [
        ("detector: yolo", r"filter\.detector = 'yolo', but .* no rows with detector 'yolo'"),
        ("box_refiner: foo", r"filter\.box_refiner: unknown box refiner 'foo'; valid names"),
        ("box_refiner: maskrcnn", r"filter\.mask_checkpoint_path is empty"),
        (
            "box_refiner: maskrcnn\n  mask_checkpoint_path: /nonexistent.pt",
            r"filter\.mask_checkpoint_path = '/nonexistent\.pt' .*not found\. Point it",
        ),
        (
            "box_refiner: maskrcnn\n  mask_checkpoint_path: {detections}",
            rf"filter\.mask_checkpoint_path = .*detections\.csv.*{NOT_A_CHECKPOINT}",
        ),
    ],
    ids=["absent_detector", "unknown_refiner", "empty_checkpoint", "missing_checkpoint",
         "csv_checkpoint"],
)
def test_stage_bad_params_exit_2(inputs, raw_dir, tmp_path, caplog, params_text, expected):
    add_picture(inputs, raw_dir, "frame15")
    inputs.write()
    detections = tmp_path / "detections.csv"
    params_path = tmp_path / "params.yaml"
    params_path.write_text("filter:\n  " + params_text.format(detections=detections) + "\n")
    out = tmp_path / "out"

    status = load_stage_main()([
        "--raw", str(inputs.raw), "--detections", str(detections),
        "--out", str(out / "faces.npy"), "--index", str(out / "faces.csv"),
        "--preview", str(out / "preview.png"), "--metrics", str(out / "filter.json"),
        "--params", str(params_path),
    ])

    assert status == 2
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].name == "stages.filter"
    assert re.search(expected, errors[0].getMessage())
    assert "detect.maskrcnn" not in errors[0].getMessage()
    assert not (out / "faces.npy").exists()


def test_stage_detections_without_columns_exit_2(inputs, raw_dir, tmp_path, caplog):
    add_picture(inputs, raw_dir, "frame15")
    inputs.write()
    detections = tmp_path / "detections.csv"
    detections.write_text("image_id,x1\nframe15,1\n")
    params_path = tmp_path / "params.yaml"
    params_path.write_text("filter: {}\n")
    out = tmp_path / "out"

    status = load_stage_main()([
        "--raw", str(inputs.raw), "--detections", str(detections),
        "--out", str(out / "faces.npy"), "--index", str(out / "faces.csv"),
        "--preview", str(out / "preview.png"), "--metrics", str(out / "filter.json"),
        "--params", str(params_path),
    ])

    assert status == 2
    assert "lacks the columns" in caplog.text
    assert "Rerun the detect stage" in caplog.text


def test_unreadable_images_counted(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    truncated = picture_bytes(raw_dir, "frame19")
    inputs.add_file("truncated", truncated[: len(truncated) // 2])
    inputs.add_box("truncated", PICTURES["frame19"][1])
    inputs.add_file("text", b"<html>not found</html>", ".png")
    inputs.add_box("text", (10, 10, 100, 100))
    inputs.add_file("missing", None)
    inputs.add_box("missing", (10, 10, 100, 100))
    inputs.add_box("missing", (200, 10, 300, 100))
    inputs.add_file("escape", None)
    inputs.manifest[-1]["path"] = "../outside.jpg"
    inputs.add_box("escape", (10, 10, 100, 100))
    inputs.add_box("not_listed", (10, 10, 100, 100))

    metrics = inputs.run()

    assert metrics["kept"] == 1
    assert metrics["images"]["skipped"] == {
        "missing": 1, "not_an_image": 1, "path_outside_raw": 1, "truncated": 1,
    }
    assert metrics["dropped"] == {
        "image_missing": 2, "image_unreadable": 3, "unknown_image": 1,
    }
    assert metrics["candidates"] == metrics["kept"] + metrics["dropped_total"]


def test_invalid_box_counted(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.add_box("frame15", (300, 300, 200, 400))
    inputs.add_box("frame15", ("nan", 1, 2, 3))
    inputs.add_box("frame15", (5000, 5000, 5100, 5100))

    metrics = inputs.run()

    assert metrics["dropped"] == {"invalid_box": 2, "out_of_frame": 1}


def test_out_of_frame_policies_counted(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    inputs.add_box("frame15", (600, 2, 700, 102))

    assert inputs.run()["crop_actions"] == {"inside": 1, "shifted": 1}
    assert inputs.run(out_of_frame="pad_edge")["crop_actions"] == {"inside": 1, "padded": 1}
    assert inputs.run(out_of_frame="drop")["dropped"] == {"out_of_frame": 1}


def test_nothing_kept_error_after_metrics(inputs, raw_dir):
    add_picture(inputs, raw_dir, "frame15")
    add_picture(inputs, raw_dir, "drawing")

    with pytest.raises(NoCropsKeptError, match=r"too_small 2 \(lower filter\.min_face_px\)"):
        inputs.run(min_face_px=500)

    metrics = json.loads((inputs.root / "out" / "filter.json").read_text())
    assert metrics["kept"] == 0
    assert metrics["dropped"] == {"too_small": 2}
    assert not (inputs.root / "out" / "faces.npy").exists()


def test_stage_fails_on_empty_raw_folder(inputs, tmp_path):
    inputs.write()
    params_path = tmp_path / "params.yaml"
    params_path.write_text("filter: {}\n")
    out = tmp_path / "out"

    status = load_stage_main()([
        "--raw", str(inputs.raw), "--detections", str(tmp_path / "detections.csv"),
        "--out", str(out / "faces.npy"), "--index", str(out / "faces.csv"),
        "--preview", str(out / "preview.png"), "--metrics", str(out / "filter.json"),
        "--params", str(params_path),
    ])

    assert status == 1
    assert json.loads((out / "filter.json").read_text())["candidates"] == 0
    assert not list(out.glob(".*tmp"))


def test_missing_manifest_rejected(tmp_path):
    (tmp_path / "detections.csv").write_text(",".join(DETECTION_FIELDS) + "\n")
    with pytest.raises(FileNotFoundError, match=r"manifest\.csv not found; run the scrape"):
        filter_faces(
            tmp_path, tmp_path / "detections.csv", FilterParams(), tmp_path / "f.npy",
            tmp_path / "f.csv", tmp_path / "p.png", tmp_path / "m.json",
        )


def test_stage_rejects_unknown_params_key(inputs, tmp_path, caplog):
    inputs.write()
    params_path = tmp_path / "params.yaml"
    params_path.write_text("filter:\n  blur_threshold: 10\n")
    code = load_stage_main()([
        "--raw", str(inputs.raw), "--detections", str(tmp_path / "detections.csv"),
        "--out", "f.npy", "--index", "f.csv", "--preview", "p.png", "--metrics", "m.json",
        "--params", str(params_path),
    ])
    assert code == 2
    assert "unknown key filter.blur_threshold" in caplog.text


def test_box_refiner_moves_crop(inputs, raw_dir):
    if "shift_right_10" not in BOX_REFINERS:

        @BOX_REFINERS.register("shift_right_10")
        def make_shift(params):
            return lambda image, box: (box[0] + 10, box[1], box[2] + 10, box[3])

    add_picture(inputs, raw_dir, "frame15")
    inputs.run(box_refiner="shift_right_10")
    row = pd.read_csv(inputs.root / "out" / "faces.csv").iloc[0]
    assert (row.crop_x1, row.crop_x2) == (144, 330)

    with pytest.raises(ConfigError, match=r"unknown box refiner 'mask'; valid names"):
        inputs.run(box_refiner="mask")


def test_shared_face_crops_near_duplicates(inputs, faces_dir):
    folder = faces_dir / "jonathonyan__Anime-Face-Detection-and-Recognition" / "positive"
    crops = sorted(folder.iterdir())[:300]
    for number, path in enumerate(crops):
        inputs.add_file(f"face{number:03d}", path.read_bytes(), path.suffix)
        width, height = Image.open(path).size
        inputs.add_box(f"face{number:03d}", (0, 0, width, height), agreement=1)

    metrics = inputs.run(margin_top=0.0, min_face_px=16)

    assert metrics["dropped"].get("duplicate_near", 0) > 0
    assert metrics["kept"] + metrics["dropped_total"] == 300
    index = pd.read_csv(inputs.root / "out" / "faces.csv", dtype=str)
    hashes = [int(value, 16) for value in index["phash"]]
    values = np.array(hashes, dtype=np.uint64)
    for i, value in enumerate(values):
        distances = np.bitwise_count(values ^ value)
        distances[i] = 64
        nearest = int(distances.argmin())
        assert distances.min() > 4, f"kept crops {i} and {nearest} are near duplicates"
