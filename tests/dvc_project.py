"""Build a throwaway git+DVC copy of this project and run DVC in it.

Used by the end-to-end tests and by bench/pipeline_stages.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = [
    "pipeline", "stages", "detector", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"
]
# Stages of the root dvc.yaml. The Mask R-CNN branch is in detector/dvc.yaml.
GAN_STAGES = ["scrape", "detect", "filter", "train", "reference_stats", "evaluate"]


def smoke_overrides(shared_dir: Path, max_images: int = 24) -> dict[str, object]:
    """Params that make the GAN pipeline run in about a minute on 2 CPU cores."""
    return {
        "scrape.source": "folder",
        "scrape.folder": str(shared_dir / "data" / "raw"),
        "scrape.max_images": max_images,
        "detect.cascade_path": str(shared_dir / "models" / "lbpcascade_animeface.xml"),
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.generator_width": 8,
        "train.discriminator_width": 8,
        "train.latent_dim": 16,
        "reference_stats.max_images": 64,
        "evaluate.num_samples": 48,
    }


def run(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    """Run a command with this interpreter's folder first on PATH; raise on failure."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{output[-6000:]}")
    return result.stdout if stdout_only else output


def dvc(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, stdout_only)


def set_params(params_path: Path, overrides: dict[str, object]) -> None:
    """Write dotted-key overrides into a params.yaml file."""
    params = yaml.safe_load(params_path.read_text())
    for dotted, value in overrides.items():
        section = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            section = section.setdefault(key, {})
        section[leaf] = value
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_project(root: Path, overrides: dict[str, object]) -> Path:
    """Copy the project into ``root``, apply ``overrides`` and commit it in a new git+DVC repo."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    set_params(root / "params.yaml", overrides)

    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "ci@example.invalid"], root)
    run(["git", "config", "user.name", "CI"], root)
    dvc(["init", "-q"], root)
    dvc(["config", "core.autostage", "true"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "project"], root)
    return root
