"""The stage script's command line, and params.yaml and dvc.yaml entries of the stage."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

from fakeboards import FakeServer, scrape_params
from pipeline.config import load_section, to_dict
from pipeline.scrape import ScrapeParams

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGE_SCRIPT = REPO_ROOT / "stages" / "scrape.py"


def load_stage_module():
    spec = importlib.util.spec_from_file_location("stage_scrape", STAGE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_params(path: Path, params) -> Path:
    path.write_text(yaml.safe_dump({"scrape": to_dict(params)}))
    return path


def test_stage_script_writes_metrics(raw_dir: Path, tmp_path: Path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for path in sorted(raw_dir.glob("*.png"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    params_file = write_params(
        tmp_path / "params.yaml", scrape_params("folder", folder=str(folder))
    )
    metrics_path = tmp_path / "metrics" / "scrape.json"

    result = subprocess.run(
        [
            sys.executable,
            str(STAGE_SCRIPT),
            "--out",
            str(tmp_path / "raw"),
            "--metrics",
            str(metrics_path),
            "--params",
            str(params_file),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    metrics = json.loads(metrics_path.read_text())
    for key in ("kept", "seen", "already_have", "rejected", "config", "images_total", "stopped"):
        assert key in metrics
    assert metrics["kept"] == 3
    assert metrics["config"]["source"] == "folder"
    assert metrics["config"]["http"]["delay_s"] == 0.0
    assert "scrape folder done (source_exhausted): kept 3, seen 3" in result.stderr


def test_stage_script_unknown_key_exits_2(tmp_path: Path, caplog):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"scrape": {"source": "folder", "delay": 1}}))
    stage = load_stage_module()
    code = stage.main(
        [
            "--out",
            str(tmp_path / "raw"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params_file),
        ]
    )
    assert code == 2
    assert "unknown key scrape.delay" in caplog.text
    assert not (tmp_path / "m.json").exists()


def test_stage_script_unreachable_board_exits_1(tmp_path: Path):
    with FakeServer() as closed:
        base_url = closed.base_url
    params = scrape_params("danbooru", danbooru={"base_url": base_url})
    params_file = write_params(tmp_path / "params.yaml", params)
    stage = load_stage_module()
    code = stage.main(
        [
            "--out",
            str(tmp_path / "raw"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params_file),
        ]
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert code == 1
    assert metrics["stopped"] == "listing_failed"
    assert metrics["seen"] == 0


def test_stage_script_no_images_exits_1(tmp_path: Path, caplog):
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a picture\n")
    params_file = write_params(
        tmp_path / "params.yaml", scrape_params("folder", folder=str(folder))
    )
    stage = load_stage_module()
    code = stage.main(
        [
            "--out",
            str(tmp_path / "raw"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params_file),
        ]
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert code == 1
    assert metrics["images_total"] == 0
    assert metrics["rejected_total"] == 2
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1
    assert "no images in" in errors[0]
    for reason in metrics["rejected"]:
        assert reason in errors[0]


def test_stage_script_empty_formats_exits_2(raw_dir: Path, tmp_path: Path, caplog):
    params = to_dict(scrape_params("folder", folder=str(raw_dir)))
    params["limits"]["formats"] = []
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"scrape": params}))
    stage = load_stage_module()
    code = stage.main(
        [
            "--out",
            str(tmp_path / "raw"),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params_file),
        ]
    )
    assert code == 2
    assert "scrape.limits.formats is empty" in caplog.text
    assert not (tmp_path / "raw").exists()


def test_params_yaml_lists_every_default():
    from_file = to_dict(load_section(ScrapeParams, "scrape", REPO_ROOT / "params.yaml"))
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["scrape"]
    defaults = to_dict(ScrapeParams())
    assert from_file == defaults
    assert set(raw) == {field.name for field in dataclasses.fields(ScrapeParams)}
    for section, values in raw.items():
        if isinstance(values, dict):
            assert set(values) == set(defaults[section]), section


def test_dvc_stage_lists_every_scrape_module():
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["scrape"]
    modules = {
        str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "pipeline" / "scrape").rglob("*.py")
    }
    assert modules <= set(stage["deps"])
    assert stage["cmd"] == "python stages/scrape.py --out data/raw --metrics metrics/scrape.json"
    assert stage["outs"] == [{"data/raw": {"persist": True}}]
    assert stage["params"] == ["scrape"]
