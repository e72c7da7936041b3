"""Parameters of the ``finetune_detector`` and ``evaluate_detector`` stages."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import param

ARCHITECTURE_NAMES = ["resnet50_fpn_v2", "mobilenet_v3_large_fpn"]
INIT_MODES = ["auto", "coco", "checkpoint", "scratch"]


@dataclass
class AugmentParams:
    """Training augmentation (``finetune_detector.augment``)."""

    hflip_probability: float = param(0.5, min=0.0, max=1.0)
    scale_min: float = param(0.75, min=0.1, max=4.0, help="smallest random rescale factor")
    scale_max: float = param(1.25, min=0.1, max=4.0, help="largest random rescale factor")
    color_jitter: float = param(
        0.2, min=0.0, max=1.0, help="brightness, contrast and saturation jitter strength"
    )
    hue_jitter: float = param(0.02, min=0.0, max=0.5)
    grayscale_probability: float = param(
        0.2, min=0.0, max=1.0, help="chance of a grey picture, as in manga pages"
    )


@dataclass
class FinetuneParams:
    """The ``finetune_detector`` section."""

    architecture: str = param("resnet50_fpn_v2", choices=ARCHITECTURE_NAMES)
    # auto: init_checkpoint when set, else COCO weights if cached or download_weights is
    # true, else random weights (logged as a WARNING, much weaker).
    init: str = param("auto", choices=INIT_MODES)
    init_checkpoint: str = param("", help="local .pth/.pt with weights to start from")
    download_weights: bool = param(
        True, help="let torchvision download COCO weights when they are not cached"
    )
    trainable_backbone_layers: int = param(
        3, min=0, max=6, help="backbone stages trained when starting from COCO weights"
    )
    min_size_px: int = param(512, min=32, max=2048, help="shorter image side fed to the model")
    max_size_px: int = param(768, min=32, max=4096, help="cap on the longer image side")
    batch_size: int = param(2, min=1, max=64)
    max_iterations: int = param(1000, min=1)
    optimizer: str = param("sgd", choices=["sgd", "adamw"])
    lr: float = param(0.01, min=1e-7, max=1.0)
    momentum: float = param(0.9, min=0.0, max=0.999, help="SGD only")
    weight_decay: float = param(1e-4, min=0.0, max=0.5)
    warmup_iterations: int = param(50, min=0, help="linear learning-rate warm-up")
    grad_clip_norm: float = param(10.0, min=0.0, help="0 turns gradient clipping off")
    val_fraction: float = param(0.2, min=0.0, max=0.9, help="share of training images for validation")
    seed: int = param(0, min=0)
    eval_every_iterations: int = param(100, min=1, help="validation AP interval")
    early_stopping_patience: int = param(
        5, min=0, help="validations without AP gain before stopping; 0 = never stop early"
    )
    log_every_iterations: int = param(10, min=1)
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    num_workers: int = param(0, min=0, max=32, help="data loader worker processes")
    # Sampling sizes of the RPN and box head; torchvision's defaults are 256 and 512.
    # Smaller values train faster on CPU at some cost in quality.
    rpn_batch_size_per_image: int = param(256, min=8, max=4096)
    box_batch_size_per_image: int = param(512, min=8, max=4096)
    test_proposals_per_image: int = param(
        1000, min=10, max=5000, help="RPN proposals per image at validation and inference"
    )
    augment: AugmentParams = param(AugmentParams)


@dataclass
class EvaluateDetectorParams:
    """The ``evaluate_detector`` section."""

    members: list[str] = param(
        ["cascade", "animeface", "maskrcnn"], help="detectors scored alone, by registered name"
    )
    # Ensemble name -> members fused with detect.fusion; names must differ from members.
    ensembles: dict[str, list[str]] = param({"ensemble": ["cascade", "animeface", "maskrcnn"]})
    split: str = param("test", choices=["test", "all"], help="labelled images to score on")
    iou_threshold: float = param(0.5, min=0.05, max=0.95)
    loose_iou_threshold: float = param(
        0.3, min=0.05, max=0.95, help="second recall at this IoU, for faces framed unlike the label"
    )
    ap_min_score: float = param(
        0.05, min=0.0, max=1.0, help="maskrcnn keeps boxes down to this score for AP and PR curves"
    )
    ensemble_operating_threshold: float = param(
        0.0, min=0.0, max=1.0, help="fused boxes scored below this do not count for precision/recall"
    )
    max_images: int = param(0, min=0, help="score at most this many images; 0 = all")
