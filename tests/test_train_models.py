import numpy as np
import pytest
import torch

from pipeline.train.augment import AUGMENTATIONS, diff_augment
from pipeline.train.losses import LOSSES, SmoothedBceLoss, build_loss, r1_penalty
from pipeline.train.models import Discriminator, Generator, load_generator
from train_support import isolated_torch_settings, pack_faces


@pytest.fixture(autouse=True)
def torch_settings():
    with isolated_torch_settings():
        yield


@pytest.fixture(scope="module")
def real_batch(faces_dir, tmp_path_factory):
    path = pack_faces(faces_dir, tmp_path_factory.mktemp("faces") / "faces.npy", count=16, size=32)
    faces = np.load(path)
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_generator_output_shape_and_range(image_size):
    generator = Generator(latent_dim=12, width=8, image_size=image_size)
    images = generator(torch.randn(5, 12))
    assert images.shape == (5, 3, image_size, image_size)
    assert images.min() >= -1.0
    assert images.max() <= 1.0


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_discriminator_returns_one_logit_per_image(real_batch, spectral_norm):
    discriminator = Discriminator(width=8, image_size=32, spectral_norm=spectral_norm)
    logits = discriminator(real_batch)
    assert logits.shape == (len(real_batch),)
    assert torch.isfinite(logits).all()


def test_spectral_norm_removes_batchnorm():
    plain = Discriminator(width=8, image_size=32)
    normalised = Discriminator(width=8, image_size=32, spectral_norm=True)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in normalised.modules())


def test_full_width_dcgan_channels():
    generator = Generator(latent_dim=100, width=64, image_size=64)
    discriminator = Discriminator(width=64, image_size=64)
    g_channels = [
        m.out_channels for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)
    ]
    d_channels = [m.out_channels for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert g_channels == [512, 256, 128, 64, 3]
    assert d_channels == [64, 128, 256, 512, 1]


def test_unsupported_image_size_rejected():
    with pytest.raises(ValueError, match="image size 48 is not supported"):
        Generator(latent_dim=8, width=8, image_size=48)


@pytest.mark.parametrize("loss_name", LOSSES.names())
def test_losses_finite_and_differentiable(real_batch, loss_name):
    discriminator = Discriminator(width=8, image_size=32)
    loss = build_loss(loss_name, (0.7, 1.0), (0.0, 0.3), 0.05)
    real_logits = discriminator(real_batch)
    fake_logits = discriminator(torch.rand_like(real_batch) * 2 - 1)
    d_loss = loss.discriminator_loss(real_logits, fake_logits)
    g_loss = loss.generator_loss(fake_logits)
    assert d_loss.dim() == 0
    assert torch.isfinite(d_loss)
    assert torch.isfinite(g_loss)
    d_loss.backward()
    assert all(p.grad is not None for p in discriminator.parameters())


def test_bce_targets_stay_in_ranges():
    loss = SmoothedBceLoss((0.7, 1.0), (0.0, 0.3), label_flip_probability=0.0)
    targets = loss._targets(torch.zeros(10_000), (0.7, 1.0), (0.0, 0.3))
    assert targets.min() >= 0.7
    assert targets.max() <= 1.0


def test_bce_flip_probability_flips_that_share():
    torch.manual_seed(0)
    loss = SmoothedBceLoss((0.7, 1.0), (0.0, 0.3), label_flip_probability=0.2)
    targets = loss._targets(torch.zeros(20_000), (0.7, 1.0), (0.0, 0.3))
    flipped_share = (targets <= 0.3).float().mean().item()
    assert 0.18 < flipped_share < 0.22
    assert ((targets <= 0.3) | (targets >= 0.7)).all()


def test_r1_penalty_positive_and_differentiable(real_batch):
    discriminator = Discriminator(width=8, image_size=32)
    penalty = r1_penalty(discriminator, real_batch)
    assert penalty.item() > 0
    penalty.backward()
    assert discriminator.net[0].weight.grad is not None


@pytest.mark.parametrize("policy", AUGMENTATIONS.names())
def test_diffaugment_keeps_shape_and_gradient(real_batch, policy):
    images = real_batch.clone().requires_grad_(True)
    augmented = diff_augment(images, [policy])
    assert augmented.shape == real_batch.shape
    assert not torch.equal(augmented, real_batch)
    augmented.sum().backward()
    assert images.grad is not None


def test_translation_moves_content_and_zero_fills(real_batch):
    torch.manual_seed(1)
    moved = AUGMENTATIONS.get("translation")(real_batch)
    # Shifts reach 4 px on a 32 px crop, so some border rows or columns become zero.
    assert (moved == 0).any()
    assert not torch.equal(moved, real_batch)


def test_cutout_zeroes_a_square(real_batch):
    cut = AUGMENTATIONS.get("cutout")(real_batch + 2.0)  # no zero pixels before the cutout
    zero_share = (cut == 0).float().mean().item()
    # A 16 x 16 square of a 32 x 32 crop, less where it crosses the border.
    assert 0.05 < zero_share <= 0.25


def test_diffaugment_empty_policy_is_identity(real_batch):
    assert diff_augment(real_batch, []) is real_batch


def test_load_generator_rebuilds_saved_weights(tmp_path):
    config = {"latent_dim": 12, "generator_width": 8, "generator_dropout": 0.0}
    generator = Generator(latent_dim=12, width=8, image_size=32).eval()
    path = tmp_path / "generator.pt"
    torch.save(
        {
            "config": config,
            "state_dict": generator.state_dict(),
            "latent_dim": 12,
            "image_size": 32,
        },
        path,
    )
    loaded = load_generator(path)
    z = torch.randn(3, 12)
    assert loaded.latent_dim == 12
    assert not loaded.training
    assert torch.equal(loaded(z), generator(z))


def test_load_generator_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train stage first"):
        load_generator(tmp_path / "generator.pt")


def test_load_generator_wrong_payload(tmp_path):
    path = tmp_path / "generator.pt"
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match=r"missing keys \['config', 'state_dict', 'image_size'\]"):
        load_generator(path)


def test_load_generator_mismatched_weights(tmp_path):
    config = {"latent_dim": 12, "generator_width": 16, "generator_dropout": 0.0}
    path = tmp_path / "generator.pt"
    weights = Generator(latent_dim=12, width=8, image_size=32).state_dict()
    torch.save({"config": config, "state_dict": weights, "latent_dim": 12, "image_size": 32}, path)
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_generator(path)
