"""The danbooru source end to end against a fake ``/posts.json`` board on 127.0.0.1."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from fakeboards import (
    DanbooruBoard,
    FakeServer,
    Reply,
    fail_first,
    corrupt_png,
    png_bomb_header,
    png_bomb_real,
    redirect,
    scrape_params,
    serve,
    slow,
    truncated,
)
from pipeline.scrape import run_scrape
from pipeline.scrape.manifest import COLUMNS


@pytest.fixture(scope="module")
def pictures(raw_dir: Path):
    from fakeboards import load_pictures

    return load_pictures(raw_dir, 8)


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def danbooru_params(server: FakeServer, **sections: object):
    danbooru = {"base_url": server.base_url, "posts_per_page": 2, **sections.pop("danbooru", {})}
    return scrape_params("danbooru", danbooru=danbooru, **sections)


def read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def assert_output_consistent(out: Path) -> list[dict[str, str]]:
    """Check manifest, files and archive agree: no partials, no duplicates, hashes match."""
    rows = read_manifest(out)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert sorted(Path(row["path"]).name for row in rows) == files
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["sha256"] for row in rows}) == len(rows)
    for row in rows:
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert int(row["bytes"]) == len(data)
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir())
    return rows


def test_danbooru_pages_and_manifest(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    for offset, picture in enumerate(pictures[:5]):
        board.add(101 + offset, picture)

    metrics = run_scrape(danbooru_params(server), tmp_path, progress=False)

    assert metrics["kept"] == 5
    assert metrics["seen"] == 5
    assert metrics["rejected"] == {}
    assert metrics["stopped"] == "source_exhausted"
    pages = [r.query.get("page", [""])[0] for r in server.requests if r.path == "/posts.json"]
    assert pages == ["", "b104", "b102"]

    rows = {row["id"]: row for row in assert_output_consistent(tmp_path)}
    assert sorted(rows) == [f"danbooru_{101 + i}" for i in range(5)]
    row = rows["danbooru_101"]
    picture = pictures[0]
    assert row["path"] == f"images/danbooru_101.{picture.extension}"
    assert row["sha256"] == picture.sha256
    assert (int(row["width"]), int(row["height"])) == (picture.width, picture.height)
    assert row["source"] == "danbooru"
    assert row["post_id"] == "101"
    assert row["page_url"] == server.base_url + "/posts/101"
    assert row["source_url"].startswith(server.base_url + "/data/original/")
    assert row["tags"] == "1girl long_hair smile solo"
    assert row["rating"] == "g"
    assert row["artist"] == "some_artist"
    with Image.open(tmp_path / row["path"]) as image:
        assert image.size == (picture.width, picture.height)


def test_danbooru_metadata_filters(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    board.add(1, pictures[0])
    board.add(2, pictures[1], rating="e")
    board.add(3, pictures[2], score=-4)
    board.add(4, pictures[3], image_width=50, image_height=40)
    board.add(5, pictures[4], file_ext="mp4")
    board.add(6, pictures[5], file_url=None)

    metrics = run_scrape(
        danbooru_params(server, danbooru={"min_score": 0}), tmp_path, progress=False
    )

    assert metrics["kept"] == 1
    assert metrics["rejected"] == {
        "low_score": 1,
        "no_file_url": 1,
        "rating": 1,
        "too_small": 1,
        "unsupported_file_type": 1,
    }
    # Metadata rejections cost no download.
    file_requests = [p for p in server.paths() if p.startswith("/data/")]
    assert len(file_requests) == 1


def test_danbooru_every_failure_counted(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    ok, png, jpeg = pictures[0], pictures[1], pictures[2]

    board.add(1, ok)
    board.add(
        2,
        pictures[2],
        file_route=fail_first(1, 429, serve(pictures[2].data, "image/jpeg"), {"Retry-After": "3"}),
    )
    board.add(3, pictures[3], file_route=lambda request: Reply(500, b"error"))
    board.add(4, pictures[4], file_route=truncated(pictures[4].data, "image/jpeg"))
    board.add(5, pictures[5], file_route=serve(b"<html>login</html>", "text/html"))
    board.add(6, pictures[6], file_route=serve(b"<html>login</html>", "image/jpeg"), with_md5=False)
    board.add(7, pictures[7], file_route=serve(png_bomb_header(), "image/png"), with_md5=False)
    board.add(
        8,
        png,
        file_route=serve(png_bomb_real(), "image/png"),
        with_md5=False,
        file_path="/data/bomb.png",
    )
    board.add(
        9,
        png,
        file_route=serve(corrupt_png(png.data), "image/png"),
        with_md5=False,
        file_path="/data/corrupt.png",
    )
    board.add(
        10,
        jpeg,
        file_route=serve(jpeg.data[: len(jpeg.data) // 2], "image/jpeg"),
        with_md5=False,
        file_path="/data/half.jpg",
    )
    board.add(11, ok, md5="0" * 32, file_path="/data/wrong-md5.jpg")
    # Listed after post 1 (newest first), with post 1's md5.
    board.add(0, ok, file_path="/data/duplicate.jpg")
    board.add(
        13,
        pictures[2],
        file_route=redirect("http://127.0.0.2:9/stolen.jpg"),
        with_md5=False,
        file_path="/data/redirect.jpg",
    )
    board.add(14, pictures[3], file_path="/private/14.jpg", with_md5=False)
    board.add(
        15,
        pictures[4],
        file_route=slow(1.0, serve(b"late", "image/jpeg"), server.stopping),
        with_md5=False,
        file_path="/data/slow.jpg",
    )

    sleeps: list[float] = []
    params = danbooru_params(
        server,
        danbooru={"posts_per_page": 20},
        http={"read_timeout_s": 0.2, "max_retries": 1},
        limits={"max_pixels": 20_000_000},
    )
    metrics = run_scrape(params, tmp_path, progress=False, sleep=sleeps.append)

    assert metrics["rejected"] == {
        "content_type": 1,
        "corrupt": 1,
        "duplicate_content": 1,
        "http_500": 1,
        "md5_mismatch": 1,
        "not_an_image": 1,
        "redirect_other_host": 1,
        "robots_txt": 1,
        "timeout": 1,
        "too_many_pixels": 2,
        "truncated": 2,
    }
    assert metrics["kept"] == 2
    assert metrics["seen"] == 15
    assert metrics["already_have"] == 0
    assert metrics["seen"] == metrics["kept"] + metrics["already_have"] + metrics["rejected_total"]
    # The wait is booked before the sleep starts, so allow for the clock moving meanwhile.
    assert max(sleeps) >= 2.99, "Retry-After: 3 must be waited for"
    assert server.hits("/data/duplicate.jpg") == 0, "a known md5 needs no download"
    assert server.hits("/private/14.jpg") == 0
    rows = assert_output_consistent(tmp_path)
    assert sorted(row["id"] for row in rows) == ["danbooru_1", "danbooru_2"]


def test_danbooru_duplicate_content_without_md5(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    board.add(1, pictures[0], with_md5=False, file_path="/data/a.jpg")
    board.add(2, pictures[0], with_md5=False, file_path="/data/b.jpg")

    metrics = run_scrape(danbooru_params(server), tmp_path, progress=False)

    assert metrics["kept"] == 1
    assert metrics["rejected"] == {"duplicate_content": 1}
    assert server.hits("/data/a.jpg") == 1
    assert server.hits("/data/b.jpg") == 1
    assert len(assert_output_consistent(tmp_path)) == 1


def test_danbooru_rerun_fetches_nothing_twice(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    for offset, picture in enumerate(pictures[:3]):
        board.add(10 + offset, picture)
    board.add(20, pictures[3], file_route=serve(b"GIF89a not really", "image/jpeg"), with_md5=False)
    board.add(
        21,
        pictures[4],
        file_route=lambda request: Reply(503, b"busy"),
        with_md5=False,
        file_path="/data/busy.jpg",
    )
    params = danbooru_params(server)
    run_scrape(params, tmp_path, progress=False)
    first_files = [p for p in server.paths() if p.startswith("/data/")]

    metrics = run_scrape(params, tmp_path, progress=False)

    second_files = [p for p in server.paths() if p.startswith("/data/")][len(first_files) :]
    assert metrics["kept"] == 0
    assert metrics["already_have"] == 4  # three kept, one permanent not_an_image
    assert metrics["rejected"] == {"http_503": 1}  # transient, so tried again
    assert second_files == ["/data/busy.jpg", "/data/busy.jpg"]
    assert len(assert_output_consistent(tmp_path)) == 3


def test_danbooru_stop_after_seen(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    for offset, picture in enumerate(pictures[:4]):
        board.add(10 + offset, picture)
    run_scrape(danbooru_params(server), tmp_path, progress=False)
    board.add(30, pictures[4])
    board.add(31, pictures[5])
    listings_before = server.hits("/posts.json")

    metrics = run_scrape(danbooru_params(server, stop_after_seen=2), tmp_path, progress=False)

    assert metrics["kept"] == 2
    assert metrics["already_have"] == 2
    assert metrics["stopped"] == "stop_after_seen"
    assert server.hits("/posts.json") - listings_before == 2


def test_danbooru_max_images_includes_earlier_runs(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    for offset, picture in enumerate(pictures[:4]):
        board.add(10 + offset, picture)
    first = run_scrape(danbooru_params(server, max_images=2), tmp_path, progress=False)
    requests_after_first = len(server.requests)

    second = run_scrape(danbooru_params(server, max_images=2), tmp_path, progress=False)

    assert first["kept"] == 2
    assert first["stopped"] == "max_images"
    assert second["kept"] == 0
    assert second["stopped"] == "max_images"
    assert second["images_total"] == 2
    assert len(server.requests) == requests_after_first


def test_danbooru_credentials_from_environment(
    server, pictures, tmp_path: Path, monkeypatch, caplog
):
    monkeypatch.setenv("DANBOORU_LOGIN", "tester")
    monkeypatch.setenv("DANBOORU_API_KEY", "sekrit-api-key-123")
    board = DanbooruBoard(server)
    board.add(1, pictures[0])
    caplog.set_level(logging.DEBUG)

    metrics = run_scrape(danbooru_params(server), tmp_path, progress=False)

    expected = "Basic " + base64.b64encode(b"tester:sekrit-api-key-123").decode()
    listing = [r for r in server.requests if r.path == "/posts.json"]
    files = [r for r in server.requests if r.path.startswith("/data/")]
    assert all(r.headers.get("Authorization") == expected for r in listing)
    assert all("Authorization" not in r.headers for r in files)
    assert all(
        "sekrit" not in key and "sekrit" not in str(r.query) for r in listing for key in r.query
    )
    assert "sekrit" not in caplog.text
    assert "sekrit" not in json.dumps(metrics)


def test_danbooru_listing_failure_stops_cleanly(server, tmp_path: Path):
    server.route("/posts.json", lambda request: Reply(500, b"down"))
    metrics = run_scrape(danbooru_params(server), tmp_path, progress=False)
    assert metrics["stopped"] == "listing_failed"
    assert "http_500" in metrics["stop_detail"]
    assert metrics["seen"] == 0
    assert read_manifest(tmp_path) == []


def test_danbooru_rate_limit_stop_keeps_work(server, pictures, tmp_path: Path):
    board = DanbooruBoard(server)
    board.add(2, pictures[0])
    board.add(
        1, pictures[1], file_route=lambda request: Reply(429, b"", headers={"Retry-After": "7200"})
    )
    metrics = run_scrape(
        danbooru_params(server, http={"max_retry_after_s": 60.0}), tmp_path, progress=False
    )
    assert metrics["stopped"] == "rate_limited"
    assert metrics["kept"] == 1
    assert len(assert_output_consistent(tmp_path)) == 1
