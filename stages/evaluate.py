"""Stage ``evaluate``: score the trained generator by FID, KID, PRDC, memorisation, face rate."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.detect.cascade import resolve_cascade_file  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.evaluate.grids import save_png  # noqa: E402
from pipeline.devices import resolve_device  # noqa: E402
from pipeline.files import file_sha256  # noqa: E402
from pipeline.evaluate.params import EvaluateParams, ReferenceStatsParams  # noqa: E402
from pipeline.evaluate.reference import EvaluateInputError  # noqa: E402
from pipeline.evaluate.run import run_evaluate  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.train.models import load_generator  # noqa: E402

logger = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", required=True, help="generator file from the train stage")
    parser.add_argument("--faces", required=True, help="training crops, uint8 N x S x S x 3 .npy")
    parser.add_argument("--reference", required=True, help="features from reference_stats (.npz)")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--samples", required=True, help="sample grid PNG to write")
    parser.add_argument("--nearest", required=True, help="nearest-pair PNG to write")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    # The Inception network and resize method belong to reference_stats, so both stages
    # embed images the same way.
    try:
        params = load_section(EvaluateParams, "evaluate", args.params)
        reference_params = load_section(ReferenceStatsParams, "reference_stats", args.params)
        # The face detector falls back on the detect stage's cascade file, which that stage
        # has already downloaded and checked when detect.cascade_path is empty.
        detect_params = load_section(DetectParams, "detect", args.params)
        if not params.face_cascade_path:
            params.face_cascade_path = str(resolve_cascade_file(detect_params.cascade_path))
        device = resolve_device(params.device, "evaluate.device")
        generator = load_generator(args.generator, map_location=device)
        # run_evaluate reads its inputs and builds the face detector before the slow steps.
        result = run_evaluate(
            generator, args.faces, args.reference, params, reference_params, detect_params
        )
    except (ConfigError, FileNotFoundError, EvaluateInputError) as error:
        logger.error("%s", error)
        return 2
    result.metrics["protocol"]["generator_sha256"] = file_sha256(Path(args.generator))

    save_png(args.samples, result.sample_grid)
    save_png(args.nearest, result.nearest_pairs_image)
    write_json(args.out, result.metrics)
    metrics = result.metrics
    logger.info(
        "FID %.2f (real-halves floor %.2f, untrained ceiling %.2f), KID %.4f +- %.4f, "
        "face rate %.3f",
        metrics["fid"],
        metrics["floor"]["fid_real_halves"],
        metrics["ceiling"]["fid_untrained"],
        metrics["kid_mean"],
        metrics["kid_std"],
        metrics["face_rate"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
