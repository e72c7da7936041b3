"""Scrape sources; importing this package registers every one of them in SOURCES."""

from pipeline.scrape.sources import danbooru, folder, gallery_dl, shuushuu, zerochan  # noqa: F401
from pipeline.scrape.sources.base import SOURCES, Post, Source, SourceContext, SourceError

__all__ = ["SOURCES", "Post", "Source", "SourceContext", "SourceError"]
