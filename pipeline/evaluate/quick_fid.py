"""A cheap FID for tracking a generator during training.

The reference images are embedded once, in ``__init__``. Each ``score`` call then
generates ``num_samples`` images from the same latent vectors, embeds them and compares
them with the cached reference. FID is biased upwards at small sample counts, so scores
are comparable only between calls with the same settings, not with the ``evaluate``
stage's FID.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from pipeline.evaluate.inception import InceptionFeatures
from pipeline.evaluate.metrics import FrechetReference
from pipeline.evaluate.sampling import generate_images

logger = logging.getLogger(__name__)


class QuickFid:
    """FID of a generator's samples against fixed reference images.

    At most ``max_reference_images`` of them are embedded, a random subset drawn with
    ``seed`` when there are more. ``seed`` also fixes the latent vectors. ``param_name``
    is the setting that errors about a missing network name.
    """

    def __init__(
        self,
        reference_images: np.ndarray,
        num_samples: int,
        inception_path: str | None,
        device: str | torch.device,
        *,
        resize: str = "bilinear_antialias",
        batch_size: int = 50,
        seed: int = 0,
        max_reference_images: int = 5000,
        param_name: str = "train.fid_inception_path",
    ) -> None:
        if num_samples < 2:
            raise ValueError(f"QuickFid num_samples = {num_samples}; FID needs at least 2")
        self.num_samples = num_samples
        self.seed = seed
        self.batch_size = batch_size
        self.extractor = InceptionFeatures(
            inception_path or "", resize, device, batch_size, param_name
        )

        # Embedding every crop once costs minutes on a CPU, so large sets are subsampled.
        if len(reference_images) > max_reference_images:
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(len(reference_images), max_reference_images, replace=False))
            logger.info(
                "quick FID reference: a random %d of %d images",
                max_reference_images,
                len(reference_images),
            )
            reference_images = reference_images[chosen]
        features = self.extractor.embed(reference_images, desc="quick FID reference")
        self.reference = FrechetReference(features)

    def score(self, generator: nn.Module) -> float:
        """Generate num_samples images and return their FID against the reference."""
        images = generate_images(
            generator,
            self.num_samples,
            self.seed,
            self.batch_size,
            desc="quick FID samples",
        )
        features = self.extractor.embed(images, desc="quick FID features")
        return self.reference.fid(features)
