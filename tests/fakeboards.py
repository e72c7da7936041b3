"""Fake image boards on 127.0.0.1 for the scrape tests and benchmark.

:class:`FakeServer` is a threaded ``http.server`` with exact-path routes that records
every request. :class:`DanbooruBoard`, :class:`ShuushuuBoard` and :class:`ZerochanBoard`
add routes shaped like the public formats of those sites (``/posts.json``, the
``div.image_thread`` listing, ``ul#thumbs2`` plus ``/<id>?json``) and serve real pictures.
Reply helpers (:func:`fail_first`, :func:`truncated`, :func:`stall` ...) build the
misbehaving endpoints.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import struct
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, quote_plus, urlsplit

from PIL import Image

from pipeline.config import parse_section
from pipeline.scrape.params import ScrapeParams

ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"
FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png")}


@dataclass
class Picture:
    """A real picture file with the facts a board would publish about it."""

    path: Path
    data: bytes
    width: int
    height: int
    extension: str
    content_type: str

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load_pictures(raw_dir: Path, count: int, min_side_px: int = 300) -> list[Picture]:
    """Return ``count`` small pictures of ``raw_dir``, JPEG and PNG alternating.

    Only files whose shorter side is at least ``min_side_px`` are used; the smallest
    files of each format come first, so the tests stay fast.
    """
    by_format: dict[str, list[Picture]] = {"JPEG": [], "PNG": []}
    for path in sorted(raw_dir.iterdir(), key=lambda p: (p.stat().st_size, p.name)):
        with Image.open(path) as image:
            width, height, image_format = image.width, image.height, image.format
        if min(width, height) < min_side_px or image_format not in by_format:
            continue
        extension, content_type = FORMATS[image_format]
        by_format[image_format].append(
            Picture(path, path.read_bytes(), width, height, extension, content_type)
        )
    pictures = []
    for jpeg, png in zip(by_format["JPEG"], by_format["PNG"]):
        pictures += [jpeg, png]
    if len(pictures) < count:
        raise ValueError(f"{raw_dir} has fewer than {count} usable pictures")
    return pictures[:count]


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """Return a tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


def corrupt_png(data: bytes) -> bytes:
    """Flip one byte inside the first IDAT chunk of a PNG, so its CRC no longer matches."""
    damaged = bytearray(data)
    damaged[data.index(b"IDAT") + 4 + 20] ^= 0xFF
    return bytes(damaged)


def png_bomb_real(width: int = 9000, height: int = 9000) -> bytes:
    """Return a valid 1-bit PNG of ``width`` x ``height`` black pixels: a few KB on disk."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# Requests and replies


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    handler: BaseHTTPRequestHandler = field(repr=False)
    time_s: float = 0.0


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


# A route returns a Reply, or None after writing the response itself.
Route = Callable[[Request], "Reply | None"]


class _QuietServer(ThreadingHTTPServer):
    """Threads that never block shutdown, and no tracebacks when a client hangs up."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeServer:
    """A threaded HTTP server on 127.0.0.1:<free port> with exact-path routes."""

    def __init__(self, robots_txt: str | None = ROBOTS_TXT) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        # Set on stop() so that stalled or slow routes return at once.
        self.stopping = threading.Event()
        if robots_txt is not None:
            self.routes["/robots.txt"] = lambda request: Reply(body=robots_txt.encode())
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for request in self.requests if request.path == path)

    def paths(self) -> list[str]:
        with self.lock:
            return [request.path for request in self.requests]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
                parts = urlsplit(self.path)
                request = Request(
                    "GET",
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    dict(self.headers.items()),
                    self,
                    time.monotonic(),
                )
                with server.lock:
                    server.requests.append(request)
                route = server.routes.get(parts.path)
                reply = route(request) if route else Reply(404, b"not found")
                if reply is not None:
                    send_reply(self, reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def send_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    try:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body)
    except (BrokenPipeError, ConnectionResetError):
        pass


# Misbehaving endpoints


def serve(data: bytes, content_type: str) -> Route:
    return lambda request: Reply(body=data, content_type=content_type)


def fail_first(
    times: int, status: int, then: Route, headers: dict[str, str] | None = None
) -> Route:
    """Respond with ``status`` to the first ``times`` requests, then delegate to ``then``."""
    calls = {"count": 0}
    lock = threading.Lock()

    def route(request: Request) -> Reply | None:
        with lock:
            calls["count"] += 1
            failing = calls["count"] <= times
        if failing:
            return Reply(status, b"try later", headers=dict(headers or {}))
        return then(request)

    return route


def retry_after_date(seconds_from_now: int) -> str:
    return formatdate(time.time() + seconds_from_now, usegmt=True)


def truncated(data: bytes, content_type: str) -> Route:
    """Declare the full Content-Length, send half the body, then close the connection."""

    def route(request: Request) -> None:
        handler = request.handler
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return route


def slow(seconds: float, then: Route, stopping: threading.Event) -> Route:
    """Wait ``seconds`` (or until the server stops) before responding."""

    def route(request: Request) -> Reply | None:
        stopping.wait(seconds)
        return then(request)

    return route


def stall(
    data: bytes, content_type: str, started: threading.Event, release: threading.Event
) -> Route:
    """Send half the body, set ``started``, and hold the connection until ``release``."""

    def route(request: Request) -> None:
        handler = request.handler
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            started.set()
            release.wait(30)
            handler.wfile.write(data[len(data) // 2 :])
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    return route


def redirect(location: str, status: int = 302) -> Route:
    return lambda request: Reply(status, b"", headers={"Location": location})


# Boards


class DanbooruBoard:
    """``/posts.json`` with ``limit``, ``page=N`` and ``page=b<id>``, newest post first."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.posts: list[dict] = []
        server.route("/posts.json", self._posts_json)

    def add(
        self,
        post_id: int,
        picture: Picture,
        *,
        rating: str = "g",
        score: int = 10,
        file_route: Route | None = None,
        file_path: str | None = None,
        with_md5: bool = True,
        **fields: object,
    ) -> dict:
        """Publish ``picture`` as post ``post_id``; ``file_route`` overrides how it is served."""
        md5 = picture.md5
        path = file_path or f"/data/original/{md5[:2]}/{md5[2:4]}/{md5}.{picture.extension}"
        self.server.route(path, file_route or serve(picture.data, picture.content_type))
        post = {
            "id": post_id,
            "created_at": "2024-05-01T12:00:00.000-04:00",
            "uploader_id": 1,
            "score": score,
            "source": "https://www.pixiv.net/artworks/1",
            "md5": md5 if with_md5 else None,
            "rating": rating,
            "image_width": picture.width,
            "image_height": picture.height,
            "tag_string": "1girl long_hair smile solo",
            "tag_string_general": "1girl long_hair smile solo",
            "tag_string_character": "",
            "tag_string_copyright": "original",
            "tag_string_artist": "some_artist",
            "tag_string_meta": "highres",
            "fav_count": 3,
            "file_ext": picture.extension,
            "file_size": len(picture.data),
            "is_deleted": False,
            "is_banned": False,
            "has_large": False,
            "file_url": self.server.base_url + path,
            "large_file_url": self.server.base_url + path,
            "preview_file_url": self.server.base_url + "/preview/" + md5 + ".jpg",
        }
        post.update(fields)
        self.posts.append(post)
        return post

    def _posts_json(self, request: Request) -> Reply:
        limit = int(request.query.get("limit", ["20"])[0])
        page = request.query.get("page", ["1"])[0]
        posts = sorted(self.posts, key=lambda post: post["id"], reverse=True)
        if page.startswith("b"):
            before = int(page[1:])
            selected = [post for post in posts if post["id"] < before][:limit]
        else:
            start = (int(page) - 1) * limit
            selected = posts[start : start + limit]
        return Reply(body=json.dumps(selected).encode(), content_type="application/json")


@dataclass
class ShuushuuPost:
    post_id: int
    picture: Picture
    tags: list[str]
    artist: str
    file_path: str


class ShuushuuBoard:
    """``/?page=N``, ``/top.php?page=N`` and ``/search/results/?tags=...&page=N`` listings."""

    def __init__(self, server: FakeServer, per_page: int = 3) -> None:
        self.server = server
        self.per_page = per_page
        self.posts: list[ShuushuuPost] = []
        for path in ("/", "/top.php", "/search/results/"):
            server.route(path, self._listing)

    def add(
        self,
        post_id: int,
        picture: Picture,
        *,
        file_route: Route | None = None,
        file_path: str | None = None,
    ) -> ShuushuuPost:
        path = (
            file_path or f"/images/2024-05-01-{post_id}.{picture.extension.replace('jpg', 'jpeg')}"
        )
        self.server.route(path, file_route or serve(picture.data, picture.content_type))
        post = ShuushuuPost(post_id, picture, ["long hair", "smile"], "Some Artist", path)
        self.posts.append(post)
        return post

    def _listing(self, request: Request) -> Reply:
        page = int(request.query.get("page", ["1"])[0])
        posts = sorted(self.posts, key=lambda post: post.post_id, reverse=True)
        selected = posts[(page - 1) * self.per_page : page * self.per_page]
        blocks = "\n".join(self._block(post) for post in selected)
        body = (
            "<!DOCTYPE html>\n<html><head><title>E-Shuushuu</title></head><body>\n"
            '<div id="page"><div id="content">\n'
            f"{blocks}\n"
            '<div class="pagination"><ul><li><a href="?page=2">2</a></li></ul></div>\n'
            "</div></div></body></html>"
        )
        return Reply(body=body.encode(), content_type="text/html; charset=utf-8")

    @staticmethod
    def _block(post: ShuushuuPost) -> str:
        tags = " ".join(
            f'<span class=\'tag\'>"<a href="/tags/{index}">{html.escape(tag)}</a>"</span>'
            for index, tag in enumerate(post.tags, 1)
        )
        picture = post.picture
        name = post.file_path.rsplit("/", 1)[-1]
        return f"""
<div class="image_thread display" id="i{post.post_id}">
  <div class="title"><h2><a class="overlay" href="/image/{post.post_id}/">Image #{post.post_id}</a></h2></div>
  <div class="thumb">
    <a class="thumb_image" href="{post.file_path}" target="_blank"><img src="/images/thumbs/{name}" alt="thumbnail"></a>
  </div>
  <div class="meta">
    <dl>
      <dt>Submitted By:</dt><dd><span class="reg_user">uploader</span></dd>
      <dt>Filename:</dt><dd>{name}</dd>
      <dt>File size:</dt><dd>{len(picture.data) // 1024} KB</dd>
      <dt>Dimensions:</dt><dd>{picture.width}x{picture.height} ({picture.width * picture.height / 1e6:.2f} MPixel)</dd>
      <dt>Tags:</dt><dd class="quicktag" id="quicktag1_{post.post_id}">{tags}</dd>
      <dt>Artist:</dt><dd class="quicktag" id="quicktag4_{post.post_id}"><span class='tag'>"<a href="/tags/99">{html.escape(post.artist)}</a>"</span></dd>
    </dl>
  </div>
</div>"""


@dataclass
class ZerochanPost:
    post_id: int
    picture: Picture
    full_path: str
    primary: str
    tags: list[str]
    json_route: Route | None = None


class ZerochanBoard:
    """``/?p=N`` and ``/<Tag>?p=N`` listings plus ``/<id>?json`` per-post JSON."""

    def __init__(self, server: FakeServer, per_page: int = 3, tag: str = "Hatsune Miku") -> None:
        self.server = server
        self.per_page = per_page
        self.posts: list[ZerochanPost] = []
        server.route("/", self._listing)
        server.route("/" + quote_plus(tag), self._listing)

    def add(
        self,
        post_id: int,
        picture: Picture,
        *,
        file_route: Route | None = None,
        json_route: Route | None = None,
        md5: str | None = None,
    ) -> ZerochanPost:
        full_path = f"/full/Hatsune.Miku.full.{post_id}.{picture.extension}"
        self.server.route(full_path, file_route or serve(picture.data, picture.content_type))
        post = ZerochanPost(
            post_id, picture, full_path, "Hatsune Miku", ["Hatsune Miku", "Vocaloid"]
        )
        post.json_route = json_route or self._json_route(
            post, md5 if md5 is not None else picture.md5
        )
        self.server.route(f"/{post_id}", self._post_page(post))
        self.posts.append(post)
        return post

    def _json_route(self, post: ZerochanPost, md5: str) -> Route:
        def route(request: Request) -> Reply:
            data = {
                "id": post.post_id,
                "small": f"{self.server.base_url}/240/{post.post_id}.jpg",
                "medium": f"{self.server.base_url}/600/{post.post_id}.jpg",
                "large": f"{self.server.base_url}/large/{post.post_id}.jpg",
                "full": self.server.base_url + post.full_path,
                "width": post.picture.width,
                "height": post.picture.height,
                "size": len(post.picture.data),
                "hash": md5,
                "source": "",
                "primary": post.primary,
                "tags": post.tags,
            }
            return Reply(body=json.dumps(data).encode(), content_type="application/json")

        return route

    def _post_page(self, post: ZerochanPost) -> Route:
        def route(request: Request) -> Reply | None:
            if "json" in request.query:
                assert post.json_route is not None
                return post.json_route(request)
            return Reply(body=b"<html><body>post page</body></html>", content_type="text/html")

        return route

    def _listing(self, request: Request) -> Reply:
        page = int(request.query.get("p", ["1"])[0])
        posts = sorted(self.posts, key=lambda post: post.post_id, reverse=True)
        selected = posts[(page - 1) * self.per_page : page * self.per_page]
        items = "\n".join(
            f'<li class="" data-id="{post.post_id}">'
            f'<a href="/{post.post_id}" tabindex="1" class="thumb">'
            f'<img src="/240/{post.post_id}.jpg" alt="{post.primary}" '
            f'title="{post.picture.width}x{post.picture.height} {len(post.picture.data) // 1024}kB"></a>'
            f'<p><a href="{self.server.base_url}{post.full_path}" class="download">full</a></p></li>'
            for post in selected
        )
        has_next = page * self.per_page < len(posts)
        next_link = f'<a href="?p={page + 1}" rel="next">Next</a>' if has_next else ""
        body = (
            "<!DOCTYPE html><html><head><title>Zerochan</title></head><body>"
            f'<ul id="thumbs2">\n{items}\n</ul>'
            f'<nav class="pagination">{next_link}</nav></body></html>'
        )
        return Reply(body=body.encode(), content_type="text/html; charset=utf-8")


# Params


def scrape_params(source: str, **sections: object) -> ScrapeParams:
    """Return validated params with no politeness delay and tiny back-off, for tests."""
    values: dict[str, object] = {
        "source": source,
        "max_images": 100,
        "http": {
            "delay_s": 0.0,
            "jitter_s": 0.0,
            "backoff_s": 0.01,
            "max_backoff_s": 0.05,
            "max_retries": 1,
            "connect_timeout_s": 2.0,
            "read_timeout_s": 2.0,
        },
        "limits": {"min_width": 64, "min_height": 64},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}  # type: ignore[dict-item]
        else:
            values[key] = value
    return parse_section(ScrapeParams, values, "scrape")
