"""Face detectors, their registry and box fusion."""
