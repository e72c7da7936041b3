"""FID, KID, PRDC and nearest-neighbour search on known feature sets, checked against
torchmetrics, scipy and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from pipeline.evaluate.memorisation import compare_to_training, nearest_neighbours
from pipeline.evaluate.metrics import (
    FrechetReference,
    fid_from_features,
    kid_from_features,
    mmd2_unbiased,
)
from pipeline.evaluate.prdc import compute_prdc


class PassThrough(nn.Module):
    """A torchmetrics feature extractor that returns its input, so both sides see one set."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def correlated_features(rng: np.random.Generator, count: int, dim: int, shift: float = 0.0):
    mixing = np.linspace(0.2, 1.5, dim * dim).reshape(dim, dim) / dim
    offset = np.linspace(-1.0, 1.0, dim)
    return rng.standard_normal((count, dim)) @ mixing + offset + shift


@pytest.mark.parametrize("method", ["eigh", "nuclear_norm"])
def test_fid_of_set_against_itself_is_zero(method):
    features = correlated_features(np.random.default_rng(0), 300, 64)
    assert fid_from_features(features, features, method) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("counts", [(40, 25), (300, 200)])
def test_fid_methods_agree(counts):
    rng = np.random.default_rng(20)
    features_a = correlated_features(rng, counts[0], 64)
    features_b = correlated_features(rng, counts[1], 64, shift=0.3)
    reference = FrechetReference(features_a)
    assert reference.fid(features_b, "eigh") == pytest.approx(
        reference.fid(features_b, "nuclear_norm"), rel=1e-7
    )


def test_fid_with_fewer_samples_than_dims_is_finite():
    rng = np.random.default_rng(1)
    features_a = correlated_features(rng, 20, 128)
    features_b = correlated_features(rng, 20, 128, shift=0.5)
    value = fid_from_features(features_a, features_b)
    assert np.isfinite(value)
    assert value > 0


def test_fid_matches_torchmetrics():
    rng = np.random.default_rng(2)
    real = correlated_features(rng, 400, 32)
    fake = correlated_features(rng, 300, 32, shift=0.3)

    metric = FrechetInceptionDistance(feature=PassThrough(32)).double()
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    expected = float(metric.compute())

    assert fid_from_features(real, fake, "eigh") == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(real, fake, "nuclear_norm") == pytest.approx(expected, rel=1e-6)


def test_fid_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(3)
    real = correlated_features(rng, 200, 16)
    fake = correlated_features(rng, 150, 16, shift=-0.2)
    mean_r, cov_r = real.mean(0), np.cov(real, rowvar=False)
    mean_f, cov_f = fake.mean(0), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_r @ cov_f).real
    expected = np.square(mean_r - mean_f).sum() + np.trace(cov_r + cov_f - 2 * root)

    assert fid_from_features(real, fake, "eigh") == pytest.approx(expected, rel=1e-6)
    assert fid_from_features(real, fake, "nuclear_norm") == pytest.approx(expected, rel=1e-6)


def test_fid_is_symmetric():
    rng = np.random.default_rng(4)
    features_a = correlated_features(rng, 100, 24)
    features_b = correlated_features(rng, 120, 24, shift=1.0)
    assert fid_from_features(features_a, features_b) == pytest.approx(
        fid_from_features(features_b, features_a), rel=1e-8
    )


def test_fid_reference_reused_for_several_sets():
    rng = np.random.default_rng(21)
    reference = FrechetReference(correlated_features(rng, 100, 16))
    near = correlated_features(rng, 100, 16, shift=0.1)
    far = correlated_features(rng, 100, 16, shift=2.0)
    assert reference.fid(near, "eigh") < reference.fid(far, "eigh")
    assert reference.fid(near, "eigh") == pytest.approx(reference.fid(near, "nuclear_norm"))


def test_fid_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown FID method 'sqrtm'"):
        fid_from_features(np.zeros((3, 2)), np.ones((3, 2)), "sqrtm")


def test_fid_rejects_single_sample():
    with pytest.raises(ValueError, match="at least 2 feature vectors"):
        FrechetReference(np.zeros((1, 8)))


def direct_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 written as explicit sums over pairs, for a tiny case."""
    m, dim = x.shape

    def kernel(a, b):
        return (a @ b / dim + 1.0) ** 3

    within_x = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    within_y = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return (within_x + within_y) / (m * (m - 1)) - 2.0 * across / (m * m)


def test_mmd2_matches_direct_formula():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3))
    y = rng.standard_normal((5, 3)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(direct_mmd2_unbiased(x, y), rel=1e-12)


def test_kid_same_distribution_is_near_zero():
    rng = np.random.default_rng(6)
    real = correlated_features(rng, 600, 32)
    fake = correlated_features(rng, 600, 32)
    other = correlated_features(rng, 600, 32, shift=0.5)

    same = kid_from_features(real, fake, subset_size=200, num_subsets=50, seed=0)
    shifted = kid_from_features(real, other, subset_size=200, num_subsets=50, seed=0)

    # Unbiased: the mean over subsets sits within a few standard errors of 0.
    assert abs(same.mean) < 3 * same.std / np.sqrt(50) + 1e-4
    assert shifted.mean > 10 * abs(same.mean)


def test_kid_unbiased_mean_over_many_draws_is_zero():
    rng = np.random.default_rng(7)
    estimates = [
        mmd2_unbiased(rng.standard_normal((10, 4)), rng.standard_normal((10, 4)))
        for _ in range(4000)
    ]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 4 * standard_error


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_on_full_sets():
    rng = np.random.default_rng(8)
    real = correlated_features(rng, 50, 16)
    fake = correlated_features(rng, 50, 16, shift=0.2)

    metric = KernelInceptionDistance(feature=PassThrough(16), subsets=1, subset_size=50).double()
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    expected_mean, _ = metric.compute()

    result = kid_from_features(real, fake, subset_size=50, num_subsets=3, seed=0)
    assert result.mean == pytest.approx(float(expected_mean), rel=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-12)


def test_kid_lowers_subset_size_to_smaller_set():
    rng = np.random.default_rng(9)
    result = kid_from_features(
        rng.standard_normal((30, 8)), rng.standard_normal((12, 8)), 1000, 5, seed=0
    )
    assert result.subset_size == 12


def test_kid_is_reproducible_for_one_seed():
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((40, 8)), rng.standard_normal((40, 8)) + 0.1
    first = kid_from_features(real, fake, 10, 20, seed=3)
    second = kid_from_features(real, fake, 10, 20, seed=3)
    assert first == second


def test_prdc_identical_sets_score_one():
    features = correlated_features(np.random.default_rng(11), 80, 8)
    scores = compute_prdc(features, features.copy(), k=5)
    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["coverage"] == 1.0
    # Each sample sits at distance 0 inside its own ball and in the balls of neighbours.
    assert scores["density"] >= 1.0


def test_prdc_disjoint_sets_score_zero():
    rng = np.random.default_rng(12)
    real = rng.standard_normal((60, 8))
    fake = rng.standard_normal((60, 8)) + 100.0
    scores = compute_prdc(real, fake, k=5)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_mode_collapse_keeps_precision_loses_recall():
    rng = np.random.default_rng(13)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    real = np.concatenate([centre + rng.standard_normal((50, 2)) for centre in centres])
    collapsed = centres[0] + 0.5 * rng.standard_normal((200, 2))
    scores = compute_prdc(real, collapsed, k=5)
    assert scores["precision"] > 0.9
    assert scores["recall"] < 0.35
    assert scores["coverage"] < 0.35


def test_prdc_matches_loop_formulas():
    rng = np.random.default_rng(18)
    real = rng.standard_normal((30, 4))
    fake = rng.standard_normal((25, 4)) + 0.3
    k = 3

    def radius(points, index):
        distances = np.sort(np.linalg.norm(points - points[index], axis=1))
        return distances[k]  # distances[0] is the point itself

    real_radii = [radius(real, i) for i in range(len(real))]
    fake_radii = [radius(fake, j) for j in range(len(fake))]
    gap = [[np.linalg.norm(r - f) for f in fake] for r in real]
    precision = np.mean([any(gap[i][j] < real_radii[i] for i in range(30)) for j in range(25)])
    recall = np.mean([any(gap[i][j] < fake_radii[j] for j in range(25)) for i in range(30)])
    density = np.mean([sum(gap[i][j] < real_radii[i] for i in range(30)) for j in range(25)]) / k
    coverage = np.mean([min(gap[i]) < real_radii[i] for i in range(30)])

    scores = compute_prdc(real, fake, k)
    assert scores["precision"] == pytest.approx(precision)
    assert scores["recall"] == pytest.approx(recall)
    assert scores["density"] == pytest.approx(density)
    assert scores["coverage"] == pytest.approx(coverage)


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(ValueError, match="lower evaluate.prdc_k"):
        compute_prdc(np.zeros((5, 2)), np.zeros((10, 2)), k=5)


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(14)
    queries = rng.integers(0, 256, (70, 4, 4, 3), dtype=np.uint8)
    keys = rng.integers(0, 256, (300, 4, 4, 3), dtype=np.uint8)
    distances, indices = nearest_neighbours(queries, keys)

    flat_q = queries.reshape(70, -1).astype(np.float64)
    flat_k = keys.reshape(300, -1).astype(np.float64)
    brute = np.sqrt(((flat_q[:, None, :] - flat_k[None, :, :]) ** 2).sum(-1))
    np.testing.assert_array_equal(indices, brute.argmin(1))
    np.testing.assert_allclose(distances, brute.min(1), rtol=1e-12)


def test_nearest_neighbours_exact_copy_reads_zero():
    rng = np.random.default_rng(15)
    keys = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    distances, indices = nearest_neighbours(keys[[7, 21]], keys)
    assert distances.tolist() == [0.0, 0.0]
    assert indices.tolist() == [7, 21]


def test_leave_one_out_skips_self_but_finds_duplicate():
    rng = np.random.default_rng(16)
    keys = rng.standard_normal((40, 6))
    keys[30] = keys[3]
    distances, indices = nearest_neighbours(keys[[3, 5]], keys, exclude=np.array([3, 5]))
    assert indices[0] == 30
    assert distances[0] == 0.0
    assert indices[1] != 5
    assert distances[1] > 0.0


def test_compare_to_training_flags_copies():
    rng = np.random.default_rng(17)
    training = rng.integers(0, 256, (60, 8, 8, 3), dtype=np.uint8)
    copies = training[:20].copy()
    summary, distances, indices = compare_to_training(copies, training, 30, seed=0, scale=8.0)
    assert summary["generated_to_training"]["mean"] == 0.0
    assert distances.max() == 0.0
    assert indices.tolist() == list(range(20))
    assert summary["share_below_training_p1"] == 1.0
    assert summary["training_to_training"]["min"] > 0.0
