"""The ``detect`` section of params.yaml: which members run, their settings and the fusion.

Each member has its own nested section (``detect.cascade``, ``detect.animeface``,
``detect.maskrcnn``), which is what its factory in ``DETECTORS`` receives.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError, param
from pipeline.images import DEFAULT_MAX_PIXELS

# Public copy of the LBP anime-face cascade and the sha256 of the file it served when
# this project pinned it.
CASCADE_URL = (
    "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/master/"
    "lbpcascade_animeface.xml"
)
CASCADE_SHA256 = "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"


@dataclass
class CascadeParams:
    """OpenCV LBP cascade member (``detect.cascade``)."""

    # Filled from detect.cascade_path by DetectParams, so the member factory gets the path.
    cascade_path: str = param("", help="prefer detect.cascade_path")
    scale_factor: float = param(1.1, min=1.01, max=2.0, help="image pyramid step")
    min_neighbors: int = param(5, min=0, max=500, help="overlapping hits needed per face")
    min_size_px: int = param(24, min=1, help="smallest face side searched, in pixels")
    equalize_histogram: bool = param(True, help="equalise the grey image before detection")
    # The cascade outputs no confidence. With "neighbors" a face grouped from n raw hits
    # scores min(1, n / neighbors_for_full_score). With "constant" every face scores
    # constant_score.
    score: str = param("neighbors", choices=["neighbors", "constant"])
    neighbors_for_full_score: int = param(30, min=1)
    constant_score: float = param(0.5, min=0.01, max=1.0)
    max_side_px: int = param(0, min=0, help="shrink larger images to this side first; 0 = off")
    box_scale: float = param(1.0, min=0.25, max=4.0, help="scale boxes about their centre")


@dataclass
class AnimefaceParams:
    """animeface (nvxs) member (``detect.animeface``)."""

    min_likelihood: float = param(0.5, min=0.0, max=1.0, help="drop faces scored below this")
    max_side_px: int = param(0, min=0, help="shrink larger images to this side first; 0 = off")
    # animeface boxes sit inside the cascade's: on 11 faces that both found in sample
    # pictures, the cascade box side was 1.2 to 1.65 times the animeface one (median
    # about 1.35, an estimate). Scaling by 1.35 gives the members the same framing, so
    # fusion can match them at IoU 0.5.
    box_scale: float = param(1.35, min=0.25, max=4.0, help="scale boxes about their centre")


@dataclass
class FusionParams:
    """Fusion of member boxes into ensemble boxes (``detect.fusion``)."""

    # "wbf": weighted boxes fusion from the ensemble-boxes package, which averages the
    # coordinates of matched boxes. "voting": keeps the best box of each cluster.
    method: str = param("wbf", choices=["wbf", "voting"])
    weights: dict[str, float] = param({}, help="member name -> weight; unlisted members weigh 1")
    iou_threshold: float = param(0.5, min=0.0, max=1.0, help="boxes match above this IoU")
    skip_threshold: float = param(0.0, min=0.0, max=1.0, help="ignore member boxes scored below")
    min_agreement: int = param(1, min=1, help="keep fused boxes found by at least K members")


@dataclass
class DetectParams:
    """The whole ``detect`` section."""

    detectors: list[str] = param(["cascade", "animeface"], help="members, by registered name")
    cascade_path: str = param("", help="local lbpcascade_animeface.xml; empty = download once")
    max_pixels: int = param(DEFAULT_MAX_PIXELS, min=1, help="skip larger images")
    # Detectors miss faces that fill the whole frame, as in 64x64 crops: on 60 such crops
    # a 25% replicated border raised the cascade from 52 to 59 hits and animeface from 30
    # to 53.
    small_image_side_px: int = param(128, min=0, help="pad images whose shorter side is below")
    small_image_pad_fraction: float = param(0.25, min=0.0, max=2.0, help="border per side")
    cascade: CascadeParams = param(CascadeParams)
    animeface: AnimefaceParams = param(AnimefaceParams)
    # Validated by the params class the maskrcnn module registers in DETECTOR_PARAMS.
    maskrcnn: dict[str, Any] = param({})
    fusion: FusionParams = param(FusionParams)

    def __post_init__(self) -> None:
        self._check_detectors()
        self._check_fusion()
        self._share_cascade_path()

    def member_section(self, name: str) -> Any:
        """Return detect.<name>, or an empty mapping for a member without a section."""
        return getattr(self, name, None) if name in _MEMBER_SECTIONS else {}

    def _check_detectors(self) -> None:
        if not self.detectors:
            raise ConfigError("detect.detectors is empty; list at least one detector")
        duplicates = sorted({name for name in self.detectors if self.detectors.count(name) > 1})
        if duplicates:
            raise ConfigError(f"detect.detectors lists {duplicates[0]!r} more than once")

    def _check_fusion(self) -> None:
        for name, weight in self.fusion.weights.items():
            if name not in self.detectors:
                raise ConfigError(
                    f"detect.fusion.weights.{name} names no member of detect.detectors "
                    f"{self.detectors}"
                )
            if not (math.isfinite(weight) and weight > 0):
                raise ConfigError(
                    f"detect.fusion.weights.{name} = {weight!r} must be a positive number"
                )
        if self.fusion.min_agreement > len(self.detectors):
            raise ConfigError(
                f"detect.fusion.min_agreement = {self.fusion.min_agreement} is above the "
                f"{len(self.detectors)} members in detect.detectors"
            )

    def _share_cascade_path(self) -> None:
        nested = self.cascade.cascade_path
        if nested and self.cascade_path and nested != self.cascade_path:
            raise ConfigError(
                f"detect.cascade_path = {self.cascade_path!r} and detect.cascade.cascade_path "
                f"= {nested!r} differ; set only detect.cascade_path"
            )
        if self.cascade_path:
            self.cascade = dataclasses.replace(self.cascade, cascade_path=self.cascade_path)


_MEMBER_SECTIONS = ("cascade", "animeface", "maskrcnn")
