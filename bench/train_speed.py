"""Training throughput: a classic DCGAN loop against the train stage's loop, same crops.

The classic loop is the common PyTorch DCGAN recipe. PNG files sit in an ImageFolder,
and a DataLoader decodes, flips and normalises them on worker processes every epoch. It
trains in fp32 on contiguous NCHW tensors, and reads each step's losses and D outputs
with .item(), a host sync. The stage's loop (GanTrainer) keeps the crops as one uint8 tensor on the
device, flips and normalises there, uses the train params' execution settings
(mixed precision, channels_last, fused Adam on CUDA) and syncs only when it logs.
Both train the same Generator and Discriminator with the same bce recipe on the same
real crops, and each runs in its own process so that its peak memory is its own.

    python bench/train_speed.py                   # widths 16, about a minute on 2 CPU cores
    python bench/train_speed.py --full-width      # DCGAN widths 64, latent 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil  # installed with dvc
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline.config import parse_section  # noqa: E402
from pipeline.train.ddp import DistributedContext  # noqa: E402
from pipeline.train.losses import SmoothedBceLoss  # noqa: E402
from pipeline.train.models import Discriminator, Generator  # noqa: E402
from pipeline.train.params import TrainParams  # noqa: E402
from pipeline.train.runtime import configure_torch, resolve_runtime  # noqa: E402
from pipeline.train.trainer import GanTrainer  # noqa: E402

DEFAULT_CROPS = Path(
    os.environ.get("ANIMEFACE_SHARED", REPO_ROOT.parent / "shared"),
    "data/faces/jonathonyan__Anime-Face-Detection-and-Recognition/positive",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--crops-dir", type=Path, default=DEFAULT_CROPS, help="folder of real face PNGs"
    )
    parser.add_argument("--num-crops", type=int, default=256, help="crops to train on")
    parser.add_argument("--image-size", type=int, default=64, help="crop side in pixels")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per loop")
    parser.add_argument("--full-width", action="store_true", help="DCGAN widths 64 and latent 100")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers of the classic loop"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each loop, alternating; the median is shown"
    )
    parser.add_argument("--loop", choices=["classic", "stage"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def model_sizes(args: argparse.Namespace) -> dict[str, int]:
    if args.full_width:
        return {"latent_dim": 100, "generator_width": 64, "discriminator_width": 64}
    return {"latent_dim": 64, "generator_width": 16, "discriminator_width": 16}


def stage_params(args: argparse.Namespace) -> TrainParams:
    values = {**model_sizes(args), "batch_size": args.batch_size, "device": args.device}
    return parse_section(TrainParams, values, "train")


def write_crops(args: argparse.Namespace, data_dir: Path) -> None:
    """Write the same crops as PNG files (for ImageFolder) and as one uint8 array."""
    from PIL import Image

    paths = sorted(args.crops_dir.glob("*.png"))[: args.num_crops]
    if len(paths) < args.num_crops:
        raise SystemExit(f"only {len(paths)} PNG crops in {args.crops_dir}; lower --num-crops")
    size = (args.image_size, args.image_size)
    crops = np.stack(
        [
            np.asarray(Image.open(path).convert("RGB").resize(size, Image.Resampling.BILINEAR))
            for path in paths
        ]
    )
    image_dir = data_dir / "images" / "faces"
    image_dir.mkdir(parents=True)
    for index, crop in enumerate(crops):
        Image.fromarray(crop).save(image_dir / f"{index:05d}.png")
    np.save(data_dir / "faces.npy", crops)


def run_classic(args: argparse.Namespace, device: torch.device) -> float:
    """Train with the classic recipe and return images per second over the timed steps."""
    from torchvision import datasets, transforms

    config = stage_params(args)
    transform = transforms.Compose(
        [
            transforms.Resize(args.image_size),
            transforms.CenterCrop(args.image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    dataset = datasets.ImageFolder(str(args.data_dir / "images"), transform=transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    torch.manual_seed(config.seed)
    generator = Generator(config.latent_dim, config.generator_width, args.image_size).to(device)
    discriminator = Discriminator(
        config.discriminator_width,
        args.image_size,
        config.leaky_relu_slope,
        config.discriminator_dropout,
    ).to(device)
    optimizer_g = torch.optim.Adam(
        generator.parameters(), lr=config.lr_generator, betas=(config.beta1, config.beta2)
    )
    optimizer_d = torch.optim.Adam(
        discriminator.parameters(), lr=config.lr_discriminator, betas=(config.beta1, config.beta2)
    )
    loss = SmoothedBceLoss(
        tuple(config.real_label_range),
        tuple(config.fake_label_range),
        config.label_flip_probability,
    )

    step, start = 0, None
    total_steps = args.warmup_steps + args.steps
    while step < total_steps:
        for real, _ in loader:
            if step == args.warmup_steps:
                synchronize(device)
                start = time.perf_counter()
            real = real.to(device)
            latent = torch.randn(real.shape[0], config.latent_dim, device=device)
            fake = generator(latent)
            real_logits = discriminator(real)
            fake_logits = discriminator(fake.detach())
            loss_d = loss.discriminator_loss(real_logits, fake_logits)
            optimizer_d.zero_grad()
            loss_d.backward()
            optimizer_d.step()
            loss_g = loss.generator_loss(discriminator(fake))
            optimizer_g.zero_grad()
            loss_g.backward()
            optimizer_g.step()
            # The reference loop reads these every step for its printout.
            _ = (
                loss_d.item(),
                loss_g.item(),
                torch.sigmoid(real_logits).mean().item(),
                torch.sigmoid(fake_logits).mean().item(),
            )
            step += 1
            if step == total_steps:
                break
    synchronize(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def run_stage(args: argparse.Namespace, device: torch.device) -> float:
    """Train with GanTrainer and return images per second over the timed steps.

    On CUDA one more step then runs with torch.cuda.set_sync_debug_mode("error"), which
    raises at the first host-device sync, and the result goes to stderr.
    """
    config = stage_params(args)
    context = DistributedContext()
    runtime = resolve_runtime(config, context)
    configure_torch(config, runtime)
    trainer = GanTrainer(config, np.load(args.data_dir / "faces.npy"), runtime, context)
    for _ in range(args.warmup_steps):
        trainer.train_step()
    trainer.meters.means()  # waits for the warm-up steps
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    trainer.meters.means()
    images_per_second = args.steps * args.batch_size / (time.perf_counter() - start)

    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            trainer.train_step()
            print("host-device syncs in one training step: none", file=sys.stderr)
        except RuntimeError as error:
            print(f"host-device sync in a training step: {error}", file=sys.stderr)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return images_per_second


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakRssSampler:
    """Track the peak resident memory of this process plus its children (DataLoader workers)."""

    def __init__(self, interval_seconds: float = 0.02) -> None:
        self.interval_seconds = interval_seconds
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            total = process.memory_info().rss
            for child in process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval_seconds)


def measure_one_loop(args: argparse.Namespace) -> None:
    """Child process: run one loop and print its figures as JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_runtime(stage_params(args), DistributedContext()).device
    loop = run_classic if args.loop == "classic" else run_stage
    with PeakRssSampler() as sampler:
        images_per_second = loop(args, device)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB CUDA max allocated"
    else:
        peak = f"{sampler.peak_bytes / 2**20:.0f} MiB RSS with workers"
    print(
        json.dumps(
            {"images_per_second": images_per_second, "peak_memory": peak, "device": str(device)}
        )
    )


def measure_in_child(loop: str, data_dir: Path) -> dict:
    """Run one loop in a fresh process, so its peak memory is its own, and return its figures."""
    command = [sys.executable, __file__, *sys.argv[1:], "--loop", loop, "--data-dir", str(data_dir)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    for line in result.stderr.splitlines():
        if "host-device sync" in line:
            print(line)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.loop:
        measure_one_loop(args)
        return

    sizes = model_sizes(args)
    print(
        f"{args.num_crops} real crops of {args.image_size} px, batch {args.batch_size}, "
        f"{args.warmup_steps} warm-up + {args.steps} timed steps, "
        f"widths G {sizes['generator_width']} D {sizes['discriminator_width']}, "
        f"latent {sizes['latent_dim']}, torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    runs: dict[str, list[dict]] = {"classic": [], "stage": []}
    with tempfile.TemporaryDirectory(prefix="train_speed_") as temp:
        data_dir = Path(temp)
        write_crops(args, data_dir)
        for _ in range(args.repeats):
            for loop in ("classic", "stage"):
                runs[loop].append(measure_in_child(loop, data_dir))

    results = {}
    for loop, label in (
        ("classic", "classic (ImageFolder + DataLoader, fp32)"),
        ("stage", "train stage loop"),
    ):
        speeds = sorted(run["images_per_second"] for run in runs[loop])
        results[loop] = {**runs[loop][-1], "images_per_second": float(np.median(speeds))}
        spread = (
            f" (runs: {', '.join(f'{speed:.1f}' for speed in speeds)})" if len(speeds) > 1 else ""
        )
        print(
            f"{label:<42} {results[loop]['images_per_second']:9.1f} images/s{spread}   "
            f"peak {results[loop]['peak_memory']}   on {results[loop]['device']}"
        )
    ratio = results["stage"]["images_per_second"] / results["classic"]["images_per_second"]
    print(f"speed-up of the stage loop: {ratio:.2f}x")


if __name__ == "__main__":
    main()
