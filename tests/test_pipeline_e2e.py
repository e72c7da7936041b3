"""End-to-end runs of the DVC pipeline in a temporary git repository, on real pictures.

They run a smoke profile (24 pictures, tiny networks, two epochs, 48 evaluation
samples) and take about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json

import pytest

from dvc_project import GAN_STAGES, dvc, make_project, run, smoke_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, shared_dir):
    """A fresh git+DVC copy of the project, reproduced once and committed."""
    root = make_project(tmp_path_factory.mktemp("e2e") / "project", smoke_overrides(shared_dir))
    output = dvc(["repro"], root)
    (root / "repro.log").write_text(output)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline run"], root)
    return root


def test_repro_runs_all_stages(project):
    log = (project / "repro.log").read_text()
    for stage in GAN_STAGES:
        assert f"Running stage '{stage}'" in log, f"stage {stage} did not run:\n{log[-3000:]}"
    assert "detector/dvc.yaml" not in log, "plain dvc repro ran the detector branch"

    assert (project / "data" / "faces.npy").is_file()
    assert (project / "models" / "generator.pt").is_file()
    metrics = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert metrics["fid"] > 0
    assert "kid_mean" in metrics
    assert "kid_std" in metrics
    assert metrics["protocol"]["num_samples"] == 48


def test_unchanged_repro_reruns_nothing(project):
    output = dvc(["repro"], project)
    assert "Running stage" not in output, output[-3000:]


def test_changed_train_param_reruns_only_train_and_evaluate(project):
    output = dvc(["exp", "run", "-S", "train.lr_discriminator=0.0001"], project)
    for stage in ["scrape", "detect", "filter", "reference_stats"]:
        assert f"Running stage '{stage}'" not in output, f"{stage} reran:\n{output[-3000:]}"
    for stage in ["train", "evaluate"]:
        assert f"Running stage '{stage}'" in output, f"{stage} did not rerun:\n{output[-3000:]}"

    diff = json.loads(dvc(["metrics", "diff", "--json"], project, stdout_only=True))
    fid = diff["metrics/evaluate.json"]["fid"]
    assert fid["old"] != fid["new"]
    assert "loss.discriminator" in diff["dvclive/train/metrics.json"]

    params_diff = dvc(["params", "diff"], project)
    assert "train.lr_discriminator" in params_diff

    plots_dir = project / "plots_diff"
    dvc(["plots", "diff", "HEAD", "-o", str(plots_dir)], project)
    assert (plots_dir / "index.html").is_file()
