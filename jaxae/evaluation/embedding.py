"""How well a 2-D picture of codes keeps the classes apart, against PCA's picture of the pixels:
the lesson's claim that an autoencoder's code is the better 2-D visualisation, made a number."""

from __future__ import annotations

import numpy as np

from jaxae.data.batches import to_float
from jaxae.data.records import HostArray
from jaxae.evaluation import pca

NEIGHBOURS = 5  # the classes of a point's 5 nearest neighbours vote on its class
MAX_POINTS = 10_000  # the first this many points are scored (distances in chunks of rows)
PCA_FIT_IMAGES = 2_000  # the pixels' two leading directions, from the first training images
_CHUNK = 1_024


def neighbour_accuracy(points_Nx2: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS
                       ) -> float:
    """The share of points whose k nearest other points (Euclidean, in the plane drawn) vote
    for their own class (ties to the lowest class index): leave-one-out k-NN accuracy over the
    first MAX_POINTS points. 1 / classes for a picture that mixes the classes evenly."""
    if len(points_Nx2) != len(labels):
        raise ValueError(f"neighbour_accuracy was given {len(points_Nx2)} points and "
                         f"{len(labels)} labels: give one label per point")
    points = np.asarray(points_Nx2, np.float64)[:MAX_POINTS]
    points = points - points.mean(axis=0)  # distances by |a|^2 + |b|^2 - 2ab stay exact
    labels = np.asarray(labels)[:MAX_POINTS]
    if len(points) <= k:
        raise ValueError(f"{len(points)} points cannot be scored by their {k} nearest "
                         "neighbours: give more than that")
    num_classes = int(labels.max()) + 1
    squared = (points ** 2).sum(axis=1)
    correct = 0
    for start in range(0, len(points), _CHUNK):
        rows = slice(start, start + _CHUNK)
        distances = squared[rows, None] + squared[None, :] - 2 * points[rows] @ points.T
        distances[np.arange(distances.shape[0]), np.arange(start, start + distances.shape[0])
                  ] = np.inf  # a point is not its own neighbour
        nearest = np.argpartition(distances, k, axis=1)[:, :k]
        votes = np.zeros((len(nearest), num_classes), np.int64)
        np.add.at(votes, (np.arange(len(nearest))[:, None], labels[nearest]), 1)
        correct += int((votes.argmax(axis=1) == labels[rows]).sum())
    return correct / len(points)


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
