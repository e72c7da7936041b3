"""DVC stage ``labels``: build the face label set (COCO JSON with masks) for the detector stages.

Reads the boxes CSV (paths in it are relative to its folder), holds out a seeded test
share of each label kind, pseudo-labels the scraped pictures where the detectors in
``labels.pseudo_members`` agree, and gives every box a mask.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/labels.py` import the pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section, to_dict  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.labels.build import build_label_set, summarize  # noqa: E402
from pipeline.labels.coco import LabelFormatError, write_coco  # noqa: E402
from pipeline.labels.params import LabelsParams  # noqa: E402
from pipeline.labels.pseudo import build_members  # noqa: E402
from pipeline.skips import SkipCounter  # noqa: E402

logger = logging.getLogger("stages.labels")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes-csv", required=True, help="boxes CSV; image paths relative to its folder")
    parser.add_argument("--raw", required=True, help="folder of scraped pictures to pseudo-label")
    parser.add_argument("--out", required=True, help="COCO JSON to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    skips = SkipCounter(logger)
    try:
        params = load_section(LabelsParams, "labels", args.params)
        members = {}
        if params.pseudo_members:
            detect_params = load_section(DetectParams, "detect", args.params)
            members = build_members(params.pseudo_members, detect_params)
        images = build_label_set(params, args.boxes_csv, args.raw, members, skips)
    except (ConfigError, LabelFormatError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2

    write_coco(args.out, images)
    summary = summarize(images)
    write_json(args.metrics, {**summary, "skipped": skips.as_dict(), "config": to_dict(params)})
    logger.info("wrote %d labelled images to %s; counts: %s", len(images), args.out, summary["images"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
