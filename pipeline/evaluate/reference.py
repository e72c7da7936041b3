"""Training crops in, cached reference features out: the ``reference_stats`` file.

The ``.npz`` file stores ``features`` (N x 2048 float32), ``indices`` (the rows of
``faces.npy`` they came from) and ``protocol`` (JSON: extractor name and sha256, resize
method, image size, counts, seed and the sha256 of ``faces.npy``). ``evaluate`` checks the
protocol against its own extractor and faces file before it uses the features.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import to_dict
from pipeline.evaluate.inception import InceptionFeatures, file_sha256
from pipeline.evaluate.params import ReferenceStatsParams
from pipeline.files import atomic_write_bytes

logger = logging.getLogger(__name__)


class EvaluateInputError(ValueError):
    """A faces or reference features file that reference_stats or evaluate cannot use."""


def load_faces(path: str | Path) -> np.ndarray:
    """Read ``faces.npy`` and check that it is uint8 N x S x S x 3 with N >= 2."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"faces file {str(path)!r} not found; run the filter stage first")
    try:
        faces = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise EvaluateInputError(
            f"{str(path)!r} is not a readable .npy array ({error})"
        ) from error
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3:
        raise EvaluateInputError(
            f"{str(path)!r} contains {faces.dtype} {faces.shape}; expected uint8 N x S x S x 3 "
            "crops from the filter stage"
        )
    if faces.shape[1] != faces.shape[2]:
        raise EvaluateInputError(
            f"{str(path)!r} contains {faces.shape[1]}x{faces.shape[2]} crops; expected square"
        )
    if len(faces) < 2:
        raise EvaluateInputError(
            f"{str(path)!r} contains {len(faces)} crops; FID needs at least 2, so rerun the "
            "filter stage with looser filter.* limits or more scraped images"
        )
    return faces


@dataclass
class ReferenceFeatures:
    features: np.ndarray
    indices: np.ndarray
    protocol: dict[str, object]


def compute_reference(
    faces: np.ndarray,
    faces_sha256: str,
    extractor: InceptionFeatures,
    max_images: int,
    seed: int,
) -> ReferenceFeatures:
    """Embed the training crops, or a seeded random subset of max_images of them."""
    if len(faces) > max_images:
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(len(faces), max_images, replace=False))
        logger.info("embedding a random %d of %d training crops", max_images, len(faces))
    else:
        indices = np.arange(len(faces))
    features = extractor.embed(faces[indices], desc="reference features")
    protocol = {
        **extractor.protocol(),
        "image_size_px": int(faces.shape[1]),
        "num_images": int(len(indices)),
        "num_faces_total": int(len(faces)),
        "faces_sha256": faces_sha256,
        "max_images": max_images,
        "seed": seed,
    }
    return ReferenceFeatures(features, indices.astype(np.int64), protocol)


def save_reference(path: str | Path, reference: ReferenceFeatures) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        features=reference.features.astype(np.float32),
        indices=reference.indices,
        protocol=np.array(json.dumps(reference.protocol, sort_keys=True)),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_reference(path: str | Path) -> ReferenceFeatures:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"reference features {str(path)!r} not found; run the reference_stats stage first"
        )
    with np.load(path, allow_pickle=False) as data:
        missing = {"features", "indices", "protocol"} - set(data.files)
        if missing:
            raise EvaluateInputError(
                f"{str(path)!r} lacks {sorted(missing)}; rerun the reference_stats stage"
            )
        return ReferenceFeatures(
            data["features"], data["indices"], json.loads(str(data["protocol"]))
        )


def check_reference(
    reference: ReferenceFeatures, extractor: InceptionFeatures, faces_path: str | Path
) -> None:
    """Raise ValueError when the reference was computed with another extractor or faces file."""
    expected = {
        "feature_extractor_sha256": extractor.sha256,
        "resize": extractor.resize_name,
        "faces_sha256": file_sha256(Path(faces_path)),
    }
    for key, value in expected.items():
        stored = reference.protocol.get(key)
        if stored != value:
            raise EvaluateInputError(
                f"reference features have {key} = {stored!r} but this run uses {value!r}; "
                "rerun the reference_stats stage"
            )


def run_reference_stats(
    faces_path: str | Path, params: ReferenceStatsParams
) -> tuple[ReferenceFeatures, dict[str, object]]:
    """Embed the training crops once; return the features and the stage's metrics."""
    faces = load_faces(faces_path)
    extractor = InceptionFeatures(
        params.inception_path, params.resize, params.device, params.batch_size
    )
    start = time.perf_counter()
    reference = compute_reference(
        faces, file_sha256(Path(faces_path)), extractor, params.max_images, params.seed
    )
    seconds = time.perf_counter() - start
    metrics = {
        "num_images": len(reference.indices),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(reference.indices) / max(seconds, 1e-9), 2),
        "device": str(extractor.device),
        "protocol": reference.protocol,
        "config": {"reference_stats": to_dict(params)},
        "skips": {},
    }
    return reference, metrics
