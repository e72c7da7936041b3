"""The ``zerochan`` source: listing pages plus the per-post ``/<id>?json`` endpoint.

Listing pages (``/?p=N`` or ``/<Tag>?p=N``) link each post as ``/<id>`` inside
``ul#thumbs2``. The per-post JSON gives the full-size URL (``full``), ``width``,
``height``, ``size``, the file's md5 (``hash``) and ``tags``. Zerochan requests that API
clients put their Zerochan username in the User-Agent, so set ZEROCHAN_USERNAME to do so.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterator
from urllib.parse import quote_plus, urljoin, urlsplit

from pipeline.scrape.html import SelectorError, parse_html, parse_selector
from pipeline.scrape.http import FetchError, PoliteSession, check_http_url, host_of
from pipeline.scrape.params import ScrapeParams, ZerochanParams
from pipeline.scrape.sources.base import (
    SOURCES,
    Post,
    SourceContext,
    clean_md5,
    fetch_listing_pages,
    join_tags,
    positive_int,
)

log = logging.getLogger(__name__)

POST_PATH = re.compile(r"^/([0-9]{1,20})$")
USERNAME_ENV = "ZEROCHAN_USERNAME"


class ZerochanSource:
    name = "zerochan"

    def __init__(self, settings: ZerochanParams, http: PoliteSession) -> None:
        self.settings = settings
        self.http = http
        self.base_url = settings.base_url.rstrip("/")
        self.site = host_of(self.base_url)
        username = os.environ.get(USERNAME_ENV, "").strip()
        if username:
            http.session.headers["User-Agent"] = f"{http.settings.user_agent} - {username}"
        else:
            log.warning(
                "Zerochan requests that API clients name their Zerochan username in the "
                "User-Agent; set %s to add it",
                USERNAME_ENV,
            )

    def listing_request(self, page: int) -> tuple[str, dict[str, Any]]:
        path = quote_plus(self.settings.tag.strip()) if self.settings.tag.strip() else ""
        return f"{self.base_url}/{path}", {"p": page}

    def posts(self) -> Iterator[Post]:
        yielded: set[str] = set()
        pages = fetch_listing_pages(self.http, self.listing_request, self.settings.max_pages)
        for _, text, final_url in pages:
            post_ids, has_next = self.parse_listing(text, final_url)
            if not post_ids:
                return
            for post_id in post_ids:
                if post_id in yielded:
                    continue
                yielded.add(post_id)
                yield Post(
                    post_id=post_id, page_url=f"{self.base_url}/{post_id}", needs_resolve=True
                )
            if not has_next:
                return

    def parse_listing(self, text: str, page_url: str) -> tuple[list[str], bool]:
        """Return the post ids on a listing page, in order, and whether a next page exists."""
        document = parse_html(text)
        post_ids: list[str] = []
        for link in document.select(self.settings.post_link_selector):
            target = urljoin(page_url, link.get("href"))
            match = POST_PATH.match(urlsplit(target).path)
            if match and host_of(target) == self.site and match.group(1) not in post_ids:
                post_ids.append(match.group(1))
        has_next = bool(document.select("a[rel~=next], link[rel~=next]"))
        return post_ids, has_next

    def resolve(self, post: Post) -> Post:
        """Fill in the file URL, size, md5 and tags from ``/<id>?json``; may raise FetchError."""
        # The endpoint takes a bare "json" key, which requests' params cannot express.
        data = self.http.get_json(f"{self.base_url}/{post.post_id}?json")
        if not isinstance(data, dict) or str(data.get("id")) != post.post_id:
            raise FetchError("invalid_post_json", f"post {post.post_id}: JSON does not describe it")
        full = str(data.get("full") or "")
        if urlsplit(full).scheme not in ("http", "https"):
            raise FetchError("invalid_post_json", f"post {post.post_id}: no http(s) 'full' URL")
        post.file_url = full
        post.width = positive_int(data.get("width"))
        post.height = positive_int(data.get("height"))
        post.file_size = positive_int(data.get("size"))
        post.md5 = clean_md5(data.get("hash"))
        tags = data.get("tags")
        post.tags = join_tags(tags) if isinstance(tags, list) else ""
        post.needs_resolve = False
        return post


@SOURCES.register("zerochan")
def make_zerochan_source(params: ScrapeParams, context: SourceContext) -> ZerochanSource:
    check_http_url(params.zerochan.base_url, "scrape.zerochan.base_url")
    try:
        parse_selector(params.zerochan.post_link_selector)
    except SelectorError as error:
        raise ValueError(f"scrape.zerochan.post_link_selector: {error}") from error
    return ZerochanSource(params.zerochan, context.http)
