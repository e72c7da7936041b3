"""The ``filter`` section of ``params.yaml``: crop policy, quality checks and dedupe."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import param

RESIZE_FILTERS = ("area", "lanczos", "bicubic", "bilinear")
HASH_METHODS = ("phash", "dhash", "average_hash", "whash")


@dataclass
class FilterParams:
    image_size: int = param(
        64, min=8, max=1024, help="side in pixels of the square crops written to faces.npy"
    )

    # Which boxes to crop.
    detector: str = param(
        "ensemble",
        help="crop from the detections.csv rows with this detector name: 'ensemble' for "
        "the fused boxes, or a single member such as 'cascade'",
    )
    min_agreement: int = param(
        1, min=1, help="drop boxes supported by fewer detectors (the 'agreement' column)"
    )
    min_score: float = param(0.0, help="drop boxes whose detector score is below this value")
    box_refiner: str = param(
        "none",
        help="name in pipeline.filter.BOX_REFINERS of a hook that moves each face box "
        "before cropping, for example to re-centre it on a segmentation mask",
    )
    mask_checkpoint_path: str = param(
        "", help="finetune_detector checkpoint that box_refiner 'maskrcnn' segments faces with"
    )

    # Crop geometry. Margins are fractions of the face box's height (top, bottom) or
    # width (each side). The defaults extend the box 10% upward, because the LBP
    # cascade's box cuts off the top of the hair. A portrait crop with hair and chin is
    # roughly margin_top 0.4, margin_bottom 0.2 and margin_side 0.25.
    margin_top: float = param(0.1, min=0.0, max=2.0, help="crop margin above the box, x box height")
    margin_bottom: float = param(
        0.0, min=0.0, max=2.0, help="crop margin below the box, x box height"
    )
    margin_side: float = param(
        0.0, min=0.0, max=2.0, help="crop margin left and right of the box, each, x box width"
    )
    square_mode: str = param(
        "expand",
        choices=["expand", "trim", "stretch"],
        help="how the margin box becomes square: 'expand' grows the shorter side about "
        "the centre (nothing of the face is lost), 'trim' shrinks the longer side about "
        "the centre, 'stretch' keeps the box and lets the resize change the aspect ratio",
    )
    out_of_frame: str = param(
        "shift",
        choices=["shift", "pad_edge", "pad_constant", "drop"],
        help="crops reaching outside the image: 'shift' moves the crop inside (and shrinks "
        "it about its centre when it is larger than the image), 'pad_edge' repeats the "
        "border pixels, 'pad_constant' fills with pad_value, 'drop' drops the crop",
    )
    pad_value: int = param(0, min=0, max=255, help="fill value of the 'pad_constant' policy")
    max_pad_fraction: float = param(
        0.25,
        min=0.0,
        max=1.0,
        help="with a pad policy, drop crops whose area outside the image exceeds this fraction",
    )
    resize_filter: str = param(
        "area",
        choices=list(RESIZE_FILTERS),
        help="filter that resizes crops to image_size: 'area' averages source pixels "
        "(crops smaller than image_size are enlarged with 'bicubic' instead), 'lanczos', "
        "'bicubic', 'bilinear'; all are Pillow's antialiased filters",
    )

    # Quality checks.
    min_face_px: int = param(
        32, min=1, help="drop boxes whose shorter side, in source pixels, is below this"
    )
    blur_on: str = param(
        "resized",
        choices=["resized", "original"],
        help="compute the blur score on the grayscale crop after resizing to image_size "
        "('resized', comparable across source resolutions) or at source resolution ('original')",
    )
    # The default suits image_size 64 with blur_on 'resized'. On 64 px crops of real
    # anime faces, sharp crops scored 700 or more. The same crops blurred with a
    # Gaussian of sigma 1.5 px scored about 80, and shrunk to 24 px and enlarged back
    # to 64 px they scored about 290 (medians).
    min_laplacian_var: float = param(
        200.0,
        min=0.0,
        help="drop crops whose blur score, the variance of the 3x3 Laplacian of the "
        "grayscale crop (0-255 units), is below this; 0 keeps every crop",
    )
    hash_method: str = param(
        "phash", choices=list(HASH_METHODS), help="imagehash function for near duplicates, 64 bits"
    )
    near_duplicate_max_distance: int | None = param(
        4,
        min=0,
        max=64,
        help="drop a crop whose hash is within this Hamming distance of a kept crop; "
        "null turns the near-duplicate check off (exact duplicates are always dropped)",
    )
    duplicate_keep: str = param(
        "largest",
        choices=["largest", "sharpest", "first"],
        help="which crop of a duplicate group is kept: the largest face box, the highest "
        "blur score, or the first in manifest order",
    )

    preview_count: int = param(64, min=1, max=1024, help="number of kept crops in the preview grid")
