"""The train / validation / test arrays a run uses, cut from a loaded data set."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxae.data import batches
from jaxae.data.sources import Dataset

BINARIZATIONS = ("none", "static", "dynamic")


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int:
        return len(self.images)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Split
    val: Split | None  # carved from the training split when val_size > 0
    test: Split
    class_names: tuple[str, ...]
    source: str  # where the data came from, for logs and result pages
    title: str = ""  # the data set's display name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def make_splits(data: Dataset, data_key: jax.Array, *, train_size: int | None = None,
                test_size: int | None = None, val_size: int = 0,
                binarize: str = "none") -> Splits:
    """The first train_size / test_size images of each split, a validation split of
    val_size carved from the training images, and static binarisation if asked for."""
    train = Split(data.train_images[:train_size], data.train_labels[:train_size])
    test = Split(data.test_images[:test_size], data.test_labels[:test_size])
    val = None
    if val_size:
        (train_x, train_y), (val_x, val_y) = batches.split_validation(
            train.images, train.labels, val_size, data_key)
        train, val = Split(train_x, train_y), Split(val_x, val_y)
    if binarize == "static":
        train, val, test = (_binarized(split, jax.random.fold_in(data_key, i))
                            for i, split in enumerate((train, val, test)))
    return Splits(train, val, test, tuple(data.class_names), data.source, data.title)


def _binarized(split: Split | None, key: jax.Array) -> Split | None:
    if split is None:
        return None
    return Split(batches.binarize_static(split.images, key), split.labels)
