"""TFDS builder `jaxae_images`: MNIST and Fashion-MNIST as raw uint8 arrays in array_record files.

Needs no TensorFlow: images are stored as plain uint8 tensors, read back with `tfds.data_source`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from jaxae.data import idx

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# (file name, size in bytes, sha256) of the canonical downloads; the same values TFDS registers
# for its own `mnist` and `fashion_mnist` builders (tensorflow_datasets/url_checksums/*.txt).
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


@dataclasses.dataclass
class JaxaeImagesConfig(tfds.core.BuilderConfig):
    """One data set of 28x28 grey images: where to download it and what its classes are."""

    base_url: str = ""
    files: tuple[tuple[str, int, str], ...] = ()
    class_names: tuple[str, ...] = ()
    homepage: str = ""
    title: str = ""  # how pictures and tables name the data set

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


class JaxaeImages(tfds.core.GeneratorBasedBuilder):
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

    def _info(self) -> tfds.core.DatasetInfo:
        """Describe the features: a raw 28x28 uint8 image (stored as bytes) and its class label.

        Shuffling is disabled so that record i is example i of the IDX file.
        """
        config: JaxaeImagesConfig = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=config.description,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(
                    shape=idx.IMAGE_SHAPE, dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                ),
                "label": tfds.features.ClassLabel(names=list(config.class_names)),
            }),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            homepage=config.homepage,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        """Take the IDX files from manual_dir when it is set, otherwise download them."""
        config: JaxaeImagesConfig = self.builder_config
        manual_dir = self._manual_dir_or_none(dl_manager)
        if manual_dir is not None:
            paths = idx.idx_file_paths(manual_dir)
        else:
            files = dl_manager.download(config.urls())
            paths = {
                split: tuple(str(files[stem + ".gz"]) for stem in stems)
                for split, stems in idx.SPLIT_FILES.items()
            }
        return {split: self._generate_examples(*pair) for split, pair in paths.items()}

    @staticmethod
    def _manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> str | None:
        """Return the manual_dir when the user gave one that exists, else None (then download)."""
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError:
            return None
        if manual_dir is None or not manual_dir.exists():
            return None
        return str(manual_dir)

    def _generate_examples(
        self, images_path: str, labels_path: str
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index, {image, label}) for every example of one split, in file order."""
        images, labels = idx.read_idx_split(images_path, labels_path)
        for i in range(images.shape[0]):
            yield i, {"image": images[i], "label": int(labels[i])}
