"""Filter stage: turn detected face boxes into a clean, deduplicated array of crops."""

from pipeline.filter.crops import CropBox, compute_crop_box, cut_crop, resize_crop
from pipeline.filter.params import FilterParams
from pipeline.filter.refiners import BOX_REFINERS
from pipeline.filter.run import NoCropsKeptError, filter_faces

__all__ = [
    "BOX_REFINERS",
    "CropBox",
    "FilterParams",
    "NoCropsKeptError",
    "compute_crop_box",
    "cut_crop",
    "filter_faces",
    "resize_crop",
]
