"""Mask R-CNN member and fine-tuning on CPU: tiny models, tiny images, a few iterations."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.config import ConfigError, load_section, parse_section
from pipeline.detect.base import DETECTOR_PARAMS, DETECTORS, Box
from pipeline.detect.finetune import (
    FaceDataset,
    _check_finite,
    build_augmentation,
    finetune_detector,
    prepare_sample,
    resolve_initial_weights,
    split_train_val,
)
from pipeline.detect.finetune_params import AugmentParams, FinetuneParams
from pipeline.detect.maskrcnn import (
    MaskRCNNDetector,
    MaskRCNNMemberParams,
    build_model,
    load_checkpoint,
    make_mask_box_refiner,
    refine_face_crop,
)
from pipeline.images import image_size, load_rgb
from pipeline.labels.boxes_csv import read_boxes_csv
from pipeline.labels.coco import write_coco
from pipeline.labels.model import LabelledImage

from conftest import REPO_ROOT

FACE_IMAGE = "syncopika__anime_face_classifier/images/aletta14.png"
NO_FACE_IMAGE = "Kiteretsu77__APISR____assets___lr_inputs_f91.jpg"  # a mecha, no face
NO_AUGMENT = AugmentParams(
    hflip_probability=0.0, scale_min=1.0, scale_max=1.0, color_jitter=0.0, hue_jitter=0.0,
    grayscale_probability=0.0,
)


def tiny_params(**overrides) -> FinetuneParams:
    """MobileNet Mask R-CNN at 64 px with small samplers: seconds per run on CPU."""
    values = dict(
        architecture="mobilenet_v3_large_fpn", init="scratch", download_weights=False,
        min_size_px=64, max_size_px=64, batch_size=2, max_iterations=8, optimizer="sgd", lr=0.01, warmup_iterations=0,
        val_fraction=0.0, log_every_iterations=4, rpn_batch_size_per_image=16,
        box_batch_size_per_image=16, test_proposals_per_image=50, augment=NO_AUGMENT,
    )
    values.update(overrides)
    return FinetuneParams(**values)


@pytest.fixture(scope="module")
def roots(shared_dir: Path) -> dict[str, Path]:
    return {"boxes": shared_dir / "data" / "boxes", "raw": shared_dir / "data" / "raw"}


@pytest.fixture(scope="module")
def labelled(shared_dir: Path, roots: dict[str, Path]) -> list[LabelledImage]:
    """Three real single-face screenshots and one real picture without a face."""
    faces = read_boxes_csv(
        shared_dir / "data" / "boxes" / "all_boxes_xyxy.csv", kinds=["gt_human_single_box_per_image"]
    )[:3]
    for image in faces:
        image.root = "boxes"
    width, height = image_size(roots["raw"] / NO_FACE_IMAGE)
    return [*faces, LabelledImage(NO_FACE_IMAGE, width, height, root="raw", kind="no_face")]


@pytest.fixture(scope="module")
def tiny_run(labelled, roots, tmp_path_factory):
    """An 8-iteration overfit run on one face and one empty picture, and its checkpoint."""
    checkpoint = tmp_path_factory.mktemp("tiny") / "maskrcnn.pt"
    images = [labelled[0], labelled[3]]
    result = finetune_detector(tiny_params(), images, roots, checkpoint)
    return result, checkpoint


def load_stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO_ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overfit_run_reduces_loss(tiny_run) -> None:
    result, _ = tiny_run
    assert result.iterations == 8
    assert len(result.losses) == 8
    assert all(np.isfinite(result.losses))
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])


def test_checkpoint_saved_with_config(tiny_run) -> None:
    result, checkpoint = tiny_run
    saved = load_checkpoint(checkpoint)
    assert saved["model_config"]["architecture"] == "mobilenet_v3_large_fpn"
    assert saved["config"]["max_iterations"] == 8
    assert saved["init_source"] == "scratch"
    config_json = json.loads(checkpoint.with_name("maskrcnn_config.json").read_text())
    assert config_json["config"]["lr"] == 0.01
    assert len(config_json["train_images"]) == 2
    assert result.checkpoint_path == str(checkpoint)


def test_member_finds_nothing_without_faces(tiny_run, roots) -> None:
    _, checkpoint = tiny_run
    section = parse_section(
        DETECTOR_PARAMS.get("maskrcnn"),
        {"checkpoint_path": str(checkpoint), "score_threshold": 0.5, "device": "cpu"},
        "detect.maskrcnn",
    )
    detector = DETECTORS.get("maskrcnn")(section)
    assert detector.name == "maskrcnn"
    assert detector.detect(load_rgb(roots["raw"] / NO_FACE_IMAGE)) == []


def test_member_boxes_and_masks_in_image_frame(tiny_run, roots) -> None:
    _, checkpoint = tiny_run
    # Threshold 0 keeps every candidate, so shapes and coordinates can be checked.
    detector = MaskRCNNDetector.from_params(
        MaskRCNNMemberParams(checkpoint_path=str(checkpoint), score_threshold=0.0, device="cpu")
    )
    image = load_rgb(roots["boxes"] / FACE_IMAGE)
    instances = detector.detect_instances(image)
    assert instances
    for instance in instances:
        assert instance.mask.shape == image.shape[:2]
        assert instance.mask.dtype == bool
        assert 0 <= instance.box.x1 < instance.box.x2 <= image.shape[1]
        assert 0 <= instance.box.y1 < instance.box.y2 <= image.shape[0]


def test_member_params_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoint_path is empty"):
        MaskRCNNDetector.from_params(MaskRCNNMemberParams())
    with pytest.raises(FileNotFoundError, match="finetune_detector"):
        MaskRCNNDetector.from_params(MaskRCNNMemberParams(checkpoint_path=str(tmp_path / "none.pt")))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint of the finetune_detector stage"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="unknown key detect.maskrcnn.threshold"):
        parse_section(MaskRCNNMemberParams, {"threshold": 0.3}, "detect.maskrcnn")


def test_refine_crop_falls_back_to_box(tiny_run, roots) -> None:
    _, checkpoint = tiny_run
    detector = MaskRCNNDetector.from_params(
        MaskRCNNMemberParams(checkpoint_path=str(checkpoint), score_threshold=0.99, device="cpu")
    )
    image = load_rgb(roots["raw"] / NO_FACE_IMAGE)
    crop = refine_face_crop(detector, image, Box(10, 20, 50, 80, 1.0, "cascade"))
    assert crop.source == "box"
    assert (crop.center_x, crop.center_y, crop.side_px) == (30.0, 50.0, 60.0)
    refine = make_mask_box_refiner(detector)
    assert refine(image, (10, 20, 50, 80)) == (0.0, 20.0, 60.0, 80.0)


def test_refine_crop_follows_mask(tiny_run, roots) -> None:
    _, checkpoint = tiny_run
    detector = MaskRCNNDetector.from_params(
        MaskRCNNMemberParams(checkpoint_path=str(checkpoint), score_threshold=0.0, device="cpu")
    )
    image = load_rgb(roots["boxes"] / FACE_IMAGE)
    best = max(detector.detect_instances(image), key=lambda instance: instance.box.score)
    crop = refine_face_crop(detector, image, best.box, min_iou=0.05)
    if crop.source == "mask":
        assert crop.mask_pixels > 0
        assert 0 <= crop.center_x <= image.shape[1]
        assert 0 < crop.side_px <= max(image.shape[:2])
    else:
        assert crop.side_px == max(best.box.width, best.box.height)


def test_filter_mask_refiner_from_params(tiny_run, roots) -> None:
    from pipeline.filter.params import FilterParams
    from pipeline.filter.refiners import BOX_REFINERS

    _, checkpoint = tiny_run
    make_refiner = BOX_REFINERS.get("maskrcnn")
    with pytest.raises(ConfigError, match="filter.mask_checkpoint_path is empty"):
        make_refiner(FilterParams(box_refiner="maskrcnn"))

    refine = make_refiner(
        FilterParams(box_refiner="maskrcnn", mask_checkpoint_path=str(checkpoint))
    )
    image = load_rgb(roots["raw"] / NO_FACE_IMAGE)
    x1, y1, x2, y2 = refine(image, (10, 20, 50, 80))
    assert x2 - x1 == pytest.approx(y2 - y1)
    assert x2 - x1 >= 60.0


def test_default_architecture_runs_forward() -> None:
    model = build_model("resnet50_fpn_v2", pretrained=False, trainable_backbone_layers=3,
                        min_size_px=64, max_size_px=64, test_proposals_per_image=20)
    model.eval()
    with torch.inference_mode():
        output = model([torch.rand(3, 48, 64)])[0]
    assert set(output) == {"boxes", "labels", "scores", "masks"}
    assert model.roi_heads.box_predictor.cls_score.out_features == 2


def test_pretrained_resnet_freezes_early_layers() -> None:
    model = build_model("resnet50_fpn_v2", pretrained=True, trainable_backbone_layers=2,
                        min_size_px=64, max_size_px=64)
    trainable = {name.split(".")[0] for name, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}


def test_scratch_init_warns_without_network(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING):
        initial = resolve_initial_weights(tiny_params(init="auto"))
    assert initial.source == "scratch"
    assert initial.state_dict is None
    assert "TRAINING FROM RANDOM WEIGHTS" in caplog.text
    with pytest.raises(ConfigError, match="download_weights is false"):
        resolve_initial_weights(tiny_params(init="coco"))


def test_init_from_local_checkpoints(tiny_run, tmp_path: Path) -> None:
    _, checkpoint = tiny_run
    initial = resolve_initial_weights(tiny_params(init="checkpoint", init_checkpoint=str(checkpoint)))
    assert initial.source.startswith("checkpoint:")
    assert initial.state_dict is not None
    # A plain torchvision-style state dict, as a downloaded .pth file holds, works too.
    plain = tmp_path / "plain.pth"
    torch.save(load_checkpoint(checkpoint)["state_dict"], plain)
    assert resolve_initial_weights(tiny_params(init="auto", init_checkpoint=str(plain))).pretrained
    with pytest.raises(ConfigError, match="architecture"):
        resolve_initial_weights(
            tiny_params(architecture="resnet50_fpn_v2", init="checkpoint", init_checkpoint=str(checkpoint))
        )
    with pytest.raises(ConfigError, match="is not a file"):
        resolve_initial_weights(tiny_params(init="checkpoint", init_checkpoint=str(tmp_path / "x.pt")))


def test_non_finite_loss_names_loss_and_iteration() -> None:
    losses = {"loss_classifier": torch.tensor(0.5), "loss_mask": torch.tensor(float("nan"))}
    with pytest.raises(FloatingPointError, match="loss_mask is nan at iteration 7"):
        _check_finite(losses, 7)


def test_augmentation_keeps_boxes_masks_and_empty_targets(labelled, roots) -> None:
    torch.manual_seed(0)
    samples = [prepare_sample(image, roots, 96) for image in labelled]
    dataset = FaceDataset(samples, build_augmentation(AugmentParams(grayscale_probability=1.0)))
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.dtype == torch.float32
        assert image.shape[0] == 3
        assert float(image.max()) <= 1.0
        # Greyscale output has three equal channels.
        assert torch.allclose(image[0], image[1])
        assert len(target["boxes"]) == len(target["masks"]) == len(target["labels"])
        assert target["masks"].shape[1:] == image.shape[1:]
    assert len(dataset[3][1]["boxes"]) == 0


def test_train_val_split_is_seeded(labelled) -> None:
    train, val = split_train_val(labelled, 0.5, seed=3)
    again_train, again_val = split_train_val(list(reversed(labelled)), 0.5, seed=3)
    assert [i.file_name for i in val] == [i.file_name for i in again_val]
    assert len(val) == 2
    assert {i.file_name for i in train} | {i.file_name for i in val} == {i.file_name for i in labelled}


def test_test_split_never_trained(labelled, roots, tmp_path: Path) -> None:
    held_out = LabelledImage(labelled[1].file_name, labelled[1].width, labelled[1].height,
                             labelled[1].boxes, root="boxes", split="test")
    train, val = split_train_val([labelled[0], held_out], 0.0, seed=0)
    assert held_out not in train
    assert held_out not in val


def test_finetune_stage_smoke_run(labelled, roots, tmp_path: Path, monkeypatch) -> None:
    """Two iterations with augmentation, a validation image and early stopping on."""
    # DVCLive runs `dvc init` inside a Git repository without DVC, so run outside it.
    monkeypatch.chdir(tmp_path)
    write_coco(tmp_path / "labels.json", labelled)
    smoke = tiny_params(
        max_iterations=2, val_fraction=0.34, eval_every_iterations=1, early_stopping_patience=1,
        log_every_iterations=1,
    )
    params = {"finetune_detector": {**smoke.__dict__, "augment": AugmentParams().__dict__}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = load_stage("finetune_detector")
    code = stage.main([
        "--labels", str(tmp_path / "labels.json"),
        "--image-root", f"boxes={roots['boxes']}", "--image-root", f"raw={roots['raw']}",
        "--checkpoint", str(tmp_path / "out" / "maskrcnn.pt"), "--metrics", str(tmp_path / "m.json"),
        "--live", str(tmp_path / "live"), "--params", str(tmp_path / "params.yaml"),
    ])
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 1 <= metrics["iterations"] <= 2
    assert metrics["init_source"] == "scratch"
    assert metrics["val_images"] >= 1
    assert metrics["train_images"] + metrics["val_images"] == 4
    assert metrics["best_val_ap50"] is not None
    assert metrics["config"]["augment"]["grayscale_probability"] == 0.2
    assert (tmp_path / "out" / "maskrcnn.pt").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not (tmp_path / ".dvc").exists()


def test_finetune_params_reject_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("finetune_detector:\n  architecture: yolo\n")
    with pytest.raises(ConfigError, match="finetune_detector.architecture"):
        load_section(FinetuneParams, "finetune_detector", path)
    path.write_text("finetune_detector:\n  augment:\n    blur: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key finetune_detector.augment.blur"):
        load_section(FinetuneParams, "finetune_detector", path)
    with pytest.raises(ConfigError, match="scale_min"):
        build_augmentation(AugmentParams(scale_min=1.5, scale_max=1.2))
