"""Scores for a trained generator: FID, KID, precision/recall/density/coverage, memorisation
and face rate, each stored with the protocol that produced it."""
