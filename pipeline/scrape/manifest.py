"""``manifest.csv``: one row per kept picture, the contract with the detect and filter stages."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.files import atomic_write_bytes
from pipeline.scrape.archive import ImageRecord

COLUMNS = [
    "id",
    "source",
    "post_id",
    "source_url",
    "page_url",
    "path",  # relative to the folder that contains manifest.csv
    "sha256",
    "width",
    "height",
    "bytes",
    "tags",
    "rating",
    "artist",
]


def write_manifest(records: list[ImageRecord], path: Path) -> None:
    """Write ``records`` to ``path`` atomically, in the order they were kept."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(vars(record))
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
