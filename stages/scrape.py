"""DVC stage ``scrape``: fill the output folder with pictures, a manifest and an archive.

Usage: python stages/scrape.py --out data/raw --metrics metrics/scrape.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/scrape.py` import this checkout's pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.scrape import ScrapeParams, run_scrape  # noqa: E402

log = logging.getLogger("stages.scrape")

# Stop reasons that mean the source could not be read at all.
FAILED_STOPS = ("listing_failed", "rate_limited")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (data/raw)")
    parser.add_argument("--metrics", required=True, type=Path, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    try:
        params = load_section(ScrapeParams, "scrape", args.params)
        metrics = run_scrape(params, args.out)
    except ConfigError as error:
        log.error("invalid parameters: %s", error)
        return 2
    write_json(args.metrics, metrics)

    if metrics["stopped"] in FAILED_STOPS and metrics["seen"] == 0:
        log.error("no post could be listed (%s); see the log above", metrics["stop_detail"])
        return 1
    if metrics["images_total"] == 0:
        # The detect stage would fail later on an empty folder, so fail here with the cause.
        log.error(
            "no images in %s after the scrape: %d files seen, rejected %s; check "
            "scrape.source and scrape.limits (counts in %s)",
            args.out,
            metrics["seen"],
            metrics["rejected"] or "none",
            args.metrics,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
