"""The train / validation / test arrays a run uses, cut from a loaded data set by its config."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np

from jaxae import pipeline
from jaxae.data import load_dataset


@dataclasses.dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # int32 [N]

    def __len__(self) -> int:
        return len(self.images)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Split
    val: Split | None  # carved from the training split when config.val_size > 0
    test: Split
    class_names: tuple[str, ...]
    source: str  # where the data came from, for logs and result pages


def load_splits(config: ml_collections.ConfigDict, data_key: jax.Array) -> Splits:
    """Loads the config's data set and applies train_size, test_size, val_size, binarize."""
    data = load_dataset(config.dataset, idx_dir=config.data_dir, tfds_dir=config.tfds_dir)
    train = Split(data.train_images[:config.train_size], data.train_labels[:config.train_size])
    test = Split(data.test_images[:config.test_size], data.test_labels[:config.test_size])
    val = None
    if config.val_size:
        (train_x, train_y), (val_x, val_y) = pipeline.split_validation(
            train.images, train.labels, config.val_size, data_key)
        train, val = Split(train_x, train_y), Split(val_x, val_y)
    if config.binarize == "static":
        train, val, test = (_binarized(split, jax.random.fold_in(data_key, i))
                            for i, split in enumerate((train, val, test)))
    return Splits(train, val, test, tuple(data.class_names), data.source)


def _binarized(split: Split | None, key: jax.Array) -> Split | None:
    if split is None:
        return None
    return Split(pipeline.binarize_static(split.images, key), split.labels)
