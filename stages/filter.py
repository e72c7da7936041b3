"""Filter stage: crop the detected faces, drop bad and duplicate crops, pack the rest.

    python stages/filter.py --raw data/raw --detections data/detections.csv \
        --out data/faces.npy --index data/faces.csv --preview data/filter_preview.png \
        --metrics metrics/filter.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/filter.py` import this checkout's pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.files import setup_logging  # noqa: E402
from pipeline.filter import FilterParams, NoCropsKeptError, filter_faces  # noqa: E402
from pipeline.filter.inputs import InputTableError  # noqa: E402

log = logging.getLogger("stages.filter")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="scrape output folder holding manifest.csv")
    parser.add_argument("--detections", required=True, help="detections CSV from the detect stage")
    parser.add_argument("--out", required=True, help="output .npy of N x S x S x 3 uint8 crops")
    parser.add_argument("--index", required=True, help="output CSV, one row per kept crop")
    parser.add_argument("--preview", required=True, help="output PNG grid of kept crops")
    parser.add_argument("--metrics", required=True, help="output JSON of counts and config")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("--verbose", action="store_true", help="log every skipped crop")
    args = parser.parse_args(argv)

    setup_logging(args.verbose)
    try:
        params = load_section(FilterParams, "filter", args.params)
    except ConfigError as error:
        log.error("%s", error)
        return 2
    try:
        filter_faces(
            args.raw, args.detections, params, args.out, args.index, args.preview, args.metrics
        )
    except (ConfigError, FileNotFoundError, InputTableError) as error:
        log.error("%s", error)
        return 2
    except NoCropsKeptError as error:
        log.error("%s (counts in %s)", error, args.metrics)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
