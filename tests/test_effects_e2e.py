"""End to end: design queues a 2x2 plan with 2 seeds in a throwaway git + DVC repo,
``dvc queue start`` runs a tiny stage that writes FID from params, and effects
analyses the finished runs."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats

from pipeline.experiments import design_cli, dvc, effects_cli

# The stage: FID rises by 3 with the lower learning rate and by 0.5 with hinge loss, plus
# noise fixed by the seed and the cell (random.Random seeded with a string is stable).
FAKE_STAGE = textwrap.dedent(
    """\
    import json, os, random, yaml
    with open("params.yaml") as stream:
        train = yaml.safe_load(stream)["train"]
    noise = random.Random(f"{train['seed']}-{train['lr_discriminator']}-{train['loss']}").gauss(0.0, 0.3)
    fid = 10 + 3 * (train["lr_discriminator"] == 0.0001) + 0.5 * (train["loss"] == "hinge") + noise
    os.makedirs("metrics", exist_ok=True)
    with open("metrics/evaluate.json", "w") as stream:
        json.dump({"fid": fid}, stream)
    """
)

PARAMS = "train:\n  lr_discriminator: 0.0002\n  loss: bce\n  seed: 0\nevaluate:\n  seed: 0\n"

QUEUE_TIMEOUT_S = 300


def git(repo, *arguments):
    subprocess.run(["git", *arguments], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    """A git + DVC repository with one stage, committed, as the working directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    # Keep dvc off the network (analytics, update check) and its site cache in tmp_path.
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "site_cache"))
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "pipeline tests")
    git(repo, "config", "user.email", "tests@localhost")
    dvc.run_dvc(["init", "-q"], cwd=repo)
    dvc.run_dvc(["config", "core.check_update", "false"], cwd=repo)
    dvc.run_dvc(["config", "core.analytics", "false"], cwd=repo)

    (repo / "params.yaml").write_text(PARAMS, encoding="utf-8")
    (repo / "fake_stage.py").write_text(FAKE_STAGE, encoding="utf-8")
    (repo / "dvc.yaml").write_text(
        textwrap.dedent(
            f"""\
            stages:
              evaluate:
                cmd: {sys.executable} fake_stage.py
                deps: [fake_stage.py]
                params: [train]
                metrics:
                  - metrics/evaluate.json:
                      cache: false
            """
        ),
        encoding="utf-8",
    )
    dvc.run_dvc(["repro", "-q"], cwd=repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fake pipeline")
    monkeypatch.chdir(repo)
    return repo


def direct_metrics(exp_show):
    """Read (lr, loss, seed) -> fid straight from the JSON, without the package's parser."""
    values = {}
    for commit in exp_show:
        for group in commit.get("experiments") or []:
            rev = group["revs"][0]
            if not group["name"].startswith("e2e-") or rev["error"]:
                continue
            train = rev["data"]["params"]["params.yaml"]["data"]["train"]
            fid = rev["data"]["metrics"]["metrics/evaluate.json"]["data"]["fid"]
            values[(train["lr_discriminator"], train["loss"], train["seed"])] = fid
    return values


@pytest.mark.slow
def test_design_queue_effects_end_to_end(dvc_repo, capsys):
    plan_path = dvc_repo / "plan.json"
    report_path = dvc_repo / "effects.json"

    # Design and queue: 4 cells x 2 seeds.
    code = design_cli.main([
        "--factor", "train.lr_discriminator=0.0002,0.0001",
        "--factor", "train.loss=bce,hinge",
        "--replicates", "2",
        "--budget", "8",
        "--name-prefix", "e2e",
        "--plan-out", str(plan_path),
    ])
    assert code == 0
    queued = dvc.queue_status().tasks
    assert sorted(name for name in queued if name.startswith("e2e-")) == sorted(
        f"e2e-c0{cell}-s{seed}" for cell in range(1, 5) for seed in range(2)
    )

    # Run the queue and wait for it, bounded.
    dvc.start_queue(jobs=1)
    try:
        final = dvc.wait_for_queue(list(queued), timeout_s=QUEUE_TIMEOUT_S, poll_s=1.0)
    except (TimeoutError, dvc.DvcError):
        dvc.run_dvc(["queue", "remove", "--queued"])
        dvc.run_dvc(["queue", "kill", *queued])
        raise
    assert set(final.values()) == {"Success"}

    # Analyse through the CLI, with live `dvc exp show --json`.
    code = effects_cli.main(["--plan", str(plan_path), "--json", str(report_path)])
    output = capsys.readouterr().out
    assert code == 0
    report = json.loads(report_path.read_text())

    # Direct computation from the runs' metrics.
    fid = direct_metrics(dvc.exp_show_json())
    assert len(fid) == 8
    cells = {
        (lr, loss): [fid[(lr, loss, seed)] for seed in (0, 1)]
        for lr in (0.0002, 0.0001)
        for loss in ("bce", "hinge")
    }
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in cells.values())
    pooled_sd = math.sqrt(squares / 4)
    half_width = stats.t.ppf(0.975, 4) * pooled_sd * math.sqrt(1 / 4 + 1 / 4)
    lr_effect = np.mean(cells[(0.0001, "bce")] + cells[(0.0001, "hinge")]) - np.mean(
        cells[(0.0002, "bce")] + cells[(0.0002, "hinge")]
    )
    loss_effect = np.mean(cells[(0.0002, "hinge")] + cells[(0.0001, "hinge")]) - np.mean(
        cells[(0.0002, "bce")] + cells[(0.0001, "bce")]
    )
    interaction = (np.mean(cells[(0.0001, "hinge")]) - np.mean(cells[(0.0002, "hinge")])) - (
        np.mean(cells[(0.0001, "bce")]) - np.mean(cells[(0.0002, "bce")])
    )

    estimates = {
        (e["kind"], e["term"]): e for e in report["estimates"] if e["kind"] != "level_mean"
    }
    lr = estimates[("main", "train.lr_discriminator")]
    loss = estimates[("main", "train.loss")]
    both = estimates[("interaction", "train.lr_discriminator x train.loss")]
    assert report["run_count"] == 8
    assert report["skipped"] == {}
    assert report["pooled_sd"] == pytest.approx(pooled_sd)
    assert report["degrees_of_freedom"] == 4
    assert lr["estimate"] == pytest.approx(lr_effect)
    assert lr["half_width"] == pytest.approx(half_width)
    assert loss["estimate"] == pytest.approx(loss_effect)
    assert both["estimate"] == pytest.approx(interaction)
    # The stage adds +3 for the lower learning rate; noise of SD 0.3 cannot hide it.
    assert lr["ci_low"] > 0
    assert lr["verdict"] == "worse"
    assert "train.lr_discriminator" in output
