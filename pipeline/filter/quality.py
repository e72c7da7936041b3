"""Per-crop quality scores: sharpness, content hashes."""

from __future__ import annotations

import hashlib

import cv2
import imagehash
import numpy as np
from PIL import Image

# Each function returns a 64-bit hash (hash_size 8) so hashes fit in a uint64.
HASH_FUNCTIONS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "average_hash": imagehash.average_hash,
    "whash": imagehash.whash,
}


def laplacian_variance(pixels: np.ndarray) -> float:
    """Return the variance of the Laplacian of an RGB crop's grayscale: low means blurry.

    Uses OpenCV's 3x3 Laplacian (ksize 1) on BT.601 grayscale in 0-255 units, so the
    score scales with contrast and depends on the crop's resolution.
    """
    gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def content_sha256(pixels: np.ndarray) -> str:
    """Return the SHA-256 of a crop's shape and raw bytes, for exact duplicates."""
    digest = hashlib.sha256(str(pixels.shape).encode("ascii"))
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def perceptual_hash(pixels: np.ndarray, method: str) -> int:
    """Return the 64-bit imagehash ``method`` of an RGB crop as an unsigned integer."""
    image_hash = HASH_FUNCTIONS[method](Image.fromarray(pixels), hash_size=8)
    bits = image_hash.hash.flatten()
    return int("".join("1" if bit else "0" for bit in bits), 2)
