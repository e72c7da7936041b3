"""GAN losses, registered by name, and the R1 gradient penalty.

Every loss takes raw discriminator logits of shape (N,) and returns a scalar in fp32.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.registry import Registry


class GanLoss:
    """Discriminator and generator objectives computed from discriminator logits."""

    def discriminator_loss(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


LossFactory = Callable[..., GanLoss]
LOSSES: Registry[LossFactory] = Registry("loss")


@LOSSES.register("bce")
class SmoothedBceLoss(GanLoss):
    """Binary cross-entropy with smoothed, randomly flipped discriminator targets.

    Each real target is drawn uniformly from ``real_label_range`` and each fake target
    from ``fake_label_range``. With probability ``label_flip_probability`` a sample's
    target is drawn from the other class's range instead. The generator aims at 1.0.
    """

    def __init__(
        self,
        real_label_range: tuple[float, float] = (0.7, 1.0),
        fake_label_range: tuple[float, float] = (0.0, 0.3),
        label_flip_probability: float = 0.0,
        **_: object,
    ) -> None:
        self.real_label_range = tuple(real_label_range)
        self.fake_label_range = tuple(fake_label_range)
        self.label_flip_probability = label_flip_probability

    def discriminator_loss(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> torch.Tensor:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        real_targets = self._targets(real_logits, self.real_label_range, self.fake_label_range)
        fake_targets = self._targets(fake_logits, self.fake_label_range, self.real_label_range)
        real_loss = F.binary_cross_entropy_with_logits(real_logits, real_targets)
        fake_loss = F.binary_cross_entropy_with_logits(fake_logits, fake_targets)
        return real_loss + fake_loss

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        fake_logits = fake_logits.float()
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))

    def _targets(
        self,
        logits: torch.Tensor,
        own_range: tuple[float, float],
        other_range: tuple[float, float],
    ) -> torch.Tensor:
        own = _uniform_like(logits, *own_range)
        if self.label_flip_probability == 0.0:
            return own
        other = _uniform_like(logits, *other_range)
        flipped = torch.rand_like(logits) < self.label_flip_probability
        return torch.where(flipped, other, own)


@LOSSES.register("hinge")
class HingeLoss(GanLoss):
    """Hinge loss: D pushes real logits above 1 and fake logits below -1, G raises fake logits."""

    def __init__(self, **_: object) -> None:
        pass

    def discriminator_loss(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> torch.Tensor:
        real_loss = F.relu(1.0 - real_logits.float()).mean()
        fake_loss = F.relu(1.0 + fake_logits.float()).mean()
        return real_loss + fake_loss

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.float().mean()


@LOSSES.register("nonsaturating")
class NonSaturatingLoss(GanLoss):
    """Non-saturating logistic loss with hard labels, usually paired with ``r1_gamma`` > 0."""

    def __init__(self, **_: object) -> None:
        pass

    def discriminator_loss(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor
    ) -> torch.Tensor:
        return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits.float()).mean()


def build_loss(
    name: str,
    real_label_range: tuple[float, float],
    fake_label_range: tuple[float, float],
    label_flip_probability: float,
) -> GanLoss:
    """Create the registered loss ``name``. The label settings apply to ``bce`` only."""
    factory = LOSSES.get(name)
    return factory(
        real_label_range=real_label_range,
        fake_label_range=fake_label_range,
        label_flip_probability=label_flip_probability,
    )


def r1_penalty(discriminator: nn.Module, real_images: torch.Tensor) -> torch.Tensor:
    """Return the R1 penalty without its gamma / 2 factor: the batch mean of |dD(x)/dx|^2.

    It runs in fp32 and needs a module that supports double backward, so pass the module
    itself and not its ``torch.compile`` wrapper.
    """
    images = real_images.detach().float().requires_grad_(True)
    logits = discriminator(images)
    (gradients,) = torch.autograd.grad(logits.float().sum(), images, create_graph=True)
    return gradients.square().sum(dim=(1, 2, 3)).mean()


def _uniform_like(reference: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.rand_like(reference) * (high - low) + low
