import itertools
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from pyDOE3 import pbdesign

from pipeline.config import ConfigError, load_params
from pipeline.experiments import design_cli
from pipeline.experiments.design import (
    BudgetError,
    DesignOptions,
    Plan,
    build_plan,
    check_budget,
    choose_generator,
    dvc_arguments,
    resolution_of,
)
from pipeline.experiments.factors import (
    Factor,
    build_factors,
    coerce_level,
    format_override,
    load_factors_file,
    parse_factor_argument,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

PARAMS = {
    "train": {
        "lr_discriminator": 0.0002,
        "lr_generator": 0.0002,
        "loss": "bce",
        "batch_size": 128,
        "spectral_norm": False,
        "seed": 0,
    },
    "evaluate": {"seed": 0, "num_samples": 2000},
}


@pytest.fixture
def params_path(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    return path


def two_level(count):
    return [Factor(f"train.x{i}", (0, 1)) for i in range(count)]


def test_full_factorial_2x2_two_seeds():
    factors = [
        Factor("train.lr_discriminator", (0.0002, 0.0001)),
        Factor("train.loss", ("bce", "hinge")),
    ]
    plan = build_plan("full", factors, [0, 1], name_prefix="lrloss")
    runs = plan.runs()

    assert plan.cell_count == 4
    assert plan.run_count == 8
    assert len(runs) == 8
    assert plan.level_indices.tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert [run.name for run in runs] == [
        "lrloss-c01-s0", "lrloss-c02-s0", "lrloss-c03-s0", "lrloss-c04-s0",
        "lrloss-c01-s1", "lrloss-c02-s1", "lrloss-c03-s1", "lrloss-c04-s1",
    ]
    assert runs[1].settings == {
        "train.lr_discriminator": 0.0001,
        "train.loss": "bce",
        "train.seed": 0,
    }
    assert runs[7].settings == {
        "train.lr_discriminator": 0.0001,
        "train.loss": "hinge",
        "train.seed": 1,
    }
    assert plan.resolution is None


def test_full_factorial_mixed_levels():
    factors = [Factor("train.a", (1, 2, 3)), Factor("train.b", ("x", "y"))]
    plan = build_plan("full", factors, [0])
    assert plan.cell_count == 6
    assert sorted(map(tuple, plan.level_indices.tolist())) == sorted(
        itertools.product(range(3), range(2))
    )


def test_fractional_2_4_1_resolution_four():
    plan = build_plan("fractional", two_level(4), [0, 1], options=DesignOptions(resolution=4))
    coded = 2 * plan.level_indices - 1

    assert plan.generator == "a b c abc"
    assert plan.cell_count == 8
    assert plan.run_count == 16
    assert plan.resolution == 4
    assert plan.level_indices.tolist() == [
        [0, 0, 0, 0],
        [0, 0, 1, 1],
        [0, 1, 0, 1],
        [0, 1, 1, 0],
        [1, 0, 0, 1],
        [1, 0, 1, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 1],
    ]
    # Defining relation I = ABCD: D is the product of A, B and C.
    assert np.array_equal(coded[:, 3], coded[:, 0] * coded[:, 1] * coded[:, 2])
    assert "AB = CD" in plan.aliases
    assert "AC = BD" in plan.aliases
    assert "AD = BC" in plan.aliases
    assert not any(line.startswith("A = B") for line in plan.aliases)


def test_fractional_resolution_three_aliases_mains():
    plan = build_plan("fractional", two_level(3), [0], options=DesignOptions(resolution=3))
    assert plan.cell_count == 4
    assert plan.resolution == 3
    assert "A = BC" in plan.aliases


def test_fractional_explicit_generator():
    options = DesignOptions(generator="a b c ab ac")
    plan = build_plan("fractional", two_level(5), [0], options=options)
    assert plan.cell_count == 8
    assert plan.resolution == 3


def test_fractional_generator_wrong_width():
    with pytest.raises(ConfigError, match="3 columns but there are 4 factors"):
        build_plan("fractional", two_level(4), [0], options=DesignOptions(generator="a b ab"))


def test_fractional_generator_below_resolution():
    options = DesignOptions(resolution=4, generator="a b c ab")
    with pytest.raises(ConfigError, match="resolution 3, below the requested 4"):
        build_plan("fractional", two_level(4), [0], options=options)


def test_fractional_needs_resolution():
    with pytest.raises(ConfigError, match="--resolution"):
        build_plan("fractional", two_level(4), [0])


def test_fractional_rejects_three_levels():
    factors = two_level(2) + [Factor("train.loss", ("bce", "hinge", "wgan"))]
    with pytest.raises(ConfigError, match="train.loss has 3 levels"):
        build_plan("fractional", factors, [0], options=DesignOptions(resolution=3))


@pytest.mark.parametrize(
    ("factor_count", "resolution", "cells", "generator"),
    [
        (3, 3, 4, "a b ab"),
        (4, 4, 8, "a b c abc"),
        (5, 5, 16, "a b c d abcd"),
        (5, 3, 8, None),
        (6, 4, 16, None),
        (7, 4, 16, None),
        (8, 4, 16, None),
        (7, 3, 8, None),
    ],
)
def test_choose_generator_smallest_fraction(factor_count, resolution, cells, generator):
    from pyDOE3 import fracfact

    chosen = choose_generator(factor_count, resolution)
    coded = fracfact(chosen)
    assert coded.shape == (cells, factor_count)
    assert resolution_of(coded) >= resolution
    if generator is not None:
        assert chosen == generator


def test_plackett_burman_four_factors():
    plan = build_plan("pb", two_level(4), [0, 1])
    expected = ((pbdesign(4) + 1) / 2).astype(int)

    assert plan.cell_count == 8
    assert plan.run_count == 16
    assert plan.level_indices.tolist() == expected.tolist()
    assert plan.resolution == 3
    # Every column is balanced and every pair of columns orthogonal.
    coded = 2 * plan.level_indices - 1
    assert np.array_equal(coded.T @ coded, 8 * np.eye(4))


def test_plackett_burman_twelve_runs_partial_aliasing():
    plan = build_plan("pb", two_level(11), [0])
    assert plan.cell_count == 12
    assert plan.resolution == 3
    assert any("partly aliased with 45 two-factor interactions" in a for a in plan.aliases)


def test_latin_square_3x3():
    factors = [
        Factor("train.batch_size", (64, 128, 256)),
        Factor("train.lr_generator", (0.0001, 0.0002, 0.0004)),
        Factor("train.loss", ("bce", "hinge", "wgan")),
    ]
    plan = build_plan("latin", factors, [0, 1])
    rows = plan.level_indices.tolist()

    assert plan.cell_count == 9
    assert plan.run_count == 18
    assert rows == [
        [0, 0, 0], [0, 1, 1], [0, 2, 2],
        [1, 0, 1], [1, 1, 2], [1, 2, 0],
        [2, 0, 2], [2, 1, 0], [2, 2, 1],
    ]
    for row_level in range(3):
        assert sorted(r[2] for r in rows if r[0] == row_level) == [0, 1, 2]
    for column_level in range(3):
        assert sorted(r[2] for r in rows if r[1] == column_level) == [0, 1, 2]


def test_latin_square_rejects_two_factors():
    with pytest.raises(ConfigError, match="exactly 3 factors"):
        build_plan("latin", two_level(2), [0])


def test_latin_square_rejects_unequal_levels():
    factors = [Factor("a.x", (1, 2, 3)), Factor("a.y", (1, 2, 3)), Factor("a.z", (1, 2))]
    with pytest.raises(ConfigError, match="same number of levels"):
        build_plan("latin", factors, [0])


def test_unknown_design_lists_valid():
    with pytest.raises(KeyError, match="valid names"):
        build_plan("taguchi", two_level(2), [0])


def test_extra_seed_keys_take_seed():
    plan = build_plan("full", two_level(1), [3], extra_seed_keys=["evaluate.seed"])
    assert plan.runs()[0].settings == {"train.x0": 0, "train.seed": 3, "evaluate.seed": 3}


@pytest.mark.parametrize(
    ("seeds", "message"),
    [([], "no replicate seeds"), ([0, 0], "distinct"), ([-1], "non-negative")],
)
def test_invalid_seeds_rejected(seeds, message):
    with pytest.raises(ConfigError, match=message):
        build_plan("full", two_level(2), seeds)


def test_seed_key_as_factor_rejected():
    with pytest.raises(ConfigError, match="seed key"):
        build_plan("full", [Factor("train.seed", (0, 1))], [0])


def test_default_prefix_ignores_seeds():
    first = build_plan("full", two_level(2), [0, 1])
    more = build_plan("full", two_level(2), [2, 3])
    other = build_plan("full", two_level(3), [0, 1])
    assert first.name_prefix == more.name_prefix
    assert first.name_prefix != other.name_prefix
    assert first.name_prefix.startswith("doe-")


def test_invalid_name_prefix_rejected():
    with pytest.raises(ConfigError, match="invalid name prefix"):
        build_plan("full", two_level(2), [0], name_prefix="bad name")


def test_budget_refusal_names_needed_runs():
    plan = build_plan("full", two_level(4), [0, 1, 2])
    with pytest.raises(BudgetError, match="needs 48 runs .* budget is 20; raise --budget to 48"):
        check_budget(plan, 20)


def test_budget_refusal_suggests_fraction():
    plan = build_plan("full", two_level(4), [0, 1, 2])
    with pytest.raises(BudgetError) as caught:
        check_budget(plan, 20)
    assert "--design fractional --resolution 4 --replicates 2" in str(caught.value)
    assert "(8 cells x 2 seeds = 16 runs)" in str(caught.value)


def test_budget_exactly_met_passes():
    check_budget(build_plan("full", two_level(2), [0, 1]), 8)


def test_plan_dict_round_trip():
    plan = build_plan("fractional", two_level(4), [0, 1], options=DesignOptions(resolution=4))
    restored = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored.runs() == plan.runs()
    assert restored.resolution == 4
    assert restored.generator == plan.generator


def test_plan_from_dict_missing_field():
    with pytest.raises(ConfigError, match="invalid plan file"):
        Plan.from_dict({"design": "full"})


def test_dvc_arguments_default_params_file():
    plan = build_plan("full", [Factor("train.loss", ("bce", "hinge"))], [1], name_prefix="p")
    run = plan.runs()[1]
    assert dvc_arguments(run) == [
        "exp", "run", "--queue",
        "-S", "train.loss=hinge",
        "-S", "train.seed=1",
        "--name", "p-c02-s1",
    ]


def test_dvc_arguments_other_params_file():
    run = build_plan("full", [Factor("train.loss", ("bce", "hinge"))], [0]).runs()[0]
    arguments = dvc_arguments(run, "configs/params.yaml")
    assert "configs/params.yaml:train.loss=bce" in arguments


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0002, "0.0002"),
        (1e-05, "1e-05"),
        (128, "128"),
        (True, "true"),
        ("hinge", "hinge"),
        ("true", "'true'"),
        ("0.5", "'0.5'"),
        ("two words", "'two words'"),
        ("it's", "'it\\'s'"),
        (["cascade", "animeface"], "[cascade,animeface]"),
    ],
)
def test_format_override(value, text):
    assert format_override(value) == text


@pytest.mark.parametrize(
    ("raw", "current", "expected"),
    [
        ("1e-4", 0.0002, 0.0001),
        ("0", 0.0002, 0.0),
        ("256", 128, 256),
        ("64", "bce", "64"),
        ("true", False, True),
        (64, "bce", "64"),
        ("[a, b]", ["x"], ["a", "b"]),
    ],
)
def test_coerce_level_to_current_type(raw, current, expected):
    value = coerce_level(raw, current, "train.key")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "current", "message"),
    [("fast", 0.1, "must be a number"), ("yes", False, "true or false"), ("nan", 0.1, "finite")],
)
def test_coerce_level_rejects(raw, current, message):
    with pytest.raises(ConfigError, match=message):
        coerce_level(raw, current, "train.key")


def test_parse_factor_argument():
    assert parse_factor_argument("train.loss=bce, hinge") == ("train.loss", ["bce", "hinge"])


@pytest.mark.parametrize("text", ["train.loss", "=a,b", "train.loss=a,,b"])
def test_parse_factor_argument_invalid(text):
    with pytest.raises(ConfigError, match="--factor"):
        parse_factor_argument(text)


def test_build_factors_unknown_key():
    with pytest.raises(ConfigError, match="'train.lr_discriminatr' not found.*lr_discriminator"):
        build_factors([("train.lr_discriminatr", ["1", "2"])], PARAMS)


def test_build_factors_unknown_section():
    with pytest.raises(ConfigError, match="keys under the top level: \\['evaluate', 'train'\\]"):
        build_factors([("trian.seed", ["1", "2"])], PARAMS)


def test_build_factors_rejects_one_level():
    with pytest.raises(ConfigError, match="at least two levels"):
        build_factors([("train.loss", ["bce"])], PARAMS)


def test_build_factors_rejects_repeated_level():
    with pytest.raises(ConfigError, match="lists a level twice"):
        build_factors([("train.lr_discriminator", ["0.0002", "2e-4"])], PARAMS)


def test_build_factors_rejects_repeated_key():
    specs = [("train.loss", ["bce", "hinge"]), ("train.loss", ["bce", "wgan"])]
    with pytest.raises(ConfigError, match="given twice"):
        build_factors(specs, PARAMS)


def test_factors_file_yaml(tmp_path):
    path = tmp_path / "factors.yaml"
    path.write_text(
        "factors:\n  train.loss: [bce, hinge]\n  train.lr_discriminator: [0.0002, 1.0e-4]\n",
        encoding="utf-8",
    )
    factors = build_factors(load_factors_file(path), PARAMS)
    assert factors == [
        Factor("train.loss", ("bce", "hinge")),
        Factor("train.lr_discriminator", (0.0002, 0.0001)),
    ]


def test_factors_file_not_a_list(tmp_path):
    path = tmp_path / "factors.yaml"
    path.write_text("train.loss: bce\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a list"):
        load_factors_file(path)


def test_repository_params_reject_unknown_key():
    params = load_params(REPO_ROOT / "params.yaml")
    factors = build_factors([("train.seed", ["0", "1"])], params)
    assert factors[0].levels == (0, 1)
    with pytest.raises(ConfigError, match="not found"):
        build_factors([("train.no_such_key", ["0", "1"])], params)


def test_cli_dry_run_prints_commands(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.lr_discriminator=0.0002,0.0001",
        "--factor", "train.loss=bce,hinge",
        "--replicates", "2",
        "--budget", "8",
        "--name-prefix", "lrloss",
        "--dry-run",
    ])
    output = capsys.readouterr().out
    commands = [line for line in output.splitlines() if line.startswith("dvc ")]

    assert code == 0
    assert "4 cells x 2 seeds = 8 runs" in output
    assert len(commands) == 8
    prefix = f"{params_path}:"
    assert shlex.split(commands[0]) == [
        "dvc", "exp", "run", "--queue",
        "-S", f"{prefix}train.lr_discriminator=0.0002",
        "-S", f"{prefix}train.loss=bce",
        "-S", f"{prefix}train.seed=0",
        "--name", "lrloss-c01-s0",
    ]
    assert shlex.split(commands[-1])[-1] == "lrloss-c04-s1"


def test_cli_dry_run_default_params_file(params_path, monkeypatch, capsys):
    monkeypatch.chdir(params_path.parent)
    code = design_cli.main([
        "--factor", "train.loss=bce,hinge",
        "--seeds", "5,7",
        "--extra-seed-key", "evaluate.seed",
        "--budget", "4",
        "--name-prefix", "loss",
        "--dry-run",
    ])
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("dvc ")]
    assert code == 0
    assert commands[-1] == (
        "dvc exp run --queue -S train.loss=hinge -S train.seed=7 -S evaluate.seed=7 "
        "--name loss-c02-s7"
    )


def test_cli_writes_plan(params_path, tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.lr_discriminator=0.0002,0.0001",
        "--factor", "train.lr_generator=0.0002,0.0001",
        "--factor", "train.loss=bce,hinge",
        "--factor", "train.batch_size=64,128",
        "--design", "fractional",
        "--resolution", "4",
        "--budget", "16",
        "--plan-out", str(plan_path),
        "--dry-run",
    ])
    output = capsys.readouterr().out
    plan = Plan.from_dict(json.loads(plan_path.read_text()))

    assert code == 0
    assert "resolution: IV" in output
    assert "AB = CD" in output
    assert plan.run_count == 16
    assert plan.factors[3] == Factor("train.batch_size", (64, 128))


def test_cli_budget_refusal(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.lr_discriminator=0.0002,0.0001",
        "--factor", "train.loss=bce,hinge",
        "--replicates", "3",
        "--budget", "10",
        "--dry-run",
    ])
    captured = capsys.readouterr()
    assert code == 2
    assert "needs 12 runs (4 cells x 3 seeds) but the budget is 10" in captured.err
    assert "raise --budget to 12" in captured.err
    assert "dvc exp run" not in captured.out


def test_cli_unknown_key_rejected(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.lr_discriminatr=0.0002,0.0001",
        "--budget", "10",
        "--dry-run",
    ])
    captured = capsys.readouterr()
    assert code == 2
    assert "'train.lr_discriminatr' not found" in captured.err


def test_cli_unknown_seed_key_rejected(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.loss=bce,hinge",
        "--extra-seed-key", "evaluate.sead",
        "--budget", "10",
        "--dry-run",
    ])
    assert code == 2
    assert "'evaluate.sead' not found" in capsys.readouterr().err


def test_cli_missing_params_file(tmp_path, capsys):
    code = design_cli.main([
        "--params", str(tmp_path / "none.yaml"),
        "--factor", "train.loss=bce,hinge",
        "--budget", "10",
        "--dry-run",
    ])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_coerce_level_yaml11_exponent_string():
    # PyYAML returns "1e-4" written in params.yaml as a string, DVC as a float.
    assert coerce_level("0.0001", "1e-4", "train.lr_discriminator") == 0.0001


def test_cli_rejects_levels_stages_reject(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.loss=bce,wasserstein",
        "--factor", "train.batch_size=16,-3",
        "--budget", "10",
        "--dry-run",
    ])
    captured = capsys.readouterr()
    assert code == 2
    assert "2 level(s) would be rejected" in captured.err
    assert "train.loss=wasserstein: train.loss = 'wasserstein' is not allowed" in captured.err
    assert "train.batch_size=-3: train.batch_size = -3 is below the minimum 1" in captured.err
    assert "dvc exp run" not in captured.out


def test_cli_rejects_seed_below_minimum(params_path, capsys):
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "train.loss=bce,hinge",
        "--seeds", "0,-1",
        "--budget", "10",
        "--dry-run",
    ])
    assert code == 2
    assert "train.seed=-1: train.seed = -1 is below the minimum" in capsys.readouterr().err


def test_cli_rejects_filter_size_train_rejects(tmp_path, capsys):
    params_path = tmp_path / "params.yaml"
    params_path.write_text((REPO_ROOT / "params.yaml").read_text(), encoding="utf-8")
    code = design_cli.main([
        "--params", str(params_path),
        "--factor", "filter.image_size=64,48",
        "--budget", "10",
        "--dry-run",
    ])
    captured = capsys.readouterr()
    assert code == 2
    assert "filter.image_size=48: filter.image_size = 48: " in captured.err
    assert "power of two" in captured.err
