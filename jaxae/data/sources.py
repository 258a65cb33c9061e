"""`load_dataset`: MNIST / Fashion-MNIST as numpy arrays, from prepared TFDS data, an IDX folder
or a TFDS download, in that order, with one-line `DataError`s when none of them works."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from jaxae.data import idx
from jaxae.data.builder import FASHION_MNIST_CONFIG, MNIST_CONFIG, JaxaeImages, JaxaeImagesConfig
from jaxae.data.idx import DataError

CONFIGS: dict[str, JaxaeImagesConfig] = {c.name: c for c in (MNIST_CONFIG, FASHION_MNIST_CONFIG)}
MNIST_NAMES: tuple[str, ...] = tuple(CONFIGS)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
REACHABILITY_TIMEOUT_S = 3.0
FILE_FORMAT = "array_record"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One data set in memory: read-only uint8 images [N, H, W, C], int32 labels [N], class
    names, and where it came from."""

    name: str
    train_images: np.ndarray = dataclasses.field(repr=False)
    train_labels: np.ndarray = dataclasses.field(repr=False)
    test_images: np.ndarray = dataclasses.field(repr=False)
    test_labels: np.ndarray = dataclasses.field(repr=False)
    class_names: tuple[str, ...]
    source: str
    title: str = ""  # how pictures and tables name it (default: its name)

    def __post_init__(self):
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])


def _config(name: str) -> JaxaeImagesConfig:
    """Return the builder config of `name`, or raise DataError listing the valid names."""
    if name not in CONFIGS:
        raise DataError(
            f"unknown data set {name!r}: valid names are {', '.join(MNIST_NAMES)}"
        )
    return CONFIGS[name]


def class_names(name: str) -> tuple[str, ...]:
    """Return the class names of data set `name`, indexed by label."""
    return _config(name).class_names


def env_var(name: str) -> str:
    """Return the environment variable that may point at data set `name`'s IDX folder."""
    return f"JAXAE_{name.upper()}_DIR"


def _dpkg_idx_dirs() -> list[str]:
    """Return the folders holding IDX files that dpkg lists for the Debian package, if any."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True, timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [os.path.dirname(p) for p in listing.splitlines()
            if p.endswith("train-images-idx3-ubyte.gz")]


def debian_fashion_mnist_dir() -> str | None:
    """Return the Debian `dataset-fashion-mnist` folder when it is installed, else None."""
    for folder in [*_dpkg_idx_dirs(), DEBIAN_FASHION_MNIST_DIR]:
        if idx.find_idx_file(folder, "train-images-idx3-ubyte") is not None:
            return folder
    return None


def find_idx_dir(name: str, idx_dir: str | None = None) -> tuple[str, str] | None:
    """Return (folder, where it came from) of a local IDX folder for `name`, or None.

    Order: the `idx_dir` argument, then $JAXAE_<NAME>_DIR, then (Fashion-MNIST) the Debian package.
    """
    if idx_dir:
        return os.fspath(idx_dir), "config.data.data_dir"
    if folder := os.environ.get(env_var(name)):
        return folder, f"${env_var(name)}"
    if name == "fashion_mnist" and (folder := debian_fashion_mnist_dir()) is not None:
        return folder, f"Debian package {DEBIAN_PACKAGE}"
    return None


def _connect_target(url: str) -> tuple[str, int]:
    """Return the (host, port) a download of `url` connects to, honouring proxy variables."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def host_reachable(url: str, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Return whether a TCP connection for `url` opens within `timeout` s, DNS lookup included.

    Runs in a daemon thread so a hanging resolver cannot block the caller past `timeout`.
    """
    host, port = _connect_target(url)
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, name=f"reach-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def _builder(name: str, tfds_dir: str | None) -> JaxaeImages:
    """Return the TFDS builder of `name` in `tfds_dir` (None: TFDS's default / $TFDS_DATA_DIR)."""
    return JaxaeImages(config=name, data_dir=tfds_dir)


def _is_prepared(builder: JaxaeImages) -> bool:
    """Return whether the data set is prepared, without TFDS's warning for a missing folder."""
    return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def _prepare(builder: JaxaeImages, manual_dir: str | None) -> None:
    """Write the array_record files, from `manual_dir` when given, else from a TFDS download."""
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=config, file_format=FILE_FORMAT)


def _decode_records(records: Sequence[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode serialized examples into (uint8 images [N, 28, 28, 1], int32 labels [N])."""
    features = [tf_example_pb2.Example.FromString(r).features.feature for r in records]
    try:
        pixels = b"".join(f["image"].bytes_list.value[0] for f in features)
        labels = np.fromiter((f["label"].int64_list.value[0] for f in features), np.int64)
    except (IndexError, KeyError) as e:
        raise DataError(
            f"prepared data set {where} has an unexpected record layout ({e!r}): delete that "
            "folder so it is prepared again"
        ) from None
    images = np.frombuffer(pixels, dtype=np.uint8)
    if images.size != len(features) * int(np.prod(idx.IMAGE_SHAPE)):
        raise DataError(
            f"prepared data set {where} holds images of the wrong size: delete that folder so it "
            "is prepared again"
        )
    return images.reshape(-1, *idx.IMAGE_SHAPE, 1), _read_only(labels.astype(np.int32))


def _read_only(array: np.ndarray) -> np.ndarray:
    """Mark `array` read-only, so a shared Dataset cannot be changed by accident."""
    array.setflags(write=False)
    return array


def _read_split(name: str, tfds_dir: str | None, split: str, where: str) -> tuple[np.ndarray, ...]:
    """Read a whole prepared split with `tfds.data_source` in one batched read (no TensorFlow)."""
    source = tfds.data_source(
        f"{JaxaeImages.name}/{name}",
        split=split,
        data_dir=tfds_dir,
        download=False,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
    )
    records = source.__getitems__(list(range(len(source))))
    return _decode_records(records, where)


def _load_prepared(name: str, tfds_dir: str | None, builder: JaxaeImages, how: str) -> Dataset:
    """Load both splits of the prepared data set into a Dataset whose `source` says `how`."""
    where = os.fspath(builder.data_path)
    (train_images, train_labels), (test_images, test_labels) = (
        _read_split(name, tfds_dir, split, where) for split in SPLITS
    )
    return Dataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=class_names(name),
        title=_config(name).title,
        source=f"TFDS {JaxaeImages.name}/{name}:{builder.version} in {where} ({how})",
    )


def _offline_error(name: str, config: JaxaeImagesConfig, builder: JaxaeImages) -> DataError:
    """Build the one-line error for: not prepared, no local folder, download host unreachable."""
    host = urllib.parse.urlsplit(config.base_url).hostname
    files = ", ".join(stem + ".gz" for pair in idx.SPLIT_FILES.values() for stem in pair)
    apt = f", or run `apt-get install {DEBIAN_PACKAGE}`" if name == "fashion_mnist" else ""
    return DataError(
        f"data set {name} is not prepared in {builder.data_path}, no local IDX folder was found "
        f"and {host} is unreachable: connect to the internet so TFDS downloads it, or point "
        f"--config.data_dir or ${env_var(name)} at a folder holding {files}{apt}"
    )


def _download(name: str, builder: JaxaeImages) -> None:
    """Let TFDS download (checksums verified) and prepare `name`; failures become DataError."""
    config = _config(name)
    if not host_reachable(config.base_url):
        raise _offline_error(name, config, builder)
    try:
        _prepare(builder, manual_dir=None)
    except Exception as e:  # any TFDS or network failure: same one-line hint
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise DataError(
            f"TFDS could not download {name} from {config.base_url} ({type(e).__name__}: "
            f"{first_line}): retry, or point ${env_var(name)} at a folder of the four IDX .gz files"
        ) from e


def load_dataset(
    name: str, *, data_dir: str | None = None, tfds_dir: str | None = None
) -> Dataset:
    """Return data set `name` ('mnist' or 'fashion_mnist') as in-memory numpy arrays.

    Uses the TFDS data set already prepared in `tfds_dir` (None: TFDS's default dir); otherwise
    prepares it from a validated local IDX folder (`data_dir`, $JAXAE_<NAME>_DIR, the Debian
    package); otherwise lets TFDS download it, after a short reachability check.
    """
    config = _config(name)
    builder = _builder(name, tfds_dir)
    if _is_prepared(builder):
        return _load_prepared(name, tfds_dir, builder, "prepared earlier")
    found = find_idx_dir(name, data_dir)
    if found is not None:
        folder, origin = found
        idx.read_idx_folder(folder)
        _prepare(builder, manual_dir=folder)
        return _load_prepared(name, tfds_dir, builder, f"prepared from {folder}, {origin}")
    _download(name, builder)
    return _load_prepared(name, tfds_dir, builder, f"downloaded from {config.base_url}")
