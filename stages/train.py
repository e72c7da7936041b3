"""DVC stage: train the DCGAN on data/faces.npy and write the generator and discriminator.

Run it once per process. Under torchrun (for example ``torchrun --nproc_per_node 2
stages/train.py ...``) the processes train data-parallel and rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Let `python stages/train.py` import the pipeline package without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import ConfigError, load_section  # noqa: E402
from pipeline.files import setup_logging  # noqa: E402
from pipeline.train.checkpoint import CheckpointError  # noqa: E402
from pipeline.train.data import FacesError  # noqa: E402
from pipeline.train.loop import NonFiniteLossError, TrainingInterrupted, train  # noqa: E402
from pipeline.train.params import TrainParams  # noqa: E402

logger = logging.getLogger("stages.train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", required=True, help="N x S x S x 3 uint8 .npy of face crops")
    parser.add_argument(
        "--models", required=True, help="folder for generator.pt and discriminator.pt"
    )
    parser.add_argument("--checkpoints", required=True, help="folder of the resumable checkpoint")
    parser.add_argument(
        "--live", required=True, help="DVCLive folder for metrics, plots and samples"
    )
    parser.add_argument("--params", default="params.yaml", help="parameters file (section train)")
    parser.add_argument("--verbose", action="store_true", help="log at debug level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    # Under torchrun only rank 0 logs progress, and the others log only warnings and errors.
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        config = load_section(TrainParams, "train", args.params)
        summary = train(config, args.faces, args.models, args.checkpoints, args.live)
    except (ConfigError, FacesError, CheckpointError) as error:
        logger.error("%s", error)
        return 2
    except NonFiniteLossError as error:
        logger.error("%s", error)
        return 1
    except TrainingInterrupted as error:
        logger.error("%s", error)
        return 130
    except KeyboardInterrupt:
        logger.error(
            "interrupted outside the training steps; rerun to resume from the checkpoint in %s "
            "if there is one",
            args.checkpoints,
        )
        return 130
    logger.info("done: %s", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
