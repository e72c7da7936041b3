"""Training crops held once as a uint8 tensor, batched, normalised and flipped on the device.

No image is decoded after start-up: ``data/faces.npy`` is read once, kept on the GPU when
it fits (in pinned host memory otherwise), and each batch is gathered by index.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.train.models import check_image_size

logger = logging.getLogger(__name__)

# Keep the crops on the GPU when they take at most this fraction of its free memory.
MAX_DEVICE_DATA_FRACTION = 0.25
FINGERPRINT_CHUNK_BYTES = 64 * 1024 * 1024


class FacesError(ValueError):
    """``faces.npy`` is missing, unreadable or not an N x S x S x 3 uint8 array."""


def load_faces(path: str | Path) -> np.ndarray:
    """Read and check ``faces.npy``, returning an N x S x S x 3 uint8 array (memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise FacesError(f"faces file {str(path)!r} not found; run the filter stage first")
    try:
        faces = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise FacesError(f"{str(path)!r} is not a readable .npy array ({error})") from error
    check_faces(faces, str(path))
    return faces


def check_faces(faces: np.ndarray, name: str) -> None:
    """Raise FacesError unless ``faces`` is a non-empty N x S x S x 3 uint8 array."""
    if faces.dtype != np.uint8:
        raise FacesError(f"{name} has dtype {faces.dtype}; expected uint8 pixels")
    if faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1] != faces.shape[2]:
        raise FacesError(f"{name} has shape {faces.shape}; expected N x S x S x 3")
    if faces.shape[0] == 0:
        raise FacesError(f"{name} contains no faces; check the filter stage's metrics")
    try:
        check_image_size(faces.shape[1])
    except ValueError as error:
        raise FacesError(f"{name}: {error}") from error


def fingerprint_faces(faces: np.ndarray) -> str:
    """Return a BLAKE2b digest of the shape and pixels, so a checkpoint matches its data."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(faces.shape).encode())
    flat = faces.reshape(-1)
    for start in range(0, flat.size, FINGERPRINT_CHUNK_BYTES):
        digest.update(np.ascontiguousarray(flat[start : start + FINGERPRINT_CHUNK_BYTES]).data)
    return digest.hexdigest()


class FaceBatches:
    """Per-process batches of real images in [-1, 1], shape (B, 3, S, S).

    Epoch ``e`` visits the crops in a permutation that depends only on ``seed`` and
    ``e``, split across ``world_size`` processes. Each process drops its last incomplete
    batch, so every step has the same shape.
    """

    def __init__(
        self,
        faces: np.ndarray,
        batch_size: int,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        horizontal_flip: bool = True,
        channels_last: bool = True,
    ) -> None:
        images_per_process = faces.shape[0] // world_size
        if images_per_process < batch_size:
            raise FacesError(
                f"train.batch_size = {batch_size} is larger than the {images_per_process} "
                f"crops each of the {world_size} processes gets from {faces.shape[0]}; "
                "lower train.batch_size or add crops"
            )
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.horizontal_flip = horizontal_flip
        self.channels_last = channels_last
        self.steps_per_epoch = images_per_process // batch_size
        self.dropped_images_per_epoch = (
            faces.shape[0] - self.steps_per_epoch * batch_size * world_size
        )
        self.images = self._place(torch.from_numpy(np.array(faces, copy=True)))
        self._epoch = -1
        self._order: torch.Tensor | None = None

    def _place(self, images: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return images.to(self.device)
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        if images.numel() <= MAX_DEVICE_DATA_FRACTION * free_bytes:
            logger.info("keeping %.1f MB of crops on %s", images.numel() / 1e6, self.device)
            return images.to(self.device)
        logger.info(
            "crops (%.1f MB) exceed %.0f%% of free GPU memory; keeping them in pinned host memory",
            images.numel() / 1e6,
            100 * MAX_DEVICE_DATA_FRACTION,
        )
        return images.pin_memory()

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """Return this process's crop indices for ``epoch``, on the crops' device."""
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.images.shape[0], generator=generator)
            self._order = order[self.rank :: self.world_size].to(self.images.device)
            self._epoch = epoch
        return self._order

    def batch(self, epoch: int, index: int) -> torch.Tensor:
        """Return batch ``index`` of ``epoch`` as floats in [-1, 1] on the training device."""
        start = index * self.batch_size
        indices = self.epoch_order(epoch)[start : start + self.batch_size]
        images = self.images[indices]
        if images.device != self.device:
            images = images.pin_memory().to(self.device, non_blocking=True)

        # NHWC uint8 permuted to NCHW is already in channels_last layout.
        images = images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        if not self.channels_last:
            images = images.contiguous()
        if self.horizontal_flip:
            flip = torch.rand(images.shape[0], 1, 1, 1, device=self.device) < 0.5
            images = torch.where(flip, images.flip(3), images)
        return images
