"""``python -m pipeline validate``: schema errors per section and checks across sections."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from pipeline.validate_params import main, validate_params

from conftest import REPO_ROOT

PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def write_params(tmp_path: Path, **changes: dict) -> str:
    """Write params.yaml with ``changes[section]`` merged into that section."""
    params = copy.deepcopy(PARAMS)
    for section, values in changes.items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def test_repository_params_valid():
    assert validate_params(str(REPO_ROOT / "params.yaml")) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"scrape": {"source": "pixiv"}}, "scrape.source = 'pixiv' is not a registered"),
        ({"detect": {"detectors": ["cascade", "yolo"]}}, "unknown detector 'yolo'"),
        ({"filter": {"box_refiner": "foo"}}, "filter.box_refiner = 'foo' is not a registered"),
        ({"filter": {"detector": "yolo"}}, "filter.detector = 'yolo' is neither 'ensemble'"),
        ({"filter": {"min_agreement": 9}}, "filter.min_agreement = 9 exceeds"),
        (
            {"filter": {"detector": "cascade", "min_agreement": 2}},
            "filter.min_agreement = 2 exceeds 1",
        ),
        ({"filter": {"image_size": 48}}, "filter.image_size = 48: .*power of two"),
        ({"scrape": {"limits": {"formats": []}}}, "scrape.limits.formats is empty"),
    ],
    ids=["source", "detector", "refiner", "filter_detector", "agreement", "member_agreement",
         "image_size", "formats"],
)
def test_value_stages_reject_reported(tmp_path, changes, expected):
    errors = validate_params(write_params(tmp_path, **changes))
    assert len(errors) == 1, errors
    assert re.search(expected, errors[0]), errors[0]


def test_every_section_error_reported(tmp_path, capsys):
    path = write_params(
        tmp_path,
        scrape={"max_images": -1},
        filter={"image_size": 48},
        train={"batch_size": -3},
        evaluate={"num_samples": "x"},
    )

    code = main(["--params", path])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 4
    assert "scrape.max_images = -1" in lines[0]
    assert "train.batch_size = -3" in lines[1]
    assert "evaluate.num_samples must be an integer" in lines[2]
    assert "filter.image_size = 48" in lines[3]


def test_empty_file_lists_missing_sections(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    errors = validate_params(str(path))
    assert any("section 'train' missing" in message for message in errors)
    assert any("section 'scrape' missing" in message for message in errors)
