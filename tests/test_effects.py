"""Effects analysis on hand-made ``dvc exp show --json`` output with known numbers.

The JSON below copies the structure that dvc 3.67 prints (commits, experiment groups,
executor states, failed runs carrying the baseline's metrics), with chosen values.
"""

import csv
import hashlib
import json
import logging
import math
import re
import sys

import numpy as np
import pytest
from scipy import stats

from pipeline.config import ConfigError
from pipeline.experiments import effects_cli
from pipeline.experiments.design import build_plan
from pipeline.experiments.effects import Observation, analyse
from pipeline.experiments.exp_show import MetricError, parse_exp_show
from pipeline.experiments.factors import Factor
from pipeline.experiments.observations import (
    collect_observations,
    infer_factors,
    select_experiments,
)
from pipeline.experiments.report import format_text, plot_effects
from pipeline.skips import SkipCounter

BASELINE_REV = "4edc22ad452e3868854d3ff6674c7783d9de760a"
METRIC = "metrics/evaluate.json:fid"

LR = Factor("train.lr_discriminator", (0.0002, 0.0001))
LOSS = Factor("train.loss", ("bce", "hinge"))

# FID of each 2x2 cell for seeds 0 and 1.
FID_2X2 = {
    (0.0002, "bce"): [10.0, 10.4],
    (0.0001, "bce"): [13.1, 12.7],
    (0.0002, "hinge"): [10.6, 11.2],
    (0.0001, "hinge"): [14.5, 13.9],
}
CELL_NUMBER = {(0.0002, "bce"): 1, (0.0001, "bce"): 2, (0.0002, "hinge"): 3, (0.0001, "hinge"): 4}


def params(lr=0.0002, loss="bce", seed=0, evaluate_seed=0, batch_size=128):
    return {
        "train": {"lr_discriminator": lr, "loss": loss, "seed": seed, "batch_size": batch_size},
        "evaluate": {"seed": evaluate_seed},
    }


def experiment_group(name, params_data, metrics, state="success", error=None):
    """Return one experiment group as dvc 3.67 prints it; state None is a plain exp run."""
    rev = hashlib.sha1(name.encode()).hexdigest()
    executor = None
    if state is not None:
        executor = {
            "state": state,
            "name": "dvc-task",
            "local": {"root": None, "log": None, "pid": None, "returncode": None,
                      "task_id": rev},
        }
    return {
        "revs": [
            {
                "rev": rev,
                "name": name,
                "data": {
                    "rev": rev,
                    "timestamp": "2026-12-04T16:08:23",
                    "params": {"params.yaml": {"data": params_data}},
                    "metrics": metrics,
                    "deps": {"fake.py": {"hash": "2071869e", "size": 270, "nfiles": None}},
                    "outs": {},
                    "meta": {},
                },
                "error": error,
                "experiments": None,
            }
        ],
        "executor": executor,
        "name": name,
    }


def fid_metrics(value):
    return {METRIC.split(":")[0]: {"data": {"fid": value, "kid": {"mean": value / 100}}}}


def exp_show(groups):
    baseline_data = {
        "rev": BASELINE_REV,
        "timestamp": "2026-12-04T16:04:00",
        "params": {"params.yaml": {"data": params()}},
        "metrics": fid_metrics(99.0),
        "deps": {},
        "outs": {},
        "meta": {},
    }
    workspace = dict(baseline_data, rev="workspace", timestamp=None)
    return [
        {"rev": "workspace", "name": None, "data": workspace, "error": None,
         "experiments": None},
        {"rev": BASELINE_REV, "name": "main", "data": baseline_data, "error": None,
         "experiments": groups},
    ]


def groups_2x2(prefix="lrloss"):
    groups = []
    for (lr, loss), values in FID_2X2.items():
        for seed, value in enumerate(values):
            name = f"{prefix}-c{CELL_NUMBER[(lr, loss)]:02d}-s{seed}"
            groups.append(experiment_group(name, params(lr, loss, seed), fid_metrics(value)))
    return groups


def unfinished_groups(prefix="lrloss"):
    """A failed, a queued and a running run, as dvc reports each."""
    return [
        experiment_group(
            f"{prefix}-c01-s2", params(seed=2), fid_metrics(99.0), state="failed",
            error={"msg": "Experiment run failed", "type": ""},
        ),
        experiment_group(f"{prefix}-c02-s2", params(0.0001, seed=2), {}, state="queued"),
        experiment_group(
            f"{prefix}-c03-s2", params(loss="hinge", seed=2),
            {"metrics/evaluate.json": {"error": {"type": "FileNotFoundError", "msg": "missing"}}},
            state="running",
        ),
    ]


def direct_pooled_sd(cell_values):
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in cell_values)
    df = sum(len(v) - 1 for v in cell_values)
    return math.sqrt(squares / df), df


def find(report, kind, term):
    return [e for e in report.estimates if e.kind == kind and e.term == term]


@pytest.fixture
def plan_2x2():
    return build_plan("full", [LR, LOSS], [0, 1], name_prefix="lrloss")


@pytest.fixture
def report_2x2(plan_2x2):
    experiments = parse_exp_show(exp_show(groups_2x2() + unfinished_groups()))
    skips = SkipCounter(logging.getLogger("test"))
    observations = collect_observations(
        experiments, [LR, LOSS], METRIC, ["train.seed"], skips, plan_2x2
    )
    report = analyse(observations, [LR, LOSS], METRIC)
    report.skipped = skips.as_dict()
    return report


def test_parse_states_and_params():
    experiments = parse_exp_show(exp_show(groups_2x2() + unfinished_groups()))
    by_name = {e.name: e for e in experiments}

    assert len(experiments) == 11
    assert by_name["lrloss-c02-s1"].state == "success"
    assert by_name["lrloss-c02-s1"].params["train.lr_discriminator"] == 0.0001
    assert by_name["lrloss-c02-s1"].params["evaluate.seed"] == 0
    assert by_name["lrloss-c02-s1"].metric(METRIC) == 12.7
    assert by_name["lrloss-c02-s1"].baseline == BASELINE_REV
    assert by_name["lrloss-c01-s2"].state == "failed"
    assert by_name["lrloss-c01-s2"].error == "Experiment run failed"
    assert by_name["lrloss-c02-s2"].state == "queued"
    assert by_name["lrloss-c03-s2"].state == "running"
    assert by_name["lrloss-c03-s2"].metrics == {}


def test_parse_plain_exp_run_is_success():
    group = experiment_group("direct-2", params(seed=2), fid_metrics(10.2), state=None)
    (experiment,) = parse_exp_show(exp_show([group]))
    assert experiment.state == "success"
    assert experiment.metric("fid") == 10.2


def test_parse_other_params_file_prefixed():
    group = experiment_group("x", params(), fid_metrics(1.0))
    group["revs"][0]["data"]["params"]["configs/extra.yaml"] = {"data": {"a": {"b": 1}}}
    (experiment,) = parse_exp_show(exp_show([group]))
    assert experiment.params["configs/extra.yaml:a.b"] == 1
    assert experiment.params["train.loss"] == "bce"


def test_parse_rejects_non_list():
    with pytest.raises(ConfigError, match="list of commits"):
        parse_exp_show({"rev": "workspace"})


def test_metric_nested_key():
    (experiment,) = parse_exp_show(exp_show([experiment_group("x", params(), fid_metrics(20.0))]))
    assert experiment.metric("metrics/evaluate.json:kid.mean") == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("metrics/evaluate.json:is", "not found"),
        ("metrics/train.json:fid", "not reported"),
        ("metrics/evaluate.json:kid", "not a number"),
    ],
)
def test_metric_errors(spec, message):
    (experiment,) = parse_exp_show(exp_show([experiment_group("x", params(), fid_metrics(20.0))]))
    with pytest.raises(MetricError, match=message):
        experiment.metric(spec)


def test_metric_ambiguous_without_file():
    metrics = {**fid_metrics(20.0), "metrics/other.json": {"data": {"fid": 3.0}}}
    (experiment,) = parse_exp_show(exp_show([experiment_group("x", params(), metrics)]))
    with pytest.raises(MetricError, match="several metrics files"):
        experiment.metric("fid")


def test_metric_not_finite():
    metrics = {"metrics/evaluate.json": {"data": {"fid": float("nan")}}}
    (experiment,) = parse_exp_show(exp_show([experiment_group("x", params(), metrics)]))
    with pytest.raises(MetricError, match="nan"):
        experiment.metric(METRIC)


def test_2x2_main_effects_match_direct(report_2x2):
    cells = list(FID_2X2.values())
    pooled_sd, df = direct_pooled_sd(cells)
    t = stats.t.ppf(0.975, df)
    high_lr = FID_2X2[(0.0001, "bce")] + FID_2X2[(0.0001, "hinge")]
    low_lr = FID_2X2[(0.0002, "bce")] + FID_2X2[(0.0002, "hinge")]
    lr_effect = np.mean(high_lr) - np.mean(low_lr)
    lr_half_width = t * pooled_sd * math.sqrt(1 / len(high_lr) + 1 / len(low_lr))

    (lr,) = find(report_2x2, "main", "train.lr_discriminator")
    assert report_2x2.pooled_sd == pytest.approx(pooled_sd)
    assert report_2x2.degrees_of_freedom == df == 4
    assert lr.estimate == pytest.approx(lr_effect)
    assert lr.estimate == pytest.approx(3.0)
    assert lr.half_width == pytest.approx(lr_half_width)
    assert lr.ci_low == pytest.approx(lr_effect - lr_half_width)
    assert lr.ci_high == pytest.approx(lr_effect + lr_half_width)
    assert lr.contrast == "0.0001 - 0.0002"
    assert lr.runs == 8
    assert lr.within_noise is False
    assert lr.verdict == "worse"

    (loss,) = find(report_2x2, "main", "train.loss")
    hinge = FID_2X2[(0.0002, "hinge")] + FID_2X2[(0.0001, "hinge")]
    bce = FID_2X2[(0.0002, "bce")] + FID_2X2[(0.0001, "bce")]
    assert loss.estimate == pytest.approx(np.mean(hinge) - np.mean(bce))
    assert loss.estimate == pytest.approx(1.0)
    assert loss.p_value == pytest.approx(
        2 * stats.t.sf(1.0 / (pooled_sd * math.sqrt(0.5)), df)
    )


def test_2x2_level_means(report_2x2):
    means = find(report_2x2, "level_mean", "train.loss")
    assert [m.contrast for m in means] == ["mean at bce", "mean at hinge"]
    assert means[0].estimate == pytest.approx(np.mean([10.0, 10.4, 13.1, 12.7]))
    assert means[1].estimate == pytest.approx(np.mean([10.6, 11.2, 14.5, 13.9]))
    assert means[0].verdict == ""


def test_2x2_interaction_matches_direct(report_2x2):
    cell_mean = {cell: np.mean(values) for cell, values in FID_2X2.items()}
    lr_effect_hinge = cell_mean[(0.0001, "hinge")] - cell_mean[(0.0002, "hinge")]
    lr_effect_bce = cell_mean[(0.0001, "bce")] - cell_mean[(0.0002, "bce")]
    pooled_sd, df = direct_pooled_sd(list(FID_2X2.values()))
    # Four cell means of two runs each, with coefficients +-1.
    half_width = stats.t.ppf(0.975, df) * pooled_sd * math.sqrt(4 / 2)

    (interaction,) = find(report_2x2, "interaction", "train.lr_discriminator x train.loss")
    assert report_2x2.interactions_estimated
    assert interaction.estimate == pytest.approx(lr_effect_hinge - lr_effect_bce)
    assert interaction.estimate == pytest.approx(0.6)
    assert interaction.half_width == pytest.approx(half_width)
    assert interaction.within_noise is True
    assert interaction.verdict == "within noise"


def test_2x2_unfinished_runs_counted(report_2x2):
    assert report_2x2.run_count == 8
    assert report_2x2.cell_count == 4
    assert report_2x2.skipped == {"failed": 1, "queued": 1, "running": 1}


def test_goal_max_flips_verdict():
    observations = [
        Observation(f"r{i}", (level,), i, value)
        for i, (level, value) in enumerate([(0, 1.0), (0, 1.2), (1, 5.0), (1, 5.2)])
    ]
    factor = Factor("train.loss", ("bce", "hinge"))
    assert analyse(observations, [factor], "m", goal="min").estimates[-1].verdict == "worse"
    assert analyse(observations, [factor], "m", goal="max").estimates[-1].verdict == "better"


def test_effect_below_seed_sd_flagged():
    # 50 seeds per level with SD 1 make the interval narrower than the 0.8 effect,
    # but the effect is still smaller than one seed's spread.
    noise = np.array([1.0, -1.0] * 25)
    low = 10.0 + noise
    high = 10.8 + noise
    observations = [Observation(f"a{i}", (0,), i, float(v)) for i, v in enumerate(low)]
    observations += [Observation(f"b{i}", (1,), i, float(v)) for i, v in enumerate(high)]
    report = analyse(observations, [Factor("train.loss", ("bce", "hinge"))], "m")

    (effect,) = find(report, "main", "train.loss")
    assert effect.estimate == pytest.approx(0.8)
    assert effect.half_width < 0.8
    assert report.pooled_sd == pytest.approx(np.std(low, ddof=1))
    assert report.pooled_sd > 0.8
    assert effect.within_noise is True
    assert effect.verdict == "within noise"


def test_three_levels_contrasts_vs_baseline():
    factor = Factor("train.batch_size", (64, 128, 256))
    values = {0: [20.0, 21.0, 19.5], 1: [18.0, 18.6, 17.4], 2: [25.0, 26.0, 24.1]}
    observations = [
        Observation(f"c{level}-s{seed}", (level,), seed, value)
        for level, runs in values.items()
        for seed, value in enumerate(runs)
    ]
    report = analyse(observations, [factor], "m")
    pooled_sd, df = direct_pooled_sd(list(values.values()))
    t = stats.t.ppf(0.975, df)

    means = find(report, "level_mean", "train.batch_size")
    contrasts = find(report, "main", "train.batch_size")
    assert [m.estimate for m in means] == pytest.approx([np.mean(v) for v in values.values()])
    assert [c.contrast for c in contrasts] == ["128 - 64", "256 - 64"]
    for contrast, level in zip(contrasts, (1, 2)):
        assert contrast.estimate == pytest.approx(np.mean(values[level]) - np.mean(values[0]))
        assert contrast.half_width == pytest.approx(t * pooled_sd * math.sqrt(2 / 3))
    assert not report.interactions_estimated


def test_three_by_two_interactions_match_direct():
    size = Factor("train.batch_size", (64, 128, 256))
    loss = Factor("train.loss", ("bce", "hinge"))
    means = {(0, 0): 20.0, (1, 0): 18.0, (2, 0): 25.0, (0, 1): 19.0, (1, 1): 15.0, (2, 1): 24.5}
    observations = []
    for cell, mean in means.items():
        for seed, offset in enumerate((-0.3, 0.3)):
            observations.append(Observation(f"{cell}-{seed}", cell, seed, mean + offset))
    report = analyse(observations, [size, loss], "m")

    interactions = find(report, "interaction", "train.batch_size x train.loss")
    expected = [
        (means[(1, 1)] - means[(0, 1)]) - (means[(1, 0)] - means[(0, 0)]),
        (means[(2, 1)] - means[(0, 1)]) - (means[(2, 0)] - means[(0, 0)]),
    ]
    assert [i.estimate for i in interactions] == pytest.approx(expected)
    assert interactions[0].contrast == "(128 - 64) at hinge vs at bce"


def test_unreplicated_has_no_interval():
    observations = [
        Observation("a", (0,), 0, 10.0),
        Observation("b", (1,), 0, 12.0),
    ]
    report = analyse(observations, [Factor("train.loss", ("bce", "hinge"))], "m")
    (effect,) = find(report, "main", "train.loss")
    assert report.pooled_sd is None
    assert effect.estimate == pytest.approx(2.0)
    assert effect.ci_low is None
    assert effect.verdict == "no noise estimate"
    assert any("seed noise is unknown" in note for note in report.notes)


def test_analyse_rejects_empty():
    with pytest.raises(ConfigError, match="no finished runs"):
        analyse([], [LR], METRIC)


def test_missing_cell_noted_and_no_interaction():
    groups = [g for g in groups_2x2() if not g["name"].startswith("lrloss-c04")]
    experiments = parse_exp_show(exp_show(groups))
    skips = SkipCounter(logging.getLogger("test"))
    observations = collect_observations(experiments, [LR, LOSS], METRIC, ["train.seed"], skips)
    report = analyse(observations, [LR, LOSS], METRIC)

    assert report.cell_count == 3
    assert not report.interactions_estimated
    assert any("not evenly crossed" in note for note in report.notes)
    assert any("interactions not estimated" in note for note in report.notes)


def test_levels_read_from_params_not_name(plan_2x2, caplog):
    # Named as cell 1, but its params put it in cell 2 (lr 0.0001, bce).
    group = experiment_group("lrloss-c01-s5", params(0.0001, "bce", 5), fid_metrics(13.0))
    experiments = parse_exp_show(exp_show(groups_2x2() + [group]))
    skips = SkipCounter(logging.getLogger("test"))
    with caplog.at_level(logging.WARNING):
        observations = collect_observations(
            experiments, [LR, LOSS], METRIC, ["train.seed"], skips, plan_2x2
        )
    report = analyse(observations, [LR, LOSS], METRIC)

    (odd,) = [o for o in observations if o.name == "lrloss-c01-s5"]
    assert odd.levels == (1, 0)
    assert "the name gives cell 1" in caplog.text
    runs_by_cell = {tuple(c.values.values()): c.runs for c in report.cells}
    assert runs_by_cell[(0.0001, "bce")] == 3
    assert runs_by_cell[(0.0002, "bce")] == 2


def test_level_outside_design_skipped():
    group = experiment_group("lrloss-c01-s9", params(0.0005, "bce", 9), fid_metrics(13.0))
    experiments = parse_exp_show(exp_show(groups_2x2() + [group]))
    skips = SkipCounter(logging.getLogger("test"))
    observations = collect_observations(experiments, [LR, LOSS], METRIC, ["train.seed"], skips)
    assert len(observations) == 8
    assert skips.as_dict() == {"level not in design": 1}


def test_metric_missing_skipped():
    group = experiment_group("lrloss-c01-s9", params(seed=9), {})
    experiments = parse_exp_show(exp_show(groups_2x2() + [group]))
    skips = SkipCounter(logging.getLogger("test"))
    collect_observations(experiments, [LR, LOSS], METRIC, ["train.seed"], skips)
    assert skips.as_dict() == {"metric missing": 1}


def test_repeated_seed_warned(caplog):
    group = experiment_group("lrloss-c01-s0b", params(seed=0), fid_metrics(10.0))
    experiments = parse_exp_show(exp_show(groups_2x2() + [group]))
    skips = SkipCounter(logging.getLogger("test"))
    with caplog.at_level(logging.WARNING):
        collect_observations(experiments, [LR, LOSS], METRIC, ["train.seed"], skips)
    assert "more than once" in caplog.text


def test_select_by_prefix():
    experiments = parse_exp_show(exp_show(groups_2x2("a") + groups_2x2("b") + [
        experiment_group("a-other", params(), fid_metrics(1.0)),
    ]))
    selected = select_experiments(experiments, "a")
    assert len(selected) == 8
    assert all(e.name.startswith("a-c") for e in selected)
    assert len(select_experiments(experiments, None)) == 17


def test_infer_factors_from_varying_params():
    experiments = parse_exp_show(exp_show(groups_2x2()))
    factors = infer_factors(experiments, ["train.seed", "evaluate.seed"])
    assert factors == [
        Factor("train.loss", ("bce", "hinge")),
        Factor("train.lr_discriminator", (0.0001, 0.0002)),
    ]


def test_infer_factors_explicit_order():
    experiments = parse_exp_show(exp_show(groups_2x2()))
    factors = infer_factors(
        experiments, ["train.seed"], [("train.lr_discriminator", ["2e-4", "1e-4"])]
    )
    assert factors == [LR]


def test_infer_factors_unknown_key():
    experiments = parse_exp_show(exp_show(groups_2x2()))
    with pytest.raises(ConfigError, match="train.lr_generator"):
        infer_factors(experiments, ["train.seed"], [("train.lr_generator", None)])


def test_infer_factors_nothing_varies():
    group = experiment_group("x", params(seed=3), fid_metrics(1.0))
    experiments = parse_exp_show(exp_show([group, experiment_group("y", params(seed=4), {})]))
    with pytest.raises(ConfigError, match="no params key other than the seed keys varies"):
        infer_factors(experiments, ["train.seed"])


def test_text_report_contents(report_2x2):
    text = format_text(report_2x2)
    assert "metric: metrics/evaluate.json:fid (lower is better)" in text
    assert "skipped: failed=1, queued=1, running=1" in text
    assert re.search(r"\ntrain\.lr_discriminator +0\.0001 - 0\.0002 +\+3 ", text)
    assert "within noise" in text


def write_exp_show(tmp_path, groups):
    path = tmp_path / "exp_show.json"
    path.write_text(json.dumps(exp_show(groups)), encoding="utf-8")
    return path


def test_cli_offline_outputs(tmp_path, plan_2x2, capsys):
    exp_path = write_exp_show(tmp_path, groups_2x2() + unfinished_groups())
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan_2x2.to_dict()), encoding="utf-8")
    csv_path, json_path, plot_path = tmp_path / "e.csv", tmp_path / "e.json", tmp_path / "e.png"

    code = effects_cli.main([
        "--exp-json", str(exp_path),
        "--plan", str(plan_path),
        "--csv", str(csv_path),
        "--json", str(json_path),
        "--plot", str(plot_path),
    ])
    output = capsys.readouterr().out
    rows = list(csv.DictReader(csv_path.open()))
    report = json.loads(json_path.read_text())

    assert code == 0
    assert "0.0001 - 0.0002" in output
    (lr_row,) = [r for r in rows if r["kind"] == "main" and r["term"] == "train.lr_discriminator"]
    assert float(lr_row["estimate"]) == pytest.approx(3.0)
    assert lr_row["verdict"] == "worse"
    assert report["run_count"] == 8
    assert report["skipped"] == {"failed": 1, "queued": 1, "running": 1}
    assert report["factors"][0] == {"key": "train.lr_discriminator", "levels": [0.0002, 0.0001]}
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_plan_infers_factors(tmp_path, capsys):
    exp_path = write_exp_show(tmp_path, groups_2x2())
    code = effects_cli.main(["--exp-json", str(exp_path), "--prefix", "lrloss"])
    output = capsys.readouterr().out
    assert code == 0
    assert re.search(r"\ntrain\.lr_discriminator +0\.0002 - 0\.0001 +-3 ", output)


def test_cli_other_metric(tmp_path, capsys):
    exp_path = write_exp_show(tmp_path, groups_2x2())
    code = effects_cli.main([
        "--exp-json", str(exp_path),
        "--factor", "train.loss=bce,hinge",
        "--metric", "metrics/evaluate.json:kid.mean",
    ])
    assert code == 0
    assert "metric: metrics/evaluate.json:kid.mean" in capsys.readouterr().out


def test_cli_unknown_prefix(tmp_path, capsys):
    exp_path = write_exp_show(tmp_path, groups_2x2())
    code = effects_cli.main(["--exp-json", str(exp_path), "--prefix", "nothing"])
    assert code == 2
    assert "no experiment named nothing-cCELL-sSEED" in capsys.readouterr().err


def test_cli_missing_exp_json(tmp_path, capsys):
    code = effects_cli.main(["--exp-json", str(tmp_path / "none.json")])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_cli_wait_needs_plan(tmp_path, capsys):
    exp_path = write_exp_show(tmp_path, groups_2x2())
    code = effects_cli.main(["--exp-json", str(exp_path), "--wait", "5"])
    assert code == 2
    assert "--wait needs --plan" in capsys.readouterr().err


def test_plot_skipped_without_matplotlib(report_2x2, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.INFO):
        drawn = plot_effects(report_2x2, tmp_path / "e.png")
    assert drawn is False
    assert not (tmp_path / "e.png").exists()
    assert "matplotlib is not installed" in caplog.text


def test_identical_seeds_noted():
    observations = [
        Observation(f"r{i}", (level,), i % 2, value)
        for i, (level, value) in enumerate([(0, 1.0), (0, 1.0), (1, 2.0), (1, 2.0)])
    ]
    report = analyse(observations, [Factor("train.loss", ("bce", "hinge"))], "m")
    assert report.pooled_sd == 0.0
    assert any("identical values" in note for note in report.notes)
