"""The ``evaluate`` stage as a function that returns its metrics and pictures."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from pipeline.config import to_dict
from pipeline.detect.base import Detector
from pipeline.detect.params import DetectParams
from pipeline.evaluate.face_rate import build_face_detector, compute_face_rate
from pipeline.evaluate.grids import tile_images
from pipeline.evaluate.inception import InceptionFeatures
from pipeline.evaluate.memorisation import compare_to_training
from pipeline.evaluate.metrics import FrechetReference, fid_from_features, kid_from_features
from pipeline.evaluate.params import EvaluateParams, ReferenceStatsParams
from pipeline.evaluate.prdc import compute_prdc
from pipeline.evaluate.reference import (
    ReferenceFeatures,
    check_reference,
    load_faces,
    load_reference,
)
from pipeline.evaluate.sampling import generate_images, untrained_copy
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

SAMPLE_GRID_COLUMNS = 8
SAMPLE_GRID_MAX_IMAGES = 64


@dataclass
class EvaluateResult:
    metrics: dict[str, object]
    sample_grid: np.ndarray
    nearest_pairs_image: np.ndarray


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = round(now - start, 2)
        logger.info("%s took %.1f s", name, now - start)
        return now


def _dcgan_weight_init(generator: nn.Module) -> Callable[[nn.Module], None] | None:
    """Return the train stage's weight init when the generator is its DCGAN, else None."""
    from pipeline.train.models import Generator, init_dcgan_weights

    return init_dcgan_weights if isinstance(generator, Generator) else None


def run_evaluate(
    generator: nn.Module,
    faces_path: str | Path,
    reference_path: str | Path,
    params: EvaluateParams,
    reference_params: ReferenceStatsParams,
    detect_params: DetectParams | None = None,
) -> EvaluateResult:
    """Score a generator against the training crops; return metrics and the two pictures.

    ``generator`` is any module with ``latent_dim`` that maps z to (N, 3, S, S) in [-1, 1].
    The Inception network and resize method come from ``reference_params`` and must match
    the ones stored with the reference features. ``detect_params`` (the detect section)
    is needed only when ``params.face_detector`` is ``ensemble``.
    """
    timer = _Timer()
    start = time.perf_counter()
    skips = SkipCounter(logger)

    # Load inputs, check that the cached features match this extractor and faces file, and
    # build the face detector before the slow steps so that a bad path fails at once.
    faces = load_faces(faces_path)
    reference = load_reference(reference_path)
    extractor = InceptionFeatures(
        reference_params.inception_path,
        reference_params.resize,
        params.device,
        params.batch_size,
        device_param_name="evaluate.device",
    )
    check_reference(reference, extractor, faces_path)
    detector = build_face_detector(params, detect_params)
    reference_scores = FrechetReference(reference.features)
    start = timer.lap("load", start)

    # Score the trained generator.
    generator = generator.to(extractor.device)
    images = generate_images(
        generator, params.num_samples, params.seed, params.batch_size, extractor.device
    )
    if images.shape[1:] != faces.shape[1:]:
        raise ValueError(
            f"generator makes {images.shape[1]}x{images.shape[2]} images but the training "
            f"crops are {faces.shape[1]}x{faces.shape[2]}; evaluate the generator trained "
            "on these faces"
        )
    features = extractor.embed(images, desc="generated features")
    start = timer.lap("generate_and_embed", start)
    kid = kid_from_features(
        reference.features, features, params.kid_subset_size, params.kid_num_subsets, params.seed
    )
    fid = reference_scores.fid(features)
    start = timer.lap("fid_kid", start)

    # Precision/recall/density/coverage against an equally large random real subset.
    rng = np.random.default_rng(params.seed)
    num_real = min(params.num_samples, len(reference.features))
    real_subset = np.sort(rng.choice(len(reference.features), num_real, replace=False))
    prdc = compute_prdc(reference.features[real_subset], features, params.prdc_k)
    start = timer.lap("prdc", start)

    memorisation, pairs_image = _measure_memorisation(images, features, faces, reference, params)
    start = timer.lap("memorisation", start)

    # Face rate on the generated images and, for comparison, on as many real crops.
    face_rate = compute_face_rate(images, detector, skips, desc="face rate generated")
    face_rate_real = compute_face_rate(
        faces[reference.indices[real_subset]], detector, skips, desc="face rate real"
    )
    start = timer.lap("face_rate", start)

    floor = _score_real_halves(reference.features, params, rng)
    start = timer.lap("floor", start)
    ceiling = _score_untrained(
        generator, extractor, reference_scores, reference.features, detector, skips, params
    )
    timer.lap("ceiling", start)

    protocol = {
        **extractor.protocol(),
        "num_samples": params.num_samples,
        "num_reference": len(reference.features),
        "reference_faces_sha256": reference.protocol["faces_sha256"],
        "image_size_px": int(faces.shape[1]),
        "seed": params.seed,
        "latent_vectors": "z ~ N(0, I) from torch.Generator().manual_seed(seed) on the CPU",
        "generated_images": "generator in eval mode, quantised to uint8 as a PNG would store them",
        "fid": "Frechet distance of float64 mean and covariance (n - 1) of the features",
        "kid": "unbiased MMD^2, kernel (x.y / 2048 + 1)^3, mean and population std over subsets",
        "kid_subset_size": kid.subset_size,
        "kid_num_subsets": kid.num_subsets,
        "prdc_k": params.prdc_k,
        "prdc_num_real": num_real,
        "face_detector": params.face_detector,
        "generator_class": type(generator).__name__,
    }
    config = {"evaluate": to_dict(params), "reference_stats": to_dict(reference_params)}
    if detect_params is not None:
        config["detect"] = to_dict(detect_params)
    metrics: dict[str, object] = {
        "fid": fid,
        "kid_mean": kid.mean,
        "kid_std": kid.std,
        **prdc,
        "face_rate": face_rate,
        "face_rate_real": face_rate_real,
        "memorisation": memorisation,
        "nearest_pairs_image": (
            "rows: generated image and its nearest training crop in Inception space, then the "
            "same in pixel space; columns sorted by distance, closest first"
        ),
        "floor": floor,
        "ceiling": ceiling,
        "protocol": protocol,
        "config": config,
        "skips": skips.as_dict(),
        "seconds": timer.seconds,
    }
    sample_grid = tile_images(images[:SAMPLE_GRID_MAX_IMAGES], SAMPLE_GRID_COLUMNS)
    return EvaluateResult(metrics, sample_grid, pairs_image)


def _measure_memorisation(
    images: np.ndarray,
    features: np.ndarray,
    faces: np.ndarray,
    reference: ReferenceFeatures,
    params: EvaluateParams,
) -> tuple[dict[str, object], np.ndarray]:
    """Find each generated image's nearest training crop in feature and in pixel space.

    Returns the summaries and a picture of the closest pairs: generated images over their
    nearest crops in Inception space, then the same in pixel space, closest first.
    """
    in_features, feature_distances, feature_nearest = compare_to_training(
        features, reference.features, params.num_samples, params.seed
    )
    pixel_scale = math.sqrt(float(np.prod(faces.shape[1:])))
    in_pixels, pixel_distances, pixel_nearest = compare_to_training(
        images, faces, params.num_samples, params.seed, scale=pixel_scale
    )

    feature_order = np.argsort(feature_distances, kind="stable")[: params.nearest_pairs]
    pixel_order = np.argsort(pixel_distances, kind="stable")[: params.nearest_pairs]
    rows = [
        images[feature_order],
        faces[reference.indices[feature_nearest[feature_order]]],
        images[pixel_order],
        faces[pixel_nearest[pixel_order]],
    ]
    pairs_image = tile_images(np.concatenate(rows), num_columns=len(feature_order))
    summary = {"inception_space": in_features, "pixel_space_rms_levels": in_pixels}
    return summary, pairs_image


def _score_real_halves(
    features: np.ndarray, params: EvaluateParams, rng: np.random.Generator
) -> dict[str, object]:
    """Return FID and KID between two disjoint random halves of the real features.

    Each half has about half the reference count, not num_samples, so this floor carries
    the small-sample bias of that count.
    """
    order = rng.permutation(len(features))
    half = len(order) // 2
    real_a, real_b = features[order[:half]], features[order[half:]]
    kid = kid_from_features(
        real_a, real_b, params.kid_subset_size, params.kid_num_subsets, params.seed
    )
    return {
        "fid_real_halves": fid_from_features(real_a, real_b),
        "kid_mean_real_halves": kid.mean,
        "kid_std_real_halves": kid.std,
        "kid_subset_size_real_halves": kid.subset_size,
        "num_images_per_half": half,
    }


def _score_untrained(
    generator: nn.Module,
    extractor: InceptionFeatures,
    reference_scores: FrechetReference,
    reference_features: np.ndarray,
    detector: Detector,
    skips: SkipCounter,
    params: EvaluateParams,
) -> dict[str, object]:
    """Score the same architecture with fresh weights drawn with the seed, like the generator.

    The untrained copy runs in eval mode like the generator, so its batch norm layers use
    freshly reset running statistics (mean 0, variance 1).
    """
    untrained = untrained_copy(generator, params.seed, _dcgan_weight_init(generator))
    images = generate_images(
        untrained,
        params.num_samples,
        params.seed,
        params.batch_size,
        extractor.device,
        desc="generate untrained",
    )
    features = extractor.embed(images, desc="untrained features")
    kid = kid_from_features(
        reference_features, features, params.kid_subset_size, params.kid_num_subsets, params.seed
    )
    return {
        "fid_untrained": reference_scores.fid(features),
        "kid_mean_untrained": kid.mean,
        "kid_std_untrained": kid.std,
        "face_rate_untrained": compute_face_rate(
            images, detector, skips, desc="face rate untrained"
        ),
    }
