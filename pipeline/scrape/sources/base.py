"""The Source protocol, the Post record sources yield, and the SOURCES registry."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from pipeline.registry import Registry
from pipeline.scrape.http import FetchError, PoliteSession
from pipeline.scrape.params import ScrapeParams

# Board post ids become part of file names only when they match this pattern.
NUMERIC_POST_ID = re.compile(r"^[0-9]{1,20}$")
MD5_HEX = re.compile(r"^[0-9a-f]{32}$")


class SourceError(Exception):
    """A listing that cannot be read at all, which ends the source early."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Post:
    """One candidate picture as a source lists it, before download."""

    post_id: str  # the board's numeric id, or a relative path for local files
    page_url: str = ""
    file_url: str = ""  # http(s) URL of the full-size file, set now or by Source.resolve
    local_path: Path | None = None  # set instead of file_url by local sources
    tags: str = ""  # space-separated, spaces inside a tag replaced by "_"
    rating: str = ""
    artist: str = ""
    md5: str = ""  # the server's md5 of the file, lowercase hex, when it gives one
    width: int = 0  # size the server declares; 0 when unknown
    height: int = 0
    file_size: int = 0
    needs_resolve: bool = False  # the source must call its per-post endpoint first
    skip_reason: str = ""  # set when the listing metadata already rules the post out
    skip_detail: str = ""
    staged_files: list[Path] = field(default_factory=list)  # deleted once the post is handled

    @property
    def has_numeric_id(self) -> bool:
        return bool(NUMERIC_POST_ID.match(self.post_id))


@dataclass
class SourceContext:
    http: PoliteSession
    out_dir: Path
    remaining_images: int  # how many more images the run may keep


class Source(Protocol):
    name: str
    site: str  # board host or folder path; with name and post_id it keys the archive

    def posts(self) -> Iterator[Post]: ...

    def resolve(self, post: Post) -> Post:
        """Fill in the file URL and metadata from a per-post endpoint; may raise FetchError."""
        ...


# A factory takes the validated scrape section and the run context and returns a Source.
# It raises ValueError with the key and the fix when its settings cannot work.
SOURCES: Registry[Callable[[ScrapeParams, SourceContext], Source]] = Registry("scrape source")


def join_tags(tags: list[str]) -> str:
    """Join tag names with spaces, replacing whitespace inside a tag with underscores."""
    return " ".join("_".join(str(tag).split()) for tag in tags if str(tag).strip())


def clean_md5(value: object) -> str:
    text = str(value or "").strip().lower()
    return text if MD5_HEX.match(text) else ""


def positive_int(value: object) -> int:
    """Return ``value`` as an int when it is a non-negative integer, else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def fetch_listing_pages(
    http: PoliteSession,
    listing_request: Callable[[int], tuple[str, dict[str, Any]]],
    max_pages: int,
) -> Iterator[tuple[int, str, str]]:
    """Yield (page, HTML, final URL) for listing pages 1..max_pages of an HTML board.

    ``listing_request(page)`` returns the page's URL and query. A failed fetch raises
    SourceError with the fetch's reason, so the runner counts and logs it.
    """
    for page in range(1, max_pages + 1):
        url, query = listing_request(page)
        try:
            text, final_url = http.get_text(url, params=query)
        except FetchError as error:
            raise SourceError(error.reason, f"listing page {page}: {error}") from error
        yield page, text, final_url
