"""Factor effects on a metric, with confidence intervals from replicate seeds.

Every estimate is a linear contrast of cell means, ``sum_c w_c * mean_c``, so a cell
with fewer finished seeds does not weigh more or less than the design intends. Its
variance is ``s^2 * sum_c w_c^2 / n_c``, where ``s^2`` is the within-cell variance
pooled over all cells (seed-to-seed noise, ``sum_c (n_c - 1)`` degrees of freedom), and
the interval is ``estimate +- t(1 - alpha/2, df) * standard error``.

- Main effect of a 2-level factor: mean at the second level minus mean at the first
  (the baseline), each mean taken over the cells at that level.
- Factors with more levels: the mean at each level, and each level minus the baseline.
- Two-way interaction, only when every combination of levels of all factors was run
  (a full factorial). For levels ``i`` of A and ``j`` of B it is the change in A's
  effect when B moves from its baseline to ``j``, ``(m_ij - m_0j) - (m_i0 - m_00)``.
  Here ``m`` are cell means averaged over the other factors. For two 2-level factors
  this is twice the 2^k-textbook interaction effect ``mean(AB=+1) - mean(AB=-1)``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from pipeline.config import ConfigError
from pipeline.experiments.factors import Factor, format_level

logger = logging.getLogger(__name__)

GOALS = ("min", "max")


@dataclass(frozen=True)
class Observation:
    """One finished run: its level index for every factor and its metric value."""

    name: str
    levels: tuple[int, ...]
    seed: Any
    value: float


@dataclass
class Estimate:
    term: str
    kind: str  # "level_mean", "main" or "interaction"
    contrast: str
    estimate: float
    std_error: float | None
    ci_low: float | None
    ci_high: float | None
    half_width: float | None
    p_value: float | None
    runs: int
    within_noise: bool | None
    verdict: str


@dataclass
class CellSummary:
    values: dict[str, Any]
    runs: int
    seeds: list[Any]
    mean: float
    std: float | None


@dataclass
class EffectsReport:
    metric: str
    goal: str
    confidence: float
    factors: list[Factor]
    run_count: int
    cell_count: int
    pooled_sd: float | None
    degrees_of_freedom: int
    t_quantile: float | None
    estimates: list[Estimate]
    cells: list[CellSummary]
    interactions_estimated: bool
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["factors"] = [{"key": f.key, "levels": list(f.levels)} for f in self.factors]
        return data


def analyse(
    observations: list[Observation],
    factors: list[Factor],
    metric: str,
    goal: str = "min",
    confidence: float = 0.95,
) -> EffectsReport:
    """Estimate main effects, per-level contrasts and, for full factorials, interactions."""
    if goal not in GOALS:
        raise ConfigError(f"goal must be one of {GOALS}, got {goal!r}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be between 0 and 1, got {confidence}")
    if not observations:
        raise ConfigError("no finished runs to analyse; see the skipped runs logged above")

    cells = _group_cells(observations)
    pooled_sd, df = _pooled_sd(cells)
    t_quantile = float(stats.t.ppf(0.5 + confidence / 2, df)) if df > 0 else None
    context = _Context(cells, pooled_sd, df, t_quantile, goal)

    estimates: list[Estimate] = []
    for position, factor in enumerate(factors):
        estimates += _factor_estimates(context, factor, position)

    full_factorial = len(cells) == math.prod(len(f.levels) for f in factors)
    if full_factorial:
        for (a, factor_a), (b, factor_b) in itertools.combinations(enumerate(factors), 2):
            estimates += _interaction_estimates(context, factor_a, a, factor_b, b)

    notes = _balance_notes(cells, factors)
    if pooled_sd == 0.0:
        notes.append(
            "every cell's seeds gave identical values, so the intervals have zero width; "
            "check that the seed key reaches the training"
        )
    if pooled_sd is None:
        notes.append(
            "no cell has two or more seeds, so seed noise is unknown and no confidence "
            "interval is given; rerun with --replicates 2 or more"
        )
    if not full_factorial and len(factors) > 1:
        notes.append("interactions not estimated: not every combination of levels was run")

    return EffectsReport(
        metric=metric,
        goal=goal,
        confidence=confidence,
        factors=factors,
        run_count=len(observations),
        cell_count=len(cells),
        pooled_sd=pooled_sd,
        degrees_of_freedom=df,
        t_quantile=t_quantile,
        estimates=estimates,
        cells=_cell_summaries(cells, factors),
        interactions_estimated=full_factorial and len(factors) > 1,
        notes=notes,
    )


def _group_cells(observations: list[Observation]) -> dict[tuple[int, ...], list[Observation]]:
    cells: dict[tuple[int, ...], list[Observation]] = defaultdict(list)
    for observation in observations:
        cells[observation.levels].append(observation)
    return dict(sorted(cells.items(), key=lambda item: item[0][::-1]))


def _pooled_sd(cells: dict[tuple[int, ...], list[Observation]]) -> tuple[float | None, int]:
    """Return the within-cell standard deviation pooled over cells, and its degrees of freedom."""
    squares = 0.0
    df = 0
    for runs in cells.values():
        values = np.array([run.value for run in runs])
        squares += float(np.sum((values - values.mean()) ** 2))
        df += len(values) - 1
    if df == 0:
        return None, 0
    return math.sqrt(squares / df), df


@dataclass
class _Context:
    cells: dict[tuple[int, ...], list[Observation]]
    pooled_sd: float | None
    df: int
    t_quantile: float | None
    goal: str

    def contrast(self, weights: dict[tuple[int, ...], float]) -> tuple[float, float | None, int]:
        """Return the contrast's estimate, its standard error and the runs it uses."""
        estimate = 0.0
        variance_factor = 0.0
        runs = 0
        for cell, weight in weights.items():
            values = [run.value for run in self.cells[cell]]
            estimate += weight * float(np.mean(values))
            variance_factor += weight**2 / len(values)
            runs += len(values) if weight != 0 else 0
        if self.pooled_sd is None:
            return estimate, None, runs
        return estimate, self.pooled_sd * math.sqrt(variance_factor), runs

    def make(
        self, term: str, kind: str, contrast: str, weights: dict[tuple[int, ...], float]
    ) -> Estimate:
        estimate, std_error, runs = self.contrast(weights)
        ci_low = ci_high = half_width = p_value = None
        within_noise = None
        if std_error is not None and self.t_quantile is not None:
            half_width = self.t_quantile * std_error
            ci_low, ci_high = estimate - half_width, estimate + half_width
            if kind != "level_mean":
                p_value = _two_sided_p(estimate, std_error, self.df)
                within_noise = abs(estimate) < half_width or abs(estimate) < self.pooled_sd
        return Estimate(
            term=term,
            kind=kind,
            contrast=contrast,
            estimate=estimate,
            std_error=std_error,
            ci_low=ci_low,
            ci_high=ci_high,
            half_width=half_width,
            p_value=p_value,
            runs=runs,
            within_noise=within_noise,
            verdict=self.verdict(kind, estimate, within_noise),
        )

    def verdict(self, kind: str, estimate: float, within_noise: bool | None) -> str:
        if kind == "level_mean":
            return ""
        if within_noise is None:
            return "no noise estimate"
        if within_noise:
            return "within noise"
        if kind == "interaction":
            return "beyond noise"
        lower_is_better = self.goal == "min"
        return "better" if (estimate < 0) == lower_is_better else "worse"


def _two_sided_p(estimate: float, std_error: float, df: int) -> float | None:
    if std_error == 0.0:
        return 0.0 if estimate != 0.0 else 1.0
    return float(2.0 * stats.t.sf(abs(estimate) / std_error, df))


def _level_weights(
    cells: dict[tuple[int, ...], list[Observation]], position: int, level: int
) -> dict[tuple[int, ...], float]:
    """Weights that average the cell means at one level of one factor."""
    matching = [cell for cell in cells if cell[position] == level]
    return {cell: 1.0 / len(matching) for cell in matching}


def _factor_estimates(context: _Context, factor: Factor, position: int) -> list[Estimate]:
    observed = {cell[position] for cell in context.cells}
    estimates = []
    for level, value in enumerate(factor.levels):
        if level in observed:
            weights = _level_weights(context.cells, position, level)
            estimates.append(
                context.make(factor.key, "level_mean", f"mean at {format_level(value)}", weights)
            )
    if 0 not in observed:
        logger.warning("no finished run of %s at its baseline level", factor.key)
        return estimates
    baseline = _level_weights(context.cells, position, 0)
    for level in range(1, len(factor.levels)):
        if level not in observed:
            logger.warning(
                "no finished run of %s at level %s", factor.key, format_level(factor.levels[level])
            )
            continue
        weights = _subtract(_level_weights(context.cells, position, level), baseline)
        label = f"{format_level(factor.levels[level])} - {format_level(factor.baseline)}"
        estimates.append(context.make(factor.key, "main", label, weights))
    return estimates


def _interaction_estimates(
    context: _Context, factor_a: Factor, a: int, factor_b: Factor, b: int
) -> list[Estimate]:
    def marginal(i: int, j: int) -> dict[tuple[int, ...], float]:
        matching = [cell for cell in context.cells if cell[a] == i and cell[b] == j]
        return {cell: 1.0 / len(matching) for cell in matching}

    estimates = []
    term = f"{factor_a.key} x {factor_b.key}"
    for i in range(1, len(factor_a.levels)):
        for j in range(1, len(factor_b.levels)):
            weights = _subtract(
                _subtract(marginal(i, j), marginal(0, j)),
                _subtract(marginal(i, 0), marginal(0, 0)),
            )
            label = (
                f"({format_level(factor_a.levels[i])} - {format_level(factor_a.baseline)}) "
                f"at {format_level(factor_b.levels[j])} vs at {format_level(factor_b.baseline)}"
            )
            estimates.append(context.make(term, "interaction", label, weights))
    return estimates


def _subtract(
    left: dict[tuple[int, ...], float], right: dict[tuple[int, ...], float]
) -> dict[tuple[int, ...], float]:
    result = dict(left)
    for cell, weight in right.items():
        result[cell] = result.get(cell, 0.0) - weight
    return result


def _balance_notes(
    cells: dict[tuple[int, ...], list[Observation]], factors: list[Factor]
) -> list[str]:
    """Warn when two factors' levels are not evenly crossed in the cells that finished.

    Main effects of an orthogonal design (full, fractional, Plackett-Burman, Latin square)
    are free of the other factors' main effects only while this crossing stays even.
    """
    notes = []
    for (a, factor_a), (b, factor_b) in itertools.combinations(enumerate(factors), 2):
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for cell in cells:
            counts[(cell[a], cell[b])] += 1
        levels_a = {i for i, _ in counts}
        levels_b = {j for _, j in counts}
        expected = {(i, j) for i in levels_a for j in levels_b}
        if set(counts) != expected or len(set(counts.values())) > 1:
            notes.append(
                f"{factor_a.key} and {factor_b.key} are not evenly crossed in the finished "
                "cells, so each one's effect is partly mixed with the other's; "
                "rerun the missing cells"
            )
    return notes


def _cell_summaries(
    cells: dict[tuple[int, ...], list[Observation]], factors: list[Factor]
) -> list[CellSummary]:
    summaries = []
    for cell, runs in cells.items():
        values = np.array([run.value for run in runs])
        summaries.append(
            CellSummary(
                values={f.key: f.levels[index] for f, index in zip(factors, cell)},
                runs=len(runs),
                seeds=sorted((run.seed for run in runs), key=str),
                mean=float(values.mean()),
                std=float(values.std(ddof=1)) if len(values) > 1 else None,
            )
        )
    return summaries
