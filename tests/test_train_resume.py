"""A run killed with SIGKILL resumes from its last checkpoint and ends with the same weights."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import to_dict
from pipeline.train.checkpoint import load_checkpoint
from pipeline.train.loop import train
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
