"""DVC stage ``finetune_detector``: fine-tune the Mask R-CNN face detector on the label set.

Trains on the labels file's non-test images, validates on a seeded share of them, and
writes the best checkpoint with its resolved config (``<stem>_config.json`` beside it),
a metrics JSON and, with ``--live``, DVCLive training curves.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Let `python stages/finetune_detector.py` import the pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dvclive import Live  # noqa: E402

from pipeline.config import ConfigError, load_section, to_dict  # noqa: E402
from pipeline.detect.finetune import finetune_detector  # noqa: E402
from pipeline.detect.finetune_params import FinetuneParams  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.labels.coco import LabelFormatError, read_coco  # noqa: E402
from pipeline.labels.model import parse_image_roots  # noqa: E402

logger = logging.getLogger("stages.finetune_detector")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, help="COCO JSON from the labels stage")
    parser.add_argument(
        "--image-root", action="append", required=True, metavar="NAME=FOLDER",
        help="folder of the pictures whose root name is NAME in the labels file; repeat per root",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint .pt to write")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--live", help="DVCLive folder for training curves")
    parser.add_argument("--params", default="params.yaml", help="parameters file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    try:
        params = load_section(FinetuneParams, "finetune_detector", args.params)
        roots = parse_image_roots(args.image_root)
        images = read_coco(args.labels)
    except (ConfigError, LabelFormatError, FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        return 2

    live = Live(args.live, dvcyaml=False, save_dvc_exp=False) if args.live else None
    try:
        result = finetune_detector(params, images, roots, args.checkpoint, live)
    except (ConfigError, KeyError) as error:
        logger.error("%s", error)
        return 2
    finally:
        if live is not None:
            live.end()

    metrics = to_dict(result)
    losses = metrics.pop("losses")
    window = max(1, min(10, len(losses) // 2))
    metrics["loss_first"] = sum(losses[:window]) / window if losses else None
    metrics["loss_last"] = sum(losses[-window:]) / window if losses else None
    metrics["config"] = to_dict(params)
    write_json(args.metrics, metrics)
    logger.info(
        "finished after %d iterations; best validation AP@0.5 %s at iteration %d; checkpoint %s",
        result.iterations, result.best_val_ap50, result.best_iteration, args.checkpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
