"""Measure each detector's speed and face count on a folder of real pictures.

Runs the detect ensemble (members from params.yaml's detect section, or --detectors)
on every picture in the folder. For each member and for the ensemble it prints images
per second of detection time (decoding excluded) and that speed as a ratio to the
cascade, which runs in the same pass as the baseline. It also prints faces found,
pictures with at least one face, and how many members agree on each ensemble face.

    .venv/bin/python bench/detect_speed.py [--shared PATH] [--raw FOLDER] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import sys
from pathlib import Path

import cv2
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline.config import load_section  # noqa: E402
from pipeline.detect.ensemble import build_ensemble  # noqa: E402
from pipeline.detect.fusion import ENSEMBLE_NAME  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.detect.run import DetectTally  # noqa: E402
from pipeline.images import ImageError, load_rgb  # noqa: E402
from pipeline.skips import SkipCounter  # noqa: E402

BASELINE = "cascade"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"))
    parser.add_argument("--shared", type=Path, default=default_shared,
                        help="folder with data/raw and models/lbpcascade_animeface.xml")
    parser.add_argument("--raw", type=Path, help="pictures to scan; default SHARED/data/raw")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--detectors", nargs="+", help="members to run; default detect.detectors")
    parser.add_argument("--limit", type=int, default=0, help="scan only the first N pictures")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_section(DetectParams, "detect", args.params)
    detectors = args.detectors or params.detectors
    if BASELINE not in detectors:
        detectors = [BASELINE, *detectors]
    overrides: dict = {"detectors": detectors}
    if not params.cascade_path:
        overrides["cascade_path"] = str(args.shared / "models" / "lbpcascade_animeface.xml")
    # replace() runs the section's checks again and passes the path on to the cascade.
    params = dataclasses.replace(params, **overrides)
    ensemble = build_ensemble(params)

    raw = args.raw or args.shared / "data" / "raw"
    paths = sorted(path for path in raw.iterdir() if path.is_file() and path.name != "manifest.csv")
    if args.limit:
        paths = paths[: args.limit]

    tally = DetectTally(images_listed=len(paths))
    skips = SkipCounter(logging.getLogger("bench"))
    for path in tqdm(paths, desc="detect_speed"):
        try:
            image = load_rgb(path, max_pixels=params.max_pixels)
        except ImageError as error:
            skips.skip(path.name, error.reason, str(error))
            continue
        tally.add(ensemble.detect(image))

    print_report(tally, ensemble.names, raw, skips)


def print_report(tally: DetectTally, members: list[str], raw: Path, skips: SkipCounter) -> None:
    tally.seconds[ENSEMBLE_NAME] = sum(tally.seconds[name] for name in [*members, "fusion"])
    speed = {
        name: tally.images_scanned / tally.seconds[name] if tally.seconds[name] else float("nan")
        for name in [*members, ENSEMBLE_NAME]
    }
    print(f"pictures: {raw} ({tally.images_scanned} scanned, skips {skips.as_dict()})")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV threads {cv2.getNumThreads()}")
    header = f"{'detector':<12} {'images/s':>9} {'vs cascade':>11} {'faces':>6}"
    print(f"{header} {'images with face':>17}")
    for name in [*members, ENSEMBLE_NAME]:
        ratio = speed[name] / speed[BASELINE]
        print(
            f"{name:<12} {speed[name]:>9.2f} {ratio:>10.3f}x {tally.faces[name]:>6} "
            f"{tally.images_with_face[name]:>17}"
        )
    by_agreement = {count: tally.fused_by_agreement[count] for count in range(1, len(members) + 1)}
    print(f"ensemble faces by number of agreeing members: {by_agreement}")


if __name__ == "__main__":
    main()
