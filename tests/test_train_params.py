from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import ConfigError, load_section, parse_section, to_dict
from pipeline.train.data import FacesError, FaceBatches, check_faces, load_faces
from pipeline.train.ddp import DistributedContext
from pipeline.train.losses import LOSSES
from pipeline.train.params import ARCHITECTURE_KEYS, EXECUTION_KEYS, TrainParams
from pipeline.train.runtime import resolve_runtime

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_params_yaml_lists_every_key():
    section = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train"]
    assert set(section) == set(to_dict(TrainParams()))
    config = load_section(TrainParams, "train", REPO_ROOT / "params.yaml")
    assert config.real_label_range == [0.7, 1.0]
    assert config.fake_label_range == [0.0, 0.3]
    assert config.loss == "bce"


def test_defaults_keep_original_recipe():
    config = TrainParams()
    assert config.ema is False
    assert config.spectral_norm is False
    assert config.diffaugment == []
    assert config.r1_gamma == 0.0
    assert config.d_steps_per_g_step == 1
    assert config.generator_dropout == 0.0
    assert config.discriminator_dropout > 0.0


def test_key_groups_name_real_keys():
    keys = set(to_dict(TrainParams())) | {"image_size", "resolved_device", "resolved_precision"}
    assert EXECUTION_KEYS <= keys
    assert ARCHITECTURE_KEYS <= keys
    assert not EXECUTION_KEYS & ARCHITECTURE_KEYS


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr_generator": -0.001}, r"train\.lr_generator = -0\.001 is below the minimum"),
        ({"lr_discriminator": 0}, r"train\.lr_discriminator = 0\.0 is below the minimum"),
        ({"beta1": 1.5}, r"train\.beta1 = 1\.5 is above the maximum"),
        ({"batch_size": 0}, r"train\.batch_size = 0 is below the minimum 1"),
        ({"epochs": 2.5}, r"train\.epochs must be an integer"),
        ({"discriminator_dropout": 1.0}, r"train\.discriminator_dropout = 1\.0 is above"),
        ({"leaky_relu_slope": -0.1}, r"train\.leaky_relu_slope = -0\.1 is below"),
        ({"label_flip_probability": 0.9}, r"train\.label_flip_probability = 0\.9 is above"),
        (
            {"real_label_range": [1.0, 0.7]},
            r"train\.real_label_range = \[1\.0, 0\.7\] must be \[low, high\]",
        ),
        ({"fake_label_range": [0.1]}, r"train\.fake_label_range = \[0\.1\] must be \[low, high\]"),
        (
            {"real_label_range": [0.7, 1.2]},
            r"train\.real_label_range\[1\] = 1\.2 is above the maximum",
        ),
        (
            {"loss": "wasserstein"},
            r"train\.loss = 'wasserstein' is not allowed; "
            r"choose one of \['bce', 'hinge', 'nonsaturating'\]",
        ),
        ({"diffaugment": ["color", "blur"]}, r"train\.diffaugment\[1\] = 'blur' is not allowed"),
        ({"mixed_precision": "fp8"}, r"train\.mixed_precision = 'fp8' is not allowed"),
        (
            {"device": "gpu"},
            r"train\.device = 'gpu' is not allowed; use auto, cpu, cuda, cuda:N or mps",
        ),
        ({"resume": "yes"}, r"train\.resume = 'yes' is not allowed"),
        ({"lr": 0.001}, r"unknown key train\.lr \(value 0\.001\); allowed keys in train"),
        ({"ema": "yes"}, r"train\.ema must be true or false"),
    ],
)
def test_bad_params_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(TrainParams, values, "train")


def test_loss_choices_match_registry():
    field_choices = TrainParams.__dataclass_fields__["loss"].metadata["choices"]
    assert list(field_choices) == LOSSES.names()


def test_fp16_on_cpu_rejected():
    config = parse_section(TrainParams, {"device": "cpu", "mixed_precision": "fp16"}, "train")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_runtime(config, DistributedContext())


def test_auto_precision_on_cpu_is_fp32():
    runtime = resolve_runtime(
        parse_section(TrainParams, {"device": "cpu"}, "train"), DistributedContext()
    )
    assert runtime.precision == "fp32"
    assert runtime.use_grad_scaler is False


def test_cuda_device_without_cuda_rejected(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    config = parse_section(TrainParams, {"device": "cuda"}, "train")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_runtime(config, DistributedContext())


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 32, 32, 3), np.float32), "dtype float32; expected uint8"),
        (np.zeros((4, 32, 32), np.uint8), r"shape \(4, 32, 32\); expected N x S x S x 3"),
        (np.zeros((4, 32, 48, 3), np.uint8), "expected N x S x S x 3"),
        (np.zeros((0, 32, 32, 3), np.uint8), "contains no faces"),
        (np.zeros((4, 48, 48, 3), np.uint8), "image size 48 is not supported"),
        (np.zeros((4, 8, 8, 3), np.uint8), "image size 8 is not supported"),
    ],
)
def test_bad_faces_arrays_rejected(array, message):
    with pytest.raises(FacesError, match=message):
        check_faces(array, "faces.npy")


def test_missing_faces_file_rejected(tmp_path):
    with pytest.raises(FacesError, match="not found; run the filter stage first"):
        load_faces(tmp_path / "faces.npy")


def test_non_npy_faces_file_rejected(tmp_path, faces_dir):
    # A PNG crop named like the array: not a .npy file at all.
    path = tmp_path / "faces.npy"
    path.write_bytes(
        next(
            (faces_dir / "jonathonyan__Anime-Face-Detection-and-Recognition" / "positive").glob(
                "*.png"
            )
        ).read_bytes()
    )
    with pytest.raises(FacesError, match="not a readable .npy array"):
        load_faces(path)


def test_truncated_faces_file_rejected(tmp_path):
    path = tmp_path / "faces.npy"
    np.save(path, np.zeros((8, 32, 32, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FacesError, match="not a readable .npy array"):
        load_faces(path)


def test_batch_larger_than_dataset_rejected():
    import torch

    faces = np.zeros((10, 32, 32, 3), np.uint8)
    with pytest.raises(FacesError, match=r"train\.batch_size = 16 is larger than the 10 crops"):
        FaceBatches(faces, batch_size=16, device=torch.device("cpu"), seed=0)
