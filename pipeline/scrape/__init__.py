"""Scrape stage: download or copy anime pictures into ``images/`` with a manifest and archive."""

from pipeline.scrape.params import ScrapeParams
from pipeline.scrape.runner import run_scrape
from pipeline.scrape.sources import SOURCES

__all__ = ["SOURCES", "ScrapeParams", "run_scrape"]
