"""Stage ``reference_stats``: embed the training crops once with the Inception FID network."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.evaluate.params import ReferenceStatsParams  # noqa: E402
from pipeline.evaluate.reference import (  # noqa: E402
    EvaluateInputError,
    run_reference_stats,
    save_reference,
)
from pipeline.files import setup_logging, write_json  # noqa: E402

logger = logging.getLogger("reference_stats")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", required=True, help="training crops, uint8 N x S x S x 3 .npy")
    parser.add_argument("--out", required=True, help="reference features file to write (.npz)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    try:
        params = load_section(ReferenceStatsParams, "reference_stats", args.params)
        reference, metrics = run_reference_stats(args.faces, params)
    except (ConfigError, FileNotFoundError, EvaluateInputError) as error:
        logger.error("%s", error)
        return 2
    save_reference(args.out, reference)
    write_json(args.metrics, metrics)
    logger.info(
        "wrote %d reference features to %s (%.1f images/s)",
        metrics["num_images"],
        args.out,
        metrics["images_per_second"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
