"""Principal component analysis with an SVD in JAX: the linear baseline for codes."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PCA(NamedTuple):
    mean: jax.Array  # [D]
    components: jax.Array  # [k, D], orthonormal rows, largest variance first


def fit(x_NxD: jax.Array, k: int) -> PCA:
    """The k leading principal directions of the rows of x."""
    x = jnp.asarray(x_NxD, jnp.float32)
    mean = x.mean(axis=0)
    _, _, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    return PCA(mean, vt[:k])


def project(pca: PCA, x_NxD: jax.Array) -> jax.Array:
    """Codes [N, k] of the rows of x."""
    return (jnp.asarray(x_NxD, jnp.float32) - pca.mean) @ pca.components.T


def reconstruct(pca: PCA, codes_Nxk: jax.Array) -> jax.Array:
    return codes_Nxk @ pca.components + pca.mean
