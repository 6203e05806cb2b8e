"""Distribution-level metrics: Frechet distance between embedding sets (FD/FAD on VGGish-style
embeddings) and KL divergence between classifier posteriors (the PaSST KL column of the papers)."""

from __future__ import annotations

import numpy as np
from scipy import linalg

_SQRTM_EPS = 1e-6  # diagonal offset when the covariance product is singular (as in pytorch-fid)
_IMAG_TOL = 1e-3  # largest imaginary part of sqrtm's diagonal that is treated as round-off


def _mean_cov(emb: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of an (N, D) embedding set with N >= 2."""
    e = np.asarray(emb, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"{name} must be (N, D) with N >= 2 embeddings, got {e.shape=}")
    return e.mean(axis=0), np.atleast_2d(np.cov(e, rowvar=False))


def _sqrtm_product(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Real square root of s1 @ s2, regularised when the product is singular."""
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * _SQRTM_EPS
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if np.max(np.abs(np.diagonal(covmean).imag)) > _IMAG_TOL:
            raise ValueError(f"sqrtm has a large imaginary part {np.max(np.abs(covmean.imag))=}")
        covmean = covmean.real
    return covmean


def frechet_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to emb_a (N, D) and emb_b (M, D).

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Dowson & Landau 1982; the FID formula).
    """
    mu_a, s_a = _mean_cov(emb_a, "emb_a")
    mu_b, s_b = _mean_cov(emb_b, "emb_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"embedding widths differ: {mu_a.shape=} {mu_b.shape=}")
    diff = mu_a - mu_b
    covmean = _sqrtm_product(s_a, s_b)
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))


def kl_divergence(p_ref: np.ndarray, p_gen: np.ndarray, eps: float = 1e-6) -> float:
    """Mean over rows of KL(p_ref || p_gen) in nats, for class posteriors of shape (N, C).

    Each row is floored at ``eps`` (so empty classes stay finite) and renormalised to sum 1.
    """
    p = np.asarray(p_ref, dtype=np.float64)
    q = np.asarray(p_gen, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(f"p_ref and p_gen must both be (N, C), got {p.shape=} {q.shape=}")
    p = np.maximum(p, eps)
    q = np.maximum(q, eps)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))
