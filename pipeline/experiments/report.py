"""Plain-text, CSV, JSON and PNG forms of an effects report."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict
from pathlib import Path

from pipeline.experiments.effects import EffectsReport, Estimate
from pipeline.experiments.factors import format_level
from pipeline.files import atomic_write_bytes, write_json

logger = logging.getLogger(__name__)

CSV_COLUMNS = [
    "term",
    "kind",
    "contrast",
    "estimate",
    "std_error",
    "ci_low",
    "ci_high",
    "half_width",
    "p_value",
    "runs",
    "within_noise",
    "verdict",
]


def format_text(report: EffectsReport) -> str:
    """Render the report as aligned plain-text tables."""
    direction = "lower is better" if report.goal == "min" else "higher is better"
    percent = f"{report.confidence * 100:g}%"
    lines = [f"metric: {report.metric} ({direction})"]
    skipped = ", ".join(f"{reason}={count}" for reason, count in report.skipped.items())
    lines.append(
        f"runs: {report.run_count} finished in {report.cell_count} cells"
        + (f"; skipped: {skipped}" if skipped else "")
    )
    if report.pooled_sd is not None:
        lines.append(
            f"seed noise: pooled within-cell SD {report.pooled_sd:.4g} "
            f"({report.degrees_of_freedom} degrees of freedom); "
            f"{percent} intervals use t = {report.t_quantile:.4g}"
        )
    else:
        lines.append("seed noise: unknown (no cell has two seeds)")

    lines += ["", "cells:"]
    keys = [factor.key for factor in report.factors]
    rows = [[*keys, "runs", "seeds", "mean", "sd"]]
    for cell in report.cells:
        rows.append(
            [format_level(cell.values[key]) for key in keys]
            + [
                str(cell.runs),
                ",".join(str(seed) for seed in cell.seeds),
                f"{cell.mean:.4g}",
                "-" if cell.std is None else f"{cell.std:.3g}",
            ]
        )
    lines += _align(rows)

    lines += ["", f"effects ({percent} confidence intervals):"]
    rows = [["term", "contrast", "estimate", f"{percent} CI", "p", "runs", "verdict"]]
    scale = max([1.0] + [abs(cell.mean) for cell in report.cells])
    for estimate in report.estimates:
        rows.append(_estimate_row(estimate, scale))
    lines += _align(rows)

    if report.notes:
        lines += ["", "notes:"] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _estimate_row(estimate: Estimate, scale: float) -> list[str]:
    sign = "" if estimate.kind == "level_mean" else "+"

    def number(value: float) -> str:
        # Rounding error of a contrast that is exactly zero prints as 0, not +4.441e-16.
        if abs(value) < 1e-9 * scale:
            value = 0.0
        return f"{value:{sign}.4g}"

    interval = "-"
    if estimate.ci_low is not None and estimate.ci_high is not None:
        interval = f"[{number(estimate.ci_low)}, {number(estimate.ci_high)}]"
    p_value = "-" if estimate.p_value is None else f"{estimate.p_value:.3g}"
    return [
        estimate.term,
        estimate.contrast,
        number(estimate.estimate),
        interval,
        p_value,
        str(estimate.runs),
        estimate.verdict,
    ]


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]


def write_csv(report: EffectsReport, path: str | Path) -> None:
    """Write one row per estimate, with the columns of CSV_COLUMNS."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for estimate in report.estimates:
        writer.writerow(
            {key: value for key, value in asdict(estimate).items() if key in CSV_COLUMNS}
        )
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_report_json(report: EffectsReport, path: str | Path) -> None:
    write_json(path, report.to_dict())


def plot_effects(report: EffectsReport, path: str | Path) -> bool:
    """Draw every contrast with its interval and a band of +-1 pooled seed SD.

    Returns False, after logging why, when matplotlib is missing or there is no contrast.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed; skipping the plot %s", path)
        return False
    contrasts = [e for e in report.estimates if e.kind != "level_mean"]
    if not contrasts:
        logger.info("no contrast to plot; skipping the plot %s", path)
        return False

    labels = [f"{e.term}: {e.contrast}" for e in contrasts]
    positions = list(range(len(contrasts)))[::-1]
    figure, axes = plt.subplots(figsize=(9, 1.2 + 0.45 * len(contrasts)))
    if report.pooled_sd is not None:
        axes.axvspan(-report.pooled_sd, report.pooled_sd, color="0.9", label="+-1 seed SD")
    axes.axvline(0.0, color="0.4", linewidth=1)
    for position, estimate in zip(positions, contrasts):
        color = "0.55" if estimate.within_noise in (True, None) else "tab:blue"
        error = None if estimate.half_width is None else [[estimate.half_width]] * 2
        axes.errorbar(estimate.estimate, position, xerr=error, fmt="o", color=color, capsize=3)
    axes.set_yticks(positions, labels, fontsize=8)
    axes.set_xlabel(f"change in {report.metric} ({report.confidence * 100:g}% CI)")
    if report.pooled_sd is not None:
        axes.legend(loc="best", fontsize=8)
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return True
