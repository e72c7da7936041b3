"""Counting and logging of skipped items, so nothing is dropped silently."""

from __future__ import annotations

import logging
from collections import Counter


class SkipCounter:
    """Count skipped items by reason and log each with its id.

    After ``max_logged_per_reason`` lines for one reason, further skips of that
    reason are counted but logged only at debug level.
    """

    def __init__(self, logger: logging.Logger, max_logged_per_reason: int = 20) -> None:
        self.logger = logger
        self.max_logged_per_reason = max_logged_per_reason
        self.counts: Counter[str] = Counter()

    def skip(self, item_id: str, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        level = logging.WARNING
        if self.counts[reason] > self.max_logged_per_reason:
            level = logging.DEBUG
        self.logger.log(level, "skipped %s: %s%s", item_id, reason, f" ({detail})" if detail else "")
        if self.counts[reason] == self.max_logged_per_reason + 1:
            self.logger.warning("further %r skips are logged at debug level only", reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
