"""The scrape loop: list posts, skip known ones, fetch, check, dedupe and keep.

Output layout under ``out_dir``:

- ``images/<id>.<ext>``: kept pictures. ``id`` is ``<source>_<numeric post id>`` or
  ``<source>_<first 16 hex digits of sha256>``, never a string taken from a server.
- ``manifest.csv``: one row per kept picture (see :mod:`pipeline.scrape.manifest`).
- ``archive.sqlite3``: seen posts and kept images (see :mod:`pipeline.scrape.archive`).
- ``.partial/``: downloads in progress, emptied at the start of every run.

A file is downloaded to ``.partial/``, fsynced, checked, recorded as pending, renamed
into ``images/`` and only then recorded as kept, so a kill -9 at any point leaves no
half-written image and no duplicate after the next run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from tqdm import tqdm

from pipeline.config import ConfigError, to_dict
from pipeline.scrape.archive import Archive, ImageRecord
from pipeline.scrape.http import Download, FetchError, PoliteSession, RateLimitStop
from pipeline.scrape.manifest import write_manifest
from pipeline.scrape.params import ScrapeParams
from pipeline.scrape.sources import SOURCES, Post, Source, SourceContext, SourceError
from pipeline.scrape.validate import ImageFacts, Rejected, inspect_image
from pipeline.skips import SkipCounter

log = logging.getLogger(__name__)

ARCHIVE_NAME = "archive.sqlite3"
MANIFEST_NAME = "manifest.csv"
IMAGES_DIR = "images"
PARTIAL_DIR = ".partial"
MANIFEST_EVERY_KEPT = 50
COPY_CHUNK_BYTES = 1024 * 1024

# Rejections that a later run would repeat for the same post, so the post is not fetched
# again. Others (timeouts, 5xx, size limits that params may change) are retried next run.
PERMANENT_REASONS = frozenset({"not_an_image", "corrupt", "http_404", "http_410"})


@dataclass
class RunState:
    kept: int = 0
    seen: int = 0
    already_have: int = 0
    images_total: int = 0
    seen_streak: int = 0
    stopped: str = ""
    stop_detail: str = ""
    started_s: float = field(default_factory=time.monotonic)


def build_source(params: ScrapeParams, context: SourceContext) -> Source:
    """Create the configured source; raise ConfigError naming the key and the fix."""
    try:
        factory = SOURCES.get(params.source)
    except KeyError as error:
        raise ConfigError(f"scrape.source: {error.args[0]}") from None
    try:
        return factory(params, context)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def run_scrape(
    params: ScrapeParams,
    out_dir: str | Path,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: bool = True,
) -> dict[str, Any]:
    """Scrape into ``out_dir`` until max_images, the end of the listing or a stop rule.

    Returns the metrics dict, resolved config included. Raises ConfigError before
    anything is written when the params cannot work.
    """
    out_dir = Path(out_dir)
    http = PoliteSession(params.http, sleep=sleep, clock=clock)
    remaining = max(params.max_images - _count_kept_read_only(out_dir / ARCHIVE_NAME), 0)
    try:
        source = build_source(params, SourceContext(http, out_dir, remaining))
    except ConfigError:
        http.close()
        raise

    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(out_dir / ARCHIVE_NAME):
        archive = Archive(out_dir / ARCHIVE_NAME)
        try:
            _clear_partials(out_dir)
            recovered = archive.recover(out_dir)
            scraper = Scraper(params, source, archive, http, out_dir)
            scraper.run(progress)
        finally:
            write_manifest(archive.kept_images(), out_dir / MANIFEST_NAME)
            images_total = archive.count_kept()
            archive.close()
            http.close()
            _remove_if_empty(out_dir / PARTIAL_DIR)
    return scraper.metrics(images_total, recovered)


class Scraper:
    def __init__(
        self,
        params: ScrapeParams,
        source: Source,
        archive: Archive,
        http: PoliteSession,
        out_dir: Path,
    ) -> None:
        self.params = params
        self.source = source
        self.archive = archive
        self.http = http
        self.out_dir = out_dir
        self.images_dir = out_dir / IMAGES_DIR
        self.partial_dir = out_dir / PARTIAL_DIR
        self.skips = SkipCounter(log)
        self.state = RunState()
        self._temp_counter = 0

    def run(self, progress: bool) -> None:
        state = self.state
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        state.images_total = self.archive.count_kept()
        if state.images_total >= self.params.max_images:
            state.stopped = "max_images"
            log.info(
                "%d images already kept, max_images is %d: nothing to do",
                state.images_total,
                self.params.max_images,
            )
            return

        bar = tqdm(
            total=self.params.max_images,
            initial=state.images_total,
            desc=f"scrape {self.source.name}",
            unit="img",
            disable=not progress,
            mininterval=1.0,
        )
        try:
            state.stopped = self._consume(self.source.posts(), bar)
        except SourceError as error:
            state.stopped, state.stop_detail = "listing_failed", f"{error.reason}: {error}"
            log.error("listing stopped: %s", state.stop_detail)
        except RateLimitStop as error:
            state.stopped, state.stop_detail = "rate_limited", str(error)
            log.error("stopping: %s", error)
        finally:
            bar.close()
            self._log_summary()

    def _consume(self, posts: Iterator[Post], bar: tqdm) -> str:
        """Handle posts until a stop rule fires; return the stop reason."""
        state = self.state
        for post in posts:
            state.seen += 1
            total_before = state.images_total
            self._handle_listed(post)
            bar.update(state.images_total - total_before)
            bar.set_postfix(
                seen=state.seen, have=state.already_have, rejected=self.skips.total, refresh=False
            )
            if state.images_total >= self.params.max_images:
                return "max_images"
            if self.params.stop_after_seen and state.seen_streak >= self.params.stop_after_seen:
                log.info("%d consecutive posts were seen before: stopping", state.seen_streak)
                return "stop_after_seen"
        return "source_exhausted"

    def _handle_listed(self, post: Post) -> None:
        previous = self.archive.post_outcome(self.source.name, self.source.site, post.post_id)
        self.state.seen_streak = self.state.seen_streak + 1 if previous else 0
        try:
            if previous and (
                previous[0] in ("kept", "duplicate") or previous[1] in PERMANENT_REASONS
            ):
                self.state.already_have += 1
                return
            self._handle_new(post)
        finally:
            for path in post.staged_files:
                path.unlink(missing_ok=True)

    def _handle_new(self, post: Post) -> None:
        if post.skip_reason:
            self._reject(post, post.skip_reason, post.skip_detail)
            return
        try:
            if post.needs_resolve:
                self.source.resolve(post)
            self._check_declared(post)
        except (FetchError, Rejected) as error:
            self._reject(post, error.reason, str(error))
            return

        if post.md5:
            known = self.archive.image_by_md5(post.md5)
            if known is not None:
                self._record_duplicate(post, known)
                return

        temp = self._temp_path()
        try:
            download = self._fetch(post, temp)
            facts = inspect_image(temp, self.params.limits, expected_md5=post.md5, md5=download.md5)
            known = self.archive.image_by_sha256(download.sha256)
            if known is not None:
                self._record_duplicate(post, known)
                return
            self._keep(post, temp, download, facts)
        except (FetchError, Rejected) as error:
            self._reject(post, error.reason, str(error))
        except OSError as error:
            self._reject(post, "read_error", f"{type(error).__name__}: {error.strerror or error}")
        finally:
            temp.unlink(missing_ok=True)

    def _check_declared(self, post: Post) -> None:
        """Reject on the size the server declares, which saves the download."""
        limits = self.params.limits
        if post.width and post.height:
            if post.width < limits.min_width or post.height < limits.min_height:
                raise Rejected("too_small", f"declared {post.width}x{post.height}")
            if post.width * post.height > limits.max_pixels:
                raise Rejected("too_many_pixels", f"declared {post.width}x{post.height}")
        if post.file_size > limits.max_bytes:
            raise Rejected("too_many_bytes", f"declared {post.file_size} bytes")
        if post.local_path is None and urlsplit(post.file_url).scheme not in ("http", "https"):
            raise Rejected("invalid_url", "the file URL is not http(s)")

    def _fetch(self, post: Post, temp: Path) -> Download:
        limits = self.params.limits
        if post.local_path is not None:
            return copy_with_hashes(post.local_path, temp, limits.max_bytes)
        return self.http.download(
            post.file_url, temp, max_bytes=limits.max_bytes, content_types=limits.content_types
        )

    def _keep(self, post: Post, temp: Path, download: Download, facts: ImageFacts) -> None:
        image_id = self._image_id(post, download.sha256)
        record = ImageRecord(
            id=image_id,
            source=self.source.name,
            site=self.source.site,
            post_id=post.post_id,
            source_url=post.file_url,
            page_url=post.page_url,
            path=f"{IMAGES_DIR}/{image_id}.{facts.extension}",
            sha256=download.sha256,
            md5=download.md5,
            width=facts.width,
            height=facts.height,
            bytes=download.bytes,
            tags=post.tags,
            rating=post.rating,
            artist=post.artist,
        )
        self.archive.add_pending(record)
        # Without a directory fsync a power cut may undo the rename; recover() then drops
        # the row and the next run fetches the picture again.
        os.replace(temp, self.out_dir / record.path)
        self.archive.mark_kept(record)

        self.state.kept += 1
        self.state.images_total += 1
        if self.state.kept % MANIFEST_EVERY_KEPT == 0:
            write_manifest(self.archive.kept_images(), self.out_dir / MANIFEST_NAME)

    def _image_id(self, post: Post, sha256: str) -> str:
        name = self.source.name
        if post.has_numeric_id:
            image_id = f"{name}_{post.post_id}"
            # Another board of the same source may have used this post id already.
            if self.archive.image_by_id(image_id) is None:
                return image_id
        return f"{name}_{sha256[:16]}"

    def _reject(self, post: Post, reason: str, detail: str) -> None:
        self.skips.skip(f"{self.source.name}:{post.post_id}", reason, detail)
        self.archive.record_post(
            self.source.name, self.source.site, post.post_id, "rejected", reason
        )

    def _record_duplicate(self, post: Post, known: ImageRecord) -> None:
        self.skips.skip(
            f"{self.source.name}:{post.post_id}", "duplicate_content", f"same file as {known.id}"
        )
        self.archive.record_post(
            self.source.name,
            self.source.site,
            post.post_id,
            "duplicate",
            "duplicate_content",
            known.id,
        )

    def _temp_path(self) -> Path:
        self._temp_counter += 1
        return self.partial_dir / f"{os.getpid()}-{self._temp_counter}.part"

    def _log_summary(self) -> None:
        state = self.state
        elapsed_s = time.monotonic() - state.started_s
        log.info(
            "scrape %s done (%s): kept %d, seen %d, already had %d, rejected %d %s; "
            "%d images in %s; %d requests in %.1f s",
            self.source.name,
            state.stopped or "interrupted",
            state.kept,
            state.seen,
            state.already_have,
            self.skips.total,
            self.skips.as_dict(),
            state.images_total,
            self.out_dir,
            self.http.requests_sent,
            elapsed_s,
        )

    def metrics(self, images_total: int, recovered: dict[str, int]) -> dict[str, Any]:
        state = self.state
        return {
            "source": self.source.name,
            "site": self.source.site if self.source.name != "folder" else "",
            "kept": state.kept,
            "seen": state.seen,
            "already_have": state.already_have,
            "rejected": self.skips.as_dict(),
            "rejected_total": self.skips.total,
            "images_total": images_total,
            "stopped": state.stopped,
            "stop_detail": state.stop_detail,
            "recovered": recovered,
            "http": self.http.stats(),
            "duration_s": round(time.monotonic() - state.started_s, 3),
            "config": to_dict(self.params),
        }


def copy_with_hashes(source: Path, dest: Path, max_bytes: int) -> Download:
    """Copy a local file to ``dest`` with fsync, hashing it; reject files over ``max_bytes``."""
    size = source.stat().st_size
    if size > max_bytes:
        raise Rejected("too_many_bytes", f"{size} bytes exceeds max_bytes {max_bytes}")
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with source.open("rb") as reader, dest.open("wb") as writer:
        while chunk := reader.read(COPY_CHUNK_BYTES):
            writer.write(chunk)
            sha256.update(chunk)
            md5.update(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    uri = source.as_uri()
    return Download(uri, uri, "", size, sha256.hexdigest(), md5.hexdigest())


class _exclusive_lock:
    """Hold an exclusive flock on ``path`` so two scrapes never share one output folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> None:
        self.handle = self.path.open("a+b")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise RuntimeError(
                f"another scrape is writing to {self.path.parent}; wait for it to finish"
            ) from None

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _count_kept_read_only(path: Path) -> int:
    """Return the kept-image count of an existing archive without creating or changing it."""
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    # immutable=1 skips locking and the -wal/-shm files, which a read-only WAL reader
    # would otherwise leave behind. Missing the transactions still in the WAL is fine here.
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM images WHERE state='kept'").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()


def _clear_partials(out_dir: Path) -> None:
    partial_dir = out_dir / PARTIAL_DIR
    if partial_dir.is_dir():
        leftovers = list(partial_dir.iterdir())
        if leftovers:
            log.info("removing %d unfinished download(s) of an earlier run", len(leftovers))
        shutil.rmtree(partial_dir)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
