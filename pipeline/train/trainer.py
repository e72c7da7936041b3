"""One GAN training step, and the state a checkpoint needs to repeat the steps after it."""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterator

import numpy as np
import torch
import torchvision.utils
from torch import nn
from torch.optim.swa_utils import update_bn

from pipeline.config import to_dict
from pipeline.train.augment import diff_augment
from pipeline.train.data import FaceBatches
from pipeline.train.ddp import DistributedContext, average_gradients, broadcast_module
from pipeline.train.losses import build_loss, r1_penalty
from pipeline.train.models import build_discriminator, build_generator
from pipeline.train.params import TrainParams
from pipeline.train.runtime import Runtime, seed_noise

# Latents used to re-estimate batch-norm statistics of the EMA generator before use.
BATCHNORM_RECALIBRATION_SAMPLES = 1024
METER_NAMES = ("loss_discriminator", "loss_generator", "d_real", "d_fake")


class GeneratorEma:
    """Exponential moving average of the generator's weights.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first n updates, so the
    average does not stay near the random initial weights in short runs. Batch-norm
    buffers are copied from the generator, then re-estimated for the averaged weights by
    :meth:`GanTrainer.evaluation_generator` before the EMA generator is used.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)
        self.decay = decay
        self.num_updates = 0

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        averaged = list(self.module.parameters())
        current = [param.detach() for param in generator.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        for averaged_buffer, buffer in zip(self.module.buffers(), generator.buffers(), strict=True):
            averaged_buffer.copy_(buffer)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = state["num_updates"]


class TrainMeters:
    """Running sums of losses and D outputs, kept on the device so a step never syncs.

    The first step with a non-finite value and its values are recorded on the device too,
    and read only when the loop checks them.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_bad_step = torch.tensor(-1, device=device)
        self.bad_values = torch.zeros(len(METER_NAMES), device=device)
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(METER_NAMES), device=self.device)
        self.discriminator_steps = 0
        self.generator_steps = 0

    def update(
        self,
        step: int,
        loss_discriminator: torch.Tensor,
        loss_generator: torch.Tensor | None,
        real_logits: torch.Tensor,
        fake_logits: torch.Tensor,
    ) -> None:
        has_generator_loss = loss_generator is not None
        if loss_generator is None:
            loss_generator = torch.zeros((), device=self.device)
        values = torch.stack(
            [
                loss_discriminator.detach().float(),
                loss_generator.detach().float(),
                torch.sigmoid(real_logits.detach().float()).mean(),
                torch.sigmoid(fake_logits.detach().float()).mean(),
            ]
        )
        self.sums += values
        self.discriminator_steps += 1
        self.generator_steps += int(has_generator_loss)

        newly_bad = (~torch.isfinite(values).all()) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(newly_bad, step, self.first_bad_step)
        self.bad_values = torch.where(newly_bad, values, self.bad_values)

    def means(self) -> dict[str, float]:
        sums = self.sums.tolist()
        counts = [
            self.discriminator_steps,
            self.generator_steps,
            self.discriminator_steps,
            self.discriminator_steps,
        ]
        return {
            name: total / max(count, 1) for name, total, count in zip(METER_NAMES, sums, counts)
        }


class GanTrainer:
    """Networks, optimisers and data of one process, and the step that updates them."""

    def __init__(
        self,
        config: TrainParams,
        faces: np.ndarray,
        runtime: Runtime,
        context: DistributedContext,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.context = context
        self.device = runtime.device
        self.image_size = faces.shape[1]
        self.step = 0

        # Every process builds the same initial weights, then draws its own noise.
        torch.manual_seed(config.seed)
        params = to_dict(config)
        self.generator = build_generator(params, self.image_size).to(self.device)
        self.discriminator = build_discriminator(params, self.image_size).to(self.device)
        if config.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        broadcast_module(self.generator, context)
        broadcast_module(self.discriminator, context)
        seed_noise(config.seed, context.rank)

        self.ema = GeneratorEma(self.generator, config.ema_decay) if config.ema else None
        self.generator_optimizer = self._adam(self.generator, config.lr_generator)
        self.discriminator_optimizer = self._adam(self.discriminator, config.lr_discriminator)
        scaler_device = self.device.type if self.device.type == "cuda" else "cpu"
        self.generator_scaler = torch.amp.GradScaler(scaler_device, enabled=runtime.use_grad_scaler)
        self.discriminator_scaler = torch.amp.GradScaler(
            scaler_device, enabled=runtime.use_grad_scaler
        )

        # The compiled wrappers share parameters with the modules, and state dicts come from
        # the modules. R1 uses the plain discriminator because compile has no double backward.
        self.generator_forward: nn.Module = self.generator
        self.discriminator_forward: nn.Module = self.discriminator
        if config.compile:
            self.generator_forward = torch.compile(self.generator)
            self.discriminator_forward = torch.compile(self.discriminator)

        self.loss = build_loss(
            config.loss,
            tuple(config.real_label_range),
            tuple(config.fake_label_range),
            config.label_flip_probability,
        )
        self.batches = FaceBatches(
            faces,
            config.batch_size,
            self.device,
            seed=config.seed,
            rank=context.rank,
            world_size=context.world_size,
            horizontal_flip=config.horizontal_flip,
            channels_last=config.channels_last,
        )
        self.meters = TrainMeters(self.device)

    def _adam(self, module: nn.Module, lr: float) -> torch.optim.Adam:
        betas = (self.config.beta1, self.config.beta2)
        # The fused kernel updates all parameters in one launch, on CUDA only.
        fused = True if self.device.type == "cuda" else None
        return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=fused)

    @property
    def images_per_step(self) -> int:
        return self.config.batch_size * self.context.world_size

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type,
            dtype=self.runtime.amp_dtype,
            enabled=self.runtime.amp_dtype is not None,
        )

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.config.diffaugment)

    def train_step(self) -> None:
        """Run one discriminator update, and a generator update every d_steps_per_g_step steps."""
        config = self.config
        step_number = self.step + 1
        epoch, index = divmod(self.step, self.batches.steps_per_epoch)
        real = self.batches.batch(epoch, index)
        latent = torch.randn(real.shape[0], config.latent_dim, device=self.device)
        update_generator = step_number % config.d_steps_per_g_step == 0

        # Discriminator: reals against detached fakes. As in the DCGAN reference loop, the
        # same fakes then train the generator, so G runs forward once per step.
        with self.autocast(), torch.set_grad_enabled(update_generator):
            fake = self.generator_forward(latent)
        with self.autocast():
            real_logits = self.discriminator_forward(self.augment(real))
            fake_logits = self.discriminator_forward(self.augment(fake.detach()))
            loss_discriminator = self.loss.discriminator_loss(real_logits, fake_logits)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        self.discriminator_scaler.scale(loss_discriminator).backward()
        if config.r1_gamma > 0 and self.step % config.r1_interval == 0:
            # Lazy regularisation: a penalty every r1_interval steps, scaled by the interval.
            penalty = r1_penalty(self.discriminator, self.augment(real))
            weighted = penalty * (config.r1_gamma / 2 * config.r1_interval)
            self.discriminator_scaler.scale(weighted).backward()
        average_gradients(self.discriminator, self.context)
        self.discriminator_scaler.step(self.discriminator_optimizer)
        self.discriminator_scaler.update()

        loss_generator = None
        if update_generator:
            loss_generator = self._generator_step(fake)
        self.meters.update(
            step_number, loss_discriminator, loss_generator, real_logits, fake_logits
        )
        self.step = step_number

    def _generator_step(self, fake: torch.Tensor) -> torch.Tensor:
        # D's weights need no gradient here, so freezing them skips that part of the backward.
        self.discriminator.requires_grad_(False)
        with self.autocast():
            loss_generator = self.loss.generator_loss(
                self.discriminator_forward(self.augment(fake))
            )
        self.generator_optimizer.zero_grad(set_to_none=True)
        self.generator_scaler.scale(loss_generator).backward()
        self.discriminator.requires_grad_(True)
        average_gradients(self.generator, self.context)
        self.generator_scaler.step(self.generator_optimizer)
        self.generator_scaler.update()
        if self.ema is not None:
            self.ema.update(self.generator)
        return loss_generator

    def evaluation_generator(self) -> nn.Module:
        """Return an eval-mode copy of the generator to sample from: the EMA one when enabled.

        The EMA copy gets batch-norm statistics re-estimated for its own weights.
        """
        source = self.ema.module if self.ema is not None else self.generator
        generator = copy.deepcopy(source)
        if self.ema is not None:
            with self.fork_rng():
                recalibrate_batchnorm(
                    generator, self.config.seed, self.config.batch_size, self.device
                )
        return generator.eval()

    @contextlib.contextmanager
    def fork_rng(self) -> Iterator[None]:
        """Restore the global RNG afterwards, so sampling between steps leaves training alone."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            yield

    def rng_state(self) -> dict[str, torch.Tensor | None]:
        cuda_state = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"cpu": torch.get_rng_state(), "cuda": cuda_state}

    def set_rng_state(self, state: dict[str, torch.Tensor | None]) -> None:
        torch.set_rng_state(state["cpu"])
        if self.device.type == "cuda" and state["cuda"] is not None:
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "generator_scaler": self.generator_scaler.state_dict(),
            "discriminator_scaler": self.discriminator_scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        # A scaler saved without fp16 has an empty state, and a run without fp16 needs none.
        if self.runtime.use_grad_scaler and state["generator_scaler"]:
            self.generator_scaler.load_state_dict(state["generator_scaler"])
            self.discriminator_scaler.load_state_dict(state["discriminator_scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = state["step"]


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module, seed: int, batch_size: int, device: torch.device
) -> None:
    """Re-estimate the generator's batch-norm statistics from fixed-seed latents."""
    random = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, BATCHNORM_RECALIBRATION_SAMPLES)
    num_batches = math.ceil(BATCHNORM_RECALIBRATION_SAMPLES / batch_size)
    latents = [
        torch.randn(batch_size, generator.latent_dim, generator=random) for _ in range(num_batches)
    ]
    update_bn(latents, generator, device=device)


@torch.no_grad()
def render_grid(generator: nn.Module, latent: torch.Tensor) -> np.ndarray:
    """Return an H x W x 3 uint8 grid of the generator's images for ``latent``."""
    images = generator(latent).float().cpu()
    grid = torchvision.utils.make_grid(
        images, nrow=math.ceil(math.sqrt(len(images))), normalize=False, padding=2
    )
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
