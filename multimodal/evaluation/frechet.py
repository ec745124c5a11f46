"""The Fréchet distance between Gaussians fitted to two feature sets, as FID computes it.

``tr((C_a C_b)^1/2)`` is read from the eigenvalues of the symmetric PSD matrix ``C_a^1/2 C_b C_a^1/2``
(same spectrum as ``C_a C_b``), so no non-symmetric matrix square root (and no scipy) is needed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def _check_features(features, name: str) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    if not isinstance(features, np.ndarray):
        raise InputError(f"{name}: expected a float array [N, D], found {type(features).__name__}")
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        raise InputError(f"{name}: expected a float array [N, D] with N >= 2 samples, found shape "
                         f"{features.shape}")
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise InputError(f"{name}: expected real numbers, found dtype {features.dtype}")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise InputError(f"{name}: expected finite values, found NaN or infinity")
    return features


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix by eigendecomposition (rounding's negative eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a, features_b) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets ``[N_a, D]``, ``[N_b, D]``
    (torch or numpy): ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^1/2)``, with unbiased covariances.

    ``tr((C_a C_b)^1/2)`` is the sum of the square roots of the eigenvalues of the symmetric PSD
    ``C_a^1/2 C_b C_a^1/2``, which has the spectrum of ``C_a C_b``. Rounding can leave a tiny negative
    total for identical sets; it is returned as 0."""
    a, b = _check_features(features_a, "features_a"), _check_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"features_b: expected {a.shape[1]} features per sample (as features_a), found "
                         f"{b.shape[1]}")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], -1)
    cov_b = np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], -1)
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    product = (product + product.T) / 2
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(product), 0, None)).sum()
    distance = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))
