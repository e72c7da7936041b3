"""Fine-tune the two-class Mask R-CNN face detector on COCO-JSON labels.

The starting weights are a local checkpoint, COCO weights through torchvision's weights
API, or random weights. The labelled pictures are loaded and shrunk once, and the
non-test ones are split into train and validation by seed. Training augments with flip,
rescale, colour jitter and greyscale. Every few iterations AP@0.5 on validation is
scored, the best checkpoint is kept, and training stops early when AP stops improving.
"""

from __future__ import annotations

import io
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights
from torchvision.models.detection.faster_rcnn import FasterRCNN_MobileNet_V3_Large_FPN_Weights
from torchvision.transforms import v2

from pipeline.config import ConfigError, to_dict
from pipeline.detect.evaluation import ScoredImage, coco_ap50
from pipeline.detect.finetune_params import AugmentParams, FinetuneParams
from pipeline.detect.maskrcnn import CHECKPOINT_FORMAT, build_model, load_matching_weights
from pipeline.devices import resolve_device
from pipeline.files import atomic_write_bytes, write_json
from pipeline.images import ImageError, load_rgb
from pipeline.labels.masks import make_mask
from pipeline.labels.model import SPLIT_TEST, LabelBox, LabelledImage, resolve_image_path
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)

# COCO weights per architecture. The MobileNet variant starts from Faster R-CNN weights,
# so its mask head always starts from random weights.
COCO_WEIGHTS = {
    "resnet50_fpn_v2": MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    "mobilenet_v3_large_fpn": FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
}


@dataclass
class InitialWeights:
    """Starting weights: a description, the tensors (None for random) and the layout."""

    source: str
    state_dict: dict[str, torch.Tensor] | None
    pretrained: bool


def cached_weights_path(architecture: str) -> Path:
    """Return where torchvision's weights API caches the COCO weights of ``architecture``."""
    url = COCO_WEIGHTS[architecture].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def resolve_initial_weights(params: FinetuneParams) -> InitialWeights:
    """Pick the starting weights as ``params.init`` selects (see FinetuneParams.init).

    Random weights are logged as a WARNING because a detector trained from them on a
    few hundred pictures is far weaker than one fine-tuned from COCO.
    """
    if params.init == "checkpoint" or (params.init == "auto" and params.init_checkpoint):
        return _weights_from_checkpoint(params)

    if params.init in ("auto", "coco"):
        cached = cached_weights_path(params.architecture)
        if cached.is_file() or params.download_weights:
            weights = COCO_WEIGHTS[params.architecture]
            try:
                state_dict = weights.get_state_dict(progress=False, check_hash=True)
            except (OSError, RuntimeError) as error:
                if params.init == "coco":
                    raise ConfigError(f"loading COCO weights {weights} failed: {error}") from error
                logger.warning("loading COCO weights %s failed (%s)", weights, error)
            else:
                return InitialWeights(f"coco:{weights}", state_dict, pretrained=True)
        elif params.init == "coco":
            raise ConfigError(
                f"finetune_detector.init is 'coco' but {cached} is not cached and "
                "finetune_detector.download_weights is false; set download_weights: true on "
                "a machine with network access, or set init_checkpoint to a local file"
            )

    logger.warning(
        "TRAINING FROM RANDOM WEIGHTS: no COCO weights cached at %s and no init_checkpoint; "
        "the detector will be much weaker than one fine-tuned from COCO. Set "
        "finetune_detector.download_weights: true on a machine with network access, or "
        "finetune_detector.init_checkpoint to a local weights file",
        cached_weights_path(params.architecture),
    )
    return InitialWeights("scratch", None, pretrained=False)


def _weights_from_checkpoint(params: FinetuneParams) -> InitialWeights:
    path = Path(params.init_checkpoint)
    if not params.init_checkpoint or not path.is_file():
        raise ConfigError(
            f"finetune_detector.init_checkpoint = {params.init_checkpoint!r} is not a file; "
            "set it to a local .pth/.pt weights file or set init to 'auto'"
        )
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT:
        architecture = loaded["model_config"]["architecture"]
        if architecture != params.architecture:
            raise ConfigError(
                f"init_checkpoint {path} contains a {architecture!r} model but "
                f"finetune_detector.architecture is {params.architecture!r}"
            )
        return InitialWeights(f"checkpoint:{path}", loaded["state_dict"], loaded["model_config"]["pretrained"])
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict):
        raise ConfigError(f"init_checkpoint {path} contains no state dict; save model.state_dict()")
    return InitialWeights(f"checkpoint:{path}", loaded, pretrained=True)


@dataclass
class Sample:
    """A labelled picture shrunk for training: pixels, xyxy boxes and instance masks."""

    pixels: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (N, 4) float32
    masks: np.ndarray  # (N, H, W) uint8


def prepare_sample(
    image: LabelledImage, roots: Mapping[str, Any], max_side_px: int
) -> Sample:
    """Load one picture, shrink it so its longer side is at most ``max_side_px``, and
    scale its boxes and masks to match. Boxes without a mask get the inscribed ellipse.

    Raises ImageError or FileNotFoundError when the picture cannot be read.
    """
    # A writable copy, so torch.from_numpy can share it without a warning.
    pixels = np.array(load_rgb(resolve_image_path(image, roots)))
    height, width = pixels.shape[:2]
    if (width, height) != (image.width, image.height):
        raise ImageError(
            "size_mismatch", f"{image.file_name}: labels say {image.width}x{image.height}, file is {width}x{height}"
        )
    masks = [make_mask(box, height, width, "ellipse").astype(np.uint8) for box in image.boxes]
    scale = min(1.0, max_side_px / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        masks = [cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST) for mask in masks]
    boxes = np.array([[b.x1, b.y1, b.x2, b.y2] for b in image.boxes], dtype=np.float32).reshape(-1, 4) * scale
    stacked = np.stack(masks) if masks else np.zeros((0, *pixels.shape[:2]), dtype=np.uint8)
    return Sample(pixels, boxes, stacked)


class FaceDataset(Dataset):
    """Training or validation samples as (float image tensor, Mask R-CNN target) pairs."""

    def __init__(self, samples: Sequence[Sample], transform: v2.Transform | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.samples[index]
        height, width = sample.pixels.shape[:2]
        image = tv_tensors.Image(torch.from_numpy(sample.pixels).permute(2, 0, 1).contiguous())
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(sample.boxes), format="XYXY", canvas_size=(height, width)
            ),
            "masks": tv_tensors.Mask(torch.from_numpy(sample.masks)),
            "labels": torch.ones(len(sample.boxes), dtype=torch.int64),
        }
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image.float().div(255.0), {key: value.as_subclass(torch.Tensor) for key, value in target.items()}


def build_augmentation(params: AugmentParams) -> v2.Transform:
    """Return the joint image/box/mask augmentation for training.

    The rescale is an affine zoom about the centre on a fixed canvas, because Mask
    R-CNN's own transform resizes every picture to the same size, which would undo a
    plain resize.
    """
    if params.scale_min > params.scale_max:
        raise ConfigError(
            f"finetune_detector.augment.scale_min = {params.scale_min} is above "
            f"scale_max = {params.scale_max}"
        )
    jitter = params.color_jitter
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(params.hflip_probability),
            v2.RandomAffine(degrees=0.0, scale=(params.scale_min, params.scale_max)),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=params.hue_jitter),
            v2.RandomGrayscale(params.grayscale_probability),
            v2.SanitizeBoundingBoxes(min_size=2.0),
        ]
    )


def split_train_val(
    images: Sequence[LabelledImage], val_fraction: float, seed: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Split the non-test images into train and validation by a seeded shuffle.

    At least one image goes to validation when ``val_fraction`` > 0 and two or more
    images are available. Pseudo-labelled images stay in training.
    """
    candidates = sorted((i for i in images if i.split != SPLIT_TEST), key=lambda i: (i.root, i.file_name))
    eligible = [image for image in candidates if image.kind != "pseudo_agreement"]
    random.Random(seed).shuffle(eligible)
    val_count = round(len(eligible) * val_fraction)
    if val_fraction > 0 and val_count == 0 and len(candidates) >= 2 and eligible:
        val_count = 1
    val_ids = {id(image) for image in eligible[:val_count]}
    train = [image for image in candidates if id(image) not in val_ids]
    val = [image for image in candidates if id(image) in val_ids]
    return train, val


@dataclass
class FinetuneResult:
    """Outcome of a fine-tuning run, which the stage writes to its metrics file."""

    checkpoint_path: str
    init_source: str
    device: str
    iterations: int = 0
    images_seen: int = 0
    best_val_ap50: float | None = None
    best_iteration: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    train_images: int = 0
    val_images: int = 0
    losses: list[float] = field(default_factory=list)
    skips: dict[str, int] = field(default_factory=dict)


def finetune_detector(
    params: FinetuneParams,
    images: Sequence[LabelledImage],
    roots: Mapping[str, Any],
    checkpoint_path: str | Path,
    live: Any = None,
) -> FinetuneResult:
    """Fine-tune Mask R-CNN on ``images`` (test-split images are left out) and save the best
    checkpoint, with its resolved config, to ``checkpoint_path``.

    ``live`` is an optional dvclive.Live that receives the losses and validation AP.
    Raises FloatingPointError, naming the loss and iteration, when a loss is not finite.
    """
    torch.manual_seed(params.seed)
    skips = SkipCounter(logger)
    device = resolve_device(params.device, "finetune_detector.device")
    augmentation = build_augmentation(params.augment)
    initial = resolve_initial_weights(params)

    train_images, val_images = split_train_val(images, params.val_fraction, params.seed)
    train_samples = _prepare_all(train_images, roots, params.max_size_px, skips)
    val_samples = _prepare_all(val_images, roots, params.max_size_px, skips)
    if not train_samples:
        raise ValueError(f"no training images left (skipped: {skips.as_dict()}); check the labels file")
    logger.info(
        "training on %d images, validating on %d; weights: %s; device: %s",
        len(train_samples), len(val_samples), initial.source, device,
    )

    model_config = {
        "architecture": params.architecture,
        "pretrained": initial.pretrained,
        "trainable_backbone_layers": params.trainable_backbone_layers,
        "min_size_px": params.min_size_px,
        "max_size_px": params.max_size_px,
        "test_proposals_per_image": params.test_proposals_per_image,
    }
    model = build_model(
        **model_config,
        rpn_batch_size_per_image=params.rpn_batch_size_per_image,
        box_batch_size_per_image=params.box_batch_size_per_image,
    )
    if initial.state_dict is not None:
        loaded, untouched = load_matching_weights(model, initial.state_dict)
        if loaded == 0:
            raise ConfigError(f"no tensor of {initial.source} fits a {params.architecture!r} model")
        logger.info("loaded %d tensors from %s; %d start from random values", loaded, initial.source, len(untouched))
    model.to(device)

    result = FinetuneResult(str(checkpoint_path), initial.source, str(device))
    result.train_images, result.val_images = len(train_samples), len(val_samples)
    loader = DataLoader(
        FaceDataset(train_samples, augmentation),
        batch_size=params.batch_size,
        shuffle=True,
        num_workers=params.num_workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(params.seed),
        drop_last=len(train_samples) > params.batch_size,
    )
    optimizer = _make_optimizer(params, model)
    context = _CheckpointContext(model_config, params, initial.source, train_images, val_images)
    _train_loop(params, model, loader, val_samples, optimizer, device, context, result, live)
    result.skips = skips.as_dict()
    return result


@dataclass
class _CheckpointContext:
    model_config: dict[str, Any]
    params: FinetuneParams
    init_source: str
    train_images: list[LabelledImage]
    val_images: list[LabelledImage]


def _train_loop(
    params: FinetuneParams,
    model: torch.nn.Module,
    loader: DataLoader,
    val_samples: list[Sample],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    context: _CheckpointContext,
    result: FinetuneResult,
    live: Any,
) -> None:
    start = time.perf_counter()
    evaluations_without_gain = 0
    batches = _cycle(loader)
    for iteration in range(1, params.max_iterations + 1):
        # Warm the learning rate up linearly, then hold it.
        warmup = min(1.0, iteration / params.warmup_iterations) if params.warmup_iterations else 1.0
        for group in optimizer.param_groups:
            group["lr"] = params.lr * warmup

        model.train()
        images, targets = next(batches)
        images = [image.to(device) for image in images]
        targets = [{key: value.to(device) for key, value in t.items()} for t in targets]
        loss_parts = model(images, targets)
        loss = sum(loss_parts.values())
        _check_finite(loss_parts, iteration)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip_norm)
        optimizer.step()

        result.iterations = iteration
        result.images_seen += len(images)
        result.losses.append(float(loss.detach()))
        if iteration % params.log_every_iterations == 0 or iteration == params.max_iterations:
            _log_progress(params, iteration, result, loss_parts, optimizer, start, live)

        if not val_samples:
            continue
        if iteration % params.eval_every_iterations != 0 and iteration != params.max_iterations:
            continue
        val_ap50 = evaluate_ap50(model, val_samples, device)
        logger.info("iteration %d: validation AP@0.5 %.4f (best %s)", iteration, val_ap50, result.best_val_ap50)
        if live is not None:
            live.step = iteration
            live.log_metric("val/ap50", val_ap50)
        if result.best_val_ap50 is None or val_ap50 > result.best_val_ap50:
            result.best_val_ap50, result.best_iteration = val_ap50, iteration
            evaluations_without_gain = 0
            save_checkpoint(result.checkpoint_path, model, context, iteration, val_ap50)
        else:
            evaluations_without_gain += 1
            if params.early_stopping_patience and evaluations_without_gain >= params.early_stopping_patience:
                logger.info(
                    "stopping early at iteration %d: no AP gain in %d validations",
                    iteration, evaluations_without_gain,
                )
                result.stopped_early = True
                break

    if not val_samples:
        save_checkpoint(result.checkpoint_path, model, context, result.iterations, None)
        result.best_iteration = result.iterations
    result.seconds = time.perf_counter() - start


@torch.inference_mode()
def evaluate_ap50(model: torch.nn.Module, samples: Sequence[Sample], device: torch.device) -> float:
    """Return COCO AP@0.5 of ``model`` on ``samples`` (0.0 when they hold no face)."""
    model.eval()
    scored = []
    for sample in samples:
        tensor = torch.from_numpy(sample.pixels).permute(2, 0, 1).float().div(255.0).to(device)
        output = model([tensor])[0]
        predictions = [
            _ScoredBox(*(float(v) for v in box), float(score))
            for box, score in zip(output["boxes"].cpu(), output["scores"].cpu())
        ]
        truths = [LabelBox(*(float(v) for v in box)) for box in sample.boxes]
        scored.append(ScoredImage(truths, predictions))
    return coco_ap50(scored) or 0.0


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    context: _CheckpointContext,
    iteration: int,
    val_ap50: float | None,
) -> None:
    """Write the model and its resolved config atomically, plus ``<stem>_config.json`` beside it."""
    path = Path(path)
    state_dict = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    description = {
        "format": CHECKPOINT_FORMAT,
        "model_config": context.model_config,
        "config": to_dict(context.params),
        "init_source": context.init_source,
        "iteration": iteration,
        "val_ap50": val_ap50,
        "train_images": [f"{i.root}/{i.file_name}" for i in context.train_images],
        "val_images": [f"{i.root}/{i.file_name}" for i in context.val_images],
    }
    buffer = io.BytesIO()
    torch.save({**description, "state_dict": state_dict}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    write_json(path.with_name(f"{path.stem}_config.json"), description)


@dataclass(frozen=True)
class _ScoredBox:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float


def _prepare_all(
    images: Sequence[LabelledImage], roots: Mapping[str, Any], max_side_px: int, skips: SkipCounter
) -> list[Sample]:
    samples = []
    for image in images:
        try:
            samples.append(prepare_sample(image, roots, max_side_px))
        except ImageError as error:
            skips.skip(image.file_name, error.reason, str(error))
        except FileNotFoundError as error:
            skips.skip(image.file_name, "image_not_found", str(error))
    return samples


def _make_optimizer(params: FinetuneParams, model: torch.nn.Module) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if params.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.SGD(trainable, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)


def _check_finite(loss_parts: Mapping[str, torch.Tensor], iteration: int) -> None:
    values = {name: float(value.detach()) for name, value in loss_parts.items()}
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"{bad[0]} is {values[bad[0]]} at iteration {iteration}; all losses: {values}. "
            "Lower finetune_detector.lr or raise warmup_iterations"
        )


def _log_progress(
    params: FinetuneParams,
    iteration: int,
    result: FinetuneResult,
    loss_parts: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    start: float,
    live: Any,
) -> None:
    elapsed = time.perf_counter() - start
    images_per_second = result.images_seen / elapsed if elapsed > 0 else 0.0
    eta = timedelta(seconds=round(elapsed / iteration * (params.max_iterations - iteration)))
    window = result.losses[-params.log_every_iterations :]
    parts = " ".join(f"{name} {float(value.detach()):.3f}" for name, value in loss_parts.items())
    logger.info(
        "iteration %d/%d | images_seen %d | loss %.4f (mean of last %d) | %s | lr %.2e | %.2f img/s | ETA %s",
        iteration, params.max_iterations, result.images_seen, sum(window) / len(window), len(window),
        parts, optimizer.param_groups[0]["lr"], images_per_second, eta,
    )
    if live is not None:
        live.step = iteration
        live.log_metric("train/loss", sum(window) / len(window))
        for name, value in loss_parts.items():
            live.log_metric(f"train/{name}", float(value.detach()))


def _collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def _cycle(loader: DataLoader):
    while True:
        yield from loader
