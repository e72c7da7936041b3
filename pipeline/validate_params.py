"""``python -m pipeline validate``: check params.yaml against every stage's schema."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from pipeline.config import ConfigError, load_params, parse_section
from pipeline.detect.fusion import ENSEMBLE_NAME as ENSEMBLE

# params.yaml section -> "module:ParamsClass" that the stage of the same name validates with.
SECTION_SCHEMAS: dict[str, str] = {
    "scrape": "pipeline.scrape.params:ScrapeParams",
    "detect": "pipeline.detect.params:DetectParams",
    "filter": "pipeline.filter.params:FilterParams",
    "train": "pipeline.train.params:TrainParams",
    "reference_stats": "pipeline.evaluate.params:ReferenceStatsParams",
    "evaluate": "pipeline.evaluate.params:EvaluateParams",
    "labels": "pipeline.labels.params:LabelsParams",
    "finetune_detector": "pipeline.detect.finetune_params:FinetuneParams",
    "evaluate_detector": "pipeline.detect.finetune_params:EvaluateDetectorParams",
}


def validate_params(path: str) -> list[str]:
    """Return one error message per invalid or unknown section, then per cross-section check.

    Empty when every section is valid. No model or data file is loaded.
    """
    return validate_params_data(load_params(path), path)


def validate_params_data(params: dict[str, Any], source: str = "params.yaml") -> list[str]:
    """Validate the parsed contents of a parameters file; ``source`` names it in messages."""
    errors = []
    for section in sorted(set(params) - set(SECTION_SCHEMAS)):
        errors.append(
            f"unknown section {section!r} in {source}; known sections: {sorted(SECTION_SCHEMAS)}"
        )
    for section in sorted(set(SECTION_SCHEMAS) - set(params)):
        errors.append(f"section {section!r} missing from {source}; the {section} stage reads it")
    parsed, section_errors = parse_sections(params)
    errors.extend(section_errors)
    errors.extend(check_across_sections(parsed))
    return errors


def parse_sections(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate each known section present in ``params`` against its schema.

    Returns the parsed sections by name and one error message per invalid section.
    """
    parsed: dict[str, Any] = {}
    errors = []
    for section, target in SECTION_SCHEMAS.items():
        if section not in params:
            continue
        module_name, class_name = target.split(":")
        schema = getattr(importlib.import_module(module_name), class_name)
        try:
            parsed[section] = parse_section(schema, params[section], section)
        except ConfigError as error:
            errors.append(str(error))
    return parsed, errors


def check_across_sections(parsed: dict[str, Any]) -> list[str]:
    """Check the registry names and the values one stage must agree on with another.

    ``parsed`` maps section names to validated sections; a check whose section is
    missing or invalid is skipped, because that section already has its own error.
    """
    errors = []
    scrape, detect, filter_ = parsed.get("scrape"), parsed.get("detect"), parsed.get("filter")
    if scrape is not None:
        from pipeline.scrape.sources import SOURCES

        if scrape.source not in SOURCES:
            errors.append(
                f"scrape.source = {scrape.source!r} is not a registered scrape source; "
                f"valid names: {SOURCES.names()}"
            )
    if detect is not None:
        errors.extend(_check_detector_names(detect.detectors))
    if filter_ is not None:
        errors.extend(_check_filter(filter_, detect))
    return errors


def _check_detector_names(names: list[str]) -> list[str]:
    from pipeline.detect.base import DETECTORS
    from pipeline.detect.ensemble import import_member_module

    errors = []
    for name in names:
        import_member_module(name)
        if name not in DETECTORS:
            errors.append(
                f"detect.detectors names unknown detector {name!r}; valid names: "
                f"{DETECTORS.names()}"
            )
    return errors


def _check_filter(filter_: Any, detect: Any | None) -> list[str]:
    from pipeline.filter.refiners import BOX_REFINERS
    from pipeline.train.models import check_image_size

    errors = []
    if filter_.box_refiner not in BOX_REFINERS:
        errors.append(
            f"filter.box_refiner = {filter_.box_refiner!r} is not a registered box refiner; "
            f"valid names: {BOX_REFINERS.names()}"
        )
    # The train stage trains on the crops at filter.image_size, so it must accept that size.
    try:
        check_image_size(filter_.image_size)
    except ValueError as error:
        errors.append(f"filter.image_size = {filter_.image_size}: {error}")

    if detect is None:
        return errors
    if filter_.detector != ENSEMBLE and filter_.detector not in detect.detectors:
        errors.append(
            f"filter.detector = {filter_.detector!r} is neither {ENSEMBLE!r} nor one of "
            f"detect.detectors {detect.detectors}; set it to one of them"
        )
    # A fused box has agreement up to the member count, and a member's own box has 1.
    max_agreement = len(detect.detectors) if filter_.detector == ENSEMBLE else 1
    if filter_.min_agreement > max_agreement:
        errors.append(
            f"filter.min_agreement = {filter_.min_agreement} exceeds {max_agreement}, the "
            f"highest agreement of a {filter_.detector!r} box with detect.detectors "
            f"{detect.detectors}, so every box would be dropped; lower filter.min_agreement"
        )
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline validate", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameters file to check")
    args = parser.parse_args(argv)
    try:
        errors = validate_params(args.params)
    except ConfigError as error:
        errors = [str(error)]
    for message in errors:
        print(f"error: {message}")
    if not errors:
        print(f"{args.params}: every section is valid")
    return 1 if errors else 0
