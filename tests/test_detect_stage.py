"""The detect stage end to end on a manifest over real pictures and broken inputs."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.detect.run import DETECTION_COLUMNS, read_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_COLUMNS = [
    "id", "source", "post_id", "source_url", "page_url", "path",
    "sha256", "width", "height", "bytes", "tags", "rating", "artist",
]  # fmt: skip
FACE_PICTURE = "jonathonyan__Anime-Face-Detection-and-Recognition__datasets_detection_detect_03.jpg"
NO_FACE_PICTURE = "Kiteretsu77__APISR____assets___lr_inputs_f91.jpg"


def write_manifest(raw: Path, rows: list[tuple[str, str]]) -> None:
    with (raw / "manifest.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for image_id, path in rows:
            row = {column: "" for column in MANIFEST_COLUMNS}
            writer.writerow(row | {"id": image_id, "path": path})


def write_params(path: Path, cascade_path: Path, **detect) -> Path:
    section = {"cascade_path": str(cascade_path), **detect}
    path.write_text(yaml.safe_dump({"detect": section}))
    return path


@pytest.fixture
def raw(tmp_path, raw_dir):
    """A raw folder with a face picture, a no-face picture and broken inputs."""
    folder = tmp_path / "raw"
    (folder / "images").mkdir(parents=True)
    os.symlink(raw_dir / FACE_PICTURE, folder / "images" / "face.jpg")
    os.symlink(raw_dir / NO_FACE_PICTURE, folder / "images" / "mecha.jpg")
    data = (raw_dir / FACE_PICTURE).read_bytes()
    (folder / "images" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "images" / "notes.jpg").write_text("not a picture\n")
    write_manifest(
        folder,
        [
            ("face", "images/face.jpg"),
            ("mecha", "images/mecha.jpg"),
            ("truncated", "images/truncated.jpg"),
            ("notes", "images/notes.jpg"),
            ("gone", "images/gone.jpg"),
            ("face", "images/face.jpg"),
            ("escape", "../outside.jpg"),
        ],
    )
    return folder


def run_stage(raw: Path, tmp_path: Path, params: Path) -> tuple[int, Path, Path]:
    from stages.detect import main

    out, metrics = tmp_path / "out" / "detections.csv", tmp_path / "out" / "detect.json"
    argv = ["--raw", str(raw), "--out", str(out), "--metrics", str(metrics)]
    return main([*argv, "--params", str(params)]), out, metrics


def test_stage_writes_rows_and_counts_skips(raw, tmp_path, cascade_path):
    params = write_params(tmp_path / "params.yaml", cascade_path)

    code, out, metrics_path = run_stage(raw, tmp_path, params)

    assert code == 0
    with out.open() as stream:
        assert stream.readline().strip() == ",".join(DETECTION_COLUMNS)
    detections = pd.read_csv(out)
    assert set(detections["image_id"]) == {"face"}
    by_detector = detections.set_index("detector")
    assert sorted(by_detector.index) == ["animeface", "cascade", "ensemble"]
    assert by_detector.loc["ensemble", "agreement"] == 2
    assert by_detector.loc["cascade", "agreement"] == 1
    assert (detections["x2"] > detections["x1"]).all()
    assert (detections["x2"] <= 220).all()
    assert (detections["y2"] <= 264).all()

    metrics = json.loads(metrics_path.read_text())
    assert metrics["images_listed"] == 7
    assert metrics["images_scanned"] == 2
    assert metrics["images_with_face"] == 1
    assert metrics["faces"] == {"cascade": 1, "animeface": 1, "ensemble": 1}
    assert metrics["ensemble_faces_by_agreement"] == {"1": 0, "2": 1}
    assert set(metrics["images_per_second"]) == {"cascade", "animeface", "ensemble"}
    assert all(value > 0 for value in metrics["images_per_second"].values())
    assert metrics["skips"] == {
        "duplicate_id": 1,
        "invalid_path": 1,
        "missing_file": 1,
        "not_an_image": 1,
        "truncated": 1,
    }
    assert metrics["config"]["cascade_path"] == str(cascade_path)
    assert metrics["config"]["fusion"]["method"] == "wbf"


def test_stage_min_agreement_two(raw, tmp_path, cascade_path):
    # Both members find the one face, so K=2 keeps its fused box.
    params = write_params(tmp_path / "params.yaml", cascade_path, fusion={"min_agreement": 2})

    code, out, _ = run_stage(raw, tmp_path, params)

    assert code == 0
    fused = pd.read_csv(out).query("detector == 'ensemble'")
    assert list(fused["agreement"]) == [2]


def test_stage_rejects_unknown_params_key(raw, tmp_path, cascade_path, caplog):
    params = write_params(tmp_path / "params.yaml", cascade_path, min_face=3)

    code, out, _ = run_stage(raw, tmp_path, params)

    assert code == 2
    assert "unknown key detect.min_face" in caplog.text
    assert not out.exists()


def test_stage_reports_missing_manifest(tmp_path, cascade_path, caplog):
    params = write_params(tmp_path / "params.yaml", cascade_path)
    (tmp_path / "empty").mkdir()

    code, _, _ = run_stage(tmp_path / "empty", tmp_path, params)

    assert code == 2
    assert "manifest.csv not found" in caplog.text


def test_manifest_without_path_column_is_rejected(tmp_path):
    (tmp_path / "manifest.csv").write_text("id,url\na,http://x\n")

    with pytest.raises(ValueError, match=r"lacks column\(s\) \['path'\]"):
        read_manifest(tmp_path)


def test_stage_script_on_empty_manifest(tmp_path, cascade_path):
    """Run the script as DVC does, on a manifest with a header and no rows."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_manifest(raw, [])
    params = write_params(tmp_path / "params.yaml", cascade_path)
    out, metrics = tmp_path / "detections.csv", tmp_path / "detect.json"

    completed = subprocess.run(
        [
            sys.executable, "stages/detect.py", "--raw", str(raw), "--out", str(out),
            "--metrics", str(metrics), "--params", str(params),
        ],  # fmt: skip
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert out.read_text().strip() == ",".join(DETECTION_COLUMNS)
    written = json.loads(metrics.read_text())
    assert written["images_scanned"] == 0
    assert written["faces"]["ensemble"] == 0
    assert written["images_per_second"]["ensemble"] is None
