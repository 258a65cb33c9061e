"""Data sets for jaxae: MNIST and Fashion-MNIST as numpy arrays, via TFDS without TensorFlow."""

from jaxae.data.builder import JaxaeImages
from jaxae.data.idx import DataError, read_idx, read_idx_folder
from jaxae.data.sources import DATASET_NAMES, Dataset, class_names, load_dataset

__all__ = [
    "DATASET_NAMES",
    "DataError",
    "Dataset",
    "JaxaeImages",
    "class_names",
    "load_dataset",
    "read_idx",
    "read_idx_folder",
]
