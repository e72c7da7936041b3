"""Resuming after kill -9 and archive recovery."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from fakeboards import DanbooruBoard, FakeServer, load_pictures, scrape_params, serve, stall
from pipeline.config import to_dict
from pipeline.scrape import run_scrape
from pipeline.scrape.archive import Archive, ImageRecord
from pipeline.scrape.runner import ARCHIVE_NAME, _exclusive_lock

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGE_SCRIPT = REPO_ROOT / "stages" / "scrape.py"


@pytest.fixture(scope="module")
def pictures(raw_dir: Path):
    return load_pictures(raw_dir, 5)


def write_params(path: Path, params) -> Path:
    path.write_text(yaml.safe_dump({"scrape": to_dict(params)}))
    return path


def wait_for_files(folder: Path, timeout_s: float) -> list[Path]:
    """Poll until ``folder`` contains a file, because the client opens it after the server writes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(folder.iterdir()) if folder.is_dir() else []
        if found:
            return found
        time.sleep(0.02)
    return []


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_kill_mid_download_then_resume(pictures, tmp_path: Path):
    started, release = threading.Event(), threading.Event()
    with FakeServer() as server:
        board = DanbooruBoard(server)
        for post_id, picture in zip((5, 4, 3, 2, 1), pictures):
            board.add(post_id, picture)
        stalled = pictures[2]
        stalled_path = next(p["file_url"] for p in board.posts if p["id"] == 3)
        stalled_path = stalled_path.removeprefix(server.base_url)
        server.route(stalled_path, stall(stalled.data, stalled.content_type, started, release))
        params = scrape_params(
            "danbooru", danbooru={"base_url": server.base_url, "posts_per_page": 10}
        )
        params_file = write_params(tmp_path / "params.yaml", params)
        out = tmp_path / "raw"

        # Run the stage in a child process and kill it while post 3 is half downloaded.
        command = [
            sys.executable,
            str(STAGE_SCRIPT),
            "--out",
            str(out),
            "--metrics",
            str(tmp_path / "m.json"),
            "--params",
            str(params_file),
        ]
        with (tmp_path / "child.log").open("wb") as child_log:
            child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=child_log, stderr=child_log)
            try:
                assert started.wait(60), "the child never reached the stalled download"
                partials = wait_for_files(out / ".partial", timeout_s=30)
                os.kill(child.pid, signal.SIGKILL)
                child.wait(30)
            finally:
                if child.poll() is None:
                    child.kill()
                release.set()
        assert child.returncode == -signal.SIGKILL
        assert len(partials) == 1, "the half download should sit in .partial"
        assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
            [f"danbooru_5.{pictures[0].extension}", f"danbooru_4.{pictures[1].extension}"]
        )

        # Resume with the file served normally again.
        server.route(stalled_path, serve(stalled.data, stalled.content_type))
        files_before = [p for p in server.paths() if p.startswith("/data/")]
        metrics = run_scrape(params, out, progress=False)
        files_after = [p for p in server.paths() if p.startswith("/data/")][len(files_before) :]

    assert metrics["already_have"] == 2
    assert metrics["kept"] == 3
    assert metrics["rejected"] == {}
    assert len(files_after) == 3, "posts kept before the kill are not downloaded again"
    assert not (out / ".partial").exists()
    rows = manifest_rows(out)
    assert sorted(row["id"] for row in rows) == [f"danbooru_{i}" for i in range(1, 6)]
    assert len({row["sha256"] for row in rows}) == 5
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        Path(row["path"]).name for row in rows
    )
    for row in rows:
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
    assert not list(out.glob("*-wal")), "the archive closed cleanly"


def make_record(image_id: str, path: str, data: bytes) -> ImageRecord:
    return ImageRecord(
        id=image_id,
        source="danbooru",
        site="board",
        post_id=image_id.split("_")[1],
        source_url="http://board/file",
        page_url="",
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        width=10,
        height=10,
        bytes=len(data),
        tags="",
        rating="g",
        artist="",
    )


def test_recover_finishes_or_drops_pending_rows(tmp_path: Path):
    (tmp_path / "images").mkdir()
    archive = Archive(tmp_path / ARCHIVE_NAME)
    renamed = make_record("danbooru_1", "images/danbooru_1.jpg", b"renamed before the kill")
    (tmp_path / renamed.path).write_bytes(b"renamed before the kill")
    archive.add_pending(renamed)
    never_renamed = make_record("danbooru_2", "images/danbooru_2.jpg", b"still in .partial")
    archive.add_pending(never_renamed)
    deleted = make_record("danbooru_3", "images/danbooru_3.jpg", b"deleted by hand")
    archive.add_pending(deleted)
    archive.mark_kept(deleted)

    counts = archive.recover(tmp_path)

    assert counts == {"pending_completed": 1, "pending_dropped": 1, "missing_files_dropped": 1}
    assert [record.id for record in archive.kept_images()] == ["danbooru_1"]
    assert archive.post_outcome("danbooru", "board", "1") == ("kept", "")
    assert archive.post_outcome("danbooru", "board", "3") is None, "refetched on the next run"
    archive.close()


def test_second_scrape_on_same_output_refused(raw_dir: Path, tmp_path: Path):
    out = tmp_path / "raw"
    out.mkdir()
    params = scrape_params("folder", folder=str(raw_dir))
    with _exclusive_lock(out / ARCHIVE_NAME):
        with pytest.raises(RuntimeError, match="another scrape is writing"):
            run_scrape(params, out, progress=False)
