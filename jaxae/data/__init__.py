"""Image data sets as uint8 arrays [N, H, W, C] with labels, class names and a fingerprint.

`DATASETS` maps each name a config may give (`config.data.name`) to a loader:

- `fashion_mnist`, `mnist`: TFDS builders of jaxae's own (online, or offline from IDX files);
- `cifar10`: a TensorFlow-free TFDS builder of jaxae's own (online, or offline from the
  canonical archive in `config.data.data_dir`);
- `folder`: a folder of images (PNG, JPEG, BMP, TIFF, WebP, ...) in class sub-folders, or alone
  (`config.data.path`);
- `npz`: a file of arrays (`config.data.path`);
- any other TFDS name (`svhn_cropped`, `celeb_a`, ...) through TFDS's own builder.

Every source but `npz` is prepared once into the TFDS data dir as array_record files. Loaders
take the config.data fields they declare (`data_dir`, `tfds_dir`, `path`, `image_size`,
`channels`, `streaming`, `memory_budget_mb`). Register your own with
`@data.DATASETS.register("name")`: it returns a `Dataset`.
"""

import functools

from jaxae.data.arrays import from_arrays, load_npz
from jaxae.data.builder import JaxaeImages
from jaxae.data.cifar10 import load_cifar10
from jaxae.data.dataset import Dataset, should_stream
from jaxae.data.errors import DataError
from jaxae.data.folder import load_folder
from jaxae.data.idx import read_idx, read_idx_folder
from jaxae.data.images import ImageOptions
from jaxae.data.records import HostArray, RecordArray
from jaxae.data.sources import MNIST_NAMES, class_names, load_dataset
from jaxae.data.splits import Split, Splits, make_splits
from jaxae.data.streaming import StreamedBatches
from jaxae.data.tfds_sets import is_tfds_name, load_tfds
from jaxae.registry import Entry, Registry, RegistryError


class DataSets(Registry):
    """The data set registry: registered names first, then any TFDS data set's name, then
    'module:function' / 'file.py:function'."""

    def get(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        if is_tfds_name(name):
            return functools.partial(load_tfds, name)
        try:
            return super().get(name)
        except RegistryError as e:
            if ":" in name:
                raise
            raise RegistryError(f"{e} (or any TFDS data set's name, e.g. svhn_cropped: see "
                                "tfds.list_builders())") from None


DATASETS = DataSets("data set")
for _name in MNIST_NAMES:
    DATASETS.register(_name)(functools.partial(load_dataset, _name))
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("folder")(load_folder)
DATASETS.register("npz")(load_npz)

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "HostArray",
    "ImageOptions",
    "JaxaeImages",
    "MNIST_NAMES",
    "RecordArray",
    "Split",
    "Splits",
    "StreamedBatches",
    "class_names",
    "from_arrays",
    "load_cifar10",
    "load_dataset",
    "load_folder",
    "load_npz",
    "load_tfds",
    "make_splits",
    "read_idx",
    "read_idx_folder",
    "should_stream",
]
