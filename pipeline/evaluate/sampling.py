"""Drawing images from a generator, and its untrained copy for the FID ceiling.

A generator is any ``nn.Module`` with an integer ``latent_dim`` attribute that maps z of
shape (N, latent_dim) to images of shape (N, 3, S, S) in [-1, 1].
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


def check_generator(generator: nn.Module) -> int:
    """Return the generator's latent_dim, or raise TypeError when it has none."""
    latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise TypeError(
            f"generator {type(generator).__name__} needs a positive integer attribute "
            f"latent_dim, got {latent_dim!r}"
        )
    return latent_dim


def latent_vectors(num_samples: int, latent_dim: int, seed: int) -> torch.Tensor:
    """Return z of shape (num_samples, latent_dim), drawn on the CPU so that one seed gives
    the same vectors on every device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_samples, latent_dim, generator=generator)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Quantise (N, 3, S, S) images in [-1, 1] to uint8 N x S x S x 3, as saving a PNG would."""
    pixels = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@torch.inference_mode()
def generate_images(
    generator: nn.Module,
    num_samples: int,
    seed: int,
    batch_size: int,
    device: torch.device | None = None,
    desc: str = "generate",
) -> np.ndarray:
    """Return num_samples uint8 N x S x S x 3 images from z drawn with ``seed``.

    z goes to ``device``, by default the device of the generator's first parameter. The
    generator runs in eval mode and gets its previous mode back afterwards. Raises
    ValueError on a wrong output shape or on non-finite output, which would make every
    score meaningless.
    """
    latent_dim = check_generator(generator)
    if device is None:
        parameter = next(generator.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    z_all = latent_vectors(num_samples, latent_dim, seed)
    was_training = generator.training
    generator.eval()
    chunks = []
    try:
        for start in tqdm(range(0, num_samples, batch_size), desc=desc, unit="batch"):
            z = z_all[start : start + batch_size].to(device)
            images = generator(z)
            if images.ndim != 4 or images.shape[0] != len(z) or images.shape[1] != 3:
                raise ValueError(
                    f"generator returned shape {tuple(images.shape)} for {len(z)} latent "
                    "vectors; expected (N, 3, S, S)"
                )
            bad = (~torch.isfinite(images)).flatten(1).any(dim=1).sum().item()
            if bad:
                raise ValueError(
                    f"generator returned non-finite values in {bad} of {len(z)} images "
                    f"(batch from sample {start}); check the training run for divergence"
                )
            chunks.append(to_uint8(images))
    finally:
        generator.train(was_training)
    return np.concatenate(chunks)


def untrained_copy(
    generator: nn.Module, seed: int, weight_init: Callable[[nn.Module], None] | None = None
) -> nn.Module:
    """Return a copy of the generator with freshly initialised weights, seeded.

    Every submodule with ``reset_parameters`` is reset: convolutions, linear layers, and
    batch norm including its running statistics. ``weight_init`` is then applied to each
    submodule, for architectures that initialise differently from PyTorch's defaults.
    The weights are drawn on the CPU, so one seed gives the same copy on every device, and
    the global torch random state is left as it was.
    """
    parameter = next(generator.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    copied = copy.deepcopy(generator).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in copied.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        if weight_init is not None:
            copied.apply(weight_init)
    return copied.to(device)
