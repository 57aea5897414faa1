"""Improved precision and recall (Kynkäänniemi et al. 2019), k-NN manifolds with k = 3.

Conventions follow the paper and torch-fidelity: the radius of a point is the distance to its k-th
nearest neighbour in its own set (self excluded: `kthvalue(k + 1)` over distances that include the
zero self-distance); a query is inside the manifold when `d(query, x) <= radius(x)` for some x.
Precision = share of generated samples inside the real manifold; recall = share of real samples inside
the generated manifold. Distances are computed in float64 blocks of `batch_size` x `batch_size`, so memory
is bounded by the block size, not by N².
"""

from __future__ import annotations

import numpy as np
import torch

from ldm_lab.metrics.result import KEY_PRECISION, KEY_RECALL, MetricResult

PR_NEIGHBOURHOOD = 3
PR_BATCH_SIZE = 2048


def _blocks(x: torch.Tensor, batch_size: int):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def knn_radii(
    features: torch.Tensor, *, k: int = PR_NEIGHBOURHOOD, batch_size: int = PR_BATCH_SIZE
) -> torch.Tensor:
    """Distance of each row to its k-th nearest neighbour in `features` (self excluded)."""
    if len(features) <= k:
        raise ValueError(f"k-NN radii need more than k={k} samples, got {len(features)}")
    radii = []
    for rows in _blocks(features, batch_size):
        # Running k+1 smallest distances (self included) over column blocks: O(batch * (batch + k)) memory.
        best = torch.full((len(rows), 0), float("inf"), dtype=features.dtype)
        for cols in _blocks(features, batch_size):
            merged = torch.cat([best, torch.cdist(rows, cols)], dim=1)
            best = merged.topk(min(k + 1, merged.shape[1]), dim=1, largest=False).values
        radii.append(best.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, *, batch_size: int = PR_BATCH_SIZE
) -> torch.Tensor:
    """Boolean per query: inside the union of balls B(support_j, radii_j) (boundary included)."""
    inside = []
    for rows in _blocks(queries, batch_size):
        hit = torch.zeros(len(rows), dtype=torch.bool)
        for start in range(0, len(support), batch_size):
            d = torch.cdist(rows, support[start : start + batch_size])
            hit |= (d <= radii[start : start + batch_size]).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def precision_recall_from_features(
    fake: np.ndarray, real: np.ndarray, *, k: int = PR_NEIGHBOURHOOD, batch_size: int = PR_BATCH_SIZE
) -> tuple[float, float]:
    """(precision, recall) of generated `fake` features against `real` features."""
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    if fake_t.ndim != 2 or real_t.ndim != 2 or fake_t.shape[1] != real_t.shape[1]:
        raise ValueError(
            f"`fake` and `real` must be [N, D] with the same D, got {tuple(fake_t.shape)} and "
            f"{tuple(real_t.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    real_radii = knn_radii(real_t, k=k, batch_size=batch_size)
    fake_radii = knn_radii(fake_t, k=k, batch_size=batch_size)
    precision = inside_manifold(fake_t, real_t, real_radii, batch_size=batch_size).double().mean().item()
    recall = inside_manifold(real_t, fake_t, fake_radii, batch_size=batch_size).double().mean().item()
    return precision, recall


def precision_recall_results(
    fake: np.ndarray, real: np.ndarray, *, protocol: str, k: int = PR_NEIGHBOURHOOD
) -> dict[str, MetricResult]:
    """Precision and recall as result objects (unavailable when a set has <= k samples)."""
    n = min(len(fake), len(real))
    if n <= k:
        reason = f"k-NN precision/recall (k={k}) needs more than {k} samples per set, got {n}"
        return {
            key: MetricResult.missing(key, reason, protocol=protocol, n=n)
            for key in (KEY_PRECISION, KEY_RECALL)
        }
    precision, recall = precision_recall_from_features(fake, real, k=k)
    extra = {"k": k, "n_fake": len(fake), "n_real": len(real)}
    return {
        KEY_PRECISION: MetricResult(KEY_PRECISION, precision, n=n, protocol=protocol, extra=extra),
        KEY_RECALL: MetricResult(KEY_RECALL, recall, n=n, protocol=protocol, extra=extra),
    }
