"""Principal component analysis with an SVD in JAX: the linear baseline for codes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits


class PCA(NamedTuple):
    mean: jax.Array  # [D]
    components: jax.Array  # [min(k, N, D), D], orthonormal rows, largest variance first


def fit(x_NxD: jax.Array, k: int) -> PCA:
    """The k leading principal directions of the rows of x: min(k, N, D) of them, as N rows
    of D values have no more (a scatter of one image's code has one)."""
    x = jnp.asarray(x_NxD, jnp.float32)
    mean = x.mean(axis=0)
    # The SVD (LAPACK, through OpenBLAS) on one thread: OpenBLAS's threads spin while they
    # wait for each other, and on a machine busy with other work (XLA's threads, another
    # process) an evaluation's picture stalled for seconds on them. The OpenBLAS JAX's SVD
    # runs on is scipy's, loaded first (else loaded inside the limit, and not limited); the
    # SVD runs to its end inside the limit (JAX dispatches asynchronously).
    import scipy.linalg  # noqa: F401

    with threadpool_limits(1, user_api="blas"):
        _, _, vt = jax.block_until_ready(jnp.linalg.svd(x - mean, full_matrices=False))
    return PCA(mean, vt[:k])


def project(pca: PCA, x_NxD: jax.Array) -> jax.Array:
    """Codes [N, k] of the rows of x."""
    return (jnp.asarray(x_NxD, jnp.float32) - pca.mean) @ pca.components.T


def two_columns(points_Nxk: np.ndarray) -> np.ndarray:
    """Points [N, 2] for a scatter of a projection's first two directions: where the data
    had one (a single image; images of one pixel), 0 along the second."""
    points = np.asarray(points_Nxk)[:, :2]
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))


def reconstruct(pca: PCA, codes_Nxk: jax.Array) -> jax.Array:
    return codes_Nxk @ pca.components + pca.mean


def clipped_reconstructions(train_NxD: jax.Array, test_MxD: jax.Array, sizes: Iterable[int]
                            ) -> Iterator[tuple[int, jax.Array]]:
    """(k, the test rows reconstructed from k components) for each k of `sizes`, all from
    one fit on the training rows, each clipped to the pixels' [0, 1] as an autoencoder's
    sigmoid keeps its output (clipping costs nothing and only lowers the error): the PCA
    baseline an autoencoder's reconstruction is compared with."""
    sizes = list(sizes)
    fitted = fit(train_NxD, max(sizes))
    most = fitted.components.shape[0]
    if max(sizes) > most:  # a baseline of fewer components than its name says
        rows, values = jnp.shape(train_NxD)
        raise ValueError(f"PCA with k={max(sizes)} components: {rows} training rows of "
                         f"{values} values have at most {most}: give a k of at most {most}")
    test = jnp.asarray(test_MxD, jnp.float32)
    for k in sizes:
        part = PCA(fitted.mean, fitted.components[:k])
        yield k, jnp.clip(reconstruct(part, project(part, test)), 0.0, 1.0)
