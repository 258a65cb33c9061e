"""TFDS builder `jaxae_images`: MNIST and Fashion-MNIST as raw uint8 arrays in array_record files.

Needs no TensorFlow: images are stored as plain uint8 tensors, read back without it. The
prepared folder records the fingerprint of the IDX files it was made from
(`records.SOURCE_FILE`), so a later run given other files notices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxae.data import idx
from jaxae.data.records import (
    JaxaeBuilder,
    array_examples,
    arrays_sha256,
    bytes_entry,
    files_entries,
    manual_dir_or_none,
    raw_image_info,
    sha256_json,
    write_source_record,
)

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# (file name, size in bytes, sha256) of the canonical downloads; the same values TFDS registers
# for its own `mnist` and `fashion_mnist` builders (tensorflow_datasets/url_checksums/*.txt).
# Files with these checksums given under the other name are refused (`identify_idx_files`).
MNIST_FILES = (
    ("train-images-idx3-ubyte.gz", 9912422,
     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    ("train-labels-idx1-ubyte.gz", 28881,
     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    ("t10k-images-idx3-ubyte.gz", 1648877,
     "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    ("t10k-labels-idx1-ubyte.gz", 4542,
     "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
)
FASHION_MNIST_FILES = (
    ("train-images-idx3-ubyte.gz", 26421880,
     "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    ("train-labels-idx1-ubyte.gz", 29515,
     "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    ("t10k-images-idx3-ubyte.gz", 4422102,
     "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    ("t10k-labels-idx1-ubyte.gz", 5148,
     "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
)


FULL_SIZES = {"train": 60000, "test": 10000}
# The size and first ten labels of each split of the versions of a data set known here: the
# full sets, and the 5,000 MNIST digits as `jaxae.data.mnist5k` writes them. Files that were
# recompressed or unpacked have other checksums, but their labels still say what they are.
KNOWN_LABEL_STARTS = {
    "mnist": ({"train": (60000, (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)),
               "test": (10000, (7, 2, 1, 0, 4, 1, 4, 9, 5, 9))},
              {"train": (4000, (1, 5, 4, 9, 0, 2, 7, 3, 6, 1)),
               "test": (1000, (6, 7, 0, 5, 4, 8, 1, 6, 7, 7))}),
    "fashion_mnist": ({"train": (60000, (9, 0, 0, 3, 0, 2, 7, 2, 5, 5)),
                       "test": (10000, (9, 2, 1, 1, 6, 1, 4, 6, 5, 7))},),
}


def idx_fingerprint(entries: list[list]) -> str:
    """The fingerprint of IDX files from their sorted [name, size, sha256]: a folder holding
    the published files has the fingerprint of the download."""
    return "idx-files-sha256:" + sha256_json(entries)


def idx_folder_fingerprint(folder: str) -> str:
    """The fingerprint of the IDX files in `folder`, from hashing them only (no decoding)."""
    paths = idx.idx_file_paths(folder)
    names = [os.path.basename(p) for pair in paths.values() for p in pair]
    return idx_fingerprint(files_entries(folder, names))


@dataclasses.dataclass(frozen=True, eq=False)
class IdxFiles:
    """The four IDX files of a folder, read and validated: {split: (images, labels)} and the
    files' sorted [name, size, sha256], as `files_entries` lists them."""

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    entries: list[list]

    @property
    def fingerprint(self) -> str:
        return idx_fingerprint(self.entries)


def read_idx_files(folder: str) -> IdxFiles:
    """Read and validate the four IDX files of `folder` (`idx.read_idx_folder`), hashing each
    file as it is read: checking and preparing them reads every file once."""
    entries = []

    def read(path: str) -> np.ndarray:
        stored = idx.read_stored(path)
        entries.append(bytes_entry(os.path.basename(path), stored))
        return idx.read_idx(path, stored)

    splits = {split: idx.read_idx_split(*pair, read=read)
              for split, pair in idx.idx_file_paths(folder).items()}
    return IdxFiles(splits, sorted(entries))


def idx_content_sha256(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """sha256 of the decoded images (uint8 [N, 28, 28]) and labels (int64) of both splits:
    the same for the same data however it is packed."""
    arrays = []
    for split in idx.SPLIT_FILES:
        images, labels = splits[split]
        arrays += [np.asarray(images, np.uint8).reshape(-1, *idx.IMAGE_SHAPE),
                   np.asarray(labels, np.int64)]
    return arrays_sha256(*arrays)


def published_entries(config: JaxaeImagesConfig) -> list[list]:
    """[name, size, sha256] of a data set's published files, as `files_entries` lists them."""
    return sorted([name, size, sha] for name, size, sha in config.files)


@dataclasses.dataclass
class JaxaeImagesConfig(tfds.core.BuilderConfig):
    """One data set of 28x28 grey images: where to download it and what its classes are."""

    base_url: str = ""
    files: tuple[tuple[str, int, str], ...] = ()
    class_names: tuple[str, ...] = ()
    homepage: str = ""
    title: str = ""  # how pictures and tables name the data set
    debian_package: str = ""  # a Debian package that installs its IDX files ("": none)
    debian_folder: str = ""  # where that package puts them (when dpkg cannot say)

    def urls(self) -> dict[str, str]:
        """Return {file name: download URL} of the four IDX .gz files."""
        return {name: self.base_url + name for name, _, _ in self.files}


MNIST_CONFIG = JaxaeImagesConfig(
    name="mnist",
    description="MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 uint8.",
    base_url=MNIST_URL,
    files=MNIST_FILES,
    class_names=MNIST_CLASS_NAMES,
    homepage="http://yann.lecun.com/exdb/mnist/",
    title="MNIST",
)
FASHION_MNIST_CONFIG = JaxaeImagesConfig(
    name="fashion_mnist",
    description="Fashion-MNIST Zalando article images, 60,000 train / 10,000 test, 28x28 uint8.",
    base_url=FASHION_MNIST_URL,
    files=FASHION_MNIST_FILES,
    class_names=FASHION_MNIST_CLASS_NAMES,
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    title="Fashion-MNIST",
    debian_package="dataset-fashion-mnist",
    debian_folder="/usr/share/datasets/fashion-mnist",
)


def _all_url_infos() -> dict[str, Any]:
    """Return {url: UrlInfo} of every config's downloads, so TFDS verifies size and sha256."""
    infos = {}
    for config in (MNIST_CONFIG, FASHION_MNIST_CONFIG):
        for name, size, sha256 in config.files:
            infos[config.base_url + name] = tfds.download.checksums.UrlInfo(
                size=tfds.core.units.Size(size), checksum=sha256, filename=name
            )
    return infos


class JaxaeImages(JaxaeBuilder):
    """MNIST / Fashion-MNIST from the canonical IDX files, downloaded or taken from manual_dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw uint8 images, array_record storage, no TensorFlow needed."}
    BUILDER_CONFIGS = [MNIST_CONFIG, FASHION_MNIST_CONFIG]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the four IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in manual_dir "
        "(for Fashion-MNIST: apt-get install dataset-fashion-mnist)."
    )
    url_infos = _all_url_infos()
    # The manual_dir's IDX files when the caller has already read (and so checked) them:
    # preparing then does not read them again.
    manual_files: IdxFiles | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        """Describe the features: a raw 28x28 uint8 image (stored as bytes) and its class label.

        Shuffling is disabled so that record i is example i of the IDX file.
        """
        config: JaxaeImagesConfig = self.builder_config
        return raw_image_info(self, idx.IMAGE_SHAPE, config.class_names,
                              description=config.description, homepage=config.homepage)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        """Take the IDX files from manual_dir when it is set, otherwise download them; record
        their fingerprint in the folder being prepared."""
        config: JaxaeImagesConfig = self.builder_config
        published = idx_fingerprint(published_entries(config))
        manual_dir = manual_dir_or_none(dl_manager)
        if manual_dir is not None:
            files = self.manual_files or read_idx_files(manual_dir)
            splits, fingerprint = files.splits, files.fingerprint
            source = f"IDX files in {os.path.abspath(manual_dir)}"
        else:
            downloads = dl_manager.download(config.urls())
            splits = {split: idx.read_idx_split(*(str(downloads[stem + ".gz"]) for stem in stems))
                      for split, stems in idx.SPLIT_FILES.items()}
            fingerprint = published
            source = f"the published files from {config.base_url}"
        if fingerprint == published:
            source += f" (the published {config.title} files)"
        write_source_record(self, fingerprint=fingerprint, source=source,
                            content_sha256=idx_content_sha256(splits))
        return {split: self._generate_examples(*arrays) for split, arrays in splits.items()}

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index, {image, label}) for every example of one split, in file order."""
        return array_examples(images, labels)
