"""The filter stage: crop detected faces, drop bad and duplicate crops, pack the rest."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import ConfigError, to_dict
from pipeline.files import atomic_write_bytes, write_json
from pipeline.filter.crops import CropBox, compute_crop_box, cut_crop, resize_crop
from pipeline.filter.dedupe import find_duplicates
from pipeline.filter.inputs import FaceBox, is_inside_folder, read_detections, read_manifest
from pipeline.filter.packing import CropStore, pack_crops
from pipeline.filter.params import FilterParams
from pipeline.filter.preview import make_grid_png, preview_positions
from pipeline.filter.quality import content_sha256, laplacian_variance, perceptual_hash
from pipeline.filter.refiners import BOX_REFINERS, BoxRefiner
from pipeline.images import ImageError, load_rgb
from pipeline.skips import SkipCounter

log = logging.getLogger(__name__)

# Remedy for each drop reason, quoted in the error raised when nothing is kept.
REMEDIES = {
    "invalid_box": "check the detect stage output",
    "low_agreement": "lower filter.min_agreement",
    "low_score": "lower filter.min_score",
    "too_small": "lower filter.min_face_px",
    "out_of_frame": "set filter.out_of_frame to 'shift' or raise filter.max_pad_fraction",
    "blurry": "lower filter.min_laplacian_var",
    "duplicate_exact": "none: the crops are identical",
    "duplicate_near": "lower filter.near_duplicate_max_distance or set it to null",
    "image_missing": "rerun the scrape stage",
    "image_unreadable": "rerun the scrape stage",
    "unknown_image": "rerun the detect stage on the current data/raw",
}


class NoCropsKeptError(RuntimeError):
    """Every candidate crop was dropped, so there is no training data to write."""


@dataclass
class Candidate:
    """A crop that passed the per-crop checks, waiting for the duplicate check."""

    image_id: str
    box: FaceBox
    crop: CropBox
    laplacian_var: float
    sha256: str
    perceptual_hash: int


class _CropDropped(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def filter_faces(
    raw_dir: str | Path,
    detections_path: str | Path,
    params: FilterParams,
    out_path: str | Path,
    index_path: str | Path,
    preview_path: str | Path,
    metrics_path: str | Path,
) -> dict[str, Any]:
    """Run the filter stage end to end and return its metrics.

    Writes ``out_path`` (N x S x S x 3 uint8 ``.npy``), ``index_path`` (one CSV row per
    kept crop, row i describing ``out_path[i]``), ``preview_path`` (PNG grid) and
    ``metrics_path`` (counts and the resolved config). Raises NoCropsKeptError, after
    writing the metrics, when every crop was dropped.
    """
    refine = _make_refiner(params)
    drops = SkipCounter(logging.getLogger(f"{__name__}.crops"))
    image_skips = SkipCounter(logging.getLogger(f"{__name__}.images"))

    manifest = read_manifest(raw_dir)
    boxes_by_image, detector_rows, other_rows = read_detections(detections_path, params, drops)
    _drop_unknown_images(boxes_by_image, set(manifest["id"]), drops)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    store = CropStore(out_path.parent, params.image_size)
    try:
        candidates, crop_actions, enlarged = _cut_candidates(
            manifest, Path(raw_dir), boxes_by_image, params, refine, store, drops, image_skips
        )
        kept = _drop_duplicates(candidates, params, drops)

        metrics = {
            "kept": len(kept),
            "candidates": detector_rows,
            "dropped": drops.as_dict(),
            "dropped_total": drops.total,
            # Over the crops that passed the per-crop checks, before duplicates.
            "crop_actions": dict(sorted(crop_actions.items())),
            "enlarged_crops": enlarged,
            "images": {
                "listed": len(manifest),
                "with_boxes": len(boxes_by_image),
                "skipped": image_skips.as_dict(),
            },
            "other_detector_rows": other_rows,
            "laplacian_var_kept": _summarize([candidates[i].laplacian_var for i in kept]),
            "config": to_dict(params),
        }
        write_json(metrics_path, metrics)
        if not kept:
            raise NoCropsKeptError(_explain_nothing_kept(params, detector_rows, drops, image_skips))

        pack_crops(store, kept, out_path)
        _write_index(index_path, [candidates[i] for i in kept], params)
        shown = [kept[i] for i in preview_positions(len(kept), params.preview_count)]
        atomic_write_bytes(preview_path, make_grid_png(np.asarray(store.read()[shown])))
    finally:
        store.close()

    log.info(
        "kept %d of %d %r boxes; dropped %s",
        len(kept), detector_rows, params.detector, drops.as_dict() or "none",
    )
    return metrics


def _make_refiner(params: FilterParams) -> BoxRefiner:
    try:
        factory = BOX_REFINERS.get(params.box_refiner)
    except KeyError as error:
        raise ConfigError(f"filter.box_refiner: {error.args[0]}") from None
    return factory(params)


def _drop_unknown_images(
    boxes_by_image: dict[str, list[FaceBox]], manifest_ids: set[str], drops: SkipCounter
) -> None:
    for image_id in sorted(set(boxes_by_image) - manifest_ids):
        for box in boxes_by_image.pop(image_id):
            item_id = f"{image_id} detections row {box.row}"
            drops.skip(item_id, "unknown_image", "not in manifest.csv")


def _cut_candidates(
    manifest: pd.DataFrame,
    raw_dir: Path,
    boxes_by_image: dict[str, list[FaceBox]],
    params: FilterParams,
    refine: BoxRefiner,
    store: CropStore,
    drops: SkipCounter,
    image_skips: SkipCounter,
) -> tuple[list[Candidate], Counter[str], int]:
    """Decode each image that has boxes once, and cut, resize and blur-check its crops.

    Crops that pass go to ``store``, in the same order as the returned candidates.
    Also returns how many of them each out-of-frame action made and how many were
    smaller than image_size, so the resize enlarged them.
    """
    candidates: list[Candidate] = []
    crop_actions: Counter[str] = Counter()
    enlarged = 0
    rows = manifest[manifest["id"].isin(list(boxes_by_image))].drop_duplicates("id")
    for image_id, relative_path in tqdm(
        zip(rows["id"], rows["path"]), total=len(rows), desc="filter: crop faces", unit="image"
    ):
        boxes = boxes_by_image[image_id]
        try:
            image = _load_image(raw_dir, relative_path)
        except ImageError as error:
            image_skips.skip(image_id, error.reason, str(error))
            reason = "image_missing" if error.reason == "missing" else "image_unreadable"
            drops.counts[reason] += len(boxes)
            continue

        for box in boxes:
            try:
                crop, pixels, laplacian_var = _cut_one(image, box, params, refine)
            except _CropDropped as dropped:
                drops.skip(f"{image_id} detections row {box.row}", dropped.reason, str(dropped))
                continue
            crop_actions[crop.action] += 1
            if crop.width < params.image_size or crop.height < params.image_size:
                enlarged += 1
            store.append(pixels)
            candidates.append(
                Candidate(
                    image_id=image_id,
                    box=box,
                    crop=crop,
                    laplacian_var=laplacian_var,
                    sha256=content_sha256(pixels),
                    perceptual_hash=perceptual_hash(pixels, params.hash_method),
                )
            )
    return candidates, crop_actions, enlarged


def _load_image(raw_dir: Path, relative_path: str) -> np.ndarray:
    """Decode ``raw_dir / relative_path``; every failure raises ImageError."""
    if not is_inside_folder(relative_path):
        raise ImageError(
            "path_outside_raw", f"manifest path {relative_path!r} leaves the raw folder"
        )
    path = raw_dir / relative_path
    try:
        return load_rgb(path)
    except FileNotFoundError as error:
        raise ImageError("missing", f"{path}: file not found") from error
    except OSError as error:
        raise ImageError("unreadable", f"{path}: {error}") from error


def _cut_one(
    image: np.ndarray, box: FaceBox, params: FilterParams, refine: BoxRefiner
) -> tuple[CropBox, np.ndarray, float]:
    """Return the crop box, the resized crop and its blur score, or raise _CropDropped."""
    image_height, image_width = image.shape[:2]
    x1, y1, x2, y2 = refine(image, box.coordinates)
    if x2 <= 0 or y2 <= 0 or x1 >= image_width or y1 >= image_height:
        raise _CropDropped("out_of_frame", f"box {box.coordinates} lies outside the image")

    crop = compute_crop_box((x1, y1, x2, y2), (image_width, image_height), params)
    if crop.action == "dropped":
        raise _CropDropped(
            "out_of_frame", f"crop {crop.x1},{crop.y1},{crop.x2},{crop.y2} leaves the image"
        )

    original = cut_crop(image, crop, params)
    resized = resize_crop(original, params)
    laplacian_var = laplacian_variance(resized if params.blur_on == "resized" else original)
    if laplacian_var < params.min_laplacian_var:
        raise _CropDropped("blurry", f"Laplacian variance {laplacian_var:.1f}")
    return crop, resized, laplacian_var


def _drop_duplicates(
    candidates: list[Candidate], params: FilterParams, drops: SkipCounter
) -> list[int]:
    """Return the positions of the candidates that are not duplicates, in order."""
    if params.duplicate_keep == "largest":
        key = lambda i: (-candidates[i].box.face_px, -candidates[i].laplacian_var, i)  # noqa: E731
    elif params.duplicate_keep == "sharpest":
        key = lambda i: (-candidates[i].laplacian_var, -candidates[i].box.face_px, i)  # noqa: E731
    else:
        key = lambda i: i  # noqa: E731
    order = sorted(range(len(candidates)), key=key)

    matches = find_duplicates(
        [c.sha256 for c in candidates],
        [c.perceptual_hash for c in candidates],
        order,
        params.near_duplicate_max_distance,
    )
    dropped = set()
    for match in matches:
        duplicate, original = candidates[match.index], candidates[match.kept_index]
        drops.skip(
            f"{duplicate.image_id} detections row {duplicate.box.row}",
            match.reason,
            f"distance {match.distance} to {original.image_id} detections row {original.box.row}",
        )
        dropped.add(match.index)
    return [i for i in range(len(candidates)) if i not in dropped]


def _write_index(path: str | Path, kept: list[Candidate], params: FilterParams) -> None:
    table = pd.DataFrame(
        {
            "index": range(len(kept)),
            "image_id": [c.image_id for c in kept],
            "detections_row": [c.box.row for c in kept],
            "score": [c.box.score for c in kept],
            "agreement": [c.box.agreement for c in kept],
            "x1": [c.box.x1 for c in kept],
            "y1": [c.box.y1 for c in kept],
            "x2": [c.box.x2 for c in kept],
            "y2": [c.box.y2 for c in kept],
            "crop_x1": [c.crop.x1 for c in kept],
            "crop_y1": [c.crop.y1 for c in kept],
            "crop_x2": [c.crop.x2 for c in kept],
            "crop_y2": [c.crop.y2 for c in kept],
            "crop_action": [c.crop.action for c in kept],
            "laplacian_var": [round(c.laplacian_var, 2) for c in kept],
            params.hash_method: [f"{c.perceptual_hash:016x}" for c in kept],
            "sha256": [c.sha256 for c in kept],
        }
    )
    atomic_write_bytes(path, table.to_csv(index=False).encode("utf-8"))


def _summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": round(float(np.min(values)), 2),
        "median": round(float(np.median(values)), 2),
        "max": round(float(np.max(values)), 2),
    }


def _explain_nothing_kept(
    params: FilterParams, detector_rows: int, drops: SkipCounter, image_skips: SkipCounter
) -> str:
    if detector_rows == 0:
        return (
            f"no face crops kept: the detections file has no {params.detector!r} boxes; "
            "check the detect stage output and metrics/detect.json"
        )
    reasons = "; ".join(
        f"{reason} {count} ({REMEDIES.get(reason, 'see the log')})"
        for reason, count in drops.counts.most_common()
    )
    message = (
        f"no face crops kept: all {detector_rows} {params.detector!r} boxes were dropped: "
        f"{reasons}"
    )
    if image_skips.total:
        message += f". Images skipped: {image_skips.as_dict()}"
    return message
