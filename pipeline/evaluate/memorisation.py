"""Distance from each generated image to its nearest training crop, in two spaces.

- ``inception``: Euclidean distance between Inception pool features (2048-d).
- ``pixel``: root-mean-square difference over all pixels and channels, in 0..255 levels,
  so 0 is an exact copy and 1 is an average difference of one grey level.

Each space also gets a real baseline: the distance from a random subset of training crops
to their nearest *other* training crop (leave-one-out), which shows how close real crops
already sit to each other (near-duplicates included). Generated images much closer to the
training set than that baseline suggest copying.
"""

from __future__ import annotations

import numpy as np
import torch

QUERY_CHUNK = 256
KEY_CHUNK = 2048


def nearest_neighbours(
    queries: np.ndarray, keys: np.ndarray, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return each query row's Euclidean distance to its nearest key row and that row's index.

    ``exclude[i]`` is a key index that query ``i`` may not match (itself, for leave-one-out).
    The search runs in chunks in float32 on centred values. The returned distance is then
    recomputed in float64 for the chosen pair, so an exact copy reads 0.
    """
    queries = queries.reshape(len(queries), -1)
    keys = keys.reshape(len(keys), -1)
    if len(keys) < (2 if exclude is not None else 1):
        raise ValueError(f"need more key rows for a nearest-neighbour search, got {len(keys)}")
    centre = float(keys[: min(len(keys), 1024)].astype(np.float64).mean())

    best_distance = np.full(len(queries), np.inf)
    best_index = np.zeros(len(queries), dtype=np.int64)
    for key_start in range(0, len(keys), KEY_CHUNK):
        key_block = torch.from_numpy(keys[key_start : key_start + KEY_CHUNK].astype(np.float32))
        key_block -= centre
        key_norms = key_block.square().sum(dim=1)
        for query_start in range(0, len(queries), QUERY_CHUNK):
            query_stop = query_start + QUERY_CHUNK
            query_block = torch.from_numpy(queries[query_start:query_stop].astype(np.float32))
            query_block -= centre
            squared = (
                query_block.square().sum(dim=1, keepdim=True)
                + key_norms[None, :]
                - 2.0 * query_block @ key_block.T
            )
            if exclude is not None:
                rows = torch.arange(len(query_block))
                columns = torch.from_numpy(exclude[query_start:query_stop] - key_start)
                inside = (columns >= 0) & (columns < len(key_block))
                squared[rows[inside], columns[inside]] = torch.inf
            block_min, block_arg = squared.min(dim=1)
            block_min = block_min.numpy().astype(np.float64)
            improved = block_min < best_distance[query_start:query_stop]
            best_distance[query_start:query_stop][improved] = block_min[improved]
            best_index[query_start:query_stop][improved] = block_arg.numpy()[improved] + key_start

    distances = np.empty(len(queries))
    for start in range(0, len(queries), QUERY_CHUNK):
        stop = start + QUERY_CHUNK
        difference = queries[start:stop].astype(np.float64) - keys[best_index[start:stop]]
        distances[start:stop] = np.sqrt(np.square(difference).sum(axis=1))
    return distances, best_index


def summarise_distances(distances: np.ndarray) -> dict[str, float]:
    """Return min, 1st and 5th percentile, median and mean of a distance array."""
    return {
        "min": float(distances.min()),
        "p1": float(np.percentile(distances, 1)),
        "p5": float(np.percentile(distances, 5)),
        "median": float(np.median(distances)),
        "mean": float(distances.mean()),
    }


def compare_to_training(
    generated: np.ndarray,
    training: np.ndarray,
    baseline_count: int,
    seed: int,
    scale: float = 1.0,
) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """Measure generated-to-training nearest distances and the real leave-one-out baseline.

    ``generated`` and ``training`` are row-aligned arrays of one space (features or pixels);
    distances are divided by ``scale``. Returns the summary, each generated row's distance
    and the index of its nearest training row.
    """
    distances, indices = nearest_neighbours(generated, training)
    distances = distances / scale

    # Leave-one-out baseline on a random subset of training rows.
    rng = np.random.default_rng(seed)
    count = min(baseline_count, len(training))
    subset = np.sort(rng.choice(len(training), count, replace=False))
    baseline, _ = nearest_neighbours(training[subset], training, exclude=subset)
    baseline = baseline / scale

    real_p1 = float(np.percentile(baseline, 1))
    summary: dict[str, object] = {
        "generated_to_training": summarise_distances(distances),
        "training_to_training": summarise_distances(baseline),
        "share_below_training_p1": float((distances < real_p1).mean()),
        "num_generated": len(generated),
        "num_training": len(training),
        "num_training_baseline": count,
    }
    return summary, distances, indices
