"""Print precision, recall, F1, AP@0.5 and images/s of each face detector and the ensemble.

Builds the label set from the boxes CSV (plus cascade/animeface pseudo-labels on
``--raw`` when given), fine-tunes a short MobileNet Mask R-CNN from random weights unless
``--checkpoint`` is given, and scores every detector on the held-out test split. Speed
is also printed as a ratio to the cascade, the baseline, measured in the same run.

    python bench/detector_quality.py --boxes-csv ../shared/data/boxes/all_boxes_xyxy.csv \
        --raw ../shared/data/raw --cascade ../shared/models/lbpcascade_animeface.xml \
        --train-iterations 60 --work /tmp/detector_bench
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import parse_section  # noqa: E402
from pipeline.detect.evaluation import evaluate_runs, run_detectors  # noqa: E402
from pipeline.detect.finetune import finetune_detector  # noqa: E402
from pipeline.detect.finetune_params import FinetuneParams  # noqa: E402
from pipeline.detect.params import DetectParams  # noqa: E402
from pipeline.files import setup_logging, write_json  # noqa: E402
from pipeline.labels.build import BOXES_ROOT, RAW_ROOT, build_label_set, summarize  # noqa: E402
from pipeline.labels.coco import read_coco, write_coco  # noqa: E402
from pipeline.labels.params import LabelsParams  # noqa: E402
from pipeline.labels.pseudo import build_members  # noqa: E402
from pipeline.skips import SkipCounter  # noqa: E402

logger = logging.getLogger("bench.detector_quality")

MEMBERS = ["cascade", "animeface", "maskrcnn"]
ENSEMBLES = {"ensemble": ["cascade", "animeface", "maskrcnn"], "ensemble_classic": ["cascade", "animeface"]}

LABEL_LIMITS = [
    "complete labels: weak boxes from another detector (AniSeg) on anime frames and "
    "illustrations, including pictures where it found no face; errors in them count "
    "against every detector",
    "incomplete labels: one hand-drawn box per anime screenshot, other faces unboxed; "
    "recall only, precision not measurable",
    "pseudo-labels (cascade and animeface agreement) are training data only, never scored",
    "test split: 30% of each CSV kind by seed 0; very few faces, so one face moves "
    "recall by several points",
]


def short_finetune_params(iterations: int) -> FinetuneParams:
    """Return settings for a few minutes of CPU training: MobileNet, small pictures and samplers."""
    return FinetuneParams(
        architecture="mobilenet_v3_large_fpn", init="auto", download_weights=False, min_size_px=256, max_size_px=320,
        batch_size=2, max_iterations=iterations, optimizer="sgd", lr=0.01, warmup_iterations=10,
        val_fraction=0.15, eval_every_iterations=max(1, iterations // 3), early_stopping_patience=0,
        log_every_iterations=5, rpn_batch_size_per_image=64, box_batch_size_per_image=64,
        test_proposals_per_image=200,
    )


def format_number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(metrics: dict, baseline: str) -> None:
    """Print one row per detector and label group, with speed relative to ``baseline``."""
    baseline_speed = metrics["detectors"][baseline]["images_per_second"]
    header = f"{'detector':<17}{'labels':<11}{'imgs':>5}{'faces':>6}{'P':>7}{'R':>7}{'R@0.3':>7}{'F1':>7}{'AP50':>7}{'img/s':>8}{'x ' + baseline:>11}"
    print(header)
    print("-" * len(header))
    for name, scores in metrics["detectors"].items():
        speed = scores["images_per_second"]
        ratio = speed / baseline_speed if speed and baseline_speed else None
        for group, label in (("complete_labels", "complete"), ("incomplete_labels", "one-box")):
            if group not in scores:
                continue
            row = scores[group]
            print(
                f"{name:<17}{label:<11}{row['images']:>5}{row['faces']:>6}"
                f"{format_number(row.get('precision')):>7}{format_number(row['recall']):>7}"
                f"{format_number(row.get('recall_loose_iou')):>7}{format_number(row.get('f1')):>7}"
                f"{format_number(row.get('ap50')):>7}{format_number(speed, 2):>8}{format_number(ratio, 3):>11}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes-csv", required=True, help="boxes CSV; image paths relative to its folder")
    parser.add_argument("--cascade", required=True, help="local lbpcascade_animeface.xml")
    parser.add_argument("--raw", help="pictures to pseudo-label for training (optional)")
    parser.add_argument("--checkpoint", help="Mask R-CNN checkpoint to score instead of training one")
    parser.add_argument("--train-iterations", type=int, default=60, help="short fine-tune length")
    parser.add_argument("--work", required=True, help="folder for labels, checkpoint and metrics")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    # Labels: CSV boxes split by seed, plus pseudo-labels for training.
    detect_params = parse_section(DetectParams, {"cascade_path": args.cascade, "maskrcnn": {"device": "cpu"}}, "detect")
    labels_path = work / "labels.json"
    if not labels_path.is_file():
        labels_params = LabelsParams()
        members = build_members(labels_params.pseudo_members, detect_params) if args.raw else {}
        skips = SkipCounter(logger)
        images = build_label_set(labels_params, args.boxes_csv, args.raw, members, skips)
        write_coco(labels_path, images)
        logger.info("labels: %s; skipped: %s", summarize(images)["images"], skips.as_dict())
    images = read_coco(labels_path)
    roots = {BOXES_ROOT: Path(args.boxes_csv).parent}
    if args.raw:
        roots[RAW_ROOT] = Path(args.raw)

    # Mask R-CNN: a short fine-tune unless a checkpoint is given.
    checkpoint = Path(args.checkpoint) if args.checkpoint else work / "maskrcnn.pt"
    training = None
    if not args.checkpoint:
        start = time.perf_counter()
        result = finetune_detector(short_finetune_params(args.train_iterations), images, roots, checkpoint)
        training = {
            "iterations": result.iterations, "seconds": time.perf_counter() - start,
            "best_val_ap50": result.best_val_ap50, "init_source": result.init_source,
            "train_images": result.train_images, "val_images": result.val_images,
            "loss_first_5": sum(result.losses[:5]) / min(5, len(result.losses)),
            "loss_last_5": sum(result.losses[-5:]) / min(5, len(result.losses)),
        }

    # Score every detector on the held-out test split.
    test_images = [image for image in images if image.split == "test"]
    skips = SkipCounter(logger)
    kept, runs = run_detectors(test_images, roots, detect_params, MEMBERS, ENSEMBLES, 0.05, 0.0, skips, str(checkpoint))
    metrics, _ = evaluate_runs(kept, runs, 0.5, 0.3)
    metrics.update(training=training, skipped=skips.as_dict(), label_limits=LABEL_LIMITS)
    write_json(work / "detector_bench.json", metrics)

    print()
    if training:
        print(
            f"Mask R-CNN: {training['iterations']} iterations in {training['seconds']:.0f} s, "
            f"weights {training['init_source']}, {training['train_images']} train / "
            f"{training['val_images']} val images, loss {training['loss_first_5']:.3f} -> "
            f"{training['loss_last_5']:.3f}, best val AP@0.5 {format_number(training['best_val_ap50'])}"
        )
    print(f"Test split: {json.dumps(metrics['labels'])}")
    print("P, R, F1, AP50 at IoU 0.5; R@0.3 is recall at IoU 0.3. img/s: detect() only, "
          f"{args.threads} torch threads, this machine.")
    print_table(metrics, baseline="cascade")
    print("\nLabel limits:")
    for line in LABEL_LIMITS:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
