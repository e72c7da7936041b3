"""Print the FID floor, the untrained ceiling, the seed-to-seed spread and the embedding speed.

On real 64x64 crops from <shared>/data/faces (the getchu "positive" folder by default),
with the evaluate stage's extractor (Inception FID network, bilinear antialias resize):

1. Embedding speed: images per second at --batch-size, and its ratio to batch size 1
   measured in the same run as the baseline.
2. Floor: FID and KID between two disjoint random halves of the crops.
3. Seed-to-seed spread: FID of a random subset of --subset-size crops against the other
   crops, over --seeds seeds (mean, std, min, max). A generator whose FID, at the same
   sample counts, lies inside this spread scores like real crops.
4. Ceiling: FID of --subset-size images from an untrained DCGAN generator (train
   defaults, seeded weights) against all crops, for two seeds.

    .venv/bin/python bench/evaluate_fid.py [--shared PATH] [--num-images 600]
        [--subset-size 200] [--seeds 5] [--batch-size 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline.evaluate.inception import InceptionFeatures  # noqa: E402
from pipeline.evaluate.metrics import FrechetReference, kid_from_features  # noqa: E402
from pipeline.evaluate.sampling import generate_images, untrained_copy  # noqa: E402
from pipeline.images import ImageError, load_rgb  # noqa: E402
from pipeline.train.models import Generator, init_dcgan_weights  # noqa: E402
from pipeline.train.params import TrainParams  # noqa: E402

FACES_SUBFOLDER = "data/faces/jonathonyan__Anime-Face-Detection-and-Recognition/positive"
BASELINE_BATCH_SIZE = 1
BASELINE_IMAGES = 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = os.environ.get("ANIMEFACE_SHARED", str(REPO_ROOT.parent / "shared"))
    parser.add_argument("--shared", default=default_shared, help="folder holding data/faces")
    parser.add_argument("--num-images", type=int, default=600, help="real crops to embed")
    parser.add_argument("--subset-size", type=int, default=200, help="images per spread subset")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the spread")
    parser.add_argument("--batch-size", type=int, default=50, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    return parser.parse_args()


def load_crops(folder: Path, count: int) -> np.ndarray:
    """Read the first ``count`` 64x64 crops in name order; other sizes are skipped."""
    crops, skipped = [], 0
    for path in sorted(folder.glob("*.png")):
        if len(crops) == count:
            break
        try:
            image = load_rgb(path)
        except ImageError:
            skipped += 1
            continue
        if image.shape != (64, 64, 3):
            skipped += 1
            continue
        crops.append(image)
    print(f"loaded {len(crops)} crops from {folder} ({skipped} skipped: unreadable or not 64x64)")
    return np.stack(crops)


def measure_speed(extractor: InceptionFeatures, crops: np.ndarray, batch_size: int) -> float:
    extractor.batch_size = batch_size
    extractor.embed(crops[:batch_size], desc="warm-up")
    start = time.perf_counter()
    extractor.embed(crops, desc=f"speed at batch {batch_size}")
    return len(crops) / (time.perf_counter() - start)


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, device {args.device}"
    )
    crops = load_crops(Path(args.shared) / FACES_SUBFOLDER, args.num_images)
    if 2 * args.subset_size > len(crops):
        raise SystemExit(f"--subset-size {args.subset_size} needs at least twice as many crops")
    extractor = InceptionFeatures("", "bilinear_antialias", args.device, args.batch_size)
    print(f"extractor: {extractor.name}, sha256 {extractor.sha256}, resize {extractor.resize_name}")

    # 1. Embedding speed against batch size 1.
    baseline = measure_speed(extractor, crops[:BASELINE_IMAGES], BASELINE_BATCH_SIZE)
    extractor.batch_size = args.batch_size
    start = time.perf_counter()
    features = extractor.embed(crops, desc="real features")
    speed = len(crops) / (time.perf_counter() - start)
    print(
        f"embedding: {speed:.1f} images/s at batch {args.batch_size}, "
        f"{baseline:.1f} images/s at batch {BASELINE_BATCH_SIZE} "
        f"({BASELINE_IMAGES} images), ratio {speed / baseline:.2f}"
    )

    # 2. Floor: two disjoint random halves.
    order = np.random.default_rng(0).permutation(len(features))
    half = len(order) // 2
    real_a, real_b = features[order[:half]], features[order[half:]]
    # Subsets smaller than the halves, so the KID std reflects subset-to-subset variation.
    kid_floor = kid_from_features(real_a, real_b, min(100, half), 100, seed=0)
    fid_floor = FrechetReference(real_a).fid(real_b)
    print(
        f"floor: FID {fid_floor:.2f}, KID {kid_floor.mean:.5f} +- {kid_floor.std:.5f} "
        f"({half} vs {len(order) - half} crops, KID subsets of {kid_floor.subset_size})"
    )

    # 3. Seed-to-seed spread of a subset against the remaining crops.
    spread = []
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(features))
        subset, rest = features[order[: args.subset_size]], features[order[args.subset_size :]]
        spread.append(FrechetReference(rest).fid(subset))
    spread = np.array(spread)
    print(
        f"spread: FID of {args.subset_size} real crops against the other "
        f"{len(features) - args.subset_size}, {args.seeds} seeds: mean {spread.mean():.2f}, "
        f"std {spread.std(ddof=1):.2f}, min {spread.min():.2f}, max {spread.max():.2f}"
    )

    # 4. Ceiling: an untrained DCGAN generator with the train stage's default size.
    defaults = TrainParams()
    generator = Generator(defaults.latent_dim, defaults.generator_width, 64).eval()
    reference = FrechetReference(features)
    ceilings = []
    for seed in range(2):
        untrained = untrained_copy(generator, seed, init_dcgan_weights)
        images = generate_images(untrained, args.subset_size, seed, args.batch_size)
        ceilings.append(reference.fid(extractor.embed(images, desc=f"untrained seed {seed}")))
    print(
        f"ceiling: FID of {args.subset_size} untrained-generator images against all "
        f"{len(features)} crops, seeds 0 and 1: {ceilings[0]:.2f}, {ceilings[1]:.2f}; "
        f"ratio to the spread mean {np.mean(ceilings) / spread.mean():.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
