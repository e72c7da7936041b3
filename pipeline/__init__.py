"""Anime-face DCGAN pipeline: scrape, detect, filter, train and evaluate, run by DVC."""

__version__ = "0.1.0"
