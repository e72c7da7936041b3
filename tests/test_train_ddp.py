"""Data-parallel training with 2 CPU processes started by torchrun, on the gloo backend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from pipeline.config import to_dict
from pipeline.train.checkpoint import load_checkpoint
from pipeline.train.models import load_generator
from train_support import pack_faces, tiny_params

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_torchrun_two_processes_train(faces_dir, tmp_path):
    faces_path = pack_faces(faces_dir, tmp_path / "faces.npy", count=64, size=32)
    # 64 crops over 2 processes of 16 per batch: 2 steps per epoch.
    config = tiny_params(epochs=2, deterministic=False)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump({"train": to_dict(config)}))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
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
        str(params_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-4000:]

    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["config"]["world_size"] == 2
    assert state["step"] == 4
    assert state["images_seen"] == 4 * 16 * 2
    assert len(state["rng_states"]) == 2
    assert not torch.equal(state["rng_states"][0]["cpu"], state["rng_states"][1]["cpu"])

    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert summary["replica_weights_identical"] is True
    assert summary["images_seen"] == 128
    generator = load_generator(tmp_path / "models" / "generator.pt")
    assert generator(torch.randn(2, generator.latent_dim)).shape == (2, 3, 32, 32)
    # Only rank 0 writes DVCLive files and logs progress.
    assert result.stderr.count("training on 64 crops") == 1
