"""Time the filter stage's duplicate search and per-crop work on real face crops.

1. Duplicate search: ``find_duplicates`` (numpy popcount over all kept hashes) against a
   baseline that compares imagehash objects in a Python loop, both on the same N hashes
   of real 64 px crops. Then ``find_duplicates`` alone on a larger N, made of the real
   hashes with a few random bits flipped.
2. Per-crop work: resize to 64 px, blur score, SHA-256 and perceptual hash, per crop.

    .venv/bin/python bench/filter_speed.py [--shared PATH] [--baseline-count 2000] [--count 20000]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from pipeline.filter import FilterParams, resize_crop
from pipeline.filter.dedupe import find_duplicates
from pipeline.filter.quality import content_sha256, laplacian_variance, perceptual_hash
from pipeline.images import load_rgb

REPO_ROOT = Path(__file__).resolve().parent.parent


def baseline_duplicates(image_hashes: list[imagehash.ImageHash], max_distance: int) -> int:
    """Count near duplicates by comparing imagehash objects one pair at a time."""
    kept: list[imagehash.ImageHash] = []
    dropped = 0
    for value in image_hashes:
        if any(value - other <= max_distance for other in kept):
            dropped += 1
        else:
            kept.append(value)
    return dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"))
    parser.add_argument("--shared", type=Path, default=default_shared)
    parser.add_argument("--baseline-count", type=int, default=2000,
                        help="hashes in the head-to-head run against the Python loop")
    parser.add_argument("--count", type=int, default=20000,
                        help="hashes in the run of find_duplicates alone")
    args = parser.parse_args()
    params = FilterParams()

    folder = args.shared / "data" / "faces" / "jonathonyan__Anime-Face-Detection-and-Recognition"
    folder = folder / "positive"
    paths = sorted(folder.iterdir())[: args.baseline_count]
    crops = [resize_crop(load_rgb(path), params) for path in paths]

    # Per-crop work after the cut: resize, blur score and both hashes.
    sources = [load_rgb(path) for path in paths[:500]]
    big = [
        np.asarray(Image.fromarray(source).resize((186, 186), Image.Resampling.BICUBIC))
        for source in sources
    ]
    start = time.perf_counter()
    for pixels in big:
        resized = resize_crop(pixels, params)
        laplacian_variance(resized)
        content_sha256(resized)
        perceptual_hash(resized, params.hash_method)
    per_crop_ms = (time.perf_counter() - start) / len(big) * 1000
    print(f"per-crop work (186 px crop to 64 px, blur, sha256, phash): {per_crop_ms:.2f} ms")

    # Head to head on the same hashes.
    image_hashes = [imagehash.phash(Image.fromarray(c)) for c in crops]
    hashes = [perceptual_hash(c, "phash") for c in crops]
    sha256s = [content_sha256(c) for c in crops]
    max_distance = params.near_duplicate_max_distance

    start = time.perf_counter()
    baseline_dropped = baseline_duplicates(image_hashes, max_distance)
    baseline_s = time.perf_counter() - start
    start = time.perf_counter()
    matches = find_duplicates(sha256s, hashes, list(range(len(hashes))), max_distance)
    ours_s = time.perf_counter() - start
    print(f"duplicate search, {len(hashes)} real crops: find_duplicates {ours_s:.3f} s "
          f"({len(matches)} dropped), Python loop baseline {baseline_s:.3f} s "
          f"({baseline_dropped} dropped); ratio {baseline_s / ours_s:.1f}x")

    # find_duplicates alone on a larger set, made by flipping 6 random bits of real hashes
    # so most stay apart at distance 4.
    rng = np.random.default_rng(0)
    many = []
    for i in range(args.count):
        value = hashes[i % len(hashes)]
        for bit in rng.choice(64, size=6, replace=False):
            value ^= 1 << int(bit)
        many.append(value)
    start = time.perf_counter()
    labels = [str(i) for i in range(len(many))]
    matches = find_duplicates(labels, many, list(range(len(many))), max_distance)
    many_s = time.perf_counter() - start
    print(f"duplicate search, {len(many)} hashes: find_duplicates {many_s:.2f} s "
          f"({len(matches)} dropped)")


if __name__ == "__main__":
    main()
