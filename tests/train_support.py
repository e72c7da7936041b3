"""Helpers for the train tests: real crops packed as faces.npy, and a tiny config."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from pipeline.config import parse_section
from pipeline.images import load_rgb
from pipeline.train.params import TrainParams

CROPS_SUBDIR = "jonathonyan__Anime-Face-Detection-and-Recognition/positive"


def pack_faces(faces_dir: Path, out_path: Path, count: int = 64, size: int = 32) -> Path:
    """Write the first ``count`` crops, resized to ``size`` px, as an N x S x S x 3 uint8 .npy."""
    paths = sorted((faces_dir / CROPS_SUBDIR).glob("*.png"))[:count]
    assert len(paths) == count, f"found {len(paths)} crops under {faces_dir / CROPS_SUBDIR}"
    crops = []
    for path in paths:
        image = Image.fromarray(load_rgb(path)).resize((size, size), Image.Resampling.BILINEAR)
        crops.append(np.asarray(image))
    np.save(out_path, np.stack(crops))
    return out_path


# A DCGAN small enough for a few CPU steps in well under a second: 64 crops of 32 px in
# 4 batches per epoch, widths 8, deterministic kernels.
TINY_PARAMS = {
    "epochs": 2,
    "batch_size": 16,
    "latent_dim": 16,
    "generator_width": 8,
    "discriminator_width": 8,
    "device": "cpu",
    "deterministic": True,
    "log_every_steps": 2,
    "checkpoint_every_steps": 2,
    "sample_grid_size": 16,
}


@contextmanager
def isolated_torch_settings() -> Iterator[None]:
    """Run torch on one thread and restore the global flags that training sets.

    On a busy 2-core machine, two OpenMP threads wait on each other and make these tiny
    models many times slower. Deterministic mode is global in torch, so a run with
    ``deterministic: true`` would otherwise leave it on for later tests.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn_flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_flags


def tiny_params(**overrides: object) -> TrainParams:
    return parse_section(TrainParams, {**TINY_PARAMS, **overrides}, "train")
