"""The ``scrape`` section of ``params.yaml``: source choice, politeness and image limits.

Credentials never live here. The sources read them from environment variables
(see ``docs/scraping.md``), so ``params.yaml`` and the saved metrics stay free of secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import ConfigError, param
from pipeline.images import DEFAULT_MAX_PIXELS

# Boards ask for a User-Agent that names the client; add a contact address to yours.
USER_AGENT = "animeface-gan-pipeline/0.1 (anime-face DCGAN dataset builder; python-requests)"


@dataclass
class HttpParams:
    """Politeness and safety settings that apply to every request of every host."""

    user_agent: str = param(USER_AGENT, help="User-Agent header sent with every request")
    delay_s: float = param(
        1.0, min=0.0, max=3600.0, help="minimum seconds between two requests to one host"
    )
    jitter_s: float = param(
        0.5, min=0.0, max=3600.0, help="random extra wait in [0, jitter_s] added to delay_s"
    )
    connect_timeout_s: float = param(10.0, min=0.01, max=600.0)
    read_timeout_s: float = param(
        30.0, min=0.01, max=3600.0, help="maximum seconds without a byte from the server"
    )
    max_download_s: float = param(
        300.0, min=0.1, max=86400.0, help="maximum seconds for one whole file download"
    )
    max_retries: int = param(
        4, min=0, max=20, help="retries after a timeout, 429, 500, 502, 503 or 504"
    )
    backoff_s: float = param(
        2.0, min=0.0, max=3600.0, help="wait before the first retry; doubles on each retry"
    )
    max_backoff_s: float = param(120.0, min=0.0, max=86400.0)
    max_retry_after_s: float = param(
        600.0,
        min=0.0,
        max=86400.0,
        help="a longer Retry-After from a 429 or 503 stops the run instead of waiting",
    )
    respect_robots_txt: bool = param(True)
    max_redirects: int = param(5, min=0, max=30)
    allowed_redirect_hosts: list[str] = param(
        [], help="hosts a redirect may lead to besides the host of the requested URL"
    )


@dataclass
class ImageLimits:
    """Checks every downloaded or copied file passes before it is kept."""

    min_width: int = param(256, min=1, max=100_000)
    min_height: int = param(256, min=1, max=100_000)
    max_bytes: int = param(50_000_000, min=1_000, max=2_000_000_000)
    max_pixels: int = param(
        DEFAULT_MAX_PIXELS,
        min=1,
        max=1_000_000_000,
        help="width * height limit that rejects decompression bombs before decoding",
    )
    formats: list[str] = param(
        ["JPEG", "PNG", "WEBP"], choices=["JPEG", "PNG", "WEBP", "GIF", "BMP"]
    )
    content_types: list[str] = param(
        ["image/jpeg", "image/png", "image/webp"],
        help="accepted media types of a download's Content-Type header",
    )

    def __post_init__(self) -> None:
        # An empty list would reject every file, so the run would end with no images.
        if not self.formats:
            raise ConfigError(
                "scrape.limits.formats is empty, so every file would be rejected; list at "
                "least one of JPEG, PNG, WEBP, GIF, BMP"
            )


@dataclass
class DanbooruParams:
    """Any Danbooru-compatible ``/posts.json`` API."""

    base_url: str = param("https://safebooru.donmai.us")
    tags: str = param("", help="search tags separated by spaces, as typed on the site")
    # Danbooru letters since 2022: g general, s sensitive, q questionable, e explicit.
    # Older Danbooru-compatible boards use s for "safe", so add "s" there.
    ratings: list[str] = param(["g"], choices=["g", "s", "q", "e"])
    min_score: int = param(0, min=-1_000_000, max=1_000_000)
    posts_per_page: int = param(100, min=1, max=200)
    max_pages: int = param(100, min=1, max=1000)


@dataclass
class ShuushuuParams:
    """e-shuushuu classic HTML listing pages."""

    base_url: str = param("https://e-shuushuu.net")
    listing: str = param(
        "latest",
        choices=["latest", "top", "search"],
        help="latest: /?page=N, top: /top.php?page=N, search: /search/results/?tags=...",
    )
    search_tags: str = param("", help="tag ids separated by spaces, for listing: search")
    post_selector: str = param("div.image_thread", help="CSS selector of one post block")
    image_selector: str = param(
        "a.thumb_image", help="CSS selector of the link to the full-size file"
    )
    max_pages: int = param(50, min=1, max=10_000)


@dataclass
class ZerochanParams:
    """Zerochan listing pages plus the per-post ``/<id>?json`` endpoint."""

    base_url: str = param("https://www.zerochan.net")
    tag: str = param("", help="tag page to list, such as 'Hatsune Miku'; empty lists all")
    post_link_selector: str = param(
        "#thumbs2 li a", help="CSS selector of the links to /<id> post pages"
    )
    max_pages: int = param(50, min=1, max=10_000)


@dataclass
class GalleryDlParams:
    """The gallery-dl command-line downloader, for sites without a built-in source."""

    urls: list[str] = param([], help="gallery-dl input URLs")
    extra_args: list[str] = param([], help="extra gallery-dl options, such as --cookies FILE")
    timeout_s: float = param(3600.0, min=1.0, max=604_800.0)


@dataclass
class ScrapeParams:
    source: str = param("danbooru", help="registered source name")
    folder: str = param("", help="directory read by the folder source, searched recursively")
    max_images: int = param(
        500,
        min=1,
        max=10_000_000,
        help="stop when the output contains this many images, counting earlier runs",
    )
    stop_after_seen: int = param(
        0, min=0, max=10_000_000, help="stop after N consecutive already-seen posts; 0: never"
    )
    http: HttpParams = param(HttpParams)
    limits: ImageLimits = param(ImageLimits)
    danbooru: DanbooruParams = param(DanbooruParams)
    shuushuu: ShuushuuParams = param(ShuushuuParams)
    zerochan: ZerochanParams = param(ZerochanParams)
    gallery_dl: GalleryDlParams = param(GalleryDlParams)
