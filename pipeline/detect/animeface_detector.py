"""animeface member: the nvxs anime-face detector from the ``animeface`` package."""

from __future__ import annotations

from importlib.metadata import version

import animeface
import numpy as np
from PIL import Image

from pipeline.detect.base import DETECTORS, Box
from pipeline.detect.geometry import check_rgb_image, make_box, shrink_to_max_side
from pipeline.detect.params import AnimefaceParams


def check_pillow_version() -> None:
    """Raise RuntimeError for the Pillow releases with which animeface finds no faces."""
    pillow_major = int(version("pillow").split(".")[0])
    if version("animeface") == "2.0.3" and pillow_major >= 12:
        # pyproject.toml records that animeface 2.0.3 finds no faces at all under
        # Pillow 12, so without this check the member would silently report zero faces.
        raise RuntimeError(
            f"animeface 2.0.3 finds no faces with Pillow {version('pillow')}; "
            "install pillow<12 as pyproject.toml pins it"
        )


class AnimefaceDetector:
    """Anime-face detector on the animeface package, scored by face likelihood."""

    name = "animeface"

    def __init__(self, params: AnimefaceParams) -> None:
        check_pillow_version()
        self.params = params

    def detect(self, image: np.ndarray) -> list[Box]:
        check_rgb_image(image)
        height, width = image.shape[:2]
        small, scale = shrink_to_max_side(image, self.params.max_side_px)

        boxes = []
        for face in animeface.detect(Image.fromarray(small)):
            if face.likelihood < self.params.min_likelihood:
                continue
            position = face.face.pos
            xyxy = (
                position.x * scale,
                position.y * scale,
                (position.x + position.width) * scale,
                (position.y + position.height) * scale,
            )
            box = make_box(
                xyxy, face.likelihood, self.name, (width, height), self.params.box_scale
            )
            if box is not None:
                boxes.append(box)
        return boxes


@DETECTORS.register("animeface")
def build_animeface(params: AnimefaceParams) -> AnimefaceDetector:
    return AnimefaceDetector(params)
