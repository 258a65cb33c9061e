"""Image data sets as uint8 arrays [N, H, W, C] with labels and class names.

`DATASETS` maps each name a config may give (`config.data.name`) to a loader:
MNIST and Fashion-MNIST through TFDS builders of jaxae's own (online, or offline from IDX
files), and `npz`, a file of arrays. Register your own loader with
`@data.DATASETS.register("name")`: it returns a `Dataset` and may take `data_dir`,
`tfds_dir` and `path` keyword arguments.
"""

import functools

from jaxae.data.arrays import from_arrays, load_npz
from jaxae.data.builder import JaxaeImages
from jaxae.data.idx import DataError, read_idx, read_idx_folder
from jaxae.data.sources import MNIST_NAMES, Dataset, class_names, load_dataset
from jaxae.data.splits import Split, Splits, make_splits
from jaxae.registry import Registry

DATASETS = Registry("data set")
for _name in MNIST_NAMES:
    DATASETS.register(_name)(functools.partial(load_dataset, _name))
DATASETS.register("npz")(load_npz)

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "JaxaeImages",
    "MNIST_NAMES",
    "Split",
    "Splits",
    "class_names",
    "from_arrays",
    "load_dataset",
    "load_npz",
    "make_splits",
    "read_idx",
    "read_idx_folder",
]
