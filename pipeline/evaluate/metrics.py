"""FID and KID on precomputed features, in float64 numpy.

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to two feature
sets: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, with float64 means and unbiased
(n - 1) covariances. The trace of the matrix square root comes from symmetric
eigendecompositions or singular values (see :class:`FrechetReference`) in place of
``scipy.linalg.sqrtm``: about 20x faster for 2048 x 2048, and no imaginary parts appear.

KID (Binkowski et al. 2018) is the unbiased estimate of the squared MMD with the kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets, as in torchmetrics'
KernelInceptionDistance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    roots = np.sqrt(np.clip(eigenvalues, 0.0, None))
    return (eigenvectors * roots) @ eigenvectors.T


def _check_features(features: np.ndarray) -> None:
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {features.shape}")


class FrechetReference:
    """A reference feature set that other sets are compared with by FID.

    The trace term uses whichever of two exact methods is cheaper:

    - ``eigh``: ``sum(sqrt(eig(A S2 A)))`` with ``A = S1^(1/2)``, O(D^3). ``A`` is cached,
      so repeated calls against one reference cost one more decomposition each.
    - ``nuclear_norm``: with centred features ``X1`` and ``X2`` scaled by ``1/sqrt(n - 1)``,
      ``S1 S2 = X1' X1 X2' X2`` has the nonzero eigenvalues of ``(X1 X2')(X1 X2')'``, so
      the trace equals the sum of the singular values of the n1 x n2 matrix ``X1 X2'``.
      This is O(n1 n2 min(n1, n2)), far cheaper when the sets are smaller than D.
    """

    def __init__(self, features: np.ndarray) -> None:
        _check_features(features)
        self.features = features
        self.count, self.dim = features.shape
        self.mean = features.mean(axis=0, dtype=np.float64)
        self._covariance_sqrt: np.ndarray | None = None
        self._covariance_trace: float | None = None

    def _centred(self) -> np.ndarray:
        return (self.features.astype(np.float64) - self.mean) / np.sqrt(self.count - 1)

    def _eigh_terms(self, centred: np.ndarray) -> tuple[float, float]:
        if self._covariance_sqrt is None:
            reference = self._centred()
            covariance = reference.T @ reference
            self._covariance_sqrt = _symmetric_sqrt(covariance)
            self._covariance_trace = float(np.trace(covariance))
        product = self._covariance_sqrt @ (centred.T @ centred) @ self._covariance_sqrt
        eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
        return self._covariance_trace, float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())

    def _nuclear_norm_terms(self, centred: np.ndarray) -> tuple[float, float]:
        reference = self._centred()
        singular_values = np.linalg.svd(reference @ centred.T, compute_uv=False)
        return float(np.square(reference).sum()), float(singular_values.sum())

    def fid(self, features: np.ndarray, method: str = "auto") -> float:
        """Return the FID of (N, D) features against this reference.

        ``method`` is ``auto``, ``eigh`` or ``nuclear_norm``; both give the same value up
        to rounding, and ``auto`` picks the one with fewer operations.
        """
        _check_features(features)
        if features.shape[1] != self.dim:
            raise ValueError(
                f"features have {features.shape[1]} dimensions but the reference has {self.dim}"
            )
        count = len(features)
        mean = features.mean(axis=0, dtype=np.float64)
        centred = (features.astype(np.float64) - mean) / np.sqrt(count - 1)

        if method == "auto":
            small = self.count * count * min(self.count, count) < self.dim**3
            method = "nuclear_norm" if small else "eigh"
        if method == "eigh":
            reference_trace, trace_sqrt = self._eigh_terms(centred)
        elif method == "nuclear_norm":
            reference_trace, trace_sqrt = self._nuclear_norm_terms(centred)
        else:
            raise ValueError(f"unknown FID method {method!r}; use auto, eigh or nuclear_norm")

        value = (
            np.square(self.mean - mean).sum()
            + reference_trace
            + np.square(centred).sum()
            - 2.0 * trace_sqrt
        )
        # Rounding alone can push a set compared with itself slightly below zero.
        return max(float(value), 0.0)


def fid_from_features(
    features_a: np.ndarray, features_b: np.ndarray, method: str = "auto"
) -> float:
    """Return the FID between two (N, D) feature sets."""
    return FrechetReference(features_a).fid(features_b, method)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the KID kernel matrix ``(x.y / d + 1)^3`` of (M, D) and (N, D) features."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Return the unbiased squared MMD of two equal-size sets with the polynomial kernel.

    Within-set sums leave out the diagonal (a sample paired with itself) and the cross-set
    sum keeps every pair, so the expected value is 0 when both sets come from one distribution.
    """
    m = len(x)
    if len(y) != m or m < 2:
        raise ValueError(f"need two sets of equal size >= 2, got {len(x)} and {len(y)}")
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


@dataclass
class KidResult:
    mean: float
    std: float
    subset_size: int
    num_subsets: int


def kid_from_features(
    features_real: np.ndarray,
    features_fake: np.ndarray,
    subset_size: int,
    num_subsets: int,
    seed: int,
) -> KidResult:
    """Return KID mean and standard deviation over random subsets drawn without replacement.

    A ``subset_size`` larger than either set is lowered to the smaller set's size, with a
    warning; the size used is returned. The standard deviation is the population one
    (ddof 0), as in torchmetrics. When the subset size equals both set sizes, every subset
    is the whole set, so the standard deviation is 0 and does not measure sampling error.
    """
    size = min(subset_size, len(features_real), len(features_fake))
    if size < 2:
        raise ValueError(
            f"KID needs at least 2 images per set, got {len(features_real)} real "
            f"and {len(features_fake)} generated"
        )
    if size < subset_size:
        logger.warning(
            "KID subset size lowered from %d to %d, the size of the smaller set",
            subset_size,
            size,
        )

    rng = np.random.default_rng(seed)
    real = features_real.astype(np.float64)
    fake = features_fake.astype(np.float64)
    scores = np.empty(num_subsets)
    for index in range(num_subsets):
        real_subset = real[rng.choice(len(real), size, replace=False)]
        fake_subset = fake[rng.choice(len(fake), size, replace=False)]
        scores[index] = mmd2_unbiased(real_subset, fake_subset)
    return KidResult(float(scores.mean()), float(scores.std()), size, num_subsets)
