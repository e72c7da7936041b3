"""Time each GAN stage of `dvc repro` on the real pictures and print its headline figures.

    python bench/pipeline_stages.py [--max-images 103] [--epochs 2] [--width 8]

Copies the project into a temporary git+DVC repository with the end-to-end tests' smoke
profile, limited to --max-images pictures of the shared raw folder. It reproduces the
stages one at a time with `dvc repro -s` and prints the wall time of each. Then it prints
the faces found per detector, the crops kept and dropped per reason, training images/s,
and FID/KID next to the real-vs-real floor and the untrained ceiling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dvc_project import GAN_STAGES, REPO_ROOT, dvc, make_project, smoke_overrides  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    parser.add_argument("--max-images", type=int, default=103, help="pictures to scrape")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=8, help="G and D widths")
    args = parser.parse_args()

    overrides = smoke_overrides(args.shared, args.max_images)
    overrides.update({
        "train.epochs": args.epochs,
        "train.generator_width": args.width,
        "train.discriminator_width": args.width,
    })
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as temp:
        root = make_project(Path(temp) / "project", overrides)
        seconds = {}
        for stage in GAN_STAGES:
            start = time.perf_counter()
            dvc(["repro", "-s", stage], root)
            seconds[stage] = time.perf_counter() - start
        report(root, seconds)
    return 0


def report(root: Path, seconds: dict[str, float]) -> None:
    def load(path: str) -> dict:
        return json.loads((root / path).read_text())

    print("wall time per stage (dvc repro -s STAGE, includes DVC's own overhead):")
    for stage, value in seconds.items():
        print(f"  {stage:<16} {value:7.1f} s")
    print(f"  {'total':<16} {sum(seconds.values()):7.1f} s")

    scrape = load("metrics/scrape.json")
    print(f"\nscrape: kept {scrape['kept']}, rejected {scrape['rejected']}")

    detect = load("metrics/detect.json")
    print(f"detect: {detect['images_scanned']} pictures scanned")
    for name, faces in sorted(detect["faces"].items()):
        with_face = detect["images_with_face_per_detector"][name]
        rate = detect["images_per_second"][name]
        print(f"  {name:<10} {faces:4d} faces in {with_face:3d} pictures, {rate:6.2f} pictures/s")

    kept = load("metrics/filter.json")
    print(f"filter: kept {kept['kept']} of {kept['candidates']}, dropped {kept['dropped']}")

    train = load("dvclive/train/metrics.json")
    print(
        f"train: {train['images_per_second_mean']:.1f} images/s over {train['images_seen']} "
        f"images, peak memory {train['peak_memory_mb']:.0f} MB"
    )

    scores = load("metrics/evaluate.json")
    print(
        f"evaluate: FID {scores['fid']:.1f}, KID {scores['kid_mean']:.4f} +- "
        f"{scores['kid_std']:.4f}; floor FID {scores['floor']['fid_real_halves']:.1f}, "
        f"untrained ceiling FID {scores['ceiling']['fid_untrained']:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
