"""Validation of the detect section and member lookup by name."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_section, param, parse_section
from pipeline.detect.base import DETECTOR_PARAMS, DETECTORS
from pipeline.detect.ensemble import build_ensemble, build_member
from pipeline.detect.params import DetectParams

REPO_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


def test_repo_params_detect_section_loads():
    params = load_section(DetectParams, "detect", REPO_PARAMS)

    assert params.detectors == ["cascade", "animeface"]
    assert params.fusion.method in ("wbf", "voting")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"detectorz": ["cascade"]}, r"unknown key detect\.detectorz"),
        ({"cascade": {"min_neighbours": 3}}, r"unknown key detect\.cascade\.min_neighbours"),
        ({"cascade": {"scale_factor": 1.0}}, r"detect\.cascade\.scale_factor = 1\.0 is below"),
        ({"animeface": {"min_likelihood": 1.5}}, r"detect\.animeface\.min_likelihood = 1\.5"),
        ({"fusion": {"method": "nms"}}, r"detect\.fusion\.method = 'nms' is not allowed"),
        ({"detectors": []}, r"detect\.detectors is empty"),
        ({"detectors": ["cascade", "cascade"]}, r"lists 'cascade' more than once"),
        ({"fusion": {"weights": {"yolo": 1.0}}}, r"detect\.fusion\.weights\.yolo names no member"),
        ({"fusion": {"weights": {"cascade": 0}}}, r"weights\.cascade = 0\.0 must be a positive"),
        ({"fusion": {"min_agreement": 3}}, r"min_agreement = 3 is above the 2 members"),
        (
            {"cascade_path": "a.xml", "cascade": {"cascade_path": "b.xml"}},
            r"detect\.cascade_path = 'a\.xml' and detect\.cascade\.cascade_path = 'b\.xml' differ",
        ),
    ],
)
def test_invalid_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(DetectParams, values, "detect")


def test_cascade_path_reaches_cascade_section():
    params = parse_section(DetectParams, {"cascade_path": "/models/x.xml"}, "detect")

    assert params.cascade.cascade_path == "/models/x.xml"


def test_unknown_detector_lists_valid_names(cascade_path):
    params = DetectParams(detectors=["yolo"], cascade_path=str(cascade_path))

    with pytest.raises(ConfigError, match=r"unknown detector 'yolo'; valid names: .*'animeface'"):
        build_ensemble(params)


@dataclass
class FakeParams:
    threshold: float = param(0.5, min=0.0, max=1.0)


class FakeDetector:
    name = "maskrcnn"

    def __init__(self, params):
        self.params = params

    def detect(self, image):
        return []


@pytest.fixture
def fake_maskrcnn(monkeypatch):
    """Stand in for the maskrcnn member, the way its module registers itself."""
    monkeypatch.setitem(DETECTORS._items, "maskrcnn", FakeDetector)
    monkeypatch.setitem(DETECTOR_PARAMS._items, "maskrcnn", FakeParams)


def test_registered_member_gets_parsed_section(fake_maskrcnn):
    values = {"detectors": ["maskrcnn"], "maskrcnn": {"threshold": 0.7}}
    params = parse_section(DetectParams, values, "detect")

    member = build_member("maskrcnn", params)

    assert member.params == FakeParams(threshold=0.7)


def test_registered_member_rejects_unknown_key(fake_maskrcnn):
    values = {"detectors": ["maskrcnn"], "maskrcnn": {"treshold": 1}}
    params = parse_section(DetectParams, values, "detect")

    with pytest.raises(ConfigError, match=r"unknown key detect\.maskrcnn\.treshold"):
        build_member("maskrcnn", params)
