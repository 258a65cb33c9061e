"""How well a 2-D picture of codes keeps the classes apart, against PCA's picture of the pixels:
the lesson's claim that an autoencoder's code is the better 2-D visualisation, made a number."""

from __future__ import annotations

import numpy as np

from jaxae.data.batches import to_float
from jaxae.data.records import HostArray
from jaxae.evaluation import pca

NEIGHBOURS = 5  # the classes of a point's 5 nearest neighbours vote on its class
MAX_POINTS = 10_000  # the first this many points are scored
PCA_FIT_IMAGES = 2_000  # the pixels' two leading directions, from the first training images
_CHUNK = 1_024  # images projected at a time
_SEARCH_ROWS = 256  # points searched over all points at a time


def neighbour_accuracy(points_Nx2: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS
                       ) -> float:
    """The share of points whose k nearest other points (Euclidean, in the plane drawn) vote
    for their own class (ties to the lowest class index): leave-one-out k-NN accuracy over the
    first MAX_POINTS points; a point with a coordinate that is not finite (a diverged code)
    is drawn nowhere, no one's neighbour, and a miss. 1 / classes for a picture that mixes
    the classes evenly."""
    if len(points_Nx2) != len(labels):
        raise ValueError(f"neighbour_accuracy was given {len(points_Nx2)} points and "
                         f"{len(labels)} labels: give one label per point")
    points = np.asarray(points_Nx2, np.float64)[:MAX_POINTS]
    labels = np.asarray(labels)[:MAX_POINTS]
    if len(points) <= k:
        raise ValueError(f"{len(points)} points cannot be scored by their {k} nearest "
                         "neighbours: give more than that")
    finite = np.isfinite(points).all(axis=1)
    if finite.sum() <= k:  # no point has k neighbours drawn
        return 0.0
    drawn, classes = points[finite], labels[finite]
    nearest = nearest_others(drawn, k)
    votes = np.zeros((len(drawn), int(labels.max()) + 1), np.int64)
    np.add.at(votes, (np.arange(len(drawn))[:, None], classes[nearest]), 1)
    return int((votes.argmax(axis=1) == classes).sum()) / len(points)


def nearest_others(points: np.ndarray, k: int) -> np.ndarray:
    """int [N, k]: each point's k nearest other points, in index order where they tie.
    Found by a k-d tree rather than all pairs' distances; a point whose k-th distance is
    shared beyond it (a grid of codes, or duplicates: a collapsed code) is searched again
    over all points, so that ties go to the lower index."""
    from scipy.spatial import cKDTree  # here: its import takes longer than a search

    n = len(points)
    count = min(k + 2, n)  # itself, k others, and one beyond them to see a tie
    distances, found = cKDTree(points).query(points, count)
    itself = found == np.arange(n)[:, None]
    distances = np.where(itself, np.inf, distances)  # (absent where k + 2 share distance 0)
    by_distance = np.argsort(distances, axis=1, kind="stable")
    ranked = np.take_along_axis(distances, by_distance, axis=1)
    nearest = np.take_along_axis(found, by_distance, axis=1)[:, :k]
    if count > k + 1:
        tied = np.flatnonzero(ranked[:, k - 1] == ranked[:, k])
        for start in range(0, len(tied), _SEARCH_ROWS):
            rows = tied[start:start + _SEARCH_ROWS]
            nearest[rows] = _first_k_by_distance_then_index(points, rows, k)
    return nearest


def _first_k_by_distance_then_index(points: np.ndarray, rows: np.ndarray, k: int
                                    ) -> np.ndarray:
    """int [len(rows), k]: the k points nearest each of `rows` but itself, by (distance,
    index), over all points."""
    squared = sum((points[rows, j, None] - points[None, :, j]) ** 2
                  for j in range(points.shape[1]))
    squared[np.arange(len(rows)), rows] = np.inf
    kth = np.partition(squared, k - 1, axis=1)[:, k - 1:k]
    nearer = squared < kth
    level = squared == kth  # as many of these as k leaves room for, lowest index first
    chosen = nearer | (level & (np.cumsum(level, axis=1) <= k - nearer.sum(axis=1,
                                                                          keepdims=True)))
    return np.nonzero(chosen)[1].reshape(len(rows), k)


def pixel_pca_points(train_images: HostArray, test_images: HostArray) -> np.ndarray:
    """The test images' pixels (uint8, scaled to [0, 1]) projected on the two leading
    principal directions of the first PCA_FIT_IMAGES training images' pixels, read and
    projected a chunk at a time (a streamed split stays on disk); [N, 2] even where the
    training pixels have one direction (one image, or images of one pixel)."""
    def flat(images: np.ndarray) -> np.ndarray:
        return to_float(np.asarray(images)).reshape(len(images), -1)

    fitted = pca.fit(flat(train_images[:PCA_FIT_IMAGES]), 2)
    return pca.two_columns(np.concatenate([
        np.asarray(pca.project(fitted, flat(test_images[i:i + _CHUNK])))
        for i in range(0, len(test_images), _CHUNK)]))
