"""Device selection shared by the stages that run torch models."""

from __future__ import annotations

import torch

from pipeline.config import ConfigError


def resolve_device(name: str, param_name: str = "device") -> torch.device:
    """Map ``auto`` to cuda when available, else cpu; pass other names through.

    Raises ConfigError naming ``param_name`` when ``cuda`` is requested without a CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{param_name} = 'cuda' but torch sees no CUDA device; set {param_name} to "
            "'auto' or 'cpu'"
        )
    return torch.device(name)
