"""``python -m pipeline design``: plan training runs over params keys and queue them in DVC.

Example: a 2x2 full factorial with 3 seeds per cell, printed but not queued::

    python -m pipeline design --factor train.lr_discriminator=0.0002,0.0001 \\
        --factor train.loss=bce,hinge --replicates 3 --budget 12 --dry-run
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from pipeline.config import ConfigError, load_params
from pipeline.experiments import dvc
from pipeline.experiments.design import (
    DESIGNS,
    BudgetError,
    DesignOptions,
    Plan,
    build_plan,
    check_budget,
    dvc_arguments,
)
from pipeline.experiments.factors import (
    build_factors,
    check_levels,
    format_level,
    load_factors_file,
    lookup_param,
    parse_factor_argument,
)
from pipeline.files import setup_logging, write_json

logger = logging.getLogger("pipeline.design")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline design",
        description="Plan training runs over params.yaml keys with replicate seeds and "
        "queue them with `dvc exp run --queue`.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")

    factors = parser.add_argument_group("factors")
    factors.add_argument("--params", default="params.yaml", help="parameters file to vary")
    factors.add_argument(
        "--factor",
        action="append",
        default=[],
        metavar="KEY=LEVEL,LEVEL",
        help="params key and its levels, baseline first; repeat for each factor",
    )
    factors.add_argument("--factors-file", help="YAML file mapping params keys to lists of levels")

    design = parser.add_argument_group("design")
    design.add_argument("--design", default="full", choices=DESIGNS.names(), help="kind of design")
    design.add_argument("--resolution", type=int, help="resolution of a fractional design (3-5)")
    design.add_argument(
        "--generator", help="pyDOE3 generator of a fractional design, e.g. 'a b c abc'"
    )
    design.add_argument(
        "--budget", type=int, required=True, help="maximum number of training runs to queue"
    )

    seeds = parser.add_argument_group("replicate seeds")
    counts = seeds.add_mutually_exclusive_group()
    counts.add_argument(
        "--replicates", type=int, default=2, help="seeds per cell, 0 to N-1 (default 2)"
    )
    counts.add_argument("--seeds", help="comma-separated seeds per cell, e.g. 0,1,2")
    seeds.add_argument(
        "--seed-key", default="train.seed", help="params key that takes the replicate seed"
    )
    seeds.add_argument(
        "--extra-seed-key",
        action="append",
        default=[],
        help="another params key set to the same seed, e.g. evaluate.seed; repeatable",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--name-prefix", help="experiment name prefix (default: doe- and a hash of the design)"
    )
    output.add_argument("--plan-out", help="write the plan as JSON here, for `effects --plan`")
    output.add_argument(
        "--dry-run", action="store_true", help="print the dvc commands without running them"
    )
    output.add_argument(
        "--start", action="store_true", help="start the DVC queue workers after queueing"
    )
    output.add_argument("--jobs", type=int, default=1, help="queue workers for --start")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    try:
        plan = make_plan(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    try:
        check_budget(plan, args.budget)
    except BudgetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.plan_out:
        write_json(args.plan_out, plan.to_dict())
        logger.info("wrote the plan to %s", args.plan_out)

    params_file = _params_file_for_dvc(args.params)
    commands = [dvc_arguments(run, params_file) for run in plan.runs()]
    if args.dry_run:
        for arguments in commands:
            print(shlex.join(["dvc", *arguments]))
        return 0
    try:
        queue_plan(plan, commands)
        if args.start:
            dvc.start_queue(args.jobs)
            logger.info("started %d queue worker(s); follow with `dvc queue status`", args.jobs)
    except dvc.DvcError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def make_plan(args: argparse.Namespace) -> Plan:
    """Read the factors and seeds from the arguments and build the plan."""
    params = load_params(args.params)
    specs: list[tuple[str, list]] = [parse_factor_argument(text) for text in args.factor]
    if args.factors_file:
        specs += load_factors_file(args.factors_file)
    factors = build_factors(specs, params, args.params)
    for key in [args.seed_key, *args.extra_seed_key]:
        lookup_param(params, key, args.params)
    # Reject a level the stages would reject (an unknown train.loss, a negative batch size)
    # now, rather than when its queued run starts.
    seeds = _seeds(args)
    seed_levels = [(key, seeds) for key in [args.seed_key, *args.extra_seed_key]]
    check_levels([(f.key, f.levels) for f in factors] + seed_levels, params, args.params)
    return build_plan(
        args.design,
        factors,
        seeds,
        seed_key=args.seed_key,
        extra_seed_keys=args.extra_seed_key,
        options=DesignOptions(resolution=args.resolution, generator=args.generator),
        name_prefix=args.name_prefix,
    )


def _params_file_for_dvc(path: str) -> str:
    """Return the params file as `dvc exp run -S FILE:KEY=VALUE` names it: relative to cwd."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        logger.warning("%s is outside the current directory; run design from the repo root", path)
        return path


def _seeds(args: argparse.Namespace) -> list[int]:
    if args.seeds is None:
        if args.replicates < 1:
            raise ConfigError(f"--replicates must be 1 or more, got {args.replicates}")
        return list(range(args.replicates))
    try:
        return [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None


def format_plan(plan: Plan) -> str:
    """Describe the plan: size, resolution, aliasing and the cells in standard order."""
    lines = [
        f"design: {plan.design}, {len(plan.factors)} factors, {plan.cell_count} cells x "
        f"{len(plan.seeds)} seeds = {plan.run_count} runs",
        f"seeds: {', '.join(map(str, plan.seeds))} -> "
        + ", ".join([plan.seed_key, *plan.extra_seed_keys]),
        f"experiment names: {plan.name_prefix}-cCELL-sSEED",
    ]
    if plan.generator:
        lines.append(f"generator: {plan.generator}")
    if plan.resolution is not None:
        lines.append(f"resolution: {_roman(plan.resolution)}")
    lines += plan.notes
    if plan.aliases:
        lines += ["aliasing:"] + [f"  {line}" for line in plan.aliases]

    lines.append("cells:")
    keys = [factor.key for factor in plan.factors]
    rows = [["cell", *keys]]
    for number, cell in enumerate(plan.cells(), start=1):
        rows.append([str(number), *(format_level(cell[key]) for key in keys)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(text.ljust(width) for text, width in zip(row, widths)))
    return "\n".join(line.rstrip() for line in lines)


def _roman(number: int) -> str:
    numerals = {3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}
    return numerals.get(number, str(number))


def queue_plan(plan: Plan, commands: list[list[str]]) -> None:
    """Queue every run; at the first failure, report which runs are already queued."""
    names = [run.name for run in plan.runs()]
    conflicting = sorted(set(names) & dvc.existing_experiment_names())
    if conflicting:
        raise dvc.DvcError(
            f"{len(conflicting)} experiment names already exist, e.g. {conflicting[:3]}; "
            "pass new --seeds to add replicates, or another --name-prefix"
        )
    _warn_uncommitted_changes()

    queued: list[str] = []
    for name, arguments in zip(names, commands):
        try:
            dvc.run_dvc(arguments, timeout_s=300)
        except dvc.DvcError as error:
            raise dvc.DvcError(
                f"{error}\nqueued before the failure ({len(queued)}): {queued}; "
                "remove them with `dvc queue remove NAME...` or keep them"
            ) from None
        queued.append(name)
        logger.info("queued %s (%d/%d)", name, len(queued), len(names))
    logger.info("queued %d runs; start them with `dvc queue start`", len(queued))


def _warn_uncommitted_changes() -> None:
    # `dvc exp run --queue` snapshots the workspace, uncommitted edits included.
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return
    changed = [line[3:] for line in result.stdout.splitlines() if line.strip()]
    if changed:
        logger.warning("uncommitted changes go into every queued run: %s", ", ".join(changed[:10]))
