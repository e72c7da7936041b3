"""SQLite archive of seen posts and kept images, stored inside the output folder.

Two tables:

- ``posts``: every post ever looked at, keyed by (source, site, post_id), with the outcome
  (``kept``, ``duplicate`` or ``rejected``) and the rejection reason.
- ``images``: every image written under ``images/``, with its manifest fields. A row is
  inserted as ``pending`` before the file is renamed into place and marked ``kept``
  after, so :meth:`Archive.recover` can finish or undo a run killed in between.

Each change is one transaction. The database runs in WAL mode with ``synchronous=NORMAL``:
a killed process loses no committed transaction, and a power cut can lose only the last
few, which :meth:`Archive.recover` and the next run repair. The ``-wal`` and ``-shm``
files beside the database disappear when it is closed normally.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    source TEXT NOT NULL,
    site TEXT NOT NULL,
    post_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    image_id TEXT NOT NULL DEFAULT '',
    seen_at REAL NOT NULL,
    PRIMARY KEY (source, site, post_id)
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    site TEXT NOT NULL,
    post_id TEXT NOT NULL,
    source_url TEXT NOT NULL,
    page_url TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    md5 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    tags TEXT NOT NULL,
    rating TEXT NOT NULL,
    artist TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'kept')),
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_md5 ON images (md5);
"""


@dataclass
class ImageRecord:
    """One kept image; the fields after ``site`` and ``md5`` are the manifest columns."""

    id: str
    source: str
    site: str
    post_id: str
    source_url: str
    page_url: str
    path: str  # relative to the output folder, with forward slashes
    sha256: str
    md5: str
    width: int
    height: int
    bytes: int
    tags: str
    rating: str
    artist: str


RECORD_COLUMNS = [f.name for f in fields(ImageRecord)]


class Archive:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # Posts

    def post_outcome(self, source: str, site: str, post_id: str) -> tuple[str, str] | None:
        """Return (outcome, reason) of an earlier look at this post, or None."""
        row = self.db.execute(
            "SELECT outcome, reason FROM posts WHERE source=? AND site=? AND post_id=?",
            (source, site, post_id),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def record_post(
        self,
        source: str,
        site: str,
        post_id: str,
        outcome: str,
        reason: str = "",
        image_id: str = "",
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO posts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source, site, post_id, outcome, reason, image_id, time.time()),
        )

    # Images

    def count_kept(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images WHERE state='kept'").fetchone()[0]

    def image_by_sha256(self, sha256: str) -> ImageRecord | None:
        return self._one_image("sha256=? AND state='kept'", (sha256,))

    def image_by_md5(self, md5: str) -> ImageRecord | None:
        return self._one_image("md5=? AND state='kept'", (md5,))

    def image_by_id(self, image_id: str) -> ImageRecord | None:
        return self._one_image("id=?", (image_id,))

    def kept_images(self) -> list[ImageRecord]:
        rows = self.db.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM images WHERE state='kept' ORDER BY rowid"
        ).fetchall()
        return [ImageRecord(*row) for row in rows]

    def add_pending(self, record: ImageRecord) -> None:
        """Insert ``record`` as pending; call before renaming its file into place."""
        placeholders = ", ".join("?" * (len(RECORD_COLUMNS) + 2))
        self.db.execute(
            f"INSERT INTO images ({', '.join(RECORD_COLUMNS)}, state, added_at) "
            f"VALUES ({placeholders})",
            (*astuple(record), "pending", time.time()),
        )

    def mark_kept(self, record: ImageRecord) -> None:
        """Mark the image kept and record its post as kept, in one transaction."""
        with self._transaction():
            self.db.execute("UPDATE images SET state='kept' WHERE id=?", (record.id,))
            self.record_post(record.source, record.site, record.post_id, "kept", "", record.id)

    def recover(self, out_dir: Path) -> dict[str, int]:
        """Finish or undo images left pending by a killed run; drop rows whose file is gone.

        A pending image whose file exists with the recorded size is marked kept, since the
        rename is the last step before the commit. Returns counts by action.
        """
        counts = {"pending_completed": 0, "pending_dropped": 0, "missing_files_dropped": 0}
        rows = self.db.execute("SELECT id, path, bytes, state FROM images").fetchall()
        for image_id, rel_path, size, state in rows:
            file_path = out_dir / rel_path
            present = file_path.is_file() and file_path.stat().st_size == size
            if state == "pending" and present:
                record = self.image_by_id(image_id)
                assert record is not None
                self.mark_kept(record)
                counts["pending_completed"] += 1
            elif not present:
                with self._transaction():
                    self.db.execute("DELETE FROM images WHERE id=?", (image_id,))
                    self.db.execute("DELETE FROM posts WHERE image_id=?", (image_id,))
                file_path.unlink(missing_ok=True)
                key = "pending_dropped" if state == "pending" else "missing_files_dropped"
                counts[key] += 1
                if state == "kept":
                    log.warning(
                        "%s is missing from %s; it will be fetched again", rel_path, out_dir
                    )
        return counts

    def _one_image(self, where: str, args: tuple) -> ImageRecord | None:
        row = self.db.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM images WHERE {where} LIMIT 1", args
        ).fetchone()
        return ImageRecord(*row) if row else None

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
