"""On-disk storage of candidate crops and packing of the kept ones into one ``.npy``.

Crops go to a scratch file as they are cut, so memory use is one decoded image, the
detections table and small per-crop records, however many crops a run makes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

PACK_CHUNK = 1024


class CropStore:
    """Append-only file of equally sized uint8 crops of shape ``(size, size, 3)``."""

    def __init__(self, folder: str | Path, size: int) -> None:
        self.shape = (size, size, 3)
        self.count = 0
        handle, name = tempfile.mkstemp(dir=folder, prefix=".filter-crops.", suffix=".tmp")
        self.path = Path(name)
        self._stream = os.fdopen(handle, "wb")

    def append(self, pixels: np.ndarray) -> int:
        """Store a crop and return its position."""
        if pixels.shape != self.shape or pixels.dtype != np.uint8:
            raise ValueError(
                f"crop of shape {pixels.shape} {pixels.dtype}, expected {self.shape} uint8"
            )
        self._stream.write(np.ascontiguousarray(pixels).tobytes())
        self.count += 1
        return self.count - 1

    def read(self) -> np.ndarray:
        """Return all stored crops as a read-only memory map of shape ``(count, *shape)``."""
        self._stream.flush()
        if self.count == 0:
            return np.zeros((0, *self.shape), dtype=np.uint8)
        return np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, *self.shape))

    def close(self) -> None:
        """Close and delete the scratch file."""
        self._stream.close()
        self.path.unlink(missing_ok=True)


def pack_crops(store: CropStore, positions: Sequence[int], out_path: str | Path) -> None:
    """Write the crops at ``positions`` to ``out_path`` as one ``.npy`` array, atomically.

    The result loads with ``np.load(out_path, mmap_mode="r")``.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = store.read()
    handle, temp_name = tempfile.mkstemp(
        dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        if not positions:
            # numpy cannot memory-map an empty array, so write it directly.
            np.save(temp_name, np.zeros((0, *store.shape), dtype=np.uint8))
            os.replace(temp_name, out_path)
            return
        target = np.lib.format.open_memmap(
            temp_name, mode="w+", dtype=np.uint8, shape=(len(positions), *store.shape)
        )
        for start in range(0, len(positions), PACK_CHUNK):
            chunk = np.asarray(positions[start : start + PACK_CHUNK], dtype=np.int64)
            target[start : start + len(chunk)] = source[chunk]
        target.flush()
        del target
        with open(temp_name, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temp_name, out_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
