"""Requests per second each scrape source sustains against fake boards on 127.0.0.1.

Each source runs twice against the same local board: once with the default politeness
settings of params.yaml (delay_s 1.0 plus up to jitter_s 0.5 per host, robots.txt on),
and once with delay_s 0 and jitter_s 0 as the baseline. The default rate should come
out near 1 / (delay_s + jitter_s / 2) = 0.8 requests per second, because every request
of a run goes to the same host. Then a resume run: the stage is killed with SIGKILL
halfway through a download and run again, and the script prints what the second run
fetched and kept.

Usage: .venv/bin/python bench/scrape_rate.py [--images N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from fakeboards import (  # noqa: E402
    DanbooruBoard,
    FakeServer,
    ShuushuuBoard,
    ZerochanBoard,
    load_pictures,
    serve,
    stall,
)
from pipeline.config import parse_section, to_dict  # noqa: E402
from pipeline.scrape import ScrapeParams, run_scrape  # noqa: E402

SHARED_DIR = Path(os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"))


def build_board(source: str, server: FakeServer, pictures) -> dict:
    """Publish ``pictures`` on a fake board; return the params section for ``source``."""
    if source == "danbooru":
        board = DanbooruBoard(server)
        for index, picture in enumerate(pictures):
            board.add(100 + index, picture)
        return {"danbooru": {"base_url": server.base_url, "posts_per_page": 20}}
    if source == "shuushuu":
        board = ShuushuuBoard(server, per_page=20)
        for index, picture in enumerate(pictures):
            board.add(100 + index, picture)
        return {"shuushuu": {"base_url": server.base_url}}
    board = ZerochanBoard(server, per_page=20)
    for index, picture in enumerate(pictures):
        board.add(100 + index, picture)
    return {"zerochan": {"base_url": server.base_url, "tag": "Hatsune Miku"}}


def measure(source: str, pictures, http: dict) -> tuple[int, float, int]:
    """Scrape every picture once; return (requests served, requests per second, images kept).

    The rate is (requests - 1) divided by the time from the first to the last request
    the server received, so start-up and the end of the run do not count.
    """
    with FakeServer() as server, tempfile.TemporaryDirectory() as out:
        sections = build_board(source, server, pictures)
        values = {"source": source, "max_images": len(pictures), "http": http, **sections}
        params = parse_section(ScrapeParams, values, "scrape")
        metrics = run_scrape(params, out, progress=False)
        times = [request.time_s for request in server.requests]
        rate = (len(times) - 1) / (times[-1] - times[0])
        return len(times), rate, metrics["kept"]


def resume_figures(pictures) -> dict[str, object]:
    """Kill the stage mid-download with SIGKILL, run it again, and count the outcome."""
    started, release = threading.Event(), threading.Event()
    with FakeServer() as server, tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        board = DanbooruBoard(server)
        for index, picture in enumerate(pictures):
            board.add(100 + index, picture)
        # Posts are listed newest first, so the stalled one comes halfway through.
        middle = board.posts[len(pictures) // 2]
        middle_path = middle["file_url"].removeprefix(server.base_url)
        middle_picture = pictures[len(pictures) // 2]
        server.route(
            middle_path, stall(middle_picture.data, middle_picture.content_type, started, release)
        )

        values = {
            "source": "danbooru",
            "max_images": len(pictures),
            "http": {"delay_s": 0.0, "jitter_s": 0.0},
            "danbooru": {"base_url": server.base_url, "posts_per_page": 20},
        }
        params = parse_section(ScrapeParams, values, "scrape")
        params_file = work_dir / "params.yaml"
        params_file.write_text(yaml.safe_dump({"scrape": to_dict(params)}))
        out = work_dir / "raw"
        command = [
            sys.executable,
            str(REPO_ROOT / "stages" / "scrape.py"),
            "--out",
            str(out),
            "--metrics",
            str(work_dir / "first.json"),
            "--params",
            str(params_file),
        ]
        child = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if not started.wait(120):
                raise RuntimeError("the child scrape never reached the stalled download")
            # The client opens its .part file just after the server sends the first half.
            deadline = time.monotonic() + 30
            while not list((out / ".partial").glob("*.part")) and time.monotonic() < deadline:
                time.sleep(0.02)
            partial_files = len(list((out / ".partial").glob("*.part")))
            kept_before_kill = len(list((out / "images").iterdir()))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
            release.set()

        server.route(middle_path, serve(middle_picture.data, middle_picture.content_type))
        requests_before = len(server.requests)
        resume_started = time.monotonic()
        metrics = run_scrape(params, out, progress=False)
        resume_s = time.monotonic() - resume_started
        resumed_paths = server.paths()[requests_before:]
        images = sorted((out / "images").iterdir())
        hashes = [hashlib.sha256(path.read_bytes()).hexdigest() for path in images]
        return {
            "posts": len(pictures),
            "kept_before_kill": kept_before_kill,
            "partial_files_at_kill": partial_files,
            "already_have_on_resume": metrics["already_have"],
            "kept_on_resume": metrics["kept"],
            "file_downloads_on_resume": sum(p.startswith("/data/") for p in resumed_paths),
            "requests_on_resume": len(resumed_paths),
            "images_after_resume": len(images),
            "duplicate_files": len(hashes) - len(set(hashes)),
            "partial_files_after_resume": (
                len(list((out / ".partial").glob("*"))) if (out / ".partial").exists() else 0
            ),
            "resume_s": round(resume_s, 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="pictures per board and run")
    args = parser.parse_args()
    pictures = load_pictures(SHARED_DIR / "data" / "raw", args.images)
    defaults = to_dict(parse_section(ScrapeParams, {}, "scrape"))["http"]
    baseline = {"delay_s": 0.0, "jitter_s": 0.0}
    expected_rate = 1.0 / (defaults["delay_s"] + defaults["jitter_s"] / 2)

    print(f"{args.images} pictures per run, fake boards on 127.0.0.1, CPU: {os.cpu_count()} cores")
    print(
        f"default politeness: delay_s {defaults['delay_s']}, jitter_s {defaults['jitter_s']}, "
        f"robots.txt on; expected about {expected_rate:.2f} requests/s per host"
    )
    print(
        f"{'source':<10} {'requests':>8} {'default req/s':>14} {'delay 0 req/s':>14} {'ratio':>7}"
    )
    for source in ("danbooru", "shuushuu", "zerochan"):
        requests, polite_rate, kept = measure(source, pictures, {})
        _, fast_rate, fast_kept = measure(source, pictures, baseline)
        assert kept == fast_kept == len(pictures), (source, kept, fast_kept)
        print(
            f"{source:<10} {requests:>8} {polite_rate:>14.2f} {fast_rate:>14.1f} "
            f"{fast_rate / polite_rate:>6.0f}x"
        )

    print("\nresume after SIGKILL mid-download (danbooru, delay 0):")
    for key, value in resume_figures(load_pictures(SHARED_DIR / "data" / "raw", 6)).items():
        print(f"  {key:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
