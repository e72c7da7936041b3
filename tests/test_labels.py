"""Label formats: round trips against hand-made files, the shared boxes CSV, masks, split, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, load_section
from pipeline.labels.boxes_csv import format_boxes_csv, read_boxes_csv
from pipeline.labels.build import assign_test_split, check_images
from pipeline.labels.cli import main as labels_cli
from pipeline.labels.coco import LabelFormatError, from_coco, read_coco, to_coco, write_coco
from pipeline.labels.masks import decode_segmentation, ellipse_mask, encode_mask, grabcut_mask, make_mask
from pipeline.labels.model import LabelBox, LabelledImage, box_iou, parse_image_roots
from pipeline.labels.opencv_list import format_opencv_list, read_opencv_list
from pipeline.labels.params import LabelsParams
from pipeline.labels.voc import read_voc_file, read_voc_folder, write_voc_file
from pipeline.labels.yolo import format_yolo_text, read_yolo_folder
from pipeline.images import load_rgb
from pipeline.skips import SkipCounter
import logging

SINGLE_BOX_IMAGE = "syncopika__anime_face_classifier/images/aletta14.png"  # 737 x 422
SECOND_IMAGE = "syncopika__anime_face_classifier/images/anya.png"  # 320 x 269

VOC_TEXT = """<annotation>
  <folder>images</folder>
  <filename>aletta14.png</filename>
  <size><width>737</width><height>422</height><depth>3</depth></size>
  <object><name>face</name><bndbox><xmin>203</xmin><ymin>67</ymin><xmax>534</xmax><ymax>373</ymax></bndbox></object>
  <object><name>eye</name><bndbox><xmin>300</xmin><ymin>150</ymin><xmax>340</xmax><ymax>190</ymax></bndbox></object>
  <object><name>Face</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox></object>
</annotation>
"""


def skip_counter() -> SkipCounter:
    return SkipCounter(logging.getLogger("test"))


def boxes_of(image: LabelledImage) -> list[tuple[float, float, float, float]]:
    return [(b.x1, b.y1, b.x2, b.y2) for b in image.boxes]


@pytest.fixture
def image_folder(shared_dir: Path, tmp_path: Path) -> Path:
    """A folder with two real pictures, a corrupt JPEG and a text file."""
    folder = tmp_path / "images"
    folder.mkdir()
    boxes_dir = shared_dir / "data" / "boxes"
    shutil.copy(boxes_dir / SINGLE_BOX_IMAGE, folder / "aletta14.png")
    shutil.copy(boxes_dir / SECOND_IMAGE, folder / "anya.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def test_voc_reads_hand_made_file(tmp_path: Path) -> None:
    path = tmp_path / "aletta14.xml"
    path.write_text(VOC_TEXT)
    image = read_voc_file(path)
    assert image.file_name == "aletta14.png"
    assert (image.width, image.height) == (737, 422)
    # 1-based inclusive VOC corners become 0-based with exclusive x2/y2; "eye" is left out.
    assert boxes_of(image) == [(202.0, 66.0, 534.0, 373.0), (10.0, 20.0, 60.0, 80.0)]


def test_voc_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "in.xml"
    source.write_text(VOC_TEXT)
    image = read_voc_file(source)
    write_voc_file(tmp_path / "out.xml", image)
    again = read_voc_file(tmp_path / "out.xml")
    assert boxes_of(again) == boxes_of(image)
    assert "<xmin>203</xmin>" in (tmp_path / "out.xml").read_text()


def test_voc_invalid_xml_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.xml").write_text(VOC_TEXT)
    (tmp_path / "bad.xml").write_text("<annotation><size>")
    (tmp_path / "no_size.xml").write_text("<annotation><filename>a.png</filename></annotation>")
    skips = skip_counter()
    images = read_voc_folder(tmp_path, skips=skips)
    assert [image.file_name for image in images] == ["aletta14.png"]
    assert skips.as_dict() == {"invalid_label_file": 2}
    with pytest.raises(LabelFormatError, match="bad.xml"):
        read_voc_file(tmp_path / "bad.xml")


def test_yolo_reads_hand_made_file(image_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    # Two faces (class 0) and an eye (class 1) on the 737 x 422 picture.
    (labels / "aletta14.txt").write_text(
        "0 0.500000 0.500000 0.200000 0.400000\n1 0.1 0.1 0.05 0.05\n0 0.25 0.75 0.1 0.2\n"
    )
    images = read_yolo_folder(labels, image_folder)
    assert len(images) == 1
    assert (images[0].width, images[0].height) == (737, 422)
    expected = [
        (0.4 * 737, 0.3 * 422, 0.6 * 737, 0.7 * 422),
        (0.2 * 737, 0.65 * 422, 0.3 * 737, 0.85 * 422),
    ]
    assert np.allclose(boxes_of(images[0]), expected)


def test_yolo_round_trip(image_folder: Path, tmp_path: Path) -> None:
    text = "0 0.500000 0.500000 0.200000 0.400000\n0 0.250000 0.750000 0.100000 0.200000\n"
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "anya.txt").write_text(text)
    image = read_yolo_folder(labels, image_folder)[0]
    assert format_yolo_text(image) == text


def test_yolo_bad_inputs_skipped(image_folder: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "aletta14.txt").write_text("0 0.5 0.5\n")  # too few fields
    (labels / "missing.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no such image
    (labels / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # corrupt image
    (labels / "anya.txt").write_text("")  # an image with no faces
    skips = skip_counter()
    images = read_yolo_folder(labels, image_folder, skips=skips)
    assert [(image.file_name, len(image.boxes)) for image in images] == [("anya.png", 0)]
    assert skips.counts["invalid_label_file"] == 1
    assert skips.counts["image_not_found"] == 1
    assert skips.counts["corrupt"] + skips.counts["not_an_image"] == 1


def test_opencv_list_round_trip(image_folder: Path) -> None:
    text = "aletta14.png 2 202 66 332 307 10 20 50 60\nanya.png 0\n"
    path = image_folder / "faces.txt"
    path.write_text(text)
    images = read_opencv_list(path)
    assert [image.file_name for image in images] == ["aletta14.png", "anya.png"]
    assert boxes_of(images[0]) == [(202, 66, 534, 373), (10, 20, 60, 80)]
    assert images[1].boxes == []
    assert format_opencv_list(images) == text


def test_opencv_list_bad_lines_skipped(image_folder: Path) -> None:
    path = image_folder / "faces.txt"
    path.write_text(
        "aletta14.png 2 202 66 332 307\n"  # count 2, but only 1 box
        "missing.png 1 1 2 3 4\n"
        "broken.jpg 1 1 2 3 4\n"
        "anya.png 1 52 52 201 186\n"
    )
    skips = skip_counter()
    images = read_opencv_list(path, skips)
    assert [image.file_name for image in images] == ["anya.png"]
    assert skips.counts["invalid_label_line"] == 1
    assert skips.counts["image_not_found"] == 1
    assert skips.counts["corrupt"] + skips.counts["not_an_image"] == 1


def test_coco_round_trip_keeps_masks_and_extras(tmp_path: Path) -> None:
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 5:25] = True
    images = [
        LabelledImage(
            "a.png", 50, 40,
            [LabelBox(5, 10, 25, 20, score=0.75, segmentation=encode_mask(mask)), LabelBox(1.5, 2, 3, 4)],
            root="raw", kind="pseudo_agreement", complete=False, split="train",
        ),
        LabelledImage("b.png", 8, 6, [], root="boxes", kind="gt_human", split="test"),
    ]
    write_coco(tmp_path / "labels.json", images)
    again = read_coco(tmp_path / "labels.json")
    assert again == images
    decoded = decode_segmentation(again[0].boxes[0].segmentation, 40, 50)
    assert np.array_equal(decoded, mask)


def test_coco_reads_hand_made_dataset() -> None:
    data = {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 100, "height": 80}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40],
             "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]},
            {"id": 2, "image_id": 7, "category_id": 9, "bbox": [0, 0, 5, 5]},
        ],
        "categories": [{"id": 3, "name": "face"}, {"id": 9, "name": "hand"}],
    }
    images = from_coco(data)
    assert boxes_of(images[0]) == [(10, 20, 40, 60)]
    mask = decode_segmentation(images[0].boxes[0].segmentation, 80, 100)
    assert mask[40, 25]
    assert not mask[5, 5]
    assert to_coco(images)["annotations"][0]["bbox"] == [10, 20, 30, 40]


def test_coco_without_face_category_rejected() -> None:
    with pytest.raises(LabelFormatError, match="no category named 'face'"):
        from_coco({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]})


def test_boxes_csv_shared_file(shared_dir: Path) -> None:
    images = read_boxes_csv(shared_dir / "data" / "boxes" / "all_boxes_xyxy.csv")
    by_kind: dict[str, list[LabelledImage]] = {}
    for image in images:
        by_kind.setdefault(image.kind, []).append(image)
    assert len(by_kind["gt_human_single_box_per_image"]) == 62
    assert all(len(i.boxes) == 1 and not i.complete for i in by_kind["gt_human_single_box_per_image"])
    assert len(by_kind["gt_human"]) == 1
    assert all(i.complete and not i.boxes for i in by_kind["pseudo_no_detections"])
    # Eye and mouth rows are left out: one face per pseudo-labelled picture remains.
    assert all(len(i.boxes) == 1 for i in by_kind["pseudo_model_prediction"])
    assert all(i.boxes[0].score is not None for i in by_kind["pseudo_model_prediction"])


def test_boxes_csv_round_trip(tmp_path: Path) -> None:
    text = (
        "image,width,height,x1,y1,x2,y2,label,score,kind,source_repo\n"
        "a/b.png,100,80,10.5,20.0,30.0,40.0,face,0.9,pseudo_model_prediction,x/y\n"
        "a/b.png,100,80,1.0,2.0,3.0,4.0,eye (inferred),0.8,pseudo_model_prediction,x/y\n"
        "c.png,50,40,,,,,,,pseudo_no_detections,x/y\n"
        "d.png,50,40,oops,2,3,4,face,,gt_human,x/y\n"
    )
    (tmp_path / "boxes.csv").write_text(text)
    skips = skip_counter()
    images = read_boxes_csv(tmp_path / "boxes.csv", skips=skips)
    assert [(i.file_name, len(i.boxes)) for i in images] == [("a/b.png", 1), ("c.png", 0)]
    assert skips.as_dict() == {"invalid_row": 1}
    (tmp_path / "again.csv").write_text(format_boxes_csv(images))
    assert read_boxes_csv(tmp_path / "again.csv") == images


def test_ellipse_mask_inside_box() -> None:
    box = LabelBox(10, 20, 50, 100)
    mask = ellipse_mask(box, 120, 80)
    rows, columns = np.nonzero(mask)
    assert rows.min() >= 20
    assert rows.max() <= 100
    assert columns.min() >= 10
    assert columns.max() <= 50
    assert mask.sum() == pytest.approx(np.pi / 4 * 40 * 80, rel=0.05)


def test_grabcut_mask_on_real_face(shared_dir: Path) -> None:
    image = load_rgb(shared_dir / "data" / "boxes" / SECOND_IMAGE)
    box = LabelBox(52, 52, 253, 238)
    mask = grabcut_mask(image, box, iterations=2)
    assert mask.shape == image.shape[:2]
    assert 0.1 < mask[52:238, 52:253].mean() <= 1.0
    # GrabCut never marks pixels outside the box as foreground, since it starts from it.
    assert not mask[:40].any()


def test_make_mask_prefers_label_segmentation() -> None:
    own = np.zeros((30, 30), dtype=bool)
    own[0:5, 0:5] = True
    box = LabelBox(10, 10, 20, 20, segmentation=encode_mask(own))
    assert np.array_equal(make_mask(box, 30, 30, "ellipse"), own)
    with pytest.raises(ValueError, match="unknown mask method"):
        make_mask(LabelBox(1, 1, 5, 5), 30, 30, "flood")


def test_test_split_is_seeded_per_kind() -> None:
    images = [LabelledImage(f"{i}.png", 10, 10, kind="a" if i < 10 else "b") for i in range(30)]
    assign_test_split(images, 0.3, seed=0)
    first = [image.split for image in images]
    assert sum(s == "test" for s in first[:10]) == 3
    assert sum(s == "test" for s in first[10:]) == 6
    again = [LabelledImage(f"{i}.png", 10, 10, kind="a" if i < 10 else "b") for i in reversed(range(30))]
    assign_test_split(again, 0.3, seed=0)
    assert [image.split for image in reversed(again)] == first


def test_check_images_counts_bad_files(image_folder: Path) -> None:
    images = [
        LabelledImage("aletta14.png", 737, 422, [LabelBox(202, 66, 534, 373), LabelBox(800, 10, 900, 20)]),
        LabelledImage("anya.png", 999, 269),
        LabelledImage("broken.jpg", 10, 10),
        LabelledImage("gone.png", 10, 10),
    ]
    skips = skip_counter()
    kept = check_images(images, {"": image_folder}, skips)
    assert [image.file_name for image in kept] == ["aletta14.png"]
    assert len(kept[0].boxes) == 1
    assert skips.counts["size_mismatch"] == 1
    assert skips.counts["image_not_found"] == 1
    assert skips.counts["invalid_box"] == 1
    assert skips.counts["corrupt"] + skips.counts["not_an_image"] == 1


def test_box_iou_hand_computed() -> None:
    assert box_iou(LabelBox(0, 0, 10, 10), LabelBox(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou(LabelBox(0, 0, 10, 10), LabelBox(10, 10, 20, 20)) == 0.0


def test_image_roots_parsed() -> None:
    assert parse_image_roots(["boxes=a/b", "raw=c"]) == {"boxes": Path("a/b"), "raw": Path("c")}
    assert parse_image_roots(["folder"]) == {"": Path("folder")}
    with pytest.raises(ValueError, match="given twice"):
        parse_image_roots(["a=x", "a=y"])


def test_labels_params_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("labels:\n  test_fraction: 0.2\n  mask: ellipse\n")
    with pytest.raises(ConfigError, match="unknown key labels.mask"):
        load_section(LabelsParams, "labels", path)
    path.write_text("labels:\n  mask_method: flood\n")
    with pytest.raises(ConfigError, match="labels.mask_method"):
        load_section(LabelsParams, "labels", path)


def test_cli_converts_voc_to_coco(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "aletta14.xml").write_text(VOC_TEXT)
    out = tmp_path / "faces.json"
    assert labels_cli(["--from", "voc", "--input", str(voc), "--to", "coco", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [a["bbox"] for a in data["annotations"]] == [[202.0, 66.0, 332.0, 307.0], [10.0, 20.0, 50.0, 60.0]]


def test_cli_rejects_yolo_without_images(tmp_path: Path) -> None:
    assert labels_cli(["--from", "yolo", "--input", str(tmp_path), "--to", "coco", "--out", str(tmp_path / "x.json")]) == 1
    with pytest.raises(SystemExit):
        labels_cli(["--from", "pascal", "--input", "a", "--to", "coco", "--out", "b"])


def test_cli_empty_folder_gives_empty_labels(tmp_path: Path) -> None:
    out = tmp_path / "faces.json"
    assert labels_cli(["--from", "voc", "--input", str(tmp_path), "--to", "coco", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["images"] == []
