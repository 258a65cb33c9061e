"""Tests of jaxae.data: IDX reading and errors, the TFDS builder, and `load_dataset`'s fallbacks."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from jaxae.data import (
    MNIST_NAMES,
    DataError,
    JaxaeImages,
    class_names,
    load_dataset,
    read_idx,
    read_idx_folder,
    records,
    sources,
)
from jaxae.data.builder import (
    FASHION_MNIST_CONFIG,
    FASHION_MNIST_URL,
    MNIST_URL,
    idx_folder_fingerprint,
    read_idx_files,
)

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_idx(path: Path, array: np.ndarray, magic: int | None = None, cut: int = 0) -> Path:
    """Write `array` as an IDX file (gzip when the name ends in .gz), minus `cut` payload bytes."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    data = data[: len(data) - cut]
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_folder(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = True) -> Path:
    """Write a tiny valid IDX folder (random images, labels 0..9) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / (FILES[f"{split}_images"] + suffix),
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / (FILES[f"{split}_labels"] + suffix), np.arange(n) % 10)
    return folder


def one_line_error(excinfo: pytest.ExceptionInfo[DataError], *needles: str) -> str:
    """Assert the DataError message is one line containing every needle, and return it."""
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(scope="session")
def raw() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The Debian Fashion-MNIST IDX files, read directly."""
    return read_idx_folder(DEBIAN_DIR)


@pytest.fixture(scope="session")
def tfds_dir(fashion_prepared: tuple) -> Path:
    """The session's TFDS data dir (tests/conftest.py prepares Fashion-MNIST in it once)."""
    return fashion_prepared[0]


@pytest.fixture(scope="session")
def prepared(fashion_prepared: tuple) -> tuple[sources.Dataset, float]:
    """Fashion-MNIST prepared from the Debian folder, found automatically; with its time."""
    return fashion_prepared[1], fashion_prepared[2]


# --- IDX reading -------------------------------------------------------------------------------


def test_raw_idx_headers_and_first_labels(raw: dict) -> None:
    """The Debian files hold 60,000 / 10,000 28x28 images with the canonical first labels."""
    assert raw["train"][0].shape == (60000, 28, 28) and raw["train"][0].dtype == np.uint8
    assert raw["test"][0].shape == (10000, 28, 28)
    assert raw["train"][1].dtype == np.int64
    assert raw["train"][1][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert raw["test"][1][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


def test_read_idx_gz_and_uncompressed(tmp_path: Path) -> None:
    """Both .gz and uncompressed names are read, with the header's shape and uint8 values."""
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    for name in ("a-idx3-ubyte.gz", "b-idx3-ubyte"):
        out = read_idx(write_idx(tmp_path / name, images))
        assert out.dtype == np.uint8 and out.shape == (2, 28, 28)
        np.testing.assert_array_equal(out, images)
    folder = read_idx_folder(write_folder(tmp_path / "plain", gz=False))
    assert folder["train"][0].shape == (5, 28, 28) and folder["test"][1].tolist() == [0, 1, 2]


def test_truncated_payload(tmp_path: Path) -> None:
    """A file shorter than its header announces is reported with both sizes."""
    path = write_idx(tmp_path / "t-idx3-ubyte.gz", np.zeros((3, 28, 28)), cut=1000)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    one_line_error(excinfo, str(path), "truncated", "expected 2368 bytes, got 1368", "re-download")


def test_a_small_file_that_inflates_beyond_its_header_is_refused_from_its_header(
        tmp_path: Path) -> None:
    """A 100 KB .gz of 100 MB behind a header of 3 images is told too long once one byte
    past them is read (it was inflated whole first: gigabytes for a crafted file); a header
    whose sizes multiply past 2**64 is one line (NumPy's product wrapped to 0: a traceback)."""
    import gzip
    import struct

    from jaxae.data import idx as idx_module

    path = tmp_path / "t-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 3, 28, 28))
        f.write(bytes(100 * 2**20))
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    one_line_error(excinfo, "too long (expected 2368 bytes, got more)", "re-download")
    zeros = gzip.compress(bytes(16 * 2**20))  # no header at all: its first 4 bytes read
    assert idx_module._payload("z.gz", zeros) == bytes(4)
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)  # two gzip members,
    stored = struct.pack(">IIII", 2051, 2, 28, 28) + images.tobytes()  # as `cat a.gz b.gz`
    (tmp_path / "m-idx3-ubyte.gz").write_bytes(gzip.compress(stored[:500])
                                                + gzip.compress(stored[500:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "m-idx3-ubyte.gz"), images)
    huge = tmp_path / "h-idx3-ubyte"
    huge.write_bytes(struct.pack(">IIII", 2051, 2**31, 2**31, 4))
    with pytest.raises(DataError) as excinfo:
        read_idx(huge)
    one_line_error(excinfo, "truncated (expected 18446744073709551632 bytes, got 16)")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    """A .gz cut short (interrupted download) is reported as corrupt or truncated."""
    path = write_idx(tmp_path / "t-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    one_line_error(excinfo, str(path), "truncated")


def test_wrong_magic(tmp_path: Path) -> None:
    """A file with a foreign magic number is rejected, naming the expected magics."""
    path = write_idx(tmp_path / "m-idx3-ubyte.gz", np.zeros((2, 28, 28)), magic=1234)
    with pytest.raises(DataError) as excinfo:
        read_idx(path)
    one_line_error(excinfo, str(path), "magic number 1234", "2051", "2049")


def test_swapped_images_and_labels(tmp_path: Path) -> None:
    """A labels file where the images file belongs is reported, naming the file."""
    folder = write_folder(tmp_path / "swap")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.arange(5))
    with pytest.raises(DataError) as excinfo:
        read_idx_folder(folder)
    one_line_error(excinfo, "train-images-idx3-ubyte.gz", "28x28")


def test_count_mismatch(tmp_path: Path) -> None:
    """Images and labels of one split must have the same count; both files are named."""
    folder = write_folder(tmp_path / "count")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(4))
    with pytest.raises(DataError) as excinfo:
        read_idx_folder(folder)
    one_line_error(excinfo, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "3 images")


def test_missing_file(tmp_path: Path) -> None:
    """A folder lacking a file names exactly the missing file."""
    folder = write_folder(tmp_path / "missing")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as excinfo:
        read_idx_folder(folder)
    message = one_line_error(excinfo, str(folder), "t10k-labels-idx1-ubyte.gz")
    assert "train-images" not in message


def test_missing_folder(tmp_path: Path) -> None:
    """A folder that does not exist is named, with the files it should hold."""
    with pytest.raises(DataError) as excinfo:
        read_idx_folder(tmp_path / "nowhere")
    one_line_error(excinfo, str(tmp_path / "nowhere"), "does not exist", "train-images-idx3")


def test_read_once_gives_the_hashed_fingerprint(tmp_path: Path) -> None:
    """Files read and hashed in one pass (checking and preparing them) have the fingerprint
    of hashing them only, gzipped or not, and the arrays `read_idx_folder` reads."""
    for folder in (write_folder(tmp_path / "gz"), write_folder(tmp_path / "plain", gz=False)):
        files = read_idx_files(str(folder))
        assert files.fingerprint == idx_folder_fingerprint(str(folder))
        for split, (images, labels) in read_idx_folder(folder).items():
            np.testing.assert_array_equal(files.splits[split][0], images, strict=True)
            np.testing.assert_array_equal(files.splits[split][1], labels, strict=True)


# --- builder ---------------------------------------------------------------------------------


def test_builder_registers_tfds_checksums() -> None:
    """Our builder verifies downloads against the very checksums TFDS registers for its own."""
    assert JaxaeImages.name == "jaxae_images"
    assert [c.name for c in JaxaeImages.BUILDER_CONFIGS] == list(MNIST_NAMES)
    checksums_dir = tfds.core.utils.tfds_path() / "url_checksums"
    for tfds_name, base_url in (("mnist", MNIST_URL), ("fashion_mnist", FASHION_MNIST_URL)):
        expected = tfds.download.checksums.load_url_infos(checksums_dir / f"{tfds_name}.txt")
        ours = {u: i for u, i in JaxaeImages.url_infos.items() if u.startswith(base_url)}
        assert len(ours) == 4
        assert {u: (i.size, i.checksum) for u, i in ours.items()} == {
            u: (i.size, i.checksum) for u, i in expected.items()
        }


def _local_builder(base_url: str, folder: Path, corrupt: bool) -> type[JaxaeImages]:
    """A JaxaeImages whose fashion_mnist config downloads `folder`'s files from `base_url`."""
    files = tuple(
        (name, (folder / name).stat().st_size,
         "0" * 64 if corrupt else hashlib.sha256((folder / name).read_bytes()).hexdigest())
        for name, _, _ in FASHION_MNIST_CONFIG.files
    )
    config = dataclasses.replace(FASHION_MNIST_CONFIG, base_url=base_url, files=files)

    class LocalImages(JaxaeImages, skip_registration=True):
        BUILDER_CONFIGS = [config]
        url_infos = {
            base_url + name: tfds.download.checksums.UrlInfo(
                size=tfds.core.units.Size(size), checksum=sha, filename=name
            )
            for name, size, sha in files
        }

    return LocalImages


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that counts served GETs and does not log them."""

    def do_GET(self) -> None:
        """Serve the file, then count it as served."""
        super().do_GET()
        self.server.served.release()  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        """Drop the request log line."""


@pytest.fixture
def idx_server(tmp_path: Path) -> Iterator[tuple[str, Path, threading.Semaphore]]:
    """Serve a tiny IDX folder over local HTTP; yields (base URL, folder, served-GET counter)."""
    folder = write_folder(tmp_path / "served")
    handler = functools.partial(QuietHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        server.served = threading.Semaphore(0)  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder, server.served
        server.shutdown()


@pytest.mark.parametrize("corrupt", [False, True])
def test_builder_download_verifies_checksums(
    idx_server: tuple[str, Path, threading.Semaphore], tmp_path: Path, corrupt: bool
) -> None:
    """The download branch fetches the four files over HTTP and enforces registered sha256s."""
    base_url, folder, served = idx_server
    builder = _local_builder(base_url, folder, corrupt)(
        config="fashion_mnist", data_dir=str(tmp_path / "tfds")
    )
    if corrupt:
        with pytest.raises(NonMatchingChecksumError):
            builder.download_and_prepare(file_format="array_record")
    else:
        builder.download_and_prepare(file_format="array_record")
    assert all(served.acquire(timeout=10) for _ in range(4))
    if not corrupt:
        test = builder.as_data_source(split="test")
        assert [test[i]["label"] for i in range(len(test))] == [0, 1, 2]
        np.testing.assert_array_equal(test[2]["image"], read_idx_folder(folder)["test"][0][2])


# --- load_dataset ----------------------------------------------------------------------------


def test_offline_fashion_mnist_from_debian(prepared: tuple, raw: dict) -> None:
    """The Debian folder is found, prepared as TFDS data and read back exactly, without TF."""
    dataset, seconds = prepared
    print(f"prepare+load fashion_mnist from {DEBIAN_DIR}: {seconds:.1f} s")
    assert "tensorflow" not in sys.modules
    assert "dataset-fashion-mnist" in dataset.source and DEBIAN_DIR in dataset.source
    assert dataset.name == "fashion_mnist"
    assert dataset.class_names == class_names("fashion_mnist")
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"
    for split, n in (("train", 60000), ("test", 10000)):
        images = getattr(dataset, f"{split}_images")
        labels = getattr(dataset, f"{split}_labels")
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int32
        assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
        np.testing.assert_array_equal(images[..., 0], raw[split][0])
        np.testing.assert_array_equal(labels, raw[split][1])
        assert int(images.sum(dtype=np.int64)) == int(raw[split][0].sum(dtype=np.int64))
    assert dataset.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert dataset.test_labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert not dataset.train_images.flags.writeable


def test_second_load_reuses_prepared(
    prepared: tuple, tfds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second load reads the prepared files: no IDX lookup, no preparation (a folder the
    user names is checked against the prepared set: tests/test_datasets.py)."""
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not prepare or look for IDX files again")

    monkeypatch.setattr(sources, "_prepare", fail)
    monkeypatch.setattr(sources, "find_idx_dir", fail)
    monkeypatch.delenv(sources.env_var("fashion_mnist"), raising=False)
    start = time.perf_counter()
    dataset = load_dataset("fashion_mnist", tfds_dir=str(tfds_dir))
    print(f"load prepared fashion_mnist: {time.perf_counter() - start:.2f} s")
    assert "prepared earlier" in dataset.source
    np.testing.assert_array_equal(dataset.test_images, prepared[0].test_images)
    np.testing.assert_array_equal(dataset.train_labels, prepared[0].train_labels)


def test_tfds_data_source_decodes_without_tf(prepared: tuple, tfds_dir: Path, raw: dict) -> None:
    """TFDS's own numpy decoding of our records gives the raw image and label."""
    source = tfds.data_source("jaxae_images/fashion_mnist", split="test", data_dir=str(tfds_dir))
    assert len(source) == 10000
    for i in (0, 9999):
        example = source[i]
        np.testing.assert_array_equal(example["image"], raw["test"][0][i])
        assert example["label"] == raw["test"][1][i]
    assert "tensorflow" not in sys.modules


def test_consecutive_keys_read_as_ranges_across_shards(tfds_dir: Path, raw: dict) -> None:
    """Keys k, k + 1, ... are read as a range of each shard they lie in, the same records
    as read by key, also where shards start part-way into their file (a sliced split) and
    from another thread (Grain's reader threads each open their own readers)."""
    folder = tfds_dir / "jaxae_images" / "fashion_mnist" / "1.0.0"
    split = records.PreparedSplit(str(folder), "test")
    (whole,) = split._instructions
    split._instructions = [dataclasses.replace(whole, skip=100, take=100),
                           dataclasses.replace(whole, skip=500, take=100)]
    split.num_examples = 200
    keys = np.arange(50, 170)  # from the first shard into the second
    expected = np.concatenate([np.arange(150, 200), np.arange(500, 570)])
    images, labels = split.read(keys)
    np.testing.assert_array_equal(images[..., 0], raw["test"][0][expected])
    np.testing.assert_array_equal(labels, raw["test"][1][expected])
    by_key, _ = split.read(keys[::-1])  # not a run: read record by record
    np.testing.assert_array_equal(by_key[::-1], images)
    shuffled, _ = split.read(np.array([50, 52, 51, 53]))  # its first and last keys a run's
    np.testing.assert_array_equal(shuffled[..., 0], raw["test"][0][[150, 152, 151, 153]])
    with pytest.raises(IndexError, match=r"150\.\.200 are not all among the split.s 200"):
        split.read(np.arange(150, 201))
    threaded: list = []
    thread = threading.Thread(target=lambda: threaded.append(split.read(keys)))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(threaded[0][0], images)


def test_unknown_name() -> None:
    """Unknown data set names are rejected with the list of valid names."""
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar100")
    one_line_error(excinfo, "cifar100", "mnist", "fashion_mnist")
    with pytest.raises(DataError):
        class_names("cifar100")
    with pytest.raises(DataError) as excinfo:  # another loader's options: which one to call
        load_dataset("folder", path="my_pictures")
    one_line_error(excinfo, "'folder'", "jaxae.data.load_folder(path)")
    with pytest.raises(TypeError, match=r"^load_dataset\('mnist'\) takes no data_dri: did you "
                                        r"mean data_dir\? it takes data_dir, tfds_dir"):
        load_dataset("mnist", data_dri="my_idx_files")
    assert class_names("mnist") == tuple("0123456789")


def test_broken_env_folder_fails_before_tfds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$JAXAE_MNIST_DIR is validated before TFDS touches the data dir."""
    folder = write_folder(tmp_path / "idx")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), cut=10)
    monkeypatch.setenv("JAXAE_MNIST_DIR", str(folder))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tfds_dir=str(tmp_path / "tfds"))
    one_line_error(excinfo, str(folder / "train-images-idx3-ubyte.gz"), "truncated")
    assert not (tmp_path / "tfds" / "jaxae_images").exists()


def test_data_dir_argument_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data_dir argument comes before $JAXAE_<NAME>_DIR, which comes before Debian."""
    monkeypatch.setenv("JAXAE_FASHION_MNIST_DIR", "/from/env")
    assert sources.find_idx_dir("fashion_mnist", "/from/arg")[0] == "/from/arg"
    assert sources.find_idx_dir("fashion_mnist")[0] == "/from/env"
    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    assert sources.find_idx_dir("mnist") is None


@pytest.mark.parametrize("name", MNIST_NAMES)
def test_offline_without_folder_fails_fast(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No prepared data, no folder, host unreachable: a quick one-line DataError with both ways."""
    monkeypatch.delenv(sources.env_var(name), raising=False)
    monkeypatch.setattr(sources, "debian_idx_dir", lambda config: None)
    monkeypatch.setattr(sources, "host_reachable", lambda url, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(DataError) as excinfo:
        load_dataset(name, tfds_dir=str(tmp_path))
    assert time.perf_counter() - start < 5
    message = one_line_error(excinfo, "unreachable", "internet", sources.env_var(name), ".gz")
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion_mnist")
    assert ("python -m jaxae.data.mnist5k DIR" in message) == (name == "mnist")


def test_host_reachable_refused_port_is_quick() -> None:
    """A closed local port is reported unreachable within the timeout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    assert not sources.host_reachable(f"http://127.0.0.1:{port}/", timeout=1.0)
    assert time.perf_counter() - start < 1.5
