"""A polite HTTP client: per-host delay, robots.txt, retries, safe redirects, bounded downloads.

Every request of every source goes through :class:`PoliteSession`, so the rules hold
for all of them:

- at least ``delay_s`` plus a random ``[0, jitter_s]`` between two requests to one host
  (longer when robots.txt sets a Crawl-delay);
- robots.txt is fetched once per host and obeyed unless ``respect_robots_txt`` is false;
- 429 and 503 wait for Retry-After (seconds or an HTTP date), other retryable failures
  back off exponentially, and ``max_retries`` caps both;
- redirects are followed by hand, and only to the same host or ``allowed_redirect_hosts``;
- downloads stream to a file with byte, time and Content-Length checks.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import time
import urllib.robotparser
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

import requests

from pipeline.scrape.params import HttpParams

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """A request that failed for good; ``reason`` is the skip-count key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BodyError(FetchError):
    """A failure while reading a response body, which the download retries as a whole."""


class RateLimitStop(Exception):
    """A server asked for a longer pause than ``max_retry_after_s``: the run must stop."""


@dataclass
class Download:
    url: str
    final_url: str
    content_type: str
    bytes: int
    sha256: str
    md5: str


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def redact_url(url: str) -> str:
    """Return ``url`` without user info or query string, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_http_url(url: str, key: str) -> None:
    """Raise ValueError unless ``url`` is an http(s) URL with a host and no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} = {url!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError(
            f"{key} contains user info; remove it and set the credentials through "
            "environment variables instead (see docs/scraping.md)"
        )


class PoliteSession:
    """One ``requests.Session`` with the politeness rules of :class:`HttpParams`.

    ``sleep`` and ``clock`` are injectable so tests can check waits without waiting.
    """

    def __init__(
        self,
        settings: HttpParams,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = settings.user_agent
        self.session.trust_env = False  # no proxies or .netrc credentials picked up silently
        self.allowed_redirect_hosts = {h.lower() for h in settings.allowed_redirect_hosts}
        self._next_request_at: dict[str, float] = {}
        self._host_delay_s: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | str] = {}
        self.requests_sent = 0
        self.retries = 0
        self.bytes_downloaded = 0
        self.waited_s = 0.0

    def close(self) -> None:
        self.session.close()

    def stats(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "retries": self.retries,
            "bytes_downloaded": self.bytes_downloaded,
            "politeness_wait_s": round(self.waited_s, 3),
        }

    # Public requests

    def get_json(
        self, url: str, params: dict[str, Any] | None = None, auth: tuple[str, str] | None = None
    ) -> Any:
        response = self.request(url, params=params, auth=auth)
        try:
            # strict=False accepts raw control characters inside strings, which some boards emit.
            return json.loads(response.text, strict=False)
        except ValueError as error:
            raise FetchError("invalid_json", f"{redact_url(url)}: response is not JSON") from error

    def get_text(self, url: str, params: dict[str, Any] | None = None) -> tuple[str, str]:
        """Return the decoded body and the final URL after redirects."""
        response = self.request(url, params=params)
        return response.text, response.url

    def request(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """GET ``url`` with retries; return a 2xx response or raise FetchError."""
        self._check_robots(url)
        for attempt in range(self.settings.max_retries + 1):
            last_try = attempt == self.settings.max_retries
            try:
                response = self._get_following_redirects(url, params, auth, stream)
            except requests.Timeout as error:
                self._retry_or_raise(last_try, attempt, "timeout", url, error)
                continue
            except requests.ConnectionError as error:
                self._retry_or_raise(last_try, attempt, "connection_error", url, error)
                continue
            except requests.RequestException as error:
                # Invalid URLs and other errors that a retry cannot fix.
                raise FetchError(
                    "request_failed", f"{redact_url(url)}: {type(error).__name__}"
                ) from error

            status = response.status_code
            if 200 <= status < 300:
                return response
            response.close()
            if status in RETRY_STATUSES and not last_try:
                wait_s = self._retry_wait_s(response, attempt)
                self.retries += 1
                log.warning(
                    "HTTP %d from %s; retry %d/%d in %.1f s",
                    status,
                    redact_url(url),
                    attempt + 1,
                    self.settings.max_retries,
                    wait_s,
                )
                self._pause_host(host_of(response.url or url), wait_s)
                continue
            raise FetchError(f"http_{status}", f"{redact_url(url)}: HTTP {status}")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def download(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int,
        content_types: list[str],
    ) -> Download:
        """Stream ``url`` into ``dest`` and return its size and hashes.

        A body that ends early or times out is downloaded again, up to max_retries times;
        request failures are already retried inside :meth:`request`. ``dest`` may hold a
        partial file when this raises; the caller deletes it.
        """
        for attempt in range(self.settings.max_retries + 1):
            try:
                return self._download_once(url, dest, max_bytes, content_types)
            except BodyError as error:
                if attempt == self.settings.max_retries:
                    raise
                self.retries += 1
                wait_s = self._backoff_s(attempt)
                log.warning(
                    "%s: %s; retry %d/%d in %.1f s",
                    redact_url(url),
                    error.reason,
                    attempt + 1,
                    self.settings.max_retries,
                    wait_s,
                )
                self._pause_host(host_of(url), wait_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # Download internals

    def _download_once(
        self, url: str, dest: Path, max_bytes: int, content_types: list[str]
    ) -> Download:
        response = self.request(url, stream=True)
        with response:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type not in [allowed.lower() for allowed in content_types]:
                raise FetchError(
                    "content_type",
                    f"{redact_url(url)}: Content-Type {content_type or 'missing'!r}, "
                    f"expected one of {content_types}",
                )
            declared = _int_header(response.headers.get("Content-Length"))
            if declared is not None and declared > max_bytes:
                raise FetchError(
                    "too_many_bytes",
                    f"{redact_url(url)}: Content-Length {declared} exceeds max_bytes {max_bytes}",
                )
            size, sha256, md5 = self._stream_to_file(response, url, dest, max_bytes)

        # Content-Length counts encoded bytes, so compare only for unencoded bodies.
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if declared is not None and not encoded and size != declared:
            raise BodyError("truncated", f"{redact_url(url)}: received {size} of {declared} bytes")
        return Download(url, response.url, content_type, size, sha256, md5)

    def _stream_to_file(
        self, response: requests.Response, url: str, dest: Path, max_bytes: int
    ) -> tuple[int, str, str]:
        sha256, md5 = hashlib.sha256(), hashlib.md5()
        size = 0
        started = self.clock()
        try:
            with dest.open("wb") as stream:
                for chunk in response.iter_content(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(
                            "too_many_bytes", f"{redact_url(url)}: body exceeds {max_bytes} bytes"
                        )
                    if self.clock() - started > self.settings.max_download_s:
                        raise BodyError(
                            "timeout",
                            f"{redact_url(url)}: download took over "
                            f"{self.settings.max_download_s} s",
                        )
                    stream.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                stream.flush()
                os.fsync(stream.fileno())
        except requests.exceptions.ChunkedEncodingError as error:
            raise BodyError("truncated", f"{redact_url(url)}: body ended early") from error
        except requests.exceptions.ConnectionError as error:
            # requests reports a read timeout inside iter_content as a ConnectionError.
            reason = "timeout" if "timed out" in str(error).lower() else "truncated"
            raise BodyError(
                reason, f"{redact_url(url)}: {reason} while reading the body"
            ) from error
        finally:
            self.bytes_downloaded += size
        return size, sha256.hexdigest(), md5.hexdigest()

    # Request internals

    def _get_following_redirects(
        self,
        url: str,
        params: dict[str, Any] | None,
        auth: tuple[str, str] | None,
        stream: bool,
    ) -> requests.Response:
        origin_host = host_of(url)
        current = url
        for _ in range(self.settings.max_redirects + 1):
            self._wait_turn(host_of(current))
            self.requests_sent += 1
            response = self.session.get(
                current,
                params=params,
                auth=auth,
                stream=True,
                allow_redirects=False,
                timeout=(self.settings.connect_timeout_s, self.settings.read_timeout_s),
            )
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUSES or not location:
                if not stream:
                    _read_body(response, url)
                return response
            response.close()
            target = urljoin(response.url, location)
            self._check_redirect(url, target, origin_host)
            if host_of(target) != origin_host:
                auth = None  # credentials go only to the host they were meant for
            current, params = target, None
        raise FetchError(
            "too_many_redirects",
            f"{redact_url(url)}: more than {self.settings.max_redirects} redirects",
        )

    def _check_redirect(self, url: str, target: str, origin_host: str) -> None:
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https"):
            raise FetchError(
                "redirect_bad_scheme", f"{redact_url(url)}: redirect to a {scheme!r} URL rejected"
            )
        target_host = host_of(target)
        if target_host != origin_host and target_host not in self.allowed_redirect_hosts:
            raise FetchError(
                "redirect_other_host",
                f"{redact_url(url)}: redirect to host {target_host!r} rejected; "
                "add it to scrape.http.allowed_redirect_hosts to allow it",
            )
        self._check_robots(target)

    def _retry_or_raise(
        self, last_try: bool, attempt: int, reason: str, url: str, error: Exception
    ) -> None:
        if last_try:
            raise FetchError(
                reason, f"{redact_url(url)}: {reason} ({type(error).__name__})"
            ) from error
        self.retries += 1
        wait_s = self._backoff_s(attempt)
        log.warning(
            "%s: %s; retry %d/%d in %.1f s",
            redact_url(url),
            reason,
            attempt + 1,
            self.settings.max_retries,
            wait_s,
        )
        self._pause_host(host_of(url), wait_s)

    def _retry_wait_s(self, response: requests.Response, attempt: int) -> float:
        backoff_s = self._backoff_s(attempt)
        if response.status_code not in RETRY_AFTER_STATUSES:
            return backoff_s
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), time.time())
        if retry_after_s is None:
            return backoff_s
        if retry_after_s > self.settings.max_retry_after_s:
            raise RateLimitStop(
                f"{host_of(response.url)} responded HTTP {response.status_code} with Retry-After "
                f"{retry_after_s:.0f} s, over scrape.http.max_retry_after_s = "
                f"{self.settings.max_retry_after_s:.0f} s"
            )
        return max(retry_after_s, backoff_s)

    def _backoff_s(self, attempt: int) -> float:
        return min(self.settings.backoff_s * 2**attempt, self.settings.max_backoff_s)

    # Throttling

    def _wait_turn(self, host: str) -> None:
        """Sleep until ``host`` may be requested again, then book the next slot."""
        now = self.clock()
        wait_s = self._next_request_at.get(host, now) - now
        if wait_s > 0:
            self.waited_s += wait_s
            self.sleep(wait_s)
        delay_s = self._host_delay_s.get(host, self.settings.delay_s)
        jitter_s = self.rng.uniform(0.0, self.settings.jitter_s) if self.settings.jitter_s else 0.0
        self._next_request_at[host] = self.clock() + delay_s + jitter_s

    def _pause_host(self, host: str, wait_s: float) -> None:
        """Hold every request to ``host`` for ``wait_s`` seconds from now."""
        resume_at = self.clock() + wait_s
        self._next_request_at[host] = max(self._next_request_at.get(host, 0.0), resume_at)

    # robots.txt

    def _check_robots(self, url: str) -> None:
        if not self.settings.respect_robots_txt:
            return
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        rules = self._robots.get(origin)
        if rules is None:
            rules = self._robots[origin] = self._fetch_robots(origin)
        if rules == "unavailable":
            raise FetchError(
                "robots_txt_unavailable",
                f"{origin}/robots.txt could not be fetched, so the host is treated as disallowed; "
                "set scrape.http.respect_robots_txt=false to override",
            )
        assert isinstance(rules, urllib.robotparser.RobotFileParser)
        if not rules.can_fetch(self.settings.user_agent, url):
            raise FetchError("robots_txt", f"{redact_url(url)} is disallowed by robots.txt")

    def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | str:
        """Fetch and parse ``origin``/robots.txt, or return "unavailable"."""
        rules = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        host = host_of(origin)
        response = self._get_robots_response(origin)
        if response is None:
            return "unavailable"

        # Status rules of urllib.robotparser.RobotFileParser.read(): 401 and 403 disallow
        # everything, other 4xx allow everything.
        if response.status_code in (401, 403):
            rules.disallow_all = True
        elif 400 <= response.status_code < 500:
            rules.allow_all = True
        else:
            rules.parse(response.text.splitlines())
            crawl_delay = rules.crawl_delay(self.settings.user_agent)
            if crawl_delay and float(crawl_delay) > self.settings.delay_s:
                log.info("%s asks for a Crawl-delay of %s s; using it", origin, crawl_delay)
                self._host_delay_s[host] = float(crawl_delay)
        return rules

    def _get_robots_response(self, origin: str) -> requests.Response | None:
        """GET robots.txt with retries and same-host redirects; None when it stays unreachable."""
        url = origin + "/robots.txt"
        for attempt in range(self.settings.max_retries + 1):
            current = url
            try:
                for _ in range(self.settings.max_redirects + 1):
                    self._wait_turn(host_of(current))
                    self.requests_sent += 1
                    response = self.session.get(
                        current,
                        allow_redirects=False,
                        timeout=(self.settings.connect_timeout_s, self.settings.read_timeout_s),
                    )
                    location = response.headers.get("Location")
                    if response.status_code not in REDIRECT_STATUSES or not location:
                        break
                    target = urljoin(current, location)
                    if host_of(target) != host_of(url) and (
                        host_of(target) not in self.allowed_redirect_hosts
                    ):
                        log.warning("robots.txt of %s redirects to another host", origin)
                        return None
                    current = target
                else:
                    log.warning("robots.txt of %s: too many redirects", origin)
                    return None
            except requests.RequestException as error:
                problem = type(error).__name__
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"HTTP {response.status_code}"
            if attempt == self.settings.max_retries:
                log.warning("robots.txt of %s not fetched (%s)", origin, problem)
                return None
            self.retries += 1
            self._pause_host(host_of(origin), self._backoff_s(attempt))
        return None


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Return the wait in seconds that a Retry-After header requests, or None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _read_body(response: requests.Response, url: str) -> None:
    """Read a non-streamed body now, so read errors surface inside the retry loop."""
    try:
        _ = response.content
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as error:
        response.close()
        # requests reports a read timeout inside the body as a ConnectionError.
        if "timed out" in str(error).lower():
            raise requests.ReadTimeout(f"{redact_url(url)}: read timed out") from error
        raise requests.ConnectionError(f"{redact_url(url)}: body ended early") from error
