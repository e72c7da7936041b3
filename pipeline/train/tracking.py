"""DVCLive logging of the training run, on the main process only.

Metrics are logged with the optimiser step as DVCLive's step, so two runs line up in
``dvc plots diff``. On resume, history rows written after the checkpoint's step are
dropped first, because the run repeats those steps.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

logger = logging.getLogger(__name__)


class RunTracker:
    """Write metrics, sample grids and the run summary through DVCLive.

    Every method is a no-op when ``enabled`` is false (processes other than rank 0).
    """

    def __init__(
        self, live_dir: str | Path, enabled: bool, resume_step: int | None, params: dict[str, Any]
    ) -> None:
        self.live = None
        if not enabled:
            return
        if resume_step is not None:
            truncate_history(Path(live_dir), resume_step)
        self.live = open_live(Path(live_dir), resume=resume_step is not None)
        self.live.log_params(params)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, float(value))
        self.live.make_summary()

    def log_image(self, step: int, name: str, image: np.ndarray) -> None:
        if self.live is None:
            return
        self.live.step = step
        self.live.log_image(name, image)

    def update_summary(self, values: dict[str, Any]) -> None:
        """Add run-level values (images seen, throughput, memory) to ``metrics.json``."""
        if self.live is None:
            return
        self.live.summary.update(values)
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None


def open_live(live_dir: Path, resume: bool) -> Any:
    """Create a DVCLive logger that saves no experiment and leaves dvc.yaml alone.

    dvc.yaml declares the train stage's DVCLive outputs itself.
    """
    # DVCLive imports DVC, which takes a second, so processes that never log skip it.
    import dvclive.live

    def make_live() -> Any:
        return dvclive.live.Live(str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=None)

    if os.environ.get("DVC_ROOT") or _find_dvc_root(Path.cwd()) is not None:
        return make_live()
    # DVCLive 3.x runs `dvc init` and stages .dvc/ in git when the working directory is in
    # a git repository without DVC. A standalone run must not change the repository, so
    # DVCLive gets no repository there.
    # NOTE: this patches dvclive.live.get_dvc_repo, an internal name of DVCLive 3.x.
    with mock.patch.object(dvclive.live, "get_dvc_repo", return_value=None):
        return make_live()


def _find_dvc_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def truncate_history(live_dir: Path, last_step: int) -> None:
    """Drop rows with step > ``last_step`` from every DVCLive metrics file under ``live_dir``."""
    for path in sorted((live_dir / "plots" / "metrics").rglob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream, delimiter="\t")
            fieldnames = reader.fieldnames or []
            rows = [row for row in reader if int(row["step"]) <= last_step]
        temp_path = path.with_suffix(".tsv.tmp")
        with temp_path.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames, delimiter="\t", lineterminator=os.linesep)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temp_path, path)
        logger.debug("kept %d rows of %s up to step %d", len(rows), path, last_step)
