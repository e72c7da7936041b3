"""DVC stage ``detect``: find anime faces in the scraped pictures with the detector ensemble.

Reads <raw>/manifest.csv and the pictures beside it, writes one CSV row per member box
and per fused box, and the metrics JSON with counts, speeds, skips and the config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/detect.py` import the pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.detect.run import detect_manifest, write_detections  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402

logger = logging.getLogger("stages.detect")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True, help="folder with manifest.csv and the pictures")
    parser.add_argument("--out", required=True, help="detections CSV to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        params = load_section(DetectParams, "detect", args.params)
        detections, metrics = detect_manifest(Path(args.raw), params)
    except (ConfigError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2

    write_detections(args.out, detections)
    write_json(args.metrics, metrics)
    logger.info(
        "scanned %d of %d images, %d with a face, %d fused faces, %d skipped",
        metrics["images_scanned"],
        metrics["images_listed"],
        metrics["images_with_face"],
        metrics["faces"]["ensemble"],
        metrics["skipped"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
