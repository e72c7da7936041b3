"""Atomic training checkpoints and the rule for resuming one.

A checkpoint is resumed only when it was written with the same resolved config, apart
from the execution keys in ``pipeline.train.params.EXECUTION_KEYS`` (device, logging,
``epochs`` and the like). What happens otherwise depends on ``train.resume``:

- ``auto`` (default): log which keys differ and start from step 0. The next checkpoint
  replaces the old one. This covers both a changed hyperparameter and a changed
  architecture, so ``dvc exp run -S train.generator_width=32`` trains a new model.
- ``strict``: raise CheckpointError naming the keys, without touching the checkpoint.
- ``never``: ignore any checkpoint and start from step 0.
"""

from __future__ import annotations

import io
import pickle
import logging
from pathlib import Path
from typing import Any

import torch

from pipeline.files import atomic_write_bytes
from pipeline.train.params import ARCHITECTURE_KEYS, EXECUTION_KEYS

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot or must not be resumed."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with torch.save atomically, so a killed run leaves the old file intact."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
        first_line = (str(error).splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(error).__name__}: {first_line}); "
            "delete it to start from step 0"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not in checkpoint format {CHECKPOINT_FORMAT}; "
            "delete it to start from step 0"
        )
    return state


def config_differences(
    saved: dict[str, Any], current: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Return (key, saved value, current value) for each key that changes the trained weights."""
    keys = (set(saved) | set(current)) - EXECUTION_KEYS
    return [
        (key, saved.get(key), current.get(key))
        for key in sorted(keys)
        if saved.get(key) != current.get(key)
    ]


def find_resumable_checkpoint(
    path: str | Path,
    config: dict[str, Any],
    mode: str,
    total_steps: int,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any] | None:
    """Return the checkpoint at ``path`` when the run may continue from it, else None.

    ``config`` is the resolved config of this run and ``mode`` the ``train.resume``
    value. Raises CheckpointError for an unreadable file, and in ``strict`` mode for a
    checkpoint that does not match.
    """
    path = Path(path)
    if not path.is_file():
        return None
    if mode == "never":
        logger.info("ignoring checkpoint %s because train.resume is never", path)
        return None

    state = load_checkpoint(path, map_location)
    reason = _mismatch_reason(state, config, total_steps)
    if reason is None:
        return state
    if mode == "strict":
        raise CheckpointError(
            f"checkpoint {path} cannot be resumed: {reason}. Restore those values, delete "
            "the checkpoint, or set train.resume to auto to start from step 0"
        )
    logger.warning(
        "not resuming checkpoint %s: %s. Starting from step 0; the next checkpoint replaces it",
        path,
        reason,
    )
    return None


def _mismatch_reason(state: dict[str, Any], config: dict[str, Any], total_steps: int) -> str | None:
    differences = config_differences(state["config"], config)
    if differences:
        changes = ", ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in differences)
        if any(key in ARCHITECTURE_KEYS for key, _, _ in differences):
            return f"it has another architecture, so its weights do not fit ({changes})"
        return f"it was written with other settings ({changes})"
    if state["step"] > total_steps:
        return (
            f"it is at step {state['step']}, past the last step {total_steps} "
            f"of train.epochs = {config['epochs']}"
        )
    return None
