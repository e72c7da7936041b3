"""Finding the cascade file: explicit path, checked download from a loopback server, cache."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.config import ConfigError
from pipeline.detect.cascade import CASCADE_FILENAME, load_cascade, resolve_cascade_file
from pipeline.detect.params import CASCADE_SHA256


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the environment would carry loopback requests off the machine.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    """A loopback HTTP server whose response body and status each test sets."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"] += 1
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    state = {"body": b"", "status": 200, "requests": 0}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/{CASCADE_FILENAME}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_shared_cascade_matches_pinned_hash(cascade_path):
    assert hashlib.sha256(cascade_path.read_bytes()).hexdigest() == CASCADE_SHA256


def test_explicit_path_is_used_as_is(cascade_path, tmp_path):
    assert resolve_cascade_file(str(cascade_path), cache_dir=tmp_path) == cascade_path


def test_missing_explicit_path_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"detect\.cascade_path = .*is not a file"):
        resolve_cascade_file(str(tmp_path / "missing.xml"))


def test_download_is_checked_and_cached(server, cascade_path, tmp_path):
    server["body"] = cascade_path.read_bytes()

    first = resolve_cascade_file("", url=server["url"], cache_dir=tmp_path, timeout_s=10)
    second = resolve_cascade_file("", url=server["url"], cache_dir=tmp_path, timeout_s=10)

    assert first == tmp_path / CASCADE_FILENAME
    assert second == first
    assert first.read_bytes() == server["body"]
    assert server["requests"] == 1
    assert not load_cascade(first).empty()


def test_download_with_wrong_hash_is_rejected(server, tmp_path):
    server["body"] = b"<opencv_storage></opencv_storage>"

    with pytest.raises(ConfigError, match=r"sha256 .*set detect\.cascade_path"):
        resolve_cascade_file("", url=server["url"], cache_dir=tmp_path, timeout_s=10)
    assert not (tmp_path / CASCADE_FILENAME).exists()


def test_failed_download_says_what_to_set(server, tmp_path):
    server["status"] = 404

    with pytest.raises(ConfigError, match=r"downloading .* failed .*set detect\.cascade_path"):
        resolve_cascade_file("", url=server["url"], cache_dir=tmp_path, timeout_s=10)


def test_corrupt_cache_is_downloaded_again(server, cascade_path, tmp_path):
    (tmp_path / CASCADE_FILENAME).write_bytes(b"truncated")
    server["body"] = cascade_path.read_bytes()

    resolved = resolve_cascade_file("", url=server["url"], cache_dir=tmp_path, timeout_s=10)

    assert resolved.read_bytes() == server["body"]
    assert server["requests"] == 1


@pytest.mark.parametrize("content", [b"not xml at all", b"<opencv_storage></opencv_storage>"])
def test_non_cascade_file_is_rejected(tmp_path, content):
    path = tmp_path / "bad.xml"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match="not an OpenCV cascade file"):
        load_cascade(path)
