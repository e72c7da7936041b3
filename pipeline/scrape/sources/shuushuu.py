"""The ``shuushuu`` source: e-shuushuu classic HTML listing pages.

Each post on a listing page is a block (``div.image_thread`` with ``id="i<post id>"``)
holding an ``a.thumb_image`` link whose href is the full-size file under ``/images/``,
and a ``<dl>`` of ``<dt>Label:</dt><dd>value</dd>`` pairs (Tags, Artist, Dimensions).
Both selectors are params, so a layout change needs no code change.
"""

from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

from pipeline.scrape.html import Element, SelectorError, parse_html, parse_selector
from pipeline.scrape.http import PoliteSession, check_http_url, host_of
from pipeline.scrape.params import ScrapeParams, ShuushuuParams
from pipeline.scrape.sources.base import (
    SOURCES,
    Post,
    SourceContext,
    fetch_listing_pages,
    join_tags,
)

BLOCK_ID = re.compile(r"^i([0-9]{1,20})$")
FILE_NAME_ID = re.compile(r"-([0-9]{1,20})\.[A-Za-z0-9]+$")
DIMENSIONS = re.compile(r"([0-9]{1,6})\s*x\s*([0-9]{1,6})")


class ShuushuuSource:
    name = "shuushuu"

    def __init__(self, settings: ShuushuuParams, http: PoliteSession) -> None:
        self.settings = settings
        self.http = http
        self.base_url = settings.base_url.rstrip("/")
        self.site = host_of(self.base_url)

    def listing_request(self, page: int) -> tuple[str, dict[str, Any]]:
        """Return the URL and query of listing page ``page`` (1-based)."""
        if self.settings.listing == "top":
            return f"{self.base_url}/top.php", {"page": page}
        if self.settings.listing == "search":
            query = {"tags": " ".join(self.settings.search_tags.split()), "page": page}
            return f"{self.base_url}/search/results/", query
        return f"{self.base_url}/", {"page": page}

    def posts(self) -> Iterator[Post]:
        yielded: set[str] = set()
        pages = fetch_listing_pages(self.http, self.listing_request, self.settings.max_pages)
        for _, text, final_url in pages:
            posts = self.parse_listing(text, final_url)
            if not posts:
                return
            for post in posts:
                # Listings shift while new posts arrive, so a post can show up twice.
                if post.file_url in yielded:
                    continue
                yielded.add(post.file_url)
                yield post

    def resolve(self, post: Post) -> Post:
        return post

    def parse_listing(self, text: str, page_url: str) -> list[Post]:
        document = parse_html(text)
        blocks = document.select(self.settings.post_selector)
        posts = []
        if blocks:
            for block in blocks:
                link = block.select_one(self.settings.image_selector)
                if link is not None:
                    posts.append(self._to_post(block, link, page_url))
        else:
            # A layout without post blocks: take the image links alone.
            for link in document.select(self.settings.image_selector):
                posts.append(self._to_post(None, link, page_url))
        return posts

    def _to_post(self, block: Element | None, link: Element, page_url: str) -> Post:
        file_url = urljoin(page_url, link.get("href"))
        path = urlsplit(file_url).path
        post_id = _post_id(block, path)
        post = Post(
            post_id=post_id or path,
            page_url=f"{self.base_url}/image/{post_id}/" if post_id else page_url,
            file_url=file_url,
        )
        if block is not None:
            details = definition_pairs(block)
            post.tags = join_tags(_link_texts(details.get("tags")))
            post.artist = join_tags(_link_texts(details.get("artist")))
            match = (
                DIMENSIONS.search(details["dimensions"].text()) if "dimensions" in details else None
            )
            if match:
                post.width, post.height = int(match.group(1)), int(match.group(2))
        if not path.startswith("/images/") or host_of(file_url) != self.site:
            post.skip_reason = "unexpected_link"
            post.skip_detail = "the image link does not point to /images/ on the board"
        return post


def definition_pairs(block: Element) -> dict[str, Element]:
    """Map each lowercased ``<dt>`` label without its colon to the ``<dd>`` after it."""
    pairs: dict[str, Element] = {}
    for term in block.select("dt"):
        siblings = term.parent.element_children() if term.parent else []
        index = siblings.index(term)
        following = siblings[index + 1] if index + 1 < len(siblings) else None
        if following is not None and following.tag == "dd":
            pairs[term.text().strip().rstrip(":").strip().lower()] = following
    return pairs


def _link_texts(element: Element | None) -> list[str]:
    if element is None:
        return []
    return [link.text().strip().strip('"') for link in element.select("a")]


def _post_id(block: Element | None, path: str) -> str:
    if block is not None:
        match = BLOCK_ID.match(block.get("id"))
        if match:
            return match.group(1)
    match = FILE_NAME_ID.search(path)
    return match.group(1) if match else ""


@SOURCES.register("shuushuu")
def make_shuushuu_source(params: ScrapeParams, context: SourceContext) -> ShuushuuSource:
    settings = params.shuushuu
    check_http_url(settings.base_url, "scrape.shuushuu.base_url")
    for key in ("post_selector", "image_selector"):
        try:
            parse_selector(getattr(settings, key))
        except SelectorError as error:
            raise ValueError(f"scrape.shuushuu.{key}: {error}") from error
    if settings.listing == "search" and not settings.search_tags.strip():
        raise ValueError("scrape.shuushuu.listing = 'search' needs scrape.shuushuu.search_tags")
    return ShuushuuSource(settings, context.http)
