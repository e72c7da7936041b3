"""The folder and gallery-dl sources, source selection and params validation."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from PIL import Image

from fakeboards import corrupt_png, scrape_params
from pipeline.config import ConfigError, parse_section
from pipeline.scrape import SOURCES, ScrapeParams, run_scrape


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_folder_real_pictures_and_bad_files(raw_dir: Path, tmp_path: Path):
    folder = tmp_path / "pictures"
    shutil.copytree(raw_dir, folder)
    png = next(p for p in sorted(raw_dir.glob("*.png")))
    (folder / "broken.png").write_bytes(corrupt_png(png.read_bytes()))
    (folder / "notes.txt").write_text("not a picture\n")
    (folder / "nested").mkdir()
    shutil.copy(png, folder / "nested" / "copy.png")  # same content under another name
    (folder / ".hidden.jpg").write_bytes(b"ignored")
    # The expected outcome, worked out independently of the scraper.
    small = 0
    for path in raw_dir.iterdir():
        with Image.open(path) as image:
            small += min(image.size) < 256
    out = tmp_path / "raw"
    params = scrape_params(
        "folder", folder=str(folder), max_images=1000, limits={"min_width": 256, "min_height": 256}
    )

    metrics = run_scrape(params, out, progress=False)

    assert small == 4
    assert metrics["rejected"] == {
        "corrupt": 1,
        "duplicate_content": 1,
        "not_an_image": 1,
        "too_small": small,
    }
    assert metrics["kept"] == 103 - small
    assert metrics["seen"] == 103 + 3
    rows = manifest_rows(out)
    assert len(rows) == 103 - small
    assert len({row["sha256"] for row in rows}) == len(rows)
    for row in rows[:5]:
        data = (out / row["path"]).read_bytes()
        assert row["id"] == "folder_" + hashlib.sha256(data).hexdigest()[:16]
        assert (folder / row["post_id"]).read_bytes() == data
        assert row["source_url"] == (folder / row["post_id"]).as_uri()
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        Path(row["path"]).name for row in rows
    )

    again = run_scrape(params, out, progress=False)

    assert again["kept"] == 0
    # Kept, duplicate, corrupt and non-image files are known; too-small ones are checked again
    # because the limits may have changed.
    assert again["already_have"] == 103 - small + 3
    assert again["rejected"] == {"too_small": small}


def test_folder_empty_missing_or_unset(tmp_path: Path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    cases = [
        ("", "scrape.folder is empty; set scrape.folder=PATH"),
        (str(tmp_path / "absent"), "directory not found"),
        (str(empty), "contains no files"),
    ]
    for folder, message in cases:
        with pytest.raises(ConfigError, match=message):
            run_scrape(scrape_params("folder", folder=folder), tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists(), "nothing is written on a config error"


def test_folder_overlapping_output_rejected(raw_dir: Path, tmp_path: Path):
    out = tmp_path / "raw"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.png").write_bytes(next(raw_dir.glob("*.png")).read_bytes())
    with pytest.raises(ConfigError, match="overlaps the output folder"):
        run_scrape(scrape_params("folder", folder=str(out)), out, progress=False)


def test_unknown_source_lists_valid_names(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        run_scrape(scrape_params("pixiv"), tmp_path, progress=False)
    message = str(caught.value)
    assert "unknown scrape source 'pixiv'" in message
    assert str(SOURCES.names()) in message
    assert SOURCES.names() == ["danbooru", "folder", "gallery-dl", "shuushuu", "zerochan"]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"delay_s": 1}, r"unknown key scrape\.delay_s"),
        ({"http": {"delay": 1}}, r"unknown key scrape\.http\.delay .*allowed keys"),
        ({"http": {"delay_s": -1}}, r"scrape\.http\.delay_s = -1\.0 is below the minimum 0"),
        ({"danbooru": {"ratings": ["x"]}}, r"scrape\.danbooru\.ratings\[0\] = 'x' is not allowed"),
        ({"max_images": 0}, r"scrape\.max_images = 0 is below the minimum 1"),
        ({"shuushuu": {"listing": "new"}}, r"scrape\.shuushuu\.listing = 'new' is not allowed"),
    ],
)
def test_invalid_params_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_section(ScrapeParams, values, "scrape")


def test_credentials_in_base_url_rejected(tmp_path: Path):
    params = scrape_params("danbooru", danbooru={"base_url": "https://me:key@127.0.0.1:9"})
    with pytest.raises(ConfigError, match="environment variables"):
        run_scrape(params, tmp_path, progress=False)


def test_gallery_dl_missing_is_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    params = scrape_params("gallery-dl", gallery_dl={"urls": ["https://example.invalid/g/1"]})
    with pytest.raises(ConfigError, match="gallery-dl command, which is not on PATH"):
        run_scrape(params, tmp_path / "out", progress=False)


FAKE_GALLERY_DL = '''#!{python}
"""Stand-in for gallery-dl: copies two pictures with metadata into --directory."""
import json, shutil, sys
from pathlib import Path

args = sys.argv[1:]
Path({args_log!r}).write_text(json.dumps(args))
target = Path(args[args.index("--directory") + 1])
target.mkdir(parents=True, exist_ok=True)
for index, source in enumerate({sources!r}):
    name = f"board_{{index}}{{Path(source).suffix}}"
    shutil.copy(source, target / name)
    meta = {{"category": "board", "id": 70 + index, "tags": ["blue sky", "smile"],
            "rating": "g", "artist": "someone", "file_url": "https://board.invalid/" + name}}
    (target / (name + ".json")).write_text(json.dumps(meta))
(target / "unfinished.jpg.part").write_bytes(b"partial")
sys.exit(4)  # gallery-dl's status when some downloads failed
'''


def test_gallery_dl_fake_cli(raw_dir: Path, tmp_path: Path, monkeypatch):
    sources = [str(p) for p in sorted(raw_dir.glob("*.jpg"))[:2]]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_log = tmp_path / "args.json"
    script = bin_dir / "gallery-dl"
    script.write_text(
        FAKE_GALLERY_DL.format(python=sys.executable, args_log=str(args_log), sources=sources)
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "raw"
    params = scrape_params(
        "gallery-dl",
        max_images=10,
        stop_after_seen=5,
        gallery_dl={"urls": ["https://board.invalid/posts?tags=sky"]},
    )

    metrics = run_scrape(params, out, progress=False)

    assert metrics["kept"] == 2
    assert metrics["rejected"] == {}
    args = json.loads(args_log.read_text())
    assert args[-1] == "https://board.invalid/posts?tags=sky"
    assert args[args.index("--range") + 1] == "1-10"
    assert args[args.index("--abort") + 1] == "5"
    assert "--write-metadata" in args
    assert any(arg.startswith("user-agent=animeface-gan-pipeline/") for arg in args)
    rows = manifest_rows(out)
    assert {row["post_id"] for row in rows} == {"board/70", "board/71"}
    assert all(row["id"].startswith("gallery-dl_") for row in rows)
    assert rows[0]["tags"] == "blue_sky smile"
    staging = out / ".gallery-dl-staging"
    assert sorted(p.name for p in staging.iterdir()) == ["unfinished.jpg.part"]
