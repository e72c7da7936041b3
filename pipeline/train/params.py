"""The ``train`` section of params.yaml: every hyperparameter of the DCGAN run."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import ConfigError, param
from pipeline.train.augment import AUGMENTATIONS
from pipeline.train.losses import LOSSES

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Keys that change how a run executes or reports but not the training recipe, so a
# checkpoint written under other values of them can still be resumed. Some (device,
# precision, kernels) change floating-point rounding, so exact reproduction needs them
# unchanged too. ``epochs`` is here because the data order of an epoch depends only on
# the seed and the epoch index and the learning rates are constant, so a longer run is
# the shorter run continued.
EXECUTION_KEYS = frozenset(
    {
        "epochs",
        "device",
        "mixed_precision",
        "channels_last",
        "compile",
        "cudnn_benchmark",
        "deterministic",
        "log_every_steps",
        "checkpoint_every_steps",
        "sample_grid_size",
        "fid_every_epochs",
        "fid_num_samples",
        "fid_inception_path",
        "resume",
        # Resolved at run time and stored beside the params in the config.
        "resolved_device",
        "resolved_precision",
    }
)

# Keys that change the shapes or names of the weights. A checkpoint written under other
# values cannot be loaded at all.
ARCHITECTURE_KEYS = frozenset(
    {"latent_dim", "generator_width", "discriminator_width", "spectral_norm", "image_size"}
)


@dataclass
class TrainParams:
    # Schedule and optimiser
    epochs: int = param(25, min=1, max=1_000_000, help="passes over the training crops")
    batch_size: int = param(
        128, min=1, max=65_536, help="images per optimiser step on each process"
    )
    lr_generator: float = param(2e-4, min=1e-8, max=1.0, help="Adam learning rate of G")
    lr_discriminator: float = param(2e-4, min=1e-8, max=1.0, help="Adam learning rate of D")
    beta1: float = param(0.5, min=0.0, max=0.9999, help="Adam beta1 for both networks")
    beta2: float = param(0.999, min=0.0, max=0.9999, help="Adam beta2 for both networks")
    d_steps_per_g_step: int = param(
        1, min=1, max=16, help="discriminator updates per generator update"
    )
    seed: int = param(0, min=0, max=2**31 - 1, help="seed of weights, noise and data order")

    # Architecture
    latent_dim: int = param(100, min=1, max=4096, help="length of the latent vector z")
    generator_width: int = param(
        64, min=1, max=1024, help="channels of G's last hidden layer; each earlier one doubles"
    )
    discriminator_width: int = param(
        64, min=1, max=1024, help="channels of D's first layer; each later one doubles"
    )
    leaky_relu_slope: float = param(0.2, min=0.0, max=1.0, help="negative slope in D")
    discriminator_dropout: float = param(
        0.3, min=0.0, max=0.9, help="dropout after each hidden D layer"
    )
    generator_dropout: float = param(
        0.0, min=0.0, max=0.9, help="dropout after each hidden G layer, in training only"
    )
    spectral_norm: bool = param(
        False, help="spectral normalisation of every D layer; D then has no batch norm"
    )

    # Objective
    loss: str = param("bce", choices=LOSSES.names(), help="GAN loss")
    real_label_range: list[float] = param(
        [0.7, 1.0], min=0.0, max=1.0, help="bce only: real targets are drawn uniformly from it"
    )
    fake_label_range: list[float] = param(
        [0.0, 0.3], min=0.0, max=1.0, help="bce only: fake targets are drawn uniformly from it"
    )
    label_flip_probability: float = param(
        0.05, min=0.0, max=0.5, help="bce only: chance that a target comes from the other class"
    )
    r1_gamma: float = param(
        0.0, min=0.0, max=10_000.0, help="weight of the R1 penalty on real images; 0 turns it off"
    )
    r1_interval: int = param(
        16, min=1, max=1000, help="compute R1 every this many D steps, scaled up to match"
    )

    # Stability and small-data aids
    ema: bool = param(False, help="keep an EMA of G's weights for samples, FID and the saved G")
    ema_decay: float = param(0.999, min=0.0, max=0.999999, help="EMA decay per G update")
    diffaugment: list[str] = param(
        [], choices=AUGMENTATIONS.names(), help="DiffAugment policies applied in this order"
    )
    horizontal_flip: bool = param(True, help="flip each real crop left-right with chance 0.5")

    # Execution
    device: str = param("auto", help="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    mixed_precision: str = param(
        "auto",
        choices=["auto", "bf16", "fp16", "off"],
        help="auto: bf16 on CUDA when supported, else fp16 with loss scaling; off on CPU",
    )
    channels_last: bool = param(True, help="NHWC memory layout for convolutions")
    compile: bool = param(False, help="torch.compile both networks")
    cudnn_benchmark: bool = param(True, help="let cuDNN pick the fastest kernels")
    deterministic: bool = param(False, help="deterministic kernels; exact reproduction on CPU")
    log_every_steps: int = param(50, min=1, max=1_000_000, help="steps between log lines")
    checkpoint_every_steps: int = param(
        500, min=1, max=10_000_000, help="steps between checkpoints; a kill loses at most this many"
    )
    sample_grid_size: int = param(
        64, min=1, max=1024, help="images in the per-epoch grid from a fixed latent batch"
    )
    fid_every_epochs: int = param(
        0, min=0, max=1_000_000, help="epochs between intermediate FID scores; 0 turns it off"
    )
    fid_num_samples: int = param(
        2000, min=2, max=1_000_000, help="generated images per intermediate FID"
    )
    fid_inception_path: str = param(
        "", help="Inception weights for intermediate FID; empty uses the evaluate default"
    )
    resume: str = param(
        "auto",
        choices=["auto", "never", "strict"],
        help="auto: resume a matching checkpoint, else start fresh; strict: raise on a mismatch",
    )

    def __post_init__(self) -> None:
        for name in ("real_label_range", "fake_label_range"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ConfigError(f"train.{name} = {bounds!r} must be [low, high] with low <= high")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(
                f"train.device = {self.device!r} is not allowed; use auto, cpu, cuda, cuda:N or mps"
            )
