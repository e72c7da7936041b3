"""``python -m pipeline effects``: estimate factor effects from finished DVC experiments.

Example, after ``design --plan-out plan.json`` and ``dvc queue start``::

    python -m pipeline effects --plan plan.json --wait 36000 \\
        --csv effects.csv --plot effects.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.experiments import dvc
from pipeline.experiments.design import Plan
from pipeline.experiments.effects import GOALS, EffectsReport, analyse
from pipeline.experiments.exp_show import parse_exp_show
from pipeline.experiments.factors import format_level
from pipeline.experiments.observations import (
    collect_observations,
    infer_factors,
    select_experiments,
)
from pipeline.experiments.report import (
    format_text,
    plot_effects,
    write_csv,
    write_report_json,
)
from pipeline.files import read_json, setup_logging
from pipeline.skips import SkipCounter

logger = logging.getLogger("pipeline.effects")

DEFAULT_METRIC = "metrics/evaluate.json:fid"
DEFAULT_SEED_KEYS = ["train.seed", "evaluate.seed"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline effects",
        description="Estimate each factor's effect on a metric from finished DVC "
        "experiments, with confidence intervals from the replicate seeds.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")

    source = parser.add_argument_group("experiments")
    source.add_argument(
        "--exp-json", help="saved `dvc exp show --json` output (default: run dvc exp show)"
    )
    source.add_argument(
        "--all-commits",
        action="store_true",
        help="read experiments of every baseline commit, not only HEAD's",
    )
    source.add_argument("--plan", help="plan JSON written by `design --plan-out`")
    source.add_argument("--prefix", help="analyse only experiments named PREFIX-cCELL-sSEED")
    source.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="with --plan: first wait up to SECONDS for its queued runs to finish",
    )

    analysis = parser.add_argument_group("analysis")
    analysis.add_argument(
        "--factor",
        action="append",
        default=[],
        metavar="KEY[=LEVEL,LEVEL]",
        help="factor to analyse, baseline level first; default: the plan's factors, "
        "else every params key that varies",
    )
    analysis.add_argument(
        "--seed-key",
        action="append",
        help="params key of the replicate seed; repeatable "
        f"(default: the plan's, else {' and '.join(DEFAULT_SEED_KEYS)})",
    )
    analysis.add_argument(
        "--metric", default=DEFAULT_METRIC, help="FILE:KEY.PATH of the metric to analyse"
    )
    analysis.add_argument(
        "--goal", default="min", choices=GOALS, help="whether lower or higher is better"
    )
    analysis.add_argument("--confidence", type=float, default=0.95, help="interval coverage")

    output = parser.add_argument_group("output")
    output.add_argument("--csv", help="write the estimates as CSV here")
    output.add_argument("--json", help="write the whole report as JSON here")
    output.add_argument("--plot", help="write a PNG of the effects here (needs matplotlib)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    try:
        report = run(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (dvc.DvcError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    print(format_text(report), end="")
    if args.csv:
        write_csv(report, args.csv)
    if args.json:
        write_report_json(report, args.json)
    if args.plot and plot_effects(report, args.plot):
        logger.info("wrote the plot to %s", args.plot)
    return 0


def run(args: argparse.Namespace) -> EffectsReport:
    """Read the experiments, pick the factors, and analyse the metric."""
    plan = _load_plan(args.plan) if args.plan else None
    if args.wait is not None:
        if plan is None:
            raise ConfigError("--wait needs --plan, which names the runs to wait for")
        dvc.wait_for_queue([run.name for run in plan.runs()], timeout_s=args.wait)

    experiments = parse_exp_show(_load_exp_show(args))
    prefix = args.prefix or (plan.name_prefix if plan else None)
    selected = select_experiments(experiments, prefix)
    logger.info("%d of %d experiments selected", len(selected), len(experiments))
    if not selected:
        raise ConfigError(
            f"no experiment named {prefix}-cCELL-sSEED; check --prefix or --all-commits"
            if prefix
            else "no experiments found in the dvc exp show output"
        )

    seed_keys = args.seed_key or (
        [plan.seed_key, *plan.extra_seed_keys] if plan else DEFAULT_SEED_KEYS
    )
    if args.factor:
        specs = [_parse_factor_spec(text) for text in args.factor]
        factors = infer_factors(selected, seed_keys, specs)
    elif plan is not None:
        factors = plan.factors
    else:
        factors = infer_factors(selected, seed_keys)

    skips = SkipCounter(logger)
    observations = collect_observations(selected, factors, args.metric, seed_keys, skips, plan)
    report = analyse(observations, factors, args.metric, args.goal, args.confidence)
    report.skipped = skips.as_dict()
    if plan is not None and not args.factor:
        report.notes += _missing_cell_notes(plan, {o.levels for o in observations})
    return report


def _load_plan(path: str) -> Plan:
    if not Path(path).is_file():
        raise ConfigError(f"plan file {path!r} not found; write one with design --plan-out")
    return Plan.from_dict(read_json(path))


def _load_exp_show(args: argparse.Namespace) -> list:
    if args.exp_json:
        try:
            return read_json(args.exp_json)
        except FileNotFoundError:
            raise ConfigError(f"--exp-json file {args.exp_json!r} not found") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"--exp-json file {args.exp_json!r} is not JSON: {error}") from None
    return dvc.exp_show_json(all_commits=args.all_commits)


def _parse_factor_spec(text: str) -> tuple[str, list[str] | None]:
    key, sep, levels = text.partition("=")
    if not sep:
        return key.strip(), None
    values = [level.strip() for level in levels.split(",")]
    if not key.strip() or any(value == "" for value in values):
        raise ConfigError(f"invalid --factor {text!r}; expected KEY or KEY=LEVEL,LEVEL")
    return key.strip(), values


def _missing_cell_notes(plan: Plan, observed: set[tuple[int, ...]]) -> list[str]:
    missing = []
    for number, row in enumerate(plan.level_indices, start=1):
        if tuple(int(index) for index in row) not in observed:
            values = ", ".join(
                f"{factor.key}={format_level(factor.levels[int(index)])}"
                for factor, index in zip(plan.factors, row)
            )
            missing.append(f"c{number} ({values})")
    if not missing:
        return []
    return [f"{len(missing)} planned cells have no finished run: " + "; ".join(missing)]
