"""A 2-factor, 2-seed design on the real pipeline: queued by `design`, run by
`dvc queue start`, analysed by `effects`, and checked against the runs' own metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dvc_project import dvc, make_project, run, smoke_overrides
from pipeline.experiments import design_cli, dvc as dvc_commands, effects_cli

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

QUEUE_TIMEOUT_S = 900
FACTORS = {"train.lr_discriminator": (0.0002, 0.0001), "train.loss": ("bce", "hinge")}


def fids_by_cell(exp_show: list[dict]) -> dict[tuple, list[float]]:
    """Map (lr_discriminator, loss) -> FIDs of the finished design runs, read directly."""
    cells: dict[tuple, list[float]] = {}
    for commit in exp_show:
        for group in commit.get("experiments") or []:
            rev = group["revs"][0]
            if not (group["name"] or "").startswith("grid-") or rev["error"]:
                continue
            train = rev["data"]["params"]["params.yaml"]["data"]["train"]
            fid = rev["data"]["metrics"]["metrics/evaluate.json"]["data"]["fid"]
            cells.setdefault((train["lr_discriminator"], train["loss"]), []).append(fid)
    return cells


def test_design_on_real_pipeline(tmp_path, shared_dir, monkeypatch):
    overrides = smoke_overrides(shared_dir)
    overrides.update({"train.epochs": 1, "evaluate.num_samples": 32})
    root = make_project(tmp_path / "project", overrides)
    dvc(["repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline run"], root)
    monkeypatch.chdir(root)

    factor_args = []
    for key, levels in FACTORS.items():
        factor_args += ["--factor", f"{key}={','.join(str(level) for level in levels)}"]
    plan = root / "plan.json"
    code = design_cli.main(
        factor_args + ["--replicates", "2", "--budget", "8", "--name-prefix", "grid",
                       "--plan-out", str(plan)]
    )
    assert code == 0
    names = [name for name in dvc_commands.queue_status().tasks if name.startswith("grid-")]
    assert len(names) == 8

    dvc_commands.start_queue(jobs=1)
    try:
        final = dvc_commands.wait_for_queue(names, timeout_s=QUEUE_TIMEOUT_S, poll_s=2.0)
    except (TimeoutError, dvc_commands.DvcError):
        dvc_commands.run_dvc(["queue", "kill", *names])
        raise
    assert set(final.values()) == {"Success"}

    report_path = root / "effects.json"
    assert effects_cli.main(["--plan", str(plan), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    estimates = {(e["kind"], e["term"]): e for e in report["estimates"]}

    cells = fids_by_cell(dvc_commands.exp_show_json())
    assert sum(len(values) for values in cells.values()) == 8
    lr_low, lr_high = FACTORS["train.lr_discriminator"]
    lr_effect = np.mean(cells[(lr_high, "bce")] + cells[(lr_high, "hinge")]) - np.mean(
        cells[(lr_low, "bce")] + cells[(lr_low, "hinge")]
    )
    loss_effect = np.mean(cells[(lr_low, "hinge")] + cells[(lr_high, "hinge")]) - np.mean(
        cells[(lr_low, "bce")] + cells[(lr_high, "bce")]
    )
    assert report["run_count"] == 8
    assert estimates[("main", "train.lr_discriminator")]["estimate"] == pytest.approx(lr_effect)
    assert estimates[("main", "train.loss")]["estimate"] == pytest.approx(loss_effect)
    assert np.isfinite(report["pooled_sd"])
