"""PoliteSession against a fake server on 127.0.0.1: pacing, retries, robots.txt, redirects."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from fakeboards import (
    FakeServer,
    Reply,
    fail_first,
    redirect,
    retry_after_date,
    scrape_params,
    serve,
    slow,
    truncated,
)
from pipeline.scrape.http import (
    FetchError,
    PoliteSession,
    RateLimitStop,
    check_http_url,
    parse_retry_after,
    redact_url,
)


class FakeClock:
    """A clock that only moves when code sleeps, recording every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_session(clock: FakeClock | None = None, **http: object) -> PoliteSession:
    settings = scrape_params("danbooru", http=http).http
    if clock is None:
        return PoliteSession(settings)
    return PoliteSession(settings, sleep=clock.sleep, clock=clock.clock, rng=random.Random(0))


@pytest.fixture
def server():
    with FakeServer() as fake:
        fake.route("/page", serve(b"hello", "text/plain"))
        yield fake


def test_delay_and_jitter_between_requests(server):
    clock = FakeClock()
    session = make_session(clock, delay_s=2.0, jitter_s=0.5)
    for _ in range(3):
        session.get_text(server.base_url + "/page")

    # robots.txt, then three pages: three waits between four requests.
    assert server.paths() == ["/robots.txt", "/page", "/page", "/page"]
    assert len(clock.sleeps) == 3
    assert all(2.0 <= wait <= 2.5 for wait in clock.sleeps), clock.sleeps
    assert len(set(clock.sleeps)) > 1, "jitter should vary the waits"


def test_hosts_are_paced_separately(server):
    clock = FakeClock()
    session = make_session(clock, delay_s=5.0, respect_robots_txt=False)
    session.get_text(server.base_url + "/page")
    session.get_text(f"http://localhost:{server.port}/page")
    assert clock.sleeps == []


def test_user_agent_on_every_request(server):
    session = make_session(user_agent="test-agent/1.0 (contact: nobody)")
    session.get_text(server.base_url + "/page")
    agents = {request.headers.get("User-Agent") for request in server.requests}
    assert agents == {"test-agent/1.0 (contact: nobody)"}


def test_retry_after_seconds_honoured(server):
    server.route("/busy", fail_first(1, 429, serve(b"ok", "text/plain"), {"Retry-After": "7"}))
    clock = FakeClock()
    session = make_session(clock, max_retries=2)
    text, _ = session.get_text(server.base_url + "/busy")
    assert text == "ok"
    assert server.hits("/busy") == 2
    assert max(clock.sleeps) >= 7.0
    assert session.retries == 1


def test_retry_after_http_date_honoured(server):
    headers = {"Retry-After": retry_after_date(30)}
    server.route("/down", fail_first(1, 503, serve(b"ok", "text/plain"), headers))
    clock = FakeClock()
    make_session(clock, max_retries=1).get_text(server.base_url + "/down")
    assert 27.0 <= max(clock.sleeps) <= 31.0


def test_retry_after_over_limit_stops_run(server):
    server.route("/ban", fail_first(5, 429, serve(b"ok", "text/plain"), {"Retry-After": "86400"}))
    session = make_session(FakeClock(), max_retries=3, max_retry_after_s=60.0)
    with pytest.raises(RateLimitStop, match="max_retry_after_s"):
        session.get_text(server.base_url + "/ban")
    assert server.hits("/ban") == 1


def test_server_errors_back_off_then_fail(server):
    server.route("/broken", lambda request: Reply(500, b"oops"))
    clock = FakeClock()
    session = make_session(clock, max_retries=3, backoff_s=1.0, max_backoff_s=3.0)
    with pytest.raises(FetchError) as caught:
        session.get_text(server.base_url + "/broken")
    assert caught.value.reason == "http_500"
    assert server.hits("/broken") == 4
    assert clock.sleeps == [1.0, 2.0, 3.0]


def test_server_error_then_success(server):
    server.route("/flaky", fail_first(2, 502, serve(b"ok", "text/plain")))
    text, _ = make_session(max_retries=2).get_text(server.base_url + "/flaky")
    assert text == "ok"


def test_not_found_is_not_retried(server):
    with pytest.raises(FetchError) as caught:
        make_session(max_retries=3).get_text(server.base_url + "/missing")
    assert caught.value.reason == "http_404"
    assert server.hits("/missing") == 1


def test_read_timeout_retried_then_fails(server):
    server.route("/slow", slow(1.5, serve(b"late", "text/plain"), server.stopping))
    session = make_session(read_timeout_s=0.2, max_retries=1)
    with pytest.raises(FetchError) as caught:
        session.get_text(server.base_url + "/slow")
    assert caught.value.reason == "timeout"
    assert server.hits("/slow") == 2


def test_connection_refused_is_counted():
    with FakeServer() as fake:
        closed_url = fake.base_url + "/page"
    with pytest.raises(FetchError) as caught:
        make_session(respect_robots_txt=False, max_retries=1).get_text(closed_url)
    assert caught.value.reason == "connection_error"


def test_robots_txt_disallow_respected(server):
    server.route("/private/secret", serve(b"no", "text/plain"))
    with pytest.raises(FetchError) as caught:
        make_session().get_text(server.base_url + "/private/secret")
    assert caught.value.reason == "robots_txt"
    assert server.hits("/private/secret") == 0


def test_robots_txt_ignored_when_turned_off(server):
    server.route("/private/secret", serve(b"yes", "text/plain"))
    text, _ = make_session(respect_robots_txt=False).get_text(server.base_url + "/private/secret")
    assert text == "yes"
    assert server.hits("/robots.txt") == 0


def test_robots_txt_crawl_delay_used():
    with FakeServer(robots_txt="User-agent: *\nCrawl-delay: 5\n") as fake:
        fake.route("/page", serve(b"hello", "text/plain"))
        clock = FakeClock()
        session = make_session(clock, delay_s=1.0)
        session.get_text(fake.base_url + "/page")
        session.get_text(fake.base_url + "/page")
    assert clock.sleeps[-1] >= 5.0


def test_robots_txt_server_error_blocks_host():
    with FakeServer(robots_txt=None) as fake:
        fake.route("/robots.txt", lambda request: Reply(500, b"down"))
        fake.route("/page", serve(b"hello", "text/plain"))
        with pytest.raises(FetchError) as caught:
            make_session(max_retries=1).get_text(fake.base_url + "/page")
    assert caught.value.reason == "robots_txt_unavailable"
    assert fake.hits("/page") == 0


def test_robots_txt_missing_allows_all():
    with FakeServer(robots_txt=None) as fake:
        fake.route("/page", serve(b"hello", "text/plain"))
        text, _ = make_session().get_text(fake.base_url + "/page")
    assert text == "hello"


def test_redirect_same_host_followed(server):
    server.route("/old", redirect("/page"))
    text, final_url = make_session().get_text(server.base_url + "/old")
    assert text == "hello"
    assert final_url == server.base_url + "/page"


def test_redirect_other_host_rejected(server):
    server.route("/away", redirect("http://127.0.0.2:9/elsewhere"))
    with pytest.raises(FetchError) as caught:
        make_session().get_text(server.base_url + "/away")
    assert caught.value.reason == "redirect_other_host"
    assert "allowed_redirect_hosts" in str(caught.value)


def test_redirect_to_allowed_host_drops_credentials(server):
    with FakeServer() as other:
        other.route("/file", serve(b"moved", "text/plain"))
        server.route("/away", redirect(f"http://localhost:{other.port}/file"))
        session = make_session(allowed_redirect_hosts=["localhost"])
        response = session.request(server.base_url + "/away", auth=("user", "secret-key"))
    assert response.text == "moved"
    first = [r for r in server.requests if r.path == "/away"][0]
    expected = "Basic " + base64.b64encode(b"user:secret-key").decode()
    assert first.headers.get("Authorization") == expected
    moved = [r for r in other.requests if r.path == "/file"][0]
    assert "Authorization" not in moved.headers


def test_redirect_to_file_scheme_rejected(server):
    server.route("/sneaky", redirect("file:///etc/passwd"))
    with pytest.raises(FetchError) as caught:
        make_session().get_text(server.base_url + "/sneaky")
    assert caught.value.reason == "redirect_bad_scheme"


def test_redirect_loop_stops(server):
    server.route("/loop", redirect("/loop"))
    with pytest.raises(FetchError) as caught:
        make_session(max_redirects=3).get_text(server.base_url + "/loop")
    assert caught.value.reason == "too_many_redirects"
    assert server.hits("/loop") == 4


def test_download_hashes_and_size(server, tmp_path: Path):
    data = bytes(range(256)) * 100
    server.route("/file.jpg", serve(data, "image/jpeg"))
    result = make_session().download(
        server.base_url + "/file.jpg", tmp_path / "f", max_bytes=10**6, content_types=["image/jpeg"]
    )
    assert result.bytes == len(data)
    assert (tmp_path / "f").read_bytes() == data
    assert result.content_type == "image/jpeg"


def test_download_truncated_body(server, tmp_path: Path):
    server.route("/cut.jpg", truncated(b"x" * 50_000, "image/jpeg"))
    with pytest.raises(FetchError) as caught:
        make_session(max_retries=1).download(
            server.base_url + "/cut.jpg",
            tmp_path / "f",
            max_bytes=10**6,
            content_types=["image/jpeg"],
        )
    assert caught.value.reason == "truncated"
    assert server.hits("/cut.jpg") == 2


def test_download_html_instead_of_image(server, tmp_path: Path):
    server.route("/login.jpg", serve(b"<html>please log in</html>", "text/html; charset=utf-8"))
    with pytest.raises(FetchError) as caught:
        make_session().download(
            server.base_url + "/login.jpg",
            tmp_path / "f",
            max_bytes=10**6,
            content_types=["image/jpeg"],
        )
    assert caught.value.reason == "content_type"


def test_download_declared_length_over_limit(server, tmp_path: Path):
    server.route("/big.jpg", serve(b"x" * 5000, "image/jpeg"))
    with pytest.raises(FetchError) as caught:
        make_session().download(
            server.base_url + "/big.jpg",
            tmp_path / "f",
            max_bytes=1000,
            content_types=["image/jpeg"],
        )
    assert caught.value.reason == "too_many_bytes"


def test_download_body_over_limit_without_length(server, tmp_path: Path):
    def no_length(request):
        handler = request.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b"x" * 300_000)
        handler.close_connection = True

    server.route("/stream.jpg", no_length)
    with pytest.raises(FetchError) as caught:
        make_session().download(
            server.base_url + "/stream.jpg",
            tmp_path / "f",
            max_bytes=100_000,
            content_types=["image/jpeg"],
        )
    assert caught.value.reason == "too_many_bytes"


@pytest.mark.parametrize(
    "value, expected",
    [("120", 120.0), ("0", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_values(value, expected):
    assert parse_retry_after(value, 0.0) == expected


def test_parse_retry_after_http_date():
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0


def test_redact_url_drops_query_and_user_info():
    redacted = redact_url("https://user:pw@board.example/posts.json?login=a&api_key=b")
    assert redacted == "https://board.example/posts.json"


def test_check_http_url_rejects_credentials():
    with pytest.raises(ValueError, match="environment variables"):
        check_http_url("https://user:key@board.example", "scrape.danbooru.base_url")


def test_check_http_url_rejects_other_schemes():
    with pytest.raises(ValueError, match="not an http"):
        check_http_url("ftp://board.example", "scrape.danbooru.base_url")
