"""The shuushuu and zerochan sources against fake boards on 127.0.0.1."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fakeboards import (
    FakeServer,
    Reply,
    ShuushuuBoard,
    ZerochanBoard,
    load_pictures,
    scrape_params,
    serve,
    truncated,
)
from pipeline.config import ConfigError
from pipeline.scrape import run_scrape
from pipeline.scrape.http import PoliteSession
from pipeline.scrape.sources.shuushuu import ShuushuuSource
from pipeline.scrape.sources.zerochan import ZerochanSource


@pytest.fixture(scope="module")
def pictures(raw_dir: Path):
    return load_pictures(raw_dir, 6)


@pytest.fixture
def server():
    with FakeServer() as fake:
        yield fake


def manifest_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as stream:
        return {row["id"]: row for row in csv.DictReader(stream)}


# shuushuu


def shuushuu_params(server: FakeServer, **shuushuu: object):
    return scrape_params("shuushuu", shuushuu={"base_url": server.base_url, **shuushuu})


def test_shuushuu_latest_pages(server, pictures, tmp_path: Path):
    board = ShuushuuBoard(server, per_page=2)
    for offset, picture in enumerate(pictures[:5]):
        board.add(1000 + offset, picture)

    metrics = run_scrape(shuushuu_params(server), tmp_path, progress=False)

    assert metrics["kept"] == 5
    assert metrics["rejected"] == {}
    listing_pages = [r.query["page"][0] for r in server.requests if r.path == "/"]
    assert listing_pages == ["1", "2", "3", "4"]  # page 4 is empty and ends the listing
    rows = manifest_rows(tmp_path)
    assert sorted(rows) == [f"shuushuu_{1000 + i}" for i in range(5)]
    row = rows["shuushuu_1000"]
    assert row["source_url"] == server.base_url + board.posts[0].file_path
    assert row["page_url"] == server.base_url + "/image/1000/"
    assert row["tags"] == "long_hair smile"
    assert row["artist"] == "Some_Artist"
    assert row["sha256"] == pictures[0].sha256


def test_shuushuu_top_and_search_listings(server, pictures, tmp_path: Path):
    board = ShuushuuBoard(server, per_page=5)
    board.add(7, pictures[0])

    run_scrape(shuushuu_params(server, listing="top"), tmp_path / "top", progress=False)
    run_scrape(
        shuushuu_params(server, listing="search", search_tags="123  456"),
        tmp_path / "search",
        progress=False,
    )

    top = [r for r in server.requests if r.path == "/top.php"]
    search = [r for r in server.requests if r.path == "/search/results/"]
    assert [r.query["page"][0] for r in top] == ["1", "2"]
    assert search[0].query["tags"] == ["123 456"]
    assert search[0].query["page"] == ["1"]


def test_shuushuu_declared_size_and_odd_links(server, pictures, tmp_path: Path):
    board = ShuushuuBoard(server, per_page=10)
    board.add(1, pictures[0])
    board.add(2, pictures[1], file_path="/elsewhere/2.png")
    board.add(3, pictures[2], file_route=serve(b"<html>oops</html>", "text/html"))
    board.add(4, pictures[3], file_route=truncated(pictures[3].data, pictures[3].content_type))
    # Same bytes as post 1 under another id; shuushuu publishes no md5, so only sha256 catches it.
    board.add(5, pictures[0], file_path="/images/2024-05-01-5-copy.jpeg")

    metrics = run_scrape(shuushuu_params(server), tmp_path, progress=False)

    assert metrics["rejected"] == {
        "content_type": 1,
        "duplicate_content": 1,
        "truncated": 1,
        "unexpected_link": 1,
    }
    assert metrics["kept"] == 1
    assert server.hits("/elsewhere/2.png") == 0


def test_shuushuu_declared_dimensions_skip_download(server, pictures, tmp_path: Path):
    board = ShuushuuBoard(server, per_page=10)
    post = board.add(1, pictures[1])
    params = scrape_params(
        "shuushuu",
        shuushuu={"base_url": server.base_url},
        limits={"min_width": pictures[1].width + 1, "min_height": 1},
    )
    metrics = run_scrape(params, tmp_path, progress=False)
    assert metrics["rejected"] == {"too_small": 1}
    assert server.hits(post.file_path) == 0


def test_shuushuu_links_without_post_blocks(server):
    source = ShuushuuSource(
        shuushuu_params(server).shuushuu, PoliteSession(shuushuu_params(server).http)
    )
    page = (
        '<html><body><a class="thumb_image" href="/images/2023-01-02-555.png">x</a>'
        '<a class="thumb_image" href="/images/no-id-here.png">y</a><a href="/images/x.png">z</a>'
        "</body></html>"
    )
    posts = source.parse_listing(page, server.base_url + "/")
    assert [post.post_id for post in posts] == ["555", "/images/no-id-here.png"]
    assert posts[0].file_url == server.base_url + "/images/2023-01-02-555.png"
    assert not posts[1].has_numeric_id


def test_shuushuu_bad_selector_is_config_error(server, tmp_path: Path):
    params = shuushuu_params(server, image_selector="a:nth-child(2)")
    with pytest.raises(ConfigError, match=r"scrape\.shuushuu\.image_selector"):
        run_scrape(params, tmp_path, progress=False)


def test_shuushuu_search_needs_tags(server, tmp_path: Path):
    with pytest.raises(ConfigError, match="search_tags"):
        run_scrape(shuushuu_params(server, listing="search"), tmp_path, progress=False)


# zerochan


def zerochan_params(server: FakeServer, **zerochan: object):
    return scrape_params(
        "zerochan", zerochan={"base_url": server.base_url, "tag": "Hatsune Miku", **zerochan}
    )


def test_zerochan_listing_and_post_json(server, pictures, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ZEROCHAN_USERNAME", "test_user")
    board = ZerochanBoard(server, per_page=3)
    for offset, picture in enumerate(pictures[:4]):
        board.add(4000 + offset, picture)

    metrics = run_scrape(zerochan_params(server), tmp_path, progress=False)

    assert metrics["kept"] == 4
    listing = [r for r in server.requests if r.path == "/Hatsune+Miku"]
    assert [r.query["p"][0] for r in listing] == ["1", "2"]  # page 2 has no rel="next"
    json_requests = [r for r in server.requests if "json" in r.query]
    assert len(json_requests) == 4
    assert all(r.headers["User-Agent"].endswith(" - test_user") for r in server.requests)
    row = manifest_rows(tmp_path)["zerochan_4000"]
    assert row["tags"] == "Hatsune_Miku Vocaloid"
    assert row["page_url"] == server.base_url + "/4000"
    assert row["source_url"] == server.base_url + board.posts[0].full_path


def test_zerochan_md5_checks_and_duplicates(server, pictures, tmp_path: Path):
    board = ZerochanBoard(server, per_page=10)
    older = board.add(1, pictures[0])
    newer = board.add(2, pictures[0])  # listed first; post 1 then has a known md5
    board.add(3, pictures[1], md5="f" * 32)
    board.add(
        4,
        pictures[2],
        json_route=lambda request: Reply(body=b"{not json", content_type="application/json"),
    )
    board.add(
        5,
        pictures[3],
        json_route=lambda request: Reply(body=b'{"id": 999}', content_type="application/json"),
    )
    board.add(6, pictures[4], json_route=lambda request: Reply(404, b"gone"))

    metrics = run_scrape(zerochan_params(server), tmp_path, progress=False)

    assert metrics["kept"] == 1
    assert metrics["rejected"] == {
        "duplicate_content": 1,
        "http_404": 1,
        "invalid_json": 1,
        "invalid_post_json": 1,
        "md5_mismatch": 1,
    }
    assert server.hits(newer.full_path) == 1
    assert server.hits(older.full_path) == 0


def test_zerochan_listing_ignores_foreign_links(server):
    params = zerochan_params(server)
    source = ZerochanSource(params.zerochan, PoliteSession(params.http))
    page = (
        '<ul id="thumbs2"><li><a href="/12">a</a><a href="https://other.example/13">b</a>'
        '<a href="/tags/14">c</a><a href="/12">dup</a></li><li><a href="/15">d</a></li></ul>'
    )
    post_ids, has_next = source.parse_listing(page, server.base_url + "/Hatsune+Miku?p=1")
    assert post_ids == ["12", "15"]
    assert has_next is False
