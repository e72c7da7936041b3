"""Experiment plans: which factor levels each training run uses, and with which seeds.

A plan has cells (one combination of factor levels each) and replicate seeds; every
cell runs once per seed. The design matrices come from pyDOE3 (``fullfact``,
``fracfact``, ``pbdesign``); the Latin square is the cyclic one, level ``(i + j) mod k``
in row ``i`` and column ``j``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyDOE3 import fracfact, fullfact, pbdesign

from pipeline.config import ConfigError
from pipeline.experiments.factors import Factor, format_level, format_override
from pipeline.registry import Registry

# Cells whose run names ``effects`` can parse: PREFIX-cCELL-sSEED.
RUN_NAME = re.compile(r"^(?P<prefix>.+)-c(?P<cell>\d+)-s(?P<seed>\d+)$")
_NAME_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# Upper bound on (generator sets x defining-relation words) in the fractional design
# search, about 2 s of Python; larger searches ask for an explicit --generator.
MAX_GENERATOR_WORK = 4_000_000


class BudgetError(ConfigError):
    """The plan needs more training runs than the budget allows."""


@dataclass
class DesignOptions:
    resolution: int | None = None
    generator: str | None = None


@dataclass
class DesignMatrix:
    """Level index (0 = baseline) of every factor in every cell, plus how it was built."""

    level_indices: np.ndarray
    generator: str | None = None
    resolution: int | None = None
    notes: list[str] = field(default_factory=list)


DesignBuilder = Callable[[list[Factor], DesignOptions], DesignMatrix]
DESIGNS: Registry[DesignBuilder] = Registry("design")


@dataclass(frozen=True)
class Run:
    """One queued training: its experiment name and every params override it sets."""

    name: str
    cell: int
    seed: int
    settings: dict[str, Any]


@dataclass
class Plan:
    design: str
    factors: list[Factor]
    level_indices: np.ndarray
    seeds: list[int]
    seed_key: str
    extra_seed_keys: list[str]
    name_prefix: str
    generator: str | None = None
    resolution: int | None = None
    aliases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def cell_count(self) -> int:
        return int(self.level_indices.shape[0])

    @property
    def run_count(self) -> int:
        return self.cell_count * len(self.seeds)

    def cells(self) -> list[dict[str, Any]]:
        """Return the factor values of each cell, in standard order."""
        return [
            {factor.key: factor.levels[int(index)] for factor, index in zip(self.factors, row)}
            for row in self.level_indices
        ]

    def runs(self) -> list[Run]:
        """Return every run, seed by seed, so that an early stop still covers every cell."""
        width = max(2, len(str(self.cell_count)))
        runs = []
        for seed in self.seeds:
            for cell_number, values in enumerate(self.cells(), start=1):
                settings = dict(values)
                for key in [self.seed_key, *self.extra_seed_keys]:
                    settings[key] = seed
                name = f"{self.name_prefix}-c{cell_number:0{width}d}-s{seed}"
                runs.append(Run(name, cell_number, seed, settings))
        return runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "factors": [{"key": f.key, "levels": list(f.levels)} for f in self.factors],
            "level_indices": self.level_indices.astype(int).tolist(),
            "seeds": list(self.seeds),
            "seed_key": self.seed_key,
            "extra_seed_keys": list(self.extra_seed_keys),
            "name_prefix": self.name_prefix,
            "generator": self.generator,
            "resolution": self.resolution,
            "aliases": list(self.aliases),
            "notes": list(self.notes),
            "cell_count": self.cell_count,
            "run_count": self.run_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        try:
            return cls(
                design=data["design"],
                factors=[Factor(f["key"], tuple(f["levels"])) for f in data["factors"]],
                level_indices=np.asarray(data["level_indices"], dtype=int),
                seeds=[int(seed) for seed in data["seeds"]],
                seed_key=data["seed_key"],
                extra_seed_keys=list(data.get("extra_seed_keys", [])),
                name_prefix=data["name_prefix"],
                generator=data.get("generator"),
                resolution=data.get("resolution"),
                aliases=list(data.get("aliases", [])),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"invalid plan file: missing or malformed field {error}") from None


def build_plan(
    design: str,
    factors: list[Factor],
    seeds: list[int],
    seed_key: str = "train.seed",
    extra_seed_keys: list[str] | None = None,
    options: DesignOptions | None = None,
    name_prefix: str | None = None,
) -> Plan:
    """Build the design matrix, check the seeds and name the runs."""
    options = options or DesignOptions()
    extra_seed_keys = list(extra_seed_keys or [])
    _check_seeds(seeds, [seed_key, *extra_seed_keys], factors)
    matrix = DESIGNS.get(design)(factors, options)

    plan = Plan(
        design=design,
        factors=factors,
        level_indices=matrix.level_indices.astype(int),
        seeds=list(seeds),
        seed_key=seed_key,
        extra_seed_keys=extra_seed_keys,
        name_prefix=name_prefix or default_name_prefix(design, factors, matrix),
        generator=matrix.generator,
        resolution=matrix.resolution,
        notes=list(matrix.notes),
    )
    if not _NAME_PREFIX.fullmatch(plan.name_prefix):
        raise ConfigError(
            f"invalid name prefix {plan.name_prefix!r}; use letters, digits, '_', '.', '-'"
        )
    if design != "full" and all(len(f.levels) == 2 for f in factors):
        coded = 2.0 * plan.level_indices - 1.0
        plan.aliases = describe_aliasing(coded, [f.key for f in factors])
    return plan


def _check_seeds(seeds: list[int], seed_keys: list[str], factors: list[Factor]) -> None:
    if not seeds:
        raise ConfigError("no replicate seeds; pass --replicates N or --seeds LIST")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"seeds must be non-negative integers, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {seeds}")
    if len(set(seed_keys)) != len(seed_keys):
        raise ConfigError(f"seed keys must be distinct, got {seed_keys}")
    for factor in factors:
        if factor.key in seed_keys:
            raise ConfigError(f"{factor.key} is a seed key and cannot also be a factor")


def default_name_prefix(design: str, factors: list[Factor], matrix: DesignMatrix) -> str:
    """Name prefix derived from the design alone, so more seeds for it extend the same set."""
    identity = json.dumps(
        {
            "design": design,
            "factors": [[f.key, list(f.levels)] for f in factors],
            "cells": matrix.level_indices.astype(int).tolist(),
        },
        sort_keys=True,
        default=str,
    )
    return "doe-" + hashlib.sha1(identity.encode("utf-8")).hexdigest()[:6]


def check_budget(plan: Plan, budget: int) -> None:
    """Raise BudgetError when the plan needs more runs than ``budget``, with cheaper options."""
    if plan.run_count <= budget:
        return
    message = (
        f"the {plan.design} plan needs {plan.run_count} runs "
        f"({plan.cell_count} cells x {len(plan.seeds)} seeds) but the budget is {budget}; "
        f"raise --budget to {plan.run_count}"
    )
    cheaper = _cheaper_designs(plan, budget)
    if cheaper:
        message += ", or use: " + "; ".join(cheaper)
    raise BudgetError(message)


def _cheaper_designs(plan: Plan, budget: int) -> list[str]:
    """List smaller designs for the same factors that fit the budget, with run counts."""
    designs: list[tuple[str, int]] = [("", plan.cell_count)]
    if all(len(f.levels) == 2 for f in plan.factors):
        for resolution in (5, 4, 3):
            try:
                generator = choose_generator(len(plan.factors), resolution)
            except ConfigError:
                continue
            cells = 2 ** sum(1 for word in generator.split() if len(word) == 1)
            designs.append((f"--design fractional --resolution {resolution}", cells))
        designs.append(("--design pb", int(pbdesign(len(plan.factors)).shape[0])))

    seed_counts = sorted({len(plan.seeds), 2}, reverse=True)
    fitting: list[str] = []
    fewest_cells = math.inf
    # Designs come best first, so one no smaller than a better one is not worth listing.
    for text, cells in designs:
        if text and cells >= fewest_cells:
            continue
        fewest_cells = cells
        for seeds in seed_counts:
            runs = cells * seeds
            if seeds > len(plan.seeds) or runs > budget:
                continue
            flags = " ".join(part for part in (text, f"--replicates {seeds}") if part)
            fitting.append(f"{flags} ({cells} cells x {seeds} seeds = {runs} runs)")
            break
    return fitting


@DESIGNS.register("full")
def full_factorial(factors: list[Factor], options: DesignOptions) -> DesignMatrix:
    """Build every combination of levels, the first factor changing fastest."""
    matrix = fullfact([len(f.levels) for f in factors]).astype(int)
    return DesignMatrix(matrix, notes=["full factorial: all main effects and interactions"])


@DESIGNS.register("fractional")
def fractional_factorial(factors: list[Factor], options: DesignOptions) -> DesignMatrix:
    """A 2-level fraction of the stated resolution, or from an explicit generator."""
    _require_two_levels(factors, "fractional")
    if options.generator:
        generator = options.generator
    else:
        if options.resolution is None:
            raise ConfigError("a fractional design needs --resolution 3, 4 or 5, or --generator")
        generator = choose_generator(len(factors), options.resolution)
    try:
        coded = fracfact(generator)
    except (ValueError, IndexError) as error:
        raise ConfigError(f"invalid generator {generator!r}: {error}") from None
    if coded.shape[1] != len(factors):
        raise ConfigError(
            f"generator {generator!r} has {coded.shape[1]} columns but there are "
            f"{len(factors)} factors; give one word per factor"
        )
    resolution = resolution_of(coded)
    if options.resolution is not None and resolution is not None:
        if resolution < options.resolution:
            raise ConfigError(
                f"generator {generator!r} gives resolution {resolution}, "
                f"below the requested {options.resolution}"
            )
    return DesignMatrix(((coded + 1) / 2).astype(int), generator=generator, resolution=resolution)


@DESIGNS.register("pb")
def plackett_burman(factors: list[Factor], options: DesignOptions) -> DesignMatrix:
    """A Plackett-Burman screening design: main effects only, in a multiple of 4 cells."""
    _require_two_levels(factors, "pb")
    coded = pbdesign(len(factors))
    # Sizes that are not a power of 2 give no exact alias words, only partial aliasing
    # of main effects with two-factor interactions: resolution III by convention.
    return DesignMatrix(
        ((coded + 1) / 2).astype(int),
        resolution=resolution_of(coded) or 3,
        notes=["Plackett-Burman: main effects only; interactions are aliased with them"],
    )


@DESIGNS.register("latin")
def latin_square(factors: list[Factor], options: DesignOptions) -> DesignMatrix:
    """Build a cyclic k x k Latin square of a row, a column and a treatment factor."""
    if len(factors) != 3:
        raise ConfigError(
            f"a Latin square takes exactly 3 factors (row, column, treatment), "
            f"got {len(factors)}: {[f.key for f in factors]}"
        )
    sizes = {len(f.levels) for f in factors}
    if len(sizes) != 1:
        raise ConfigError(
            "a Latin square needs the same number of levels for all 3 factors, got "
            + ", ".join(f"{f.key}: {len(f.levels)}" for f in factors)
        )
    size = sizes.pop()
    rows = [(i, j, (i + j) % size) for i in range(size) for j in range(size)]
    return DesignMatrix(
        np.asarray(rows, dtype=int),
        notes=[
            f"{size}x{size} Latin square: main effects only, valid if the factors do not "
            "interact; each factor is partly aliased with the interaction of the other two"
        ],
    )


def _require_two_levels(factors: list[Factor], design: str) -> None:
    for factor in factors:
        if len(factor.levels) != 2:
            raise ConfigError(
                f"the {design} design takes 2-level factors only, but {factor.key} has "
                f"{len(factor.levels)} levels {list(map(format_level, factor.levels))}; "
                "use --design full or latin"
            )


def choose_generator(factor_count: int, resolution: int) -> str:
    """Return a pyDOE3 generator string for the smallest 2-level fraction of ``resolution``.

    Among the generator sets of that size, the one with the highest resolution and then
    the fewest shortest words in its defining relation (minimum aberration) wins.
    """
    # NOTE: pyDOE3 1.6.2 fracfact_by_res never uses the word of all base factors, so it
    # rejects 2^(4-1) IV and 2^(5-1) V, and for 9 factors at IV it returns resolution III.
    # This search replaces it; pyDOE3's fracfact builds the matrix from the result.
    if resolution < 3:
        raise ConfigError(f"resolution must be 3 or more, got {resolution}")
    letters = string.ascii_lowercase
    if factor_count > len(letters):
        raise ConfigError(f"a fractional design takes at most 26 factors, got {factor_count}")
    for base_count in range(1, factor_count + 1):
        extra_count = factor_count - base_count
        base = " ".join(letters[:base_count])
        if extra_count == 0:
            return base
        words = [
            mask
            for mask in range(1, 2**base_count)
            if bin(mask).count("1") >= max(2, resolution - 1)
        ]
        if len(words) < extra_count:
            continue
        work = math.comb(len(words), extra_count) * 2**extra_count
        if work > MAX_GENERATOR_WORK:
            raise ConfigError(
                f"{factor_count} factors at resolution {resolution} is too large for the "
                "generator search; pass --generator, e.g. 'a b c d abc abd'"
            )
        best = _best_generator_set(words, base_count, extra_count, resolution)
        if best is not None:
            extra = [
                "".join(letters[bit] for bit in range(base_count) if mask >> bit & 1)
                for mask in best
            ]
            return " ".join([base, *extra])
    raise ConfigError(f"no 2-level fraction of resolution {resolution} for {factor_count} factors")


def _best_generator_set(
    words: list[int], base_count: int, extra_count: int, resolution: int
) -> tuple[int, ...] | None:
    """Search generator sets for the best word-length pattern at or above ``resolution``."""
    best: tuple[int, ...] | None = None
    best_score: tuple[int, tuple[int, ...]] | None = None
    for combination in itertools.combinations(words, extra_count):
        # The defining relation is the group spanned by the generator words. The word of
        # generator i is its base letters plus the letter of added factor i.
        group = [0]
        for i, mask in enumerate(combination):
            generator = mask | 1 << (base_count + i)
            group += [word ^ generator for word in group]
        lengths = [bin(word).count("1") for word in group[1:]]
        shortest = min(lengths)
        if shortest < resolution:
            continue
        pattern = tuple(lengths.count(length) for length in range(shortest, shortest + 3))
        score = (shortest, tuple(-count for count in pattern))
        if best_score is None or score > best_score:
            best, best_score = combination, score
    return best


def resolution_of(coded: np.ndarray, max_word_length: int = 6) -> int | None:
    """Return the length of the shortest word of the defining relation, None if none.

    A word is a set of columns whose elementwise product is constant (+1 or -1), so the
    effects it links cannot be distinguished. Words longer than ``max_word_length`` are not
    searched, which can only miss resolutions above it.
    """
    factor_count = coded.shape[1]
    for size in range(1, min(factor_count, max_word_length) + 1):
        for subset in itertools.combinations(range(factor_count), size):
            product = np.prod(coded[:, subset], axis=1)
            if np.all(product == product[0]):
                return size
    return None


def effect_label(index: int) -> str:
    """Return the letter that stands for factor ``index`` in alias tables (A, B, ...)."""
    return string.ascii_uppercase[index] if index < 26 else f"X{index + 1}"


def describe_aliasing(coded: np.ndarray, keys: list[str]) -> list[str]:
    """Describe how main effects and two-factor interactions alias each other.

    Full aliasing (correlation +-1) reads ``A = BC``. Partial aliasing, as in
    Plackett-Burman designs whose size is not a power of 2, is summarised per main effect.
    """
    count = coded.shape[1]
    lines = [f"{effect_label(i)} = {key}" for i, key in enumerate(keys)]
    mains = {effect_label(i): coded[:, i] for i in range(count)}
    pairs = {
        effect_label(i) + effect_label(j): coded[:, i] * coded[:, j]
        for i, j in itertools.combinations(range(count), 2)
    }
    any_aliasing = False
    for name, column in mains.items():
        full, partial = _correlated(name, column, {**mains, **pairs})
        any_aliasing = any_aliasing or bool(full or partial)
        text = f"{name} = " + " = ".join(full) if full else ""
        if partial:
            largest = max(abs(r) for r in partial.values())
            text += ("; " if text else f"{name} ") + (
                f"partly aliased with {len(partial)} two-factor interactions "
                f"(|r| up to {largest:.2f})"
            )
        if text:
            lines.append(text)
    partial_pairs = 0
    for name, column in pairs.items():
        others = {other: pairs[other] for other in pairs if other > name}
        full, partial = _correlated(name, column, others)
        partial_pairs += len(partial)
        if full:
            any_aliasing = True
            lines.append(f"{name} = " + " = ".join(full))
    if partial_pairs:
        any_aliasing = True
        lines.append(f"{partial_pairs} pairs of two-factor interactions are partly aliased")
    if not any_aliasing:
        lines.append("no main effect or two-factor interaction is aliased with another")
    return lines


def _correlated(
    name: str, column: np.ndarray, others: dict[str, np.ndarray]
) -> tuple[list[str], dict[str, float]]:
    """Split the other effects into fully aliased (signed names) and partly correlated."""
    full: list[str] = []
    partial: dict[str, float] = {}
    for other, other_column in others.items():
        if other == name:
            continue
        correlation = float(np.mean(column * other_column))
        if abs(correlation) < 1e-9:
            continue
        if abs(abs(correlation) - 1.0) < 1e-9:
            full.append(("-" if correlation < 0 else "") + other)
        else:
            partial[other] = correlation
    return full, partial


def dvc_arguments(run: Run, params_file: str = "params.yaml") -> list[str]:
    """Return the ``dvc exp run --queue`` arguments that queue ``run`` (without ``dvc``)."""
    prefix = "" if params_file == "params.yaml" else f"{params_file}:"
    arguments = ["exp", "run", "--queue"]
    for key, value in run.settings.items():
        arguments += ["-S", f"{prefix}{key}={format_override(value)}"]
    return arguments + ["--name", run.name]
