"""DVC stage ``evaluate_detector``: score every detector member and ensemble on held-out labels.

Writes precision, recall, F1 and AP@0.5 at IoU 0.5 plus images/s per detector to the
metrics JSON, and a precision-recall curve per detector through DVCLive. On images
whose labels box only one face each, only recall is reported, and the JSON states why.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/evaluate_detector.py` import the pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dvclive import Live  # noqa: E402

from pipeline.config import ConfigError, load_section, to_dict  # noqa: E402
from pipeline.detect.evaluation import evaluate_runs, run_detectors  # noqa: E402
from pipeline.detect.finetune_params import EvaluateDetectorParams  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.labels.coco import LabelFormatError, read_coco  # noqa: E402
from pipeline.labels.model import SPLIT_TEST, parse_image_roots  # noqa: E402
from pipeline.skips import SkipCounter  # noqa: E402

logger = logging.getLogger("stages.evaluate_detector")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="COCO JSON from the labels stage")
    parser.add_argument(
        "--image-root", action="append", required=True, metavar="NAME=FOLDER",
        help="folder of the pictures whose root name is NAME in the labels file; repeat per root",
    )
    parser.add_argument("--checkpoint", required=True, help="Mask R-CNN checkpoint to score")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--live", required=True, help="DVCLive folder for the PR curves")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    skips = SkipCounter(logger)
    try:
        params = load_section(EvaluateDetectorParams, "evaluate_detector", args.params)
        detect_params = load_section(DetectParams, "detect", args.params)
        roots = parse_image_roots(args.image_root)
        images = read_coco(args.labels)
        if params.split == SPLIT_TEST:
            images = [image for image in images if image.split == SPLIT_TEST]
        if params.max_images:
            images = images[: params.max_images]
        if not images:
            raise ValueError(f"{args.labels} has no images in split {params.split!r}")
        kept, runs = run_detectors(
            images, roots, detect_params, params.members, params.ensembles,
            params.ap_min_score, params.ensemble_operating_threshold, skips, args.checkpoint,
        )
    except (ConfigError, LabelFormatError, FileNotFoundError, KeyError, ValueError) as error:
        logger.error("%s", error)
        return 2

    metrics, curves = evaluate_runs(kept, runs, params.iou_threshold, params.loose_iou_threshold)
    metrics.update(skipped=skips.as_dict(), config=to_dict(params), checkpoint=args.checkpoint)
    write_json(args.out, metrics)
    if not any(curves.values()):
        logger.warning("no completely labelled test images, so no precision-recall curve")
    with Live(args.live, dvcyaml=False, save_dvc_exp=False) as live:
        # dvc.yaml declares the curve folder as an output, so it must exist even without a
        # curve. Live() empties its folder on start, so this comes after it.
        (Path(args.live) / "plots" / "custom").mkdir(parents=True, exist_ok=True)
        for name, points in curves.items():
            if points:
                live.log_plot(
                    f"pr_{name}", points, x="recall", y="precision", template="linear",
                    title=f"{name}: precision-recall on completely labelled test images",
                )
    for name, scores in metrics["detectors"].items():
        logger.info("%s: %s", name, scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
