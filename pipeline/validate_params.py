"""``python -m pipeline validate``: check params.yaml against every stage's schema."""

from __future__ import annotations

import argparse
import importlib

from pipeline.config import ConfigError, load_params, parse_section

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
    """Return one error message per invalid or unknown section; empty when all are valid."""
    params = load_params(path)
    errors = []
    for section in sorted(set(params) - set(SECTION_SCHEMAS)):
        errors.append(
            f"unknown section {section!r} in {path}; known sections: {sorted(SECTION_SCHEMAS)}"
        )
    for section, target in SECTION_SCHEMAS.items():
        if section not in params:
            continue
        module_name, class_name = target.split(":")
        schema = getattr(importlib.import_module(module_name), class_name)
        try:
            parse_section(schema, params[section], section)
        except ConfigError as error:
            errors.append(str(error))
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
