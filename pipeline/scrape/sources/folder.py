"""The ``folder`` source: pictures already on disk, found recursively under scrape.folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from pipeline.scrape.params import ScrapeParams
from pipeline.scrape.sources.base import SOURCES, Post, SourceContext


class FolderSource:
    name = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.site = str(folder)

    def posts(self) -> Iterator[Post]:
        for path in list_files(self.folder):
            relative = path.relative_to(self.folder).as_posix()
            yield Post(
                post_id=relative,
                page_url="",
                file_url=path.as_uri(),
                local_path=path,
                file_size=path.stat().st_size,
            )

    def resolve(self, post: Post) -> Post:
        return post


def list_files(folder: Path) -> list[Path]:
    """Return every regular file under ``folder``, sorted, skipping hidden names."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                found.append(path)
    return found


@SOURCES.register("folder")
def make_folder_source(params: ScrapeParams, context: SourceContext) -> FolderSource:
    if not params.folder:
        raise ValueError(
            "scrape.folder is empty; set scrape.folder=PATH to a directory of pictures "
            "when scrape.source=folder"
        )
    folder = Path(params.folder).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"scrape.folder = {params.folder!r}: directory not found")
    out_dir = context.out_dir.resolve()
    if folder == out_dir or out_dir in folder.parents or folder in out_dir.parents:
        raise ValueError(
            f"scrape.folder = {params.folder!r} overlaps the output folder {str(out_dir)!r}; "
            "choose a folder outside it"
        )
    if not list_files(folder):
        raise ValueError(f"scrape.folder = {params.folder!r} contains no files")
    return FolderSource(folder)
