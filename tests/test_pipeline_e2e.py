"""End-to-end runs of the DVC pipeline in a temporary git repository, on real pictures.

These take a few minutes on CPU, so they run a smoke profile: a few pictures, tiny
networks, one epoch and a small evaluation sample.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ["pipeline", "stages", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"]
# The GAN pipeline; the detector branch (labels, finetune_detector, evaluate_detector)
# trains a Mask R-CNN and is reproduced on its own.
GAN_TARGET = "evaluate"


def smoke_overrides(shared_dir: Path) -> dict[str, object]:
    """Params that make the whole pipeline run in a few minutes on 2 CPU cores."""
    return {
        "scrape.source": "folder",
        "scrape.folder": str(shared_dir / "data" / "raw"),
        "scrape.max_images": 24,
        "detect.cascade_path": str(shared_dir / "models" / "lbpcascade_animeface.xml"),
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.generator_width": 8,
        "train.discriminator_width": 8,
        "train.latent_dim": 16,
        "reference_stats.max_images": 64,
        "evaluate.num_samples": 48,
    }


def run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


def set_params(params_path: Path, overrides: dict[str, object]) -> None:
    params = yaml.safe_load(params_path.read_text())
    for dotted, value in overrides.items():
        section = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory, shared_dir) -> Path:
    """A fresh git+DVC repository holding a copy of the project, already reproduced once."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    set_params(root / "params.yaml", smoke_overrides(shared_dir))

    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "ci@example.invalid"], root)
    run(["git", "config", "user.name", "CI"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "config", "core.autostage", "true"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)

    output = run([sys.executable, "-m", "dvc", "repro", GAN_TARGET], root)
    (root / "repro.log").write_text(output)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline run"], root)
    return root


def test_repro_runs_all_stages(project):
    log = (project / "repro.log").read_text()
    for stage in ["scrape", "detect", "filter", "train", "reference_stats", "evaluate"]:
        assert f"Running stage '{stage}'" in log, f"stage {stage} did not run:\n{log[-3000:]}"

    faces = project / "data" / "faces.npy"
    assert faces.is_file()
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert metrics["fid"] > 0
    assert "kid_mean" in metrics and "kid_std" in metrics
    assert metrics["protocol"]["num_samples"] == 48
    assert (project / "models" / "generator.pt").is_file()


def test_changed_train_param_reruns_only_train_and_evaluate(project):
    output = run(
        [
            sys.executable, "-m", "dvc", "exp", "run", GAN_TARGET,
            "-S", "train.lr_discriminator=0.0001",
        ],
        project,
    )
    for stage in ["scrape", "detect", "filter", "reference_stats"]:
        assert f"Running stage '{stage}'" not in output, f"{stage} reran:\n{output[-3000:]}"
    for stage in ["train", "evaluate"]:
        assert f"Running stage '{stage}'" in output, f"{stage} did not rerun:\n{output[-3000:]}"

    diff = json.loads(run([sys.executable, "-m", "dvc", "metrics", "diff", "--json"], project))
    assert "metrics/evaluate.json" in diff
    assert "fid" in diff["metrics/evaluate.json"]

    params_diff = run([sys.executable, "-m", "dvc", "params", "diff"], project)
    assert "train.lr_discriminator" in params_diff
