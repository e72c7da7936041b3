from dataclasses import dataclass

import pytest

from pipeline.config import ConfigError, load_params, param, parse_section
from pipeline.registry import Registry


@dataclass
class Inner:
    threshold: float = param(0.5, min=0.0, max=1.0)


@dataclass
class Section:
    name: str = param("cascade", choices=["cascade", "animeface"])
    count: int = param(3, min=1)
    tags: list[str] = param(["a"])
    inner: Inner = param(Inner)
    optional_path: str | None = param(None)


def test_defaults_fill_missing_keys():
    config = parse_section(Section, {}, "detect")
    assert config.count == 3
    assert config.inner.threshold == 0.5
    assert config.tags == ["a"]


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError, match=r"unknown key detect\.cuont .*allowed keys"):
        parse_section(Section, {"cuont": 2}, "detect")


def test_nested_unknown_key_has_full_path():
    with pytest.raises(ConfigError, match=r"detect\.inner\.treshold"):
        parse_section(Section, {"inner": {"treshold": 1}}, "detect")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"count": 0}, r"detect\.count = 0 is below the minimum 1"),
        ({"count": 1.5}, r"detect\.count must be an integer"),
        ({"count": True}, r"detect\.count must be an integer"),
        ({"name": "yolo"}, r"detect\.name = 'yolo' is not allowed; choose one of"),
        ({"inner": {"threshold": 2}}, r"detect\.inner\.threshold = 2\.0 is above the maximum"),
        ({"tags": "a"}, r"detect\.tags must be a list"),
    ],
)
def test_invalid_values_are_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(Section, values, "detect")


def test_optional_accepts_null_and_string():
    assert parse_section(Section, {"optional_path": None}, "s").optional_path is None
    assert parse_section(Section, {"optional_path": "x"}, "s").optional_path == "x"


def test_mutable_defaults_are_not_shared():
    first = parse_section(Section, {}, "s")
    first.tags.append("b")
    assert parse_section(Section, {}, "s").tags == ["a"]


def test_registry_unknown_name_lists_valid():
    registry = Registry("source")
    registry.register("folder")(object)
    with pytest.raises(KeyError, match=r"unknown source 'web'; valid names: \['folder'\]"):
        registry.get("web")


def test_malformed_yaml_names_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [1,2\n")
    with pytest.raises(ConfigError, match=r"params\.yaml' is not valid YAML"):
        load_params(path)
