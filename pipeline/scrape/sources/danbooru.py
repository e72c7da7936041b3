"""The ``danbooru`` source: any Danbooru-compatible ``/posts.json`` API.

Pages are requested newest first with ``page=b<id>`` (posts before an id) after the
first page, which stays stable while new posts arrive. Credentials, when set, come from
the DANBOORU_LOGIN and DANBOORU_API_KEY environment variables and go as HTTP Basic auth
to the API host only, never to the file host.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator
from urllib.parse import urljoin

from pipeline.scrape.http import FetchError, PoliteSession, check_http_url, host_of
from pipeline.scrape.params import DanbooruParams, ScrapeParams
from pipeline.scrape.sources.base import (
    NUMERIC_POST_ID,
    SOURCES,
    Post,
    SourceContext,
    SourceError,
    clean_md5,
    positive_int,
)

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp"})
LOGIN_ENV = "DANBOORU_LOGIN"
API_KEY_ENV = "DANBOORU_API_KEY"


class DanbooruSource:
    name = "danbooru"

    def __init__(self, settings: DanbooruParams, http: PoliteSession) -> None:
        self.settings = settings
        self.http = http
        self.base_url = settings.base_url.rstrip("/")
        self.site = host_of(self.base_url)
        self.auth = credentials_from_env()

    def posts(self) -> Iterator[Post]:
        before_id: int | None = None
        for page_index in range(self.settings.max_pages):
            query: dict[str, Any] = {"limit": self.settings.posts_per_page}
            if self.settings.tags:
                query["tags"] = self.settings.tags
            if before_id is not None:
                query["page"] = f"b{before_id}"
            items = self._fetch_page(query, page_index)
            if not items:
                return
            ids = []
            for item in items:
                post = self.to_post(item)
                if post.has_numeric_id:
                    ids.append(int(post.post_id))
                yield post
            if len(items) < self.settings.posts_per_page or not ids:
                return
            before_id = min(ids)

    def resolve(self, post: Post) -> Post:
        return post

    def _fetch_page(self, query: dict[str, Any], page_index: int) -> list[Any]:
        try:
            data = self.http.get_json(f"{self.base_url}/posts.json", params=query, auth=self.auth)
        except FetchError as error:
            raise SourceError(error.reason, f"listing page {page_index + 1}: {error}") from error
        if isinstance(data, dict) and isinstance(data.get("posts"), list):
            data = data["posts"]
        if not isinstance(data, list):
            raise SourceError(
                "invalid_listing", f"listing page {page_index + 1} is not a JSON list of posts"
            )
        return data

    def to_post(self, item: Any) -> Post:
        """Convert one posts.json entry, setting skip_reason when its metadata rules it out."""
        if not isinstance(item, dict):
            return Post(
                post_id="?", skip_reason="invalid_post", skip_detail="entry is not an object"
            )
        post_id = str(item.get("id", ""))
        post = Post(
            post_id=post_id,
            page_url=f"{self.base_url}/posts/{post_id}",
            tags=str(item.get("tag_string") or ""),
            rating=str(item.get("rating") or ""),
            artist=str(item.get("tag_string_artist") or ""),
            md5=clean_md5(item.get("md5")),
            width=positive_int(item.get("image_width")),
            height=positive_int(item.get("image_height")),
            file_size=positive_int(item.get("file_size")),
        )
        if not NUMERIC_POST_ID.match(post_id):
            post.skip_reason, post.skip_detail = "invalid_post", "missing or non-numeric id"
            return post

        file_url = str(item.get("file_url") or "")
        extension = str(item.get("file_ext") or file_url.rsplit(".", 1)[-1]).lower()
        score = item.get("score")
        if not file_url:
            post.skip_reason, post.skip_detail = "no_file_url", "the board hides the file"
        elif extension not in IMAGE_EXTENSIONS:
            post.skip_reason, post.skip_detail = "unsupported_file_type", extension
        elif post.rating not in self.settings.ratings:
            post.skip_reason, post.skip_detail = "rating", f"rating {post.rating!r}"
        elif isinstance(score, int) and score < self.settings.min_score:
            post.skip_reason, post.skip_detail = "low_score", f"score {score}"
        post.file_url = urljoin(self.base_url + "/", file_url)
        return post


def credentials_from_env() -> tuple[str, str] | None:
    login, api_key = os.environ.get(LOGIN_ENV, ""), os.environ.get(API_KEY_ENV, "")
    if bool(login) != bool(api_key):
        log.warning("set both %s and %s to log in; continuing anonymously", LOGIN_ENV, API_KEY_ENV)
        return None
    return (login, api_key) if login else None


@SOURCES.register("danbooru")
def make_danbooru_source(params: ScrapeParams, context: SourceContext) -> DanbooruSource:
    check_http_url(params.danbooru.base_url, "scrape.danbooru.base_url")
    return DanbooruSource(params.danbooru, context.http)
