"""Device, mixed precision, seeding and determinism of a training process."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import ConfigError
from pipeline.train.ddp import DistributedContext
from pipeline.train.params import TrainParams

logger = logging.getLogger(__name__)

PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    # Autocast dtype, or None to run in fp32.
    amp_dtype: torch.dtype | None
    # fp16 needs loss scaling so that small gradients do not underflow, but bf16 does not.
    use_grad_scaler: bool

    @property
    def precision(self) -> str:
        return PRECISION_NAMES[self.amp_dtype]


def wants_cuda(device: str) -> bool:
    """Return whether ``train.device`` selects a CUDA device on this machine."""
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def resolve_runtime(config: TrainParams, context: DistributedContext) -> Runtime:
    """Turn ``train.device`` and ``train.mixed_precision`` into a device and an autocast dtype."""
    device = _resolve_device(config.device, context)
    mode = config.mixed_precision
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.mixed_precision = fp16 needs a CUDA device, but the device is {device}; "
            "use bf16, auto or off"
        )
    if mode == "auto":
        if device.type != "cuda":
            amp_dtype = None
        elif torch.cuda.is_bf16_supported():
            amp_dtype = torch.bfloat16
        else:
            amp_dtype = torch.float16
    else:
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
    return Runtime(device=device, amp_dtype=amp_dtype, use_grad_scaler=amp_dtype == torch.float16)


def _resolve_device(name: str, context: DistributedContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {name!r} but CUDA is not available; use auto or cpu")
        # Under torchrun each process takes the GPU of its local rank.
        if name == "cuda":
            return torch.device("cuda", context.local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device = 'mps' but MPS is not available; use auto or cpu")
    return torch.device(name)


def configure_torch(config: TrainParams, runtime: Runtime) -> None:
    """Set kernel selection and determinism before any network is built."""
    if config.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = config.cudnn_benchmark and not config.deterministic
    if runtime.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic


def seed_noise(seed: int, rank: int) -> None:
    """Seed the global RNG that draws latents, labels, dropout and augmentations.

    Each process gets its own stream, derived from ``seed`` and ``rank`` so that it
    differs from the stream that initialised the weights.
    """
    torch.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
