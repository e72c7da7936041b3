"""Mask R-CNN face detector: model builders, the ``maskrcnn`` ensemble member and crop refinement.

The model has two classes, background and face. Two architectures are registered in
MASKRCNN_ARCHITECTURES: torchvision's ``maskrcnn_resnet50_fpn_v2`` (``resnet50_fpn_v2``,
the default) and a lighter CPU variant (``mobilenet_v3_large_fpn``) that puts torchvision's
Mask R-CNN heads on the MobileNetV3-Large FPN backbone of ``fasterrcnn_mobilenet_v3_large_fpn``.
The ``finetune_detector`` stage writes a checkpoint that :class:`MaskRCNNDetector` loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.ops import misc as misc_ops

from pipeline.config import ConfigError, param
from pipeline.detect.base import DETECTOR_PARAMS, DETECTORS, Box
from pipeline.labels.model import box_iou
from pipeline.registry import Registry
from pipeline.devices import resolve_device

logger = logging.getLogger(__name__)

CLASS_NAMES = ["background", "face"]
CHECKPOINT_FORMAT = "animeface-maskrcnn-1"

# Builder(pretrained, trainable_backbone_layers, **MaskRCNN keyword arguments) -> MaskRCNN.
MASKRCNN_ARCHITECTURES: Registry[Callable[..., MaskRCNN]] = Registry("Mask R-CNN architecture")

RESNET_LAYERS_BY_TRAINABLE_COUNT = ["layer4", "layer3", "layer2", "layer1", "conv1"]


@MASKRCNN_ARCHITECTURES.register("resnet50_fpn_v2")
def build_resnet50_fpn_v2(pretrained: bool, trainable_backbone_layers: int, **kwargs: Any) -> MaskRCNN:
    """Build torchvision's ``maskrcnn_resnet50_fpn_v2`` with two classes and random weights.

    With ``pretrained`` the ResNet layers beyond ``trainable_backbone_layers`` (0-5, counted
    from ``layer4`` down) are frozen, as torchvision does for pretrained backbones. From
    scratch every layer trains.
    """
    model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=len(CLASS_NAMES), **kwargs)
    if pretrained:
        layers_to_train = RESNET_LAYERS_BY_TRAINABLE_COUNT[:trainable_backbone_layers]
        if trainable_backbone_layers == 5:
            layers_to_train.append("bn1")
        for name, parameter in model.backbone.body.named_parameters():
            if not any(name.startswith(layer) for layer in layers_to_train):
                parameter.requires_grad_(False)
    return model


@MASKRCNN_ARCHITECTURES.register("mobilenet_v3_large_fpn")
def build_mobilenet_v3_large_fpn(pretrained: bool, trainable_backbone_layers: int, **kwargs: Any) -> MaskRCNN:
    """Build Mask R-CNN on the MobileNetV3-Large FPN backbone, with two classes.

    Backbone, anchors and box heads match torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``,
    so its COCO weights load into everything except the class predictor and mask head.
    With ``pretrained`` batch norm is frozen and ``trainable_backbone_layers`` (0-6) apply.
    """
    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large",
        weights=None,
        fpn=True,
        norm_layer=misc_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d,
        trainable_layers=trainable_backbone_layers if pretrained else 6,
    )
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    return MaskRCNN(
        backbone,
        num_classes=len(CLASS_NAMES),
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, aspect_ratios),
        **kwargs,
    )


def build_model(
    architecture: str,
    pretrained: bool,
    trainable_backbone_layers: int,
    min_size_px: int,
    max_size_px: int,
    test_proposals_per_image: int = 1000,
    **kwargs: Any,
) -> MaskRCNN:
    """Build a two-class Mask R-CNN.

    ``min_size_px``/``max_size_px`` set its input resize, and ``test_proposals_per_image``
    the RPN proposals kept per image in eval mode (torchvision's default is 1000; fewer
    run faster on CPU). Other keyword arguments go to torchvision's MaskRCNN.
    """
    builder = MASKRCNN_ARCHITECTURES.get(architecture)
    return builder(
        pretrained,
        trainable_backbone_layers,
        min_size=min_size_px,
        max_size=max_size_px,
        rpn_pre_nms_top_n_test=test_proposals_per_image,
        rpn_post_nms_top_n_test=test_proposals_per_image,
        **kwargs,
    )


def load_matching_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Load the tensors of ``state_dict`` whose name and shape match ``model``.

    Returns the number loaded and the sorted names of model tensors left at their
    initial values (for example the class predictor when the class count differs).
    """
    own = model.state_dict()
    matching = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return len(matching), sorted(set(own) - set(matching))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by the finetune_detector stage."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Mask R-CNN checkpoint {str(path)!r} not found; run the finetune_detector stage "
            "or set detect.maskrcnn.checkpoint_path"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # torch.load raises many types on a file that is not a checkpoint (IndexError on
        # a CSV, UnpicklingError, RuntimeError on a truncated zip), so all become one.
        raise ValueError(
            f"{path} is not a checkpoint of the finetune_detector stage "
            f"(torch.load failed: {type(error).__name__}: {error})"
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a checkpoint of the finetune_detector stage "
            f"(expected format {CHECKPOINT_FORMAT!r})"
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> MaskRCNN:
    """Rebuild the model a checkpoint describes and load its weights."""
    model = build_model(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model


@DETECTOR_PARAMS.register("maskrcnn")
@dataclass
class MaskRCNNMemberParams:
    """Settings of the ``maskrcnn`` ensemble member (``detect.maskrcnn``)."""

    checkpoint_path: str = param("", help="checkpoint written by the finetune_detector stage")
    score_threshold: float = param(0.5, min=0.0, max=1.0, help="lowest face score kept")
    mask_threshold: float = param(0.5, min=0.0, max=1.0, help="mask probability counted as face")
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    min_face_px: int = param(0, min=0, max=4096, help="boxes narrower or shorter than this are dropped")
    resize_min_side_px: int = param(
        0, min=0, max=4096, help="shorter image side at inference; 0 keeps the size it was trained at"
    )
    resize_max_side_px: int = param(
        0, min=0, max=8192, help="cap on the longer image side at inference; 0 keeps the trained size"
    )


@dataclass(frozen=True)
class FaceInstance:
    """A detected face with its instance mask (bool, same height and width as the image)."""

    box: Box
    mask: np.ndarray


class MaskRCNNDetector:
    """A fine-tuned Mask R-CNN behind the Detector interface, with masks on request."""

    name = "maskrcnn"

    def __init__(
        self,
        model: MaskRCNN,
        device: torch.device,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        min_face_px: int = 0,
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.min_face_px = min_face_px

    @classmethod
    def from_params(cls, params: MaskRCNNMemberParams) -> "MaskRCNNDetector":
        if not params.checkpoint_path:
            raise ConfigError(
                "detect.maskrcnn.checkpoint_path is empty; point it at the checkpoint the "
                "finetune_detector stage writes"
            )
        model = model_from_checkpoint(load_checkpoint(params.checkpoint_path))
        if params.resize_min_side_px:
            model.transform.min_size = (params.resize_min_side_px,)
        if params.resize_max_side_px:
            model.transform.max_size = params.resize_max_side_px
        return cls(
            model,
            resolve_device(params.device, "detect.maskrcnn.device"),
            params.score_threshold,
            params.mask_threshold,
            params.min_face_px,
        )

    @torch.inference_mode()
    def detect_instances(self, image: np.ndarray) -> list[FaceInstance]:
        """Return faces with score >= the threshold in an RGB uint8 (H, W, 3) image."""
        # torch.tensor copies, so read-only arrays from load_rgb are fine.
        tensor = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).div_(255.0)
        output = self.model([tensor.to(self.device)])[0]
        instances = []
        for box, score, mask in zip(output["boxes"], output["scores"], output["masks"]):
            score = float(score)
            x1, y1, x2, y2 = (float(v) for v in box)
            if score < self.score_threshold:
                continue
            if min(x2 - x1, y2 - y1) < self.min_face_px:
                continue
            instances.append(
                FaceInstance(
                    Box(x1, y1, x2, y2, score, self.name),
                    (mask[0] >= self.mask_threshold).cpu().numpy(),
                )
            )
        return instances

    def detect(self, image: np.ndarray) -> list[Box]:
        return [instance.box for instance in self.detect_instances(image)]


@DETECTORS.register("maskrcnn")
def make_maskrcnn_detector(params: MaskRCNNMemberParams) -> MaskRCNNDetector:
    return MaskRCNNDetector.from_params(params)


@dataclass(frozen=True)
class CropRefinement:
    """A square face crop: centre and side in image pixels, and what it was derived from.

    ``source`` is ``"mask"`` when a Mask R-CNN instance matched the box and ``"box"``
    when none did, in which case the crop is the box's own centre and longer side.
    """

    center_x: float
    center_y: float
    side_px: float
    source: str
    mask_pixels: int = 0


def refine_face_crop(
    detector: MaskRCNNDetector,
    image: np.ndarray,
    box: Box,
    context_fraction: float = 0.5,
    min_iou: float = 0.3,
) -> CropRefinement:
    """Centre and size a square face crop on the Mask R-CNN mask of the face in ``box``.

    Boxes from the cascade or animeface often cut off hair or chin, or sit off-centre.
    This runs ``detector`` on the box enlarged by ``context_fraction`` of its size on
    every side. It takes the instance whose box has the highest IoU with ``box`` (at
    least ``min_iou``) and returns the centre and longer side of that instance's mask
    bounding box. With no matching instance, or an empty mask, it returns the box's own
    centre and longer side with ``source="box"``, so a caller can always crop.
    """
    height, width = image.shape[:2]
    fallback = CropRefinement(
        (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2, max(box.width, box.height), "box"
    )
    margin_x, margin_y = box.width * context_fraction, box.height * context_fraction
    left, top = max(0, int(box.x1 - margin_x)), max(0, int(box.y1 - margin_y))
    right = min(width, int(np.ceil(box.x2 + margin_x)))
    bottom = min(height, int(np.ceil(box.y2 + margin_y)))
    if right - left < 2 or bottom - top < 2:
        return fallback

    query = Box(box.x1 - left, box.y1 - top, box.x2 - left, box.y2 - top, box.score, box.detector)
    best_iou, best = 0.0, None
    for instance in detector.detect_instances(image[top:bottom, left:right]):
        iou = box_iou(query, instance.box)
        if iou > best_iou:
            best_iou, best = iou, instance
    if best is None or best_iou < min_iou:
        return fallback

    rows, columns = np.nonzero(best.mask)
    if rows.size == 0:
        return fallback
    mask_x1, mask_x2 = columns.min(), columns.max() + 1
    mask_y1, mask_y2 = rows.min(), rows.max() + 1
    return CropRefinement(
        left + (mask_x1 + mask_x2) / 2,
        top + (mask_y1 + mask_y2) / 2,
        float(max(mask_x2 - mask_x1, mask_y2 - mask_y1)),
        "mask",
        int(rows.size),
    )



def make_mask_box_refiner(
    detector: MaskRCNNDetector, context_fraction: float = 0.5, min_iou: float = 0.3
) -> Callable[[np.ndarray, Sequence[float]], tuple[float, float, float, float]]:
    """Return ``refine(image, (x1, y1, x2, y2)) -> (x1, y1, x2, y2)`` built on
    :func:`refine_face_crop`, the hook shape of the filter stage's box refiners.

    The returned box is the square crop around the mask. Without a matching mask it is
    the square around the input box's centre, with the box's longer side.
    """

    def refine(image: np.ndarray, xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        crop = refine_face_crop(detector, image, Box(x1, y1, x2, y2, 1.0, "input"), context_fraction, min_iou)
        half = crop.side_px / 2
        return (crop.center_x - half, crop.center_y - half, crop.center_x + half, crop.center_y + half)

    return refine
