"""The ``gallery-dl`` source: runs the gallery-dl command-line tool, then checks its files.

gallery-dl downloads into a staging folder inside the output folder with
``--write-metadata``. Each file then goes through the same checks, dedupe and archive
as the other sources, and is removed from staging once handled. gallery-dl's own
``--download-archive`` (kept beside the scrape archive) makes reruns skip what it already
fetched. gallery-dl applies its own request pacing (given delay_s and jitter_s as
``--sleep-request``), retries and login handling; it does not read robots.txt.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

from pipeline.scrape.http import check_http_url
from pipeline.scrape.params import ScrapeParams
from pipeline.scrape.sources.base import SOURCES, Post, SourceContext, SourceError, join_tags
from pipeline.scrape.sources.folder import list_files

log = logging.getLogger(__name__)

STAGING_DIR = ".gallery-dl-staging"
DOWNLOAD_ARCHIVE = "gallery-dl-archive.sqlite3"


class GalleryDlSource:
    name = "gallery-dl"
    site = "gallery-dl"

    def __init__(self, command: list[str], staging: Path, timeout_s: float) -> None:
        self.command = command
        self.staging = staging
        self.timeout_s = timeout_s

    def posts(self) -> Iterator[Post]:
        self.staging.mkdir(parents=True, exist_ok=True)
        self._run_gallery_dl()
        for path in list_files(self.staging):
            if path.suffix in (".json", ".part"):
                continue
            metadata_path = path.with_name(path.name + ".json")
            post = post_from_metadata(path, _read_metadata(metadata_path))
            post.post_id = post.post_id or path.relative_to(self.staging).as_posix()
            post.staged_files = [path, metadata_path]
            yield post

    def resolve(self, post: Post) -> Post:
        return post

    def _run_gallery_dl(self) -> None:
        log.info("running gallery-dl with %d option(s) and URL(s)", len(self.command) - 1)
        try:
            result = subprocess.run(self.command, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as error:
            raise SourceError(
                "gallery_dl_timeout",
                f"gallery-dl ran longer than scrape.gallery_dl.timeout_s = {self.timeout_s} s",
            ) from error
        if result.returncode != 0:
            # gallery-dl exits non-zero when some files failed; the others are still usable.
            log.warning(
                "gallery-dl exited with status %d; checking the files it saved", result.returncode
            )


def post_from_metadata(path: Path, metadata: dict[str, Any]) -> Post:
    """Build a Post for a staged file from gallery-dl's metadata, whatever the site."""
    tags = metadata.get("tag_string") or metadata.get("tags") or ""
    artist = metadata.get("tag_string_artist") or metadata.get("artist") or ""
    category, item_id = metadata.get("category"), metadata.get("id")
    file_url = str(metadata.get("file_url") or "")
    return Post(
        post_id=f"{category}/{item_id}" if category and item_id is not None else "",
        file_url=file_url if file_url.startswith(("http://", "https://")) else path.as_uri(),
        local_path=path,
        tags=join_tags(tags) if isinstance(tags, list) else join_tags(str(tags).split()),
        artist=join_tags(artist) if isinstance(artist, list) else str(artist),
        rating=str(metadata.get("rating") or ""),
    )


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_command(
    executable: str, params: ScrapeParams, out_dir: Path, remaining: int
) -> list[str]:
    http = params.http
    low, high = http.delay_s, http.delay_s + http.jitter_s
    sleep = f"{low:g}-{high:g}" if high > low else f"{low:g}"
    command = [
        executable,
        "--directory",
        str(out_dir / STAGING_DIR),
        "--write-metadata",
        "--no-mtime",
        "--sleep",
        sleep,
        "--sleep-request",
        sleep,
        "--retries",
        str(http.max_retries),
        "--http-timeout",
        f"{http.read_timeout_s:g}",
        "--filesize-max",
        str(params.limits.max_bytes),
        "--download-archive",
        str(out_dir / DOWNLOAD_ARCHIVE),
        "--range",
        f"1-{max(remaining, 1)}",
        "-o",
        f"user-agent={http.user_agent}",
    ]
    if params.stop_after_seen:
        command += ["--abort", str(params.stop_after_seen)]
    return command + list(params.gallery_dl.extra_args) + list(params.gallery_dl.urls)


@SOURCES.register("gallery-dl")
def make_gallery_dl_source(params: ScrapeParams, context: SourceContext) -> GalleryDlSource:
    executable = shutil.which("gallery-dl")
    if executable is None:
        raise ValueError(
            "scrape.source = 'gallery-dl' needs the gallery-dl command, which is not on PATH; "
            "install it with 'pip install gallery-dl' or choose another scrape.source"
        )
    if not params.gallery_dl.urls:
        raise ValueError("scrape.gallery_dl.urls is empty; list the gallery URLs to download")
    for index, url in enumerate(params.gallery_dl.urls):
        check_http_url(url, f"scrape.gallery_dl.urls[{index}]")
    command = build_command(executable, params, context.out_dir, context.remaining_images)
    return GalleryDlSource(command, context.out_dir / STAGING_DIR, params.gallery_dl.timeout_s)
