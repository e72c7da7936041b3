"""The reference_stats and evaluate stages end to end on real crops, QuickFid, and bad inputs.

The end-to-end test runs the real Inception network on a few dozen crops. The other tests
point ``reference_stats.inception_path`` at a tiny TorchScript stand-in with the same
input and output contract, so they run in seconds on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from pipeline.config import ConfigError, parse_section
from pipeline.evaluate.params import EvaluateParams, ReferenceStatsParams
from pipeline.evaluate.quick_fid import QuickFid
from pipeline.evaluate.reference import (
    load_faces,
    load_reference,
    run_reference_stats,
    save_reference,
)
from pipeline.evaluate.run import run_evaluate
from pipeline.evaluate.sampling import generate_images, untrained_copy
from pipeline.images import load_rgb
from pipeline.train.models import Generator

REPO_ROOT = Path(__file__).resolve().parent.parent

NUM_FACES = 24
NUM_SAMPLES = 12


def load_stage(name: str):
    """Import stages/<name>.py, which is a script folder rather than a package."""
    path = REPO_ROOT / "stages" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"stage_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate_stage = load_stage("evaluate")
reference_stats_stage = load_stage("reference_stats")


class TinyGenerator(nn.Module):
    """A stand-in generator: one linear layer from z to a 64x64 RGB image."""

    def __init__(self, latent_dim: int = 8, image_size: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.linear = nn.Linear(latent_dim, 3 * image_size * image_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        image = torch.tanh(self.linear(z))
        return image.view(len(z), 3, self.image_size, self.image_size)


class ReplayGenerator(nn.Module):
    """A generator that copies training crops in order: a model that memorised its data."""

    def __init__(self, crops: np.ndarray) -> None:
        super().__init__()
        self.latent_dim = 4
        pixels = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        self.register_buffer("crops", pixels)
        self.position = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(self.position, self.position + len(z)) % len(self.crops)
        self.position += len(z)
        return self.crops[rows]


class NanGenerator(TinyGenerator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z) * float("nan")


class FakeInception(nn.Module):
    """Same contract as the FID Inception network: (N, 3, 299, 299) in -1..1 to (N, 2048)."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(3 * 8 * 8, 2048)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images, 8).flatten(1)
        return torch.relu(self.projection(pooled))


def write_faces(faces_dir: Path, path: Path, count: int, offset: int = 0) -> Path:
    folder = faces_dir / "jonathonyan__Anime-Face-Detection-and-Recognition" / "positive"
    files = sorted(folder.glob("*.png"))[offset : offset + count]
    np.save(path, np.stack([load_rgb(file) for file in files]))
    return path


def write_params(path: Path, inception_path: str, cascade_path: Path, **evaluate) -> Path:
    """Write a params file with small sample counts; ``evaluate`` overrides that section."""
    params = {
        "detect": {"cascade_path": str(cascade_path)},
        "reference_stats": {"inception_path": inception_path, "batch_size": 12, "device": "cpu"},
        "evaluate": {
            "num_samples": NUM_SAMPLES,
            "batch_size": 12,
            "device": "cpu",
            "kid_num_subsets": 10,
            "nearest_pairs": 6,
            **evaluate,
        },
    }
    path.write_text(yaml.safe_dump(params))
    return path


def save_dcgan_generator(path: Path) -> Path:
    """Save a small DCGAN generator in the train stage's file format."""
    torch.manual_seed(1)
    generator = Generator(latent_dim=16, width=8, image_size=64)
    config = {"latent_dim": 16, "generator_width": 8, "generator_dropout": 0.0}
    torch.save(
        {"config": config, "state_dict": generator.state_dict(), "image_size": 64}, path
    )
    return path


@pytest.fixture(scope="module")
def fake_inception_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("network") / "fake_inception.pt"
    with warnings.catch_warnings():
        # torch 2.x marks TorchScript as deprecated; the real network is a TorchScript file.
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(FakeInception().eval()), str(path))
    return str(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, faces_dir) -> Path:
    folder = tmp_path_factory.mktemp("evaluate")
    write_faces(faces_dir, folder / "faces.npy", NUM_FACES)
    return folder


@pytest.fixture(scope="module")
def fake_reference(workspace, fake_inception_path) -> tuple[Path, ReferenceStatsParams]:
    params = ReferenceStatsParams(inception_path=fake_inception_path, batch_size=12, device="cpu")
    reference, _ = run_reference_stats(workspace / "faces.npy", params)
    path = workspace / "fake_reference.npz"
    save_reference(path, reference)
    return path, params


def evaluate_params(cascade_path: Path, **overrides) -> EvaluateParams:
    values = {
        "num_samples": NUM_SAMPLES,
        "batch_size": 12,
        "device": "cpu",
        "kid_num_subsets": 10,
        "nearest_pairs": 6,
        "face_cascade_path": str(cascade_path),
        **overrides,
    }
    return EvaluateParams(**values)


def test_stages_end_to_end_with_real_inception(faces_dir, cascade_path, tmp_path):
    # Few images, because the real network embeds about 10 images/s on 2 CPU cores.
    num_faces, num_samples = 16, 8
    params_path = write_params(tmp_path / "params.yaml", "", cascade_path, num_samples=num_samples)
    faces = write_faces(faces_dir, tmp_path / "faces.npy", num_faces)
    reference = tmp_path / "reference.npz"
    generator = save_dcgan_generator(tmp_path / "generator.pt")
    outputs = {name: tmp_path / name for name in ["evaluate.json", "samples.png", "nearest.png"]}

    code = reference_stats_stage.main(
        ["--faces", str(faces), "--out", str(reference),
         "--metrics", str(tmp_path / "reference_stats.json"), "--params", str(params_path)]
    )
    assert code == 0
    code = evaluate_stage.main(
        ["--generator", str(generator), "--faces", str(faces), "--reference", str(reference),
         "--out", str(outputs["evaluate.json"]), "--samples", str(outputs["samples.png"]),
         "--nearest", str(outputs["nearest.png"]), "--params", str(params_path)]
    )
    assert code == 0

    metrics = json.loads(outputs["evaluate.json"].read_text())
    for key in ["fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage"]:
        assert np.isfinite(metrics[key]), key
    assert 0.0 <= metrics["face_rate"] <= 1.0
    assert metrics["face_rate_real"] >= 0.9
    protocol = metrics["protocol"]
    assert protocol["num_samples"] == num_samples
    assert protocol["num_reference"] == num_faces
    assert protocol["resize"] == "bilinear_antialias"
    assert len(protocol["feature_extractor_sha256"]) == 64
    assert len(protocol["generator_sha256"]) == 64
    assert metrics["config"]["evaluate"]["face_cascade_path"] == str(cascade_path)
    assert metrics["floor"]["num_images_per_half"] == num_faces // 2
    assert metrics["ceiling"]["fid_untrained"] > metrics["floor"]["fid_real_halves"]
    assert metrics["skips"] == {}

    reference_metrics = json.loads((tmp_path / "reference_stats.json").read_text())
    assert reference_metrics["num_images"] == num_faces
    assert reference_metrics["images_per_second"] > 0
    with Image.open(outputs["samples.png"]) as grid:
        assert grid.size == (8 * 66 + 2, 1 * 66 + 2)
    with Image.open(outputs["nearest.png"]) as pairs:
        assert pairs.size == (6 * 66 + 2, 4 * 66 + 2)


def test_stand_in_generator_scores_finite(workspace, fake_reference, cascade_path):
    reference_path, reference_params = fake_reference
    torch.manual_seed(0)
    result = run_evaluate(
        TinyGenerator(),
        workspace / "faces.npy",
        reference_path,
        evaluate_params(cascade_path),
        reference_params,
    )
    metrics = result.metrics
    assert metrics["fid"] > 0
    assert metrics["face_rate"] == 0.0
    assert metrics["protocol"]["generator_class"] == "TinyGenerator"
    assert metrics["protocol"]["kid_subset_size"] == NUM_SAMPLES
    assert result.sample_grid.shape == (2 * 66 + 2, 8 * 66 + 2, 3)


def test_memorising_generator_is_flagged(workspace, fake_reference, cascade_path):
    reference_path, reference_params = fake_reference
    faces = load_faces(workspace / "faces.npy")
    result = run_evaluate(
        ReplayGenerator(faces),
        workspace / "faces.npy",
        reference_path,
        evaluate_params(cascade_path),
        reference_params,
    )
    metrics = result.metrics
    pixels = metrics["memorisation"]["pixel_space_rms_levels"]
    features = metrics["memorisation"]["inception_space"]
    assert pixels["generated_to_training"]["mean"] == 0.0
    assert pixels["share_below_training_p1"] == 1.0
    assert features["generated_to_training"]["mean"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["precision"] == 1.0
    assert metrics["face_rate"] >= 0.9
    # The top pair row shows a generated copy above the identical training crop.
    pairs = result.nearest_pairs_image
    np.testing.assert_array_equal(pairs[2:66, 2:66], pairs[68:132, 2:66])


def test_evaluate_is_reproducible(workspace, fake_reference, cascade_path):
    reference_path, reference_params = fake_reference
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        metrics = run_evaluate(
            TinyGenerator(),
            workspace / "faces.npy",
            reference_path,
            evaluate_params(cascade_path),
            reference_params,
        ).metrics
        runs.append({key: metrics[key] for key in ["fid", "kid_mean", "precision", "ceiling"]})
    assert runs[0] == runs[1]


def test_reference_from_other_faces_rejected(workspace, fake_reference, cascade_path, faces_dir):
    reference_path, reference_params = fake_reference
    other_faces = write_faces(faces_dir, workspace / "other_faces.npy", NUM_FACES, offset=50)
    with pytest.raises(ValueError, match="faces_sha256 .*rerun the reference_stats stage"):
        run_evaluate(
            TinyGenerator(), other_faces, reference_path, evaluate_params(cascade_path),
            reference_params,
        )


def test_reference_with_other_resize_rejected(workspace, fake_reference, cascade_path):
    reference_path, reference_params = fake_reference
    other = ReferenceStatsParams(
        inception_path=reference_params.inception_path, resize="nearest", device="cpu"
    )
    with pytest.raises(ValueError, match="resize = 'bilinear_antialias' but this run uses"):
        run_evaluate(
            TinyGenerator(), workspace / "faces.npy", reference_path,
            evaluate_params(cascade_path), other,
        )


def test_generator_size_mismatch_rejected(workspace, fake_reference, cascade_path):
    reference_path, reference_params = fake_reference
    with pytest.raises(ValueError, match="generator makes 32x32 images but the training crops"):
        run_evaluate(
            TinyGenerator(image_size=32), workspace / "faces.npy", reference_path,
            evaluate_params(cascade_path), reference_params,
        )


def test_non_finite_generator_output_rejected():
    with pytest.raises(ValueError, match="non-finite values in 4 of 4 images"):
        generate_images(NanGenerator(), 4, seed=0, batch_size=4)


def test_generator_without_latent_dim_rejected():
    with pytest.raises(TypeError, match="latent_dim"):
        generate_images(nn.Linear(2, 2), 4, seed=0, batch_size=4)


def test_generation_restores_training_mode():
    generator = TinyGenerator().train()
    generate_images(generator, 2, seed=0, batch_size=2)
    assert generator.training


def test_untrained_copy_is_seeded_and_separate():
    generator = TinyGenerator()
    first = untrained_copy(generator, seed=3)
    second = untrained_copy(generator, seed=3)
    assert torch.equal(first.linear.weight, second.linear.weight)
    assert not torch.equal(first.linear.weight, generator.linear.weight)


def test_corrupt_faces_file_rejected(tmp_path):
    path = tmp_path / "faces.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="not a readable .npy array"):
        load_faces(path)


def test_faces_file_with_wrong_dtype_rejected(tmp_path):
    path = tmp_path / "faces.npy"
    np.save(path, np.zeros((4, 64, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected uint8 N x S x S x 3"):
        load_faces(path)


def test_image_file_as_faces_rejected(tmp_path, faces_dir):
    png = next((faces_dir / "bchao1__Anime-Face-Dataset").glob("*.png"))
    with pytest.raises(ValueError, match="not a readable .npy array"):
        load_faces(png)


def test_missing_reference_names_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the reference_stats stage first"):
        load_reference(tmp_path / "missing.npz")


def test_unknown_params_key_rejected(tmp_path, workspace, cascade_path, caplog):
    params_path = write_params(tmp_path / "params.yaml", "", cascade_path, num_sampels=10)
    code = evaluate_stage.main(
        ["--generator", "g.pt", "--faces", "f.npy", "--reference", "r.npz",
         "--out", "o.json", "--samples", "s.png", "--nearest", "n.png",
         "--params", str(params_path)]
    )
    assert code == 2
    assert "unknown key evaluate.num_sampels" in caplog.text


def test_num_samples_not_above_prdc_k_rejected():
    with pytest.raises(ConfigError, match=r"evaluate\.num_samples = 5 must be larger than"):
        parse_section(EvaluateParams, {"num_samples": 5, "prdc_k": 5}, "evaluate")


def test_reference_subset_respects_max_images(workspace, fake_inception_path):
    params = ReferenceStatsParams(
        inception_path=fake_inception_path, max_images=10, batch_size=12, device="cpu"
    )
    reference, metrics = run_reference_stats(workspace / "faces.npy", params)
    assert reference.features.shape == (10, 2048)
    assert len(set(reference.indices.tolist())) == 10
    assert metrics["protocol"]["num_faces_total"] == NUM_FACES


def test_quick_fid_scores_copies_below_noise(workspace, fake_inception_path):
    faces = load_faces(workspace / "faces.npy")
    quick_fid = QuickFid(faces, NUM_FACES, fake_inception_path, "cpu", batch_size=12)
    torch.manual_seed(0)
    stand_in = TinyGenerator()
    noise_score = quick_fid.score(stand_in)
    copy_score = quick_fid.score(ReplayGenerator(faces))
    assert copy_score == pytest.approx(0.0, abs=1e-3)
    assert noise_score > 10 * max(copy_score, 1e-3)
    assert quick_fid.score(stand_in) == noise_score


def test_quick_fid_subsamples_large_reference(workspace, fake_inception_path):
    faces = load_faces(workspace / "faces.npy")
    quick_fid = QuickFid(
        faces, 4, fake_inception_path, torch.device("cpu"), max_reference_images=10
    )
    assert quick_fid.reference.count == 10


def test_quick_fid_missing_network_names_train_param(tmp_path):
    faces = np.zeros((4, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(FileNotFoundError, match=r"train\.fid_inception_path = "):
        QuickFid(faces, 4, str(tmp_path / "missing.pt"), "cpu")


def run_reference_stats_stage(tmp_path: Path, faces: Path, params_path: Path) -> int:
    return reference_stats_stage.main(
        ["--faces", str(faces), "--out", str(tmp_path / "reference.npz"),
         "--metrics", str(tmp_path / "reference_stats.json"), "--params", str(params_path)]
    )


def stage_error_lines(caplog, logger_name: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelname == "ERROR" and record.name == logger_name
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_reference_stats_cuda_without_gpu_exit_2(tmp_path, workspace, cascade_path, caplog):
    params_path = write_params(tmp_path / "params.yaml", "", cascade_path)
    params = yaml.safe_load(params_path.read_text())
    params["reference_stats"]["device"] = "cuda"
    params_path.write_text(yaml.safe_dump(params))

    code = run_reference_stats_stage(tmp_path, workspace / "faces.npy", params_path)

    assert code == 2
    errors = stage_error_lines(caplog, "reference_stats")
    assert len(errors) == 1
    assert "reference_stats.device = 'cuda'" in errors[0]
    assert not (tmp_path / "reference.npz").exists()


def test_reference_stats_non_torchscript_exit_2(tmp_path, workspace, cascade_path, caplog):
    not_a_network = tmp_path / "inception.csv"
    not_a_network.write_text("a,b\n1,2\n")
    params_path = write_params(tmp_path / "params.yaml", str(not_a_network), cascade_path)

    code = run_reference_stats_stage(tmp_path, workspace / "faces.npy", params_path)

    assert code == 2
    errors = stage_error_lines(caplog, "reference_stats")
    assert len(errors) == 1
    assert "reference_stats.inception_path" in errors[0]
    assert "is not a TorchScript Inception network" in errors[0]


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        (np.zeros((0, 64, 64, 3), dtype=np.uint8), "contains 0 crops; FID needs at least 2"),
        (np.zeros((4, 64, 64, 3), dtype=np.float32), "expected uint8 N x S x S x 3"),
    ],
    ids=["no_crops", "float32"],
)
def test_reference_stats_bad_faces_exit_2(
    tmp_path, fake_inception_path, cascade_path, caplog, faces, expected
):
    faces_path = tmp_path / "faces.npy"
    np.save(faces_path, faces)
    params_path = write_params(tmp_path / "params.yaml", fake_inception_path, cascade_path)

    code = run_reference_stats_stage(tmp_path, faces_path, params_path)

    assert code == 2
    errors = stage_error_lines(caplog, "reference_stats")
    assert len(errors) == 1
    assert expected in errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_cuda_without_gpu_exit_2(tmp_path, cascade_path, caplog):
    params_path = write_params(tmp_path / "params.yaml", "", cascade_path, device="cuda")
    code = evaluate_stage.main(
        ["--generator", "g.pt", "--faces", "f.npy", "--reference", "r.npz",
         "--out", "o.json", "--samples", "s.png", "--nearest", "n.png",
         "--params", str(params_path)]
    )
    assert code == 2
    errors = stage_error_lines(caplog, "evaluate")
    assert len(errors) == 1
    assert "evaluate.device = 'cuda'" in errors[0]


def test_evaluate_missing_cascade_exit_2(
    tmp_path, workspace, fake_reference, fake_inception_path, cascade_path, caplog
):
    reference_path, _ = fake_reference
    params_path = write_params(
        tmp_path / "params.yaml", fake_inception_path, cascade_path,
        face_cascade_path="/nonexistent.xml",
    )
    generator = save_dcgan_generator(tmp_path / "generator.pt")
    out = tmp_path / "evaluate.json"

    code = evaluate_stage.main(
        ["--generator", str(generator), "--faces", str(workspace / "faces.npy"),
         "--reference", str(reference_path), "--out", str(out),
         "--samples", str(tmp_path / "s.png"), "--nearest", str(tmp_path / "n.png"),
         "--params", str(params_path)]
    )

    assert code == 2
    errors = stage_error_lines(caplog, "evaluate")
    assert len(errors) == 1
    assert "cascade file '/nonexistent.xml' not found" in errors[0]
    assert "evaluate.face_cascade_path" in errors[0]
    assert not out.exists()
