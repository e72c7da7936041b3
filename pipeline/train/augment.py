"""DiffAugment: differentiable augmentations applied to real and fake images alike.

Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training": the
discriminator gets augmented reals and fakes, and the generator's gradient flows through
the same augmentation, so the discriminator overfits a small dataset less. Images are
(N, 3, H, W) in [-1, 1], and each sample gets its own random parameters.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from pipeline.registry import Registry

Augmentation = Callable[[torch.Tensor], torch.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("DiffAugment policy")

# Fractions of the image side, as in DiffAugment_pytorch.py of mit-han-lab/data-efficient-gans.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


@AUGMENTATIONS.register("color")
def augment_color(images: torch.Tensor) -> torch.Tensor:
    """Shift brightness by U(-0.5, 0.5), scale saturation by U(0, 2) and contrast by U(0.5, 1.5)."""
    count = images.shape[0]
    brightness = torch.rand(count, 1, 1, 1, dtype=images.dtype, device=images.device) - 0.5
    images = images + brightness

    saturation = torch.rand(count, 1, 1, 1, dtype=images.dtype, device=images.device) * 2.0
    channel_mean = images.mean(dim=1, keepdim=True)
    images = (images - channel_mean) * saturation + channel_mean

    contrast = torch.rand(count, 1, 1, 1, dtype=images.dtype, device=images.device) + 0.5
    image_mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - image_mean) * contrast + image_mean


@AUGMENTATIONS.register("translation")
def augment_translation(images: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side, filling the uncovered border with zeros."""
    count, _, height, width = images.shape
    max_shift_y, max_shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    device = images.device
    shift_y = torch.randint(-max_shift_y, max_shift_y + 1, (count, 1, 1), device=device)
    shift_x = torch.randint(-max_shift_x, max_shift_x + 1, (count, 1, 1), device=device)

    # Index into a copy padded by one zero pixel, so that every source pixel outside the
    # image is clamped onto that zero border.
    rows = (torch.arange(height, device=device).view(1, height, 1) + shift_y + 1).clamp(
        0, height + 1
    )
    cols = (torch.arange(width, device=device).view(1, 1, width) + shift_x + 1).clamp(0, width + 1)
    padded = F.pad(images, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    batch_index = torch.arange(count, device=device).view(count, 1, 1)
    return padded[batch_index, rows, cols].permute(0, 3, 1, 2)


@AUGMENTATIONS.register("cutout")
def augment_cutout(images: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image side at a random centre in each image."""
    count, _, height, width = images.shape
    cut_height, cut_width = int(height * ratio + 0.5), int(width * ratio + 0.5)
    device = images.device
    centre_y = torch.randint(0, height + (1 - cut_height % 2), (count, 1, 1), device=device)
    centre_x = torch.randint(0, width + (1 - cut_width % 2), (count, 1, 1), device=device)

    top = centre_y - cut_height // 2
    left = centre_x - cut_width // 2
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + cut_height) & (cols >= left) & (cols < left + cut_width)
    return images * (~inside).unsqueeze(1).to(images.dtype)


def diff_augment(images: torch.Tensor, policies: Sequence[str]) -> torch.Tensor:
    """Apply the named policies in order. An empty list returns ``images`` unchanged."""
    for name in policies:
        images = AUGMENTATIONS.get(name)(images)
    return images
