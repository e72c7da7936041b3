"""Turn experiments listed by ``dvc exp show`` into observations for the effects analysis.

Factor levels always come from each experiment's params. The run name
(``PREFIX-cCELL-sSEED``) only selects the experiments of one plan and is cross-checked
against the params.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from pipeline.config import ConfigError
from pipeline.experiments.design import RUN_NAME, Plan
from pipeline.experiments.effects import Observation
from pipeline.experiments.exp_show import Experiment, MetricError
from pipeline.experiments.factors import Factor, coerce_level, format_level, level_key
from pipeline.skips import SkipCounter

logger = logging.getLogger(__name__)


def select_experiments(experiments: list[Experiment], prefix: str | None) -> list[Experiment]:
    """Return the experiments named ``PREFIX-cCELL-sSEED``, or all of them without a prefix."""
    if prefix is None:
        return list(experiments)
    selected = []
    for experiment in experiments:
        match = RUN_NAME.match(experiment.name)
        if match and match.group("prefix") == prefix:
            selected.append(experiment)
    return selected


def infer_factors(
    experiments: list[Experiment],
    seed_keys: list[str],
    specs: list[tuple[str, list[str] | None]] | None = None,
) -> list[Factor]:
    """Build factors from ``(key, levels or None)`` specs, or from the keys that vary.

    Levels given as text are converted to the type of the key's values in the runs.
    Levels not given are sorted: numbers ascending, anything else by its text. The first
    level is the baseline.
    """
    finished = [e for e in experiments if e.state == "success"]
    if not finished:
        raise ConfigError("no finished experiment to infer factors from")
    if not specs:
        varying = sorted(
            key
            for key in {key for e in finished for key in e.params}
            if key not in seed_keys and len(_distinct_values(finished, key)) > 1
        )
        if not varying:
            raise ConfigError(
                "no params key other than the seed keys varies between the selected "
                "experiments; pass --factor KEY or --plan FILE"
            )
        specs = [(key, None) for key in varying]

    factors = []
    for key, raw_levels in specs:
        observed = _distinct_values(finished, key)
        if not observed:
            present = sorted({k for e in finished for k in e.params})
            raise ConfigError(f"params key {key!r} not set in any selected experiment: {present}")
        if raw_levels is None:
            levels = tuple(_sorted_levels(observed))
        else:
            levels = tuple(coerce_level(raw, observed[0], key) for raw in raw_levels)
        if len(levels) < 2:
            raise ConfigError(f"factor {key} has one level only ({levels}); nothing to compare")
        factors.append(Factor(key, levels))
    return factors


def _distinct_values(experiments: list[Experiment], key: str) -> list[Any]:
    values: dict[Any, Any] = {}
    for experiment in experiments:
        if key in experiment.params:
            value = experiment.params[key]
            values.setdefault(level_key(value), value)
    return list(values.values())


def _sorted_levels(values: list[Any]) -> list[Any]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return sorted(values, key=lambda value: (type(value).__name__, str(value)))


def collect_observations(
    experiments: list[Experiment],
    factors: list[Factor],
    metric: str,
    seed_keys: list[str],
    skips: SkipCounter,
    plan: Plan | None = None,
) -> list[Observation]:
    """Return one observation per successful experiment; count the others in ``skips``."""
    observations = []
    for experiment in experiments:
        if experiment.state != "success":
            skips.skip(experiment.name, experiment.state, experiment.error or "")
            continue
        try:
            value = experiment.metric(metric)
        except MetricError as error:
            skips.skip(experiment.name, "metric missing", str(error))
            continue
        levels = _level_indices(experiment, factors, skips)
        if levels is None:
            continue
        if plan is not None:
            _check_name(experiment.name, levels, plan)
        seed = next((experiment.params[k] for k in seed_keys if k in experiment.params), None)
        observations.append(Observation(experiment.name, levels, seed, value))
    _warn_repeated_seeds(observations)
    return observations


def _level_indices(
    experiment: Experiment, factors: list[Factor], skips: SkipCounter
) -> tuple[int, ...] | None:
    levels = []
    for factor in factors:
        if factor.key not in experiment.params:
            skips.skip(experiment.name, "factor param missing", factor.key)
            return None
        index = factor.index_of(experiment.params[factor.key])
        if index is None:
            value = format_level(experiment.params[factor.key])
            skips.skip(experiment.name, "level not in design", f"{factor.key}={value}")
            return None
        levels.append(index)
    return tuple(levels)


def _check_name(name: str, levels: tuple[int, ...], plan: Plan) -> None:
    match = RUN_NAME.match(name)
    if not match:
        return
    cell = int(match.group("cell"))
    if not 1 <= cell <= plan.cell_count:
        logger.warning("%s: cell %d is not in the plan; analysing its params", name, cell)
        return
    expected = tuple(int(index) for index in plan.level_indices[cell - 1])
    if expected != levels:
        logger.warning(
            "%s: the name gives cell %d but the params give other levels; analysing its params",
            name,
            cell,
        )


def _warn_repeated_seeds(observations: list[Observation]) -> None:
    seeds_by_cell: dict[tuple[int, ...], list[Any]] = defaultdict(list)
    for observation in observations:
        seeds_by_cell[observation.levels].append(observation.seed)
    for cell, seeds in seeds_by_cell.items():
        repeated = sorted({str(s) for s in seeds if s is not None and seeds.count(s) > 1})
        if repeated:
            logger.warning(
                "cell %s has seed %s more than once; a rerun with the same seed makes the "
                "noise estimate too small",
                cell,
                ", ".join(repeated),
            )
