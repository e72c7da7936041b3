"""Precision, recall, density and coverage of generated features against real ones.

Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models": each
sample gets a ball whose radius is the distance to its k-th nearest neighbour in its own
set.

- precision: the share of generated samples inside some real ball.
- recall: the share of real samples inside some generated ball.
- density: the number of real balls around each generated sample, averaged and divided
  by k.
- coverage: the share of real balls that contain at least one generated sample.

The formulas follow the authors' reference code (clovaai/generative-evaluation-prdc),
including strict ``<`` comparisons.
"""

from __future__ import annotations

import numpy as np
import torch


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the (M, N) Euclidean distances between rows of x and rows of y, in float64."""
    x_tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    y_tensor = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64))
    return torch.cdist(x_tensor, y_tensor, compute_mode="donot_use_mm_for_euclid_dist").numpy()


def kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Return each row's distance to its k-th nearest other row of the same set."""
    distances = pairwise_distances(features, features)
    # Column 0 of the sorted distances is the row itself at distance 0.
    return np.partition(distances, k, axis=1)[:, k]


def compute_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Return precision, recall, density and coverage of ``fake`` against ``real`` features."""
    if len(real) <= k or len(fake) <= k:
        raise ValueError(
            f"PRDC with k = {k} needs more than {k} samples per set, got {len(real)} real "
            f"and {len(fake)} generated; lower evaluate.prdc_k or raise evaluate.num_samples"
        )
    real_radii = kth_neighbour_radii(real, k)
    fake_radii = kth_neighbour_radii(fake, k)
    real_to_fake = pairwise_distances(real, fake)

    inside_real_balls = real_to_fake < real_radii[:, None]
    inside_fake_balls = real_to_fake < fake_radii[None, :]
    return {
        "precision": float(inside_real_balls.any(axis=0).mean()),
        "recall": float(inside_fake_balls.any(axis=1).mean()),
        "density": float(inside_real_balls.sum(axis=0).mean() / k),
        "coverage": float((real_to_fake.min(axis=1) < real_radii).mean()),
    }
