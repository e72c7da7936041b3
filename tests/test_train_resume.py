"""A run killed with SIGKILL resumes from its last checkpoint and ends with the same weights."""

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import to_dict
from pipeline.train.checkpoint import load_checkpoint
from pipeline.train.loop import TrainingInterrupted, train
from pipeline.train.trainer import GanTrainer
from train_support import isolated_torch_settings, pack_faces, tiny_params

REPO_ROOT = Path(__file__).resolve().parent.parent

# Runs the train stage in a child process and SIGKILLs it right after step KILL_AFTER_STEP,
# so nothing gets a chance to clean up or flush.
KILLING_DRIVER = """
import os, runpy, signal, sys
import torch
torch.set_num_threads(1)
from pipeline.train.trainer import GanTrainer

kill_after_step = int(os.environ["KILL_AFTER_STEP"])
train_step = GanTrainer.train_step

def train_step_then_kill(self):
    train_step(self)
    if self.step == kill_after_step:
        os.kill(os.getpid(), signal.SIGKILL)

GanTrainer.train_step = train_step_then_kill
sys.argv = ["stages/train.py", *sys.argv[1:]]
runpy.run_path(os.path.join(os.environ["REPO_ROOT"], "stages", "train.py"), run_name="__main__")
"""


@pytest.fixture(autouse=True)
def torch_settings():
    with isolated_torch_settings():
        yield


def test_sigkill_resume_matches_uninterrupted_run(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    # bce draws random labels and flips, and EMA, dropout and horizontal flips add state,
    # so an RNG or optimiser state that is not restored changes the weights.
    config = tiny_params(epochs=3, checkpoint_every_steps=4, log_every_steps=1, ema=True)

    # Killed at step 7 of 12: the checkpoint from step 4 survives and 3 steps are lost.
    killed = tmp_path / "killed"
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump({"train": to_dict(config)}))
    driver = tmp_path / "driver.py"
    driver.write_text(KILLING_DRIVER)
    command = [
        sys.executable,
        str(driver),
        "--faces",
        str(faces_path),
        "--models",
        str(killed / "models"),
        "--checkpoints",
        str(killed / "checkpoints"),
        "--live",
        str(killed / "live"),
        "--params",
        str(params_path),
    ]
    env = {
        **os.environ,
        "KILL_AFTER_STEP": "7",
        "REPO_ROOT": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["step"] == 4
    assert not (killed / "models" / "generator.pt").exists()

    summary = train(config, faces_path, killed / "models", killed / "checkpoints", killed / "live")
    assert summary["resumed_from_step"] == 4

    uninterrupted = tmp_path / "uninterrupted"
    train(
        config,
        faces_path,
        uninterrupted / "models",
        uninterrupted / "checkpoints",
        uninterrupted / "live",
    )

    resumed_state = load_checkpoint(killed / "checkpoints" / "last.pt")
    straight_state = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")
    for part in ("generator", "discriminator"):
        for name, weight in straight_state[part].items():
            assert torch.equal(resumed_state[part][name], weight), f"{part}.{name} differs"
    for name, weight in straight_state["ema"]["module"].items():
        assert torch.equal(resumed_state["ema"]["module"][name], weight), f"ema.{name} differs"
    assert torch.equal(
        resumed_state["generator_optimizer"]["state"][0]["exp_avg"],
        straight_state["generator_optimizer"]["state"][0]["exp_avg"],
    )

    # The DVCLive history keeps one row per step: rows 5-7 logged before the kill were
    # dropped and logged again after the resume.
    with (killed / "live" / "plots" / "metrics" / "loss" / "generator.tsv").open() as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream, delimiter="\t")]
    assert steps == list(range(1, 13))


def read_history(live: Path) -> list[tuple[int, str]]:
    """Return (step, value) rows of the generator loss history."""
    with (live / "plots" / "metrics" / "loss" / "generator.tsv").open() as stream:
        rows = csv.DictReader(stream, delimiter="\t")
        return [(int(row["step"]), row["generator"]) for row in rows]


def test_resume_replaces_other_runs_history(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    run = tmp_path / "run"
    config = tiny_params(epochs=1, log_every_steps=1, checkpoint_every_steps=4)
    train(config, faces_path, run / "models", run / "checkpoints", run / "live")
    own_rows = read_history(run / "live")
    assert [step for step, _ in own_rows] == [1, 2, 3, 4]

    # As `dvc exp run` does, put the DVCLive folder of another experiment (other seed,
    # 12 steps) in place, then continue the checkpoint to 3 epochs.
    other = tmp_path / "other"
    other_config = tiny_params(epochs=3, log_every_steps=1, seed=7)
    train(other_config, faces_path, other / "models", other / "checkpoints", other / "live")
    shutil.rmtree(run / "live")
    shutil.copytree(other / "live", run / "live")

    summary = train(
        tiny_params(epochs=3, log_every_steps=1, checkpoint_every_steps=4),
        faces_path,
        run / "models",
        run / "checkpoints",
        run / "live",
    )
    assert summary["resumed_from_step"] == 4
    rows = read_history(run / "live")
    assert [step for step, _ in rows] == list(range(1, 13))
    assert rows[:4] == own_rows
    assert rows != read_history(other / "live")


def test_resume_restores_missing_history_rows(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    config = tiny_params(epochs=1, log_every_steps=1, checkpoint_every_steps=4)
    train(config, faces_path, tmp_path / "models", tmp_path / "checkpoints", tmp_path / "live")
    own_rows = read_history(tmp_path / "live")
    assert len(load_checkpoint(tmp_path / "checkpoints" / "last.pt")["metric_history"]) == 4

    # Keep only the rows of steps 1 and 4, as an older restored history would have them.
    for path in (tmp_path / "live" / "plots" / "metrics").rglob("*.tsv"):
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(lines[0] + lines[1] + lines[-1])

    summary = train(
        tiny_params(epochs=2, log_every_steps=1, checkpoint_every_steps=4),
        faces_path,
        tmp_path / "models",
        tmp_path / "checkpoints",
        tmp_path / "live",
    )
    assert summary["resumed_from_step"] == 4
    rows = read_history(tmp_path / "live")
    assert [step for step, _ in rows] == list(range(1, 9))
    assert rows[:4] == own_rows


def test_fresh_start_clears_stale_history(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    config = tiny_params(epochs=3, log_every_steps=1)
    train(config, faces_path, tmp_path / "models", tmp_path / "checkpoints", tmp_path / "live")

    summary = train(
        tiny_params(epochs=1, log_every_steps=1, resume="never"),
        faces_path,
        tmp_path / "models",
        tmp_path / "checkpoints",
        tmp_path / "live",
    )
    assert summary["resumed_from_step"] == -1
    assert [step for step, _ in read_history(tmp_path / "live")] == [1, 2, 3, 4]


# Runs the train stage in a child process that sends itself SIGINT, as Ctrl-C does, right
# after step INTERRUPT_AFTER_STEP.
INTERRUPTING_DRIVER = KILLING_DRIVER.replace("KILL_AFTER_STEP", "INTERRUPT_AFTER_STEP").replace(
    "signal.SIGKILL", "signal.SIGINT"
)


def test_ctrl_c_checkpoints_and_exits_130(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    config = tiny_params(epochs=3, checkpoint_every_steps=4, log_every_steps=1)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump({"train": to_dict(config)}))
    driver = tmp_path / "driver.py"
    driver.write_text(INTERRUPTING_DRIVER)
    command = [sys.executable, str(driver), "--faces", str(faces_path)]
    command += ["--params", str(params_path)]
    for name in ("models", "checkpoints", "live"):
        command += [f"--{name}", str(tmp_path / name)]
    env = {
        **os.environ,
        "INTERRUPT_AFTER_STEP": "5",
        "REPO_ROOT": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)

    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert "interrupted at step 5; rerun to resume from step 5" in result.stderr
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 5

    summary = train(
        config, faces_path, tmp_path / "models", tmp_path / "checkpoints", tmp_path / "live"
    )
    assert summary["resumed_from_step"] == 5
    assert [step for step, _ in read_history(tmp_path / "live")] == list(range(1, 13))


def test_interrupt_inside_step_keeps_last_checkpoint(faces_dir, tmp_path, monkeypatch):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    train_step = GanTrainer.train_step

    def train_step_interrupted_at_6(self):
        if self.step == 5:
            raise KeyboardInterrupt
        train_step(self)

    monkeypatch.setattr(GanTrainer, "train_step", train_step_interrupted_at_6)
    config = tiny_params(epochs=3, checkpoint_every_steps=4)
    with pytest.raises(TrainingInterrupted, match="at step 5; rerun to resume from step 4"):
        train(config, faces_path, tmp_path / "models", tmp_path / "checkpoints", tmp_path / "live")
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 4
