"""DVCLive logging of the training run, on the main process only.

Metrics are logged with the optimiser step as DVCLive's step, so two runs line up in
``dvc plots diff``. The tracker also keeps every logged row in memory, and the checkpoint
stores them. A resumed run rewrites the DVCLive history from the checkpoint's rows, because
``dvc exp run`` restores the DVCLive folder of the last locked run before the stage starts,
while the checkpoint folder is not rolled back. The history on disk may therefore lack rows
or come from another run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

logger = logging.getLogger(__name__)

# One logged row: {"step": int, "metrics": {name: float}}.
MetricRow = dict[str, Any]


class RunTracker:
    """Write metrics, sample grids and the run summary through DVCLive.

    ``history`` contains the rows of the checkpoint that the run resumes, or is None for a
    run from step 0. Either way DVCLive first deletes its old metrics and plots, and the
    resumed rows are written again. Every method is a no-op when ``enabled`` is false (processes other
    than rank 0), and such a tracker keeps no rows.
    """

    def __init__(
        self,
        live_dir: str | Path,
        enabled: bool,
        params: dict[str, Any],
        history: list[MetricRow] | None = None,
    ) -> None:
        self.live = None
        self.history: list[MetricRow] = []
        if not enabled:
            return
        self.live = open_live(Path(live_dir))
        self.live.log_params(params)
        if history:
            self._replay(history)

    def _replay(self, history: list[MetricRow]) -> None:
        for row in history:
            self._write_row(row["step"], row["metrics"])
        self.live.make_summary()
        logger.info(
            "rewrote %d DVCLive history rows up to step %d from the checkpoint",
            len(history),
            history[-1]["step"],
        )

    def _write_row(self, step: int, metrics: dict[str, float]) -> None:
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.history.append({"step": step, "metrics": dict(metrics)})

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self.live is None:
            return
        self._write_row(step, {name: float(value) for name, value in metrics.items()})
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


def open_live(live_dir: Path) -> Any:
    """Create a DVCLive logger that clears old metrics and plots, saves no experiment and
    leaves dvc.yaml alone.

    dvc.yaml declares the train stage's DVCLive outputs itself.
    """
    # DVCLive imports DVC, which takes a second, so processes that never log skip it.
    import dvclive.live

    def make_live() -> Any:
        return dvclive.live.Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)

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
