"""Hooks that move a face box before cropping, registered by name.

A hook factory takes the validated ``FilterParams`` and returns a function
``refine(image, box) -> box`` on ``(x1, y1, x2, y2)`` pixel boxes of the upright RGB
image. A segmentation model, for example, can re-centre the box on the face mask; it
registers itself with ``@BOX_REFINERS.register("name")`` and is chosen with
``filter.box_refiner``. The module that registers it must be imported before the run.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from pipeline.config import ConfigError
from pipeline.registry import Registry

Box = Sequence[float]
BoxRefiner = Callable[[np.ndarray, Box], Box]

BOX_REFINERS: Registry[Callable[[Any], BoxRefiner]] = Registry("box refiner")


@BOX_REFINERS.register("none")
def make_identity_refiner(params: Any) -> BoxRefiner:
    """Return a refiner that keeps every box as the detector drew it."""

    def refine(image: np.ndarray, box: Box) -> Box:
        return box

    return refine


@BOX_REFINERS.register("maskrcnn")
def make_mask_refiner(params: Any) -> BoxRefiner:
    """Return a refiner that squares each box on the fine-tuned Mask R-CNN's face mask."""
    if not params.mask_checkpoint_path:
        raise ConfigError(
            "filter.box_refiner is 'maskrcnn' but filter.mask_checkpoint_path is empty; set it "
            "to the finetune_detector checkpoint, e.g. data/detector/maskrcnn.pt"
        )
    # Imported here so that the default refiner needs no torchvision model code.
    from pipeline.detect.maskrcnn import (
        MaskRCNNDetector,
        MaskRCNNMemberParams,
        make_mask_box_refiner,
    )

    member_params = MaskRCNNMemberParams(checkpoint_path=params.mask_checkpoint_path)
    try:
        detector = MaskRCNNDetector.from_params(member_params)
    except (FileNotFoundError, ValueError) as error:
        # The loader's message names detect.maskrcnn.checkpoint_path, so name this key instead.
        raise ConfigError(
            f"filter.mask_checkpoint_path = {params.mask_checkpoint_path!r} cannot be used: "
            f"{_first_clause(error)}. Point it at the checkpoint the finetune_detector stage "
            "writes, e.g. data/detector/maskrcnn.pt"
        ) from error
    return make_mask_box_refiner(detector)


def _first_clause(error: Exception) -> str:
    """Return the error message up to its first ';', where the loader's advice starts."""
    return str(error).split(";")[0]
