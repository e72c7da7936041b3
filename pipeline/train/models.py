"""DCGAN generator and discriminator, and loading of the saved generator.

The layout is the DCGAN one. The generator grows a 4x4 map from z with
stride-2 transposed convolutions, batch norm and ReLU, and ends in tanh. The
discriminator shrinks the image with stride-2 convolutions and LeakyReLU, here with
dropout after each hidden layer, and returns one logit per image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024


def check_image_size(image_size: int) -> None:
    """Raise ValueError unless the networks can produce and read ``image_size`` pixels."""
    is_power_of_two = image_size > 0 and image_size & (image_size - 1) == 0
    if not (is_power_of_two and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
        raise ValueError(
            f"image size {image_size} is not supported; the DCGAN needs a power of two "
            f"from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (set filter.image_size)"
        )


class Generator(nn.Module):
    """Map z of shape (N, latent_dim) to images of shape (N, 3, S, S) in [-1, 1]."""

    def __init__(self, latent_dim: int, width: int, image_size: int, dropout: float = 0.0):
        super().__init__()
        check_image_size(image_size)
        self.latent_dim = latent_dim
        self.image_size = image_size

        # From 4x4 to S x S takes log2(S) - 2 doublings, and the last one outputs RGB.
        num_upsamplings = int(math.log2(image_size)) - 2
        channels = [width * 2 ** (num_upsamplings - 1 - i) for i in range(num_upsamplings)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        ]
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += [
                nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class Discriminator(nn.Module):
    """Map images of shape (N, 3, S, S) in [-1, 1] to one real-vs-fake logit each."""

    def __init__(
        self,
        width: int,
        image_size: int,
        leaky_relu_slope: float = 0.2,
        dropout: float = 0.3,
        spectral_norm: bool = False,
    ):
        super().__init__()
        check_image_size(image_size)
        self.image_size = image_size

        # From S x S to 4x4 takes log2(S) - 2 halvings. A final 4x4 convolution gives the logit.
        num_downsamplings = int(math.log2(image_size)) - 2
        channels = [3] + [width * 2**i for i in range(num_downsamplings)]
        layers: list[nn.Module] = []
        for index, (in_channels, out_channels) in enumerate(zip(channels, channels[1:])):
            layers.append(nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False))
            # As in DCGAN, the first layer has no batch norm. Spectral norm replaces it everywhere.
            if index > 0 and not spectral_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers += [nn.LeakyReLU(leaky_relu_slope, inplace=True), nn.Dropout(dropout)]
        layers.append(nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)
        self.apply(init_dcgan_weights)
        if spectral_norm:
            for module in self.net:
                if isinstance(module, nn.Conv2d):
                    apply_spectral_norm(module)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


def init_dcgan_weights(module: nn.Module) -> None:
    """Initialise as DCGAN does: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_generator(config: dict[str, Any], image_size: int) -> Generator:
    """Create the generator described by a train config dict."""
    return Generator(
        latent_dim=config["latent_dim"],
        width=config["generator_width"],
        image_size=image_size,
        dropout=config["generator_dropout"],
    )


def build_discriminator(config: dict[str, Any], image_size: int) -> Discriminator:
    """Create the discriminator described by a train config dict."""
    return Discriminator(
        width=config["discriminator_width"],
        image_size=image_size,
        leaky_relu_slope=config["leaky_relu_slope"],
        dropout=config["discriminator_dropout"],
        spectral_norm=config["spectral_norm"],
    )


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> Generator:
    """Rebuild the generator saved in ``models/generator.pt``, in eval mode.

    The file is a dict with ``config`` (the resolved train config), ``state_dict``
    (the EMA weights when the run used EMA), ``latent_dim`` and ``image_size``.
    """
    saved = _load_saved_model(path, map_location)
    generator = build_generator(saved["config"], saved["image_size"])
    _load_weights(generator, saved, path)
    return generator.to(map_location).eval()


def load_discriminator(path: str | Path, map_location: str | torch.device = "cpu") -> Discriminator:
    """Rebuild the discriminator saved in ``models/discriminator.pt``, in eval mode."""
    saved = _load_saved_model(path, map_location)
    discriminator = build_discriminator(saved["config"], saved["image_size"])
    _load_weights(discriminator, saved, path)
    return discriminator.to(map_location).eval()


def _load_saved_model(path: str | Path, map_location: str | torch.device) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} not found; run the train stage first")
    saved = torch.load(path, map_location=map_location, weights_only=True)
    required = ("config", "state_dict", "image_size")
    missing = [key for key in required if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise ValueError(
            f"{str(path)!r} is not a model file written by the train stage "
            f"(missing keys {missing}); rerun the train stage"
        )
    return saved


def _load_weights(module: nn.Module, saved: dict[str, Any], path: str | Path) -> None:
    try:
        module.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"weights in {str(path)!r} do not match the architecture in its config: {error}"
        ) from error
