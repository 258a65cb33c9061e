"""The data sources beyond MNIST: CIFAR-10 (from files in its canonical format, written here),
image folders, any TFDS builder, `.npz`; size and channel options for every source; integrity
(fingerprints, a damaged or unwritable TFDS dir, MNIST and Fashion-MNIST told apart).

Quality is measured on real images elsewhere; these files are small and random.
"""

from __future__ import annotations

import errno
import functools
import glob
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxae import build
from jaxae.config import ConfigError, base_config, validate
from jaxae.data import (
    DATASETS,
    DataError,
    ImageOptions,
    cifar10,
    folder,
    from_arrays,
    idx,
    load_dataset,
    load_npz,
    make_splits,
    sources,
    splits,
    tfds_sets,
)
from jaxae.data.images import load_image, luma
from jaxae.data.records import LocalDatasetInfo
from jaxae.keys import derive_keys
from tests.conftest import set_fields
from tests.test_data_sources import write_folder

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

N_PER_BATCH = 8
PY_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def one_line(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# --- CIFAR-10's canonical files ----------------------------------------------------------------


class Py2StylePickler(pickle.Pickler):
    """Arrays reduced as numpy 1.x under Python 2 did for the published batches: the dtype and
    array states hold py2 strings, which `encoding="bytes"` reads as bytes."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            state = (1, obj.shape, obj.dtype, False, obj.tobytes())
            return _reconstruct, (np.ndarray, (0,), b"b"), state
        if isinstance(obj, np.dtype) and obj == np.uint8:
            return np.dtype, (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0)
        return NotImplemented


def _batch_pickle(images: np.ndarray, labels: list[int], index: int) -> bytes:
    """One batch laid out as CIFAR-10's python version is (a dict of bytes keys, R/G/B planes),
    with the published files' global names (numpy.core.multiarray)."""
    batch = {
        b"batch_label": b"training batch" if index <= 5 else b"testing batch 1 of 1",
        b"labels": labels,
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), 3072),
        b"filenames": [f"img_{index}_{i}.png".encode() for i in range(len(images))],
    }
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(batch)
    return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar_python(folder_path: Path, seed: int = 0) -> dict:
    """cifar-10-batches-py/ in `folder_path`; returns {split: (images HWC, labels)}."""
    rng = np.random.default_rng(seed)
    out = folder_path / cifar10.PY_DIR
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"train": ([], []), "test": ([], [])}
    for index, name in enumerate(PY_BATCHES, start=1):
        images = rng.integers(0, 256, (N_PER_BATCH, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, N_PER_BATCH).tolist()
        (out / name).write_bytes(_batch_pickle(images, labels, index))
        split = "test" if name == "test_batch" else "train"
        arrays[split][0].append(images)
        arrays[split][1].append(labels)
    (out / cifar10.PY_META).write_bytes(pickle.dumps(
        {b"label_names": [n.encode() for n in cifar10.CLASS_NAMES]}, protocol=2))
    return {s: (np.concatenate(i), np.concatenate(lab)) for s, (i, lab) in arrays.items()}


def make_tar_gz(batches_dir: Path, archive_path: Path) -> Path:
    """Pack a batches folder as the canonical archive does (one top-level folder)."""
    with tarfile.open(archive_path, "w:gz") as tar:
        tar.add(batches_dir, arcname=batches_dir.name)
    return archive_path


def check_cifar(dataset, expected: dict) -> None:
    for split in ("train", "test"):
        images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
        np.testing.assert_array_equal(images, expected[split][0], strict=False)
        np.testing.assert_array_equal(labels, expected[split][1])
        assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert dataset.class_names == cifar10.CLASS_NAMES


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(canonical folder, TFDS dir, arrays): CIFAR-10 prepared once from python batches."""
    manual = tmp_path_factory.mktemp("cifar_manual")
    expected = write_cifar_python(manual)
    tfds_dir = tmp_path_factory.mktemp("cifar_tfds")
    dataset = DATASETS.get("cifar10")(data_dir=str(manual), tfds_dir=str(tfds_dir))
    check_cifar(dataset, expected)
    assert dataset.fingerprint.startswith("files-sha256:")
    assert "prepared from" in dataset.source and "python batches folder" in dataset.source
    return manual, tfds_dir, expected


def test_cifar10_registers_the_published_archive() -> None:
    """The python archive's URL, size and sha256 as published; the binary archive's values
    are the ones TFDS registers for its own builder."""
    info = cifar10.JaxaeCifar10.url_infos[cifar10.ARCHIVE_URL]
    assert cifar10.ARCHIVE_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert int(info.size) == 170498071
    assert info.checksum == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    tfds_file = Path(tfds.__file__).parent / "url_checksums" / "cifar10.txt"
    url, size, sha, name = tfds_file.read_text().split()
    assert (url, int(size), sha, name) == (
        cifar10.BINARY_ARCHIVE_URL, cifar10.BINARY_ARCHIVE_SIZE, cifar10.BINARY_ARCHIVE_SHA256,
        cifar10.BINARY_ARCHIVE_NAME)


def test_cifar10_offline_prepare_reload_and_repacked_copy(cifar, tmp_path) -> None:
    """Prepared from the batches folder (fixture); reloaded; the same batches packed as the
    canonical tar.gz are accepted; other files are one line naming both."""
    manual, tfds_dir, expected = cifar
    again = load_dataset_cifar(tfds_dir)
    check_cifar(again, expected)
    assert "prepared earlier" in again.source
    repacked = tmp_path / "repacked"
    repacked.mkdir()
    make_tar_gz(manual / cifar10.PY_DIR, repacked / cifar10.ARCHIVE_NAME)
    check_cifar(load_dataset_cifar(tfds_dir, repacked), expected)
    write_cifar_python(tmp_path / "other", seed=7)
    with pytest.raises(DataError) as excinfo:
        load_dataset_cifar(tfds_dir, tmp_path / "other")
    one_line(excinfo, "was made from", str(manual), str(tmp_path / "other"), "delete")


def load_dataset_cifar(tfds_dir: Path, data_dir: Path | None = None, **options):
    return DATASETS.get("cifar10")(data_dir=None if data_dir is None else str(data_dir),
                                   tfds_dir=str(tfds_dir), **options)


def test_cifar10_sizes_and_channels_apply(cifar) -> None:
    """image_size / channels work on a prepared TFDS source too (resized after reading)."""
    _, tfds_dir, expected = cifar
    grey = load_dataset_cifar(tfds_dir, image_size=16, channels=1)
    assert grey.train_images.shape == (5 * N_PER_BATCH, 16, 16, 1)
    assert "resized and centre-cropped to 16x16 and made grey" in grey.source
    small = Image.fromarray(luma(expected["train"][0][0])).resize((16, 16),
                                                                   Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(grey.train_images[0, ..., 0], np.asarray(small))


@pytest.fixture
def archive_server(tmp_path):
    """A test-written cifar-10-python.tar.gz served on 127.0.0.1: (url, archive, arrays)."""
    expected = write_cifar_python(tmp_path / "src", seed=4)
    served = tmp_path / "served"
    served.mkdir()
    archive = make_tar_gz(tmp_path / "src" / cifar10.PY_DIR, served / cifar10.ARCHIVE_NAME)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{cifar10.ARCHIVE_NAME}", archive, expected
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("corrupt", [False, True])
def test_cifar10_download_verifies_the_registered_checksum(archive_server, tmp_path, monkeypatch,
                                                           corrupt) -> None:
    """The online path, served locally: TFDS checks the registered size and sha256."""
    url, archive, expected = archive_server
    sha = "0" * 64 if corrupt else hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.delenv(cifar10.ENV_VAR, raising=False)
    monkeypatch.setattr(cifar10, "ARCHIVE_URL", url)
    monkeypatch.setattr(cifar10.JaxaeCifar10, "url_infos", {url: tfds.download.checksums.UrlInfo(
        size=tfds.core.units.Size(archive.stat().st_size), checksum=sha,
        filename=cifar10.ARCHIVE_NAME)})
    if corrupt:
        with pytest.raises(DataError) as excinfo:
            load_dataset_cifar(tmp_path / "tfds")
        one_line(excinfo, "NonMatchingChecksumError")
        return
    dataset = load_dataset_cifar(tmp_path / "tfds")
    check_cifar(dataset, expected)
    assert dataset.fingerprint == f"sha256:{sha}" and f"downloaded from {url}" in dataset.source
    assert "tensorflow" not in sys.modules


def test_cifar10_damaged_files_are_one_line(tmp_path) -> None:
    """A truncated batch, a CIFAR-100 batch and a pickle that would run code: one line each,
    naming the file; nothing is prepared."""
    write_cifar_python(tmp_path / "manual")
    batch = tmp_path / "manual" / cifar10.PY_DIR / "data_batch_3"
    original = batch.read_bytes()
    batch.write_bytes(original[: len(original) // 2])
    with pytest.raises(DataError) as excinfo:
        load_dataset_cifar(tmp_path / "tfds", tmp_path / "manual")
    one_line(excinfo, "data_batch_3 is corrupt or truncated")
    assert not (tmp_path / "tfds" / "jaxae_cifar10").exists()
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                    b"fine_labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match="that is CIFAR-100"):
        cifar10.read_cifar10(tmp_path / "manual")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    batch.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="which no CIFAR-10 batch does"):
        cifar10.read_cifar10(tmp_path / "manual")


def test_a_cifar10_archive_member_far_larger_than_a_batch_is_refused_unread(tmp_path) -> None:
    """A 70 KB archive whose data_batch_1 inflates to 65 MB (or gigabytes): refused from the
    size its header gives, not read whole into memory first."""
    write_cifar_python(tmp_path / "manual")
    (tmp_path / "manual" / cifar10.PY_DIR / "data_batch_1").write_bytes(
        bytes(cifar10.MAX_MEMBER_BYTES + 1))
    archive = make_tar_gz(tmp_path / "manual" / cifar10.PY_DIR, tmp_path / "c.tar.gz")
    with pytest.raises(DataError) as excinfo:
        cifar10.read_cifar10(archive)
    one_line(excinfo, f"holds {cifar10.PY_DIR}/data_batch_1 of 67,108,865 bytes, where a batch "
                      "is about 31 MB: it is no CIFAR-10 archive")


def test_an_npz_whose_header_claims_more_than_memory_is_one_line(tmp_path) -> None:
    """A few hundred bytes whose array header claims a terabyte: NumPy allocates the claim
    before reading, a MemoryError traceback."""
    import zipfile

    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
    header["shape"] = (10**12,)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    with zipfile.ZipFile(tmp_path / "claim.npz", "w") as z:
        z.writestr("train_images.npy", npy.getvalue() + bytes(100))
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("npz")(path=str(tmp_path / "claim.npz"))
    one_line(excinfo, "holds an array larger than this machine's memory")


def test_cifar10_read_once_gives_the_hashed_fingerprint(tmp_path) -> None:
    """An archive hashed as it is unpacked has the sha256 of the file; a batches folder read
    once has the fingerprint of hashing its files only (`fingerprint_of`)."""
    write_cifar_python(tmp_path / "src")
    archive = make_tar_gz(tmp_path / "src" / cifar10.PY_DIR, tmp_path / cifar10.ARCHIVE_NAME)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert cifar10.read_cifar10(archive).fingerprint == f"sha256:{sha}"
    batches = cifar10.find_cifar10(tmp_path / "src")
    assert cifar10.read_cifar10(batches.path).fingerprint == cifar10.fingerprint_of(batches)


def test_cifar10_s_binary_version_reads_as_the_python_one(tmp_path) -> None:
    """The same images as binary records (a -bin/ folder, or its archive) give the same
    arrays, class names and content_sha256 as the python batches."""
    expected = write_cifar_python(tmp_path / "py")
    python = cifar10.read_cifar10(tmp_path / "py")
    out = tmp_path / "bin" / cifar10.BIN_DIR
    out.mkdir(parents=True)
    for split, (images, labels) in expected.items():
        chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        records = np.concatenate([labels.astype(np.uint8)[:, None], chw], axis=1)
        files = cifar10.BIN_SPLIT_FILES[split]
        for name, part in zip(files, np.array_split(records, len(files)), strict=True):
            (out / name).write_bytes(part.tobytes())
    (out / cifar10.BIN_META).write_text("\n".join(cifar10.CLASS_NAMES) + "\n\n")
    archive = make_tar_gz(out, tmp_path / cifar10.BINARY_ARCHIVE_NAME)
    for source in (tmp_path / "bin", archive):
        binary = cifar10.read_cifar10(source)
        assert binary.description.split(" from ")[1].startswith("binary "), binary.description
        assert binary.class_names == cifar10.CLASS_NAMES
        assert binary.content_sha256 == python.content_sha256
        for split in expected:
            for ours, theirs in zip(binary.splits[split], python.splits[split], strict=True):
                np.testing.assert_array_equal(ours, theirs)


# --- image folders -----------------------------------------------------------------------------


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_image_folder(root: Path, n_per_class: int = 5, seed: int = 0) -> None:
    """Two classes of 12x16 RGB PNGs and one of 20x10 grey PNGs (in a sub-folder), plus a
    file that is not an image."""
    rng = np.random.default_rng(seed)
    for name in ("cat", "dog"):
        for i in range(n_per_class):
            save_png(root / name / f"{i}.png", rng.integers(0, 256, (12, 16, 3), np.uint8))
    for i in range(n_per_class):
        save_png(root / "grey" / "sub" / f"{i}.png", rng.integers(0, 256, (20, 10), np.uint8))
    (root / "README.txt").write_text("not an image")


def test_a_disk_that_fills_while_a_set_is_prepared_is_one_line(tmp_path, monkeypatch):
    from jaxae.data import records

    def full(self, *args, **kwargs):
        raise RuntimeError('Failed to finalize writing of split "train": write() failed: No '
                           "space left on device")

    monkeypatch.setattr(records.JaxaeBuilder, "download_and_prepare", full)
    make_image_folder(tmp_path / "pets")
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                               image_size=8)
    one_line(excinfo, "could not be prepared into", "no space left on the device (or in the "
             "quota): free space there, or pass --config.data.tfds_dir on a disk with room, and "
             "rerun")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    monkeypatch.setattr(records.JaxaeBuilder, "download_and_prepare",
                        lambda self, *a, **k: (_ for _ in ()).throw(quota))
    with pytest.raises(DataError, match="no space left on the device"):
        DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                               image_size=8)


def test_preparing_and_reading_a_set_leaves_nothing_in_the_temporary_folder(tmp_path,
                                                                          monkeypatch) -> None:
    """TFDS looks for every builder's info in its bucket, in a temporary folder it leaves
    behind: jaxae's sets are never there, and are not looked for."""
    import tempfile

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    make_image_folder(tmp_path / "pets")
    for _ in range(2):  # prepared, then read
        DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                               image_size=8, channels=3)
    assert os.listdir(temporary) == []


def test_a_folder_names_images_a_viewer_turns_by_their_exif_orientation(tmp_path) -> None:
    """A phone's portrait photo is stored sideways with an EXIF orientation: read as stored,
    it would train sideways, and its size reads as the other way round, unsaid."""
    root = tmp_path / "photos"
    for label in ("a", "b"):
        for i in range(3):
            save_png(root / label / f"{i}.png", np.zeros((6, 8, 3), np.uint8))
    assert "EXIF" not in folder.plan_folder(root).describe()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(root / "a" / "phone.jpg", exif=exif)
    turned = "; 1 turned by EXIF in a viewer, read as stored (sideways or mirrored: turn the "
    assert turned in folder.plan_folder(root, image_size=6).describe()
    with pytest.raises(DataError, match=r"differ in size \(6x8: 6 images, e.g. a/0.png; 8x6: 1 "
                                        r"image, a/phone.jpg; 1 turned by EXIF in a viewer, "
                                        r"read as stored"):
        folder.plan_folder(root)
    data = DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"),
                                  image_size=6)
    assert "1 turned by EXIF in a viewer" in data.source  # where a run prints its data


def test_a_folder_prepared_into_a_log_says_how_far_it_has_got(tmp_path, capsys,
                                                                monkeypatch) -> None:
    """TFDS's bars are hidden where the output is no terminal: a folder of many photographs
    would take minutes in silence. (pytest's captured stderr is no terminal.)"""
    from jaxae.data import records

    monkeypatch.setattr(records, "LOG_EVERY_S", 0.0)  # a line after every image but the last
    make_image_folder(tmp_path / "pets")
    DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                           image_size=8, channels=3)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("prepared ") and " of " in line]
    for split, total in (("train", 12), ("test", 3)):
        said = [line for line in lines if f" {split} images (" in line]
        assert [int(line.split()[1]) for line in said] == list(range(1, total))
        assert re.fullmatch(rf"prepared 1 of {total} {split} images \(\d+%, [\d,]+ a "
                            r"second\)", said[0])
    monkeypatch.setattr(records, "LOG_EVERY_S", 3600.0)  # the default's kind: none so soon
    DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "other"),
                           image_size=8, channels=3)
    assert " of 12 train images" not in capsys.readouterr().out
    # a large folder is read and hashed before anything is prepared: said as it goes
    monkeypatch.setattr(folder, "ANNOUNCED_FILES", 10)
    monkeypatch.setattr(folder, "CHECK_EVERY_S", 0.0)
    folder.plan_folder(tmp_path / "pets", image_size=8)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"checking 15 images in {tmp_path / 'pets'}: their headers, then "
                        "their sha256 (which tells a prepared copy of the same files)")
    assert [line.split(" (")[0] for line in lines[1:]] == (
        [f"read {n} of 15 image headers" for n in range(1, 15)]
        + [f"hashed {n} of 15 files" for n in range(1, 15)])


def test_folder_resizes_converts_and_carves_a_fixed_test_split(tmp_path, capsys) -> None:
    root = tmp_path / "pets"
    make_image_folder(root)
    data = DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"),
                                  image_size=8, channels=3)
    assert data.class_names == ("cat", "dog", "grey") and data.num_classes == 3
    assert data.train_images.shape == (12, 8, 8, 3) and data.test_images.shape == (3, 8, 8, 3)
    assert sorted(np.bincount(data.test_labels)) == [1, 1, 1]  # one in five per class
    grey = data.train_images[data.train_labels == 2]
    assert (grey[..., 0] == grey[..., 1]).all()
    assert ("1 file not PNG, JPEG, BMP, PPM, PGM, TIFF or WebP images (other formats, or no "
            "regular files) ignored, e.g. README.txt") in data.source
    assert data.fingerprint.startswith("folder-sha256:")
    assert "5 grey images made RGB" in data.source  # counted from the headers, given or not
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"))
    one_line(excinfo, "differ in size", "--config.data.image_size")
    Image.fromarray(np.zeros((12, 16, 4), np.uint8)).save(root / "cat" / "clear.png")
    mixed = folder.plan_folder(root, image_size=8)  # channels from the headers: RGB
    assert ("8x8x3; 5 grey images made RGB; 1 with an alpha channel, composited on black where "
            "transparent;") in mixed.describe()
    assert "; 11 colour images made grey" in folder.plan_folder(root, image_size=8,
                                                                 channels=1).describe()
    assert "enlarged" not in mixed.describe()
    assert ("test carved from each class (fraction 0.2, data.seed 0: the same for every run's "
            "seed)") in mixed.describe()  # it said "seed 0" beside a run of seed 1
    assert "11x11x3; 5 grey images made RGB; 1 with an alpha channel, composited on black " \
        "where transparent; 5 smaller than 11x11 enlarged (blurred);" in folder.plan_folder(
            root, image_size=11).describe()  # the grey 20x10 ones
    for label in ("a", "b"):
        for i in range(3):
            save_png(tmp_path / "colour" / label / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
    assert "native 4x4x1; 6 colour images made grey)" in folder.plan_folder(
        tmp_path / "colour", channels=1).describe()
    os.remove(root / "cat" / "clear.png")
    named = DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"),
                                   image_size=8, channels=3, prepared_name="pets")
    # One file edited: the folder is prepared anew, the earlier set kept and named.
    path = root / "dog" / "3.png"
    Image.fromarray(255 - np.array(Image.open(path))).save(path)
    capsys.readouterr()
    changed = DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"),
                                     image_size=8, channels=3)
    assert changed.fingerprint != data.fingerprint and "(prepared now)" in changed.source
    pairs = [(changed.train_images, data.train_images), (changed.test_images, data.test_images)]
    assert sum(int((new != old).any(axis=(1, 2, 3)).sum()) for new, old in pairs) == 1
    earlier = data.source.split("TFDS jaxae_folder/")[1].split(" ")[0]
    assert f"into {tmp_path / 'tfds' / 'jaxae_folder' / earlier}: kept: a run trained on " \
        "them is evaluated on them (evaluate.py at its folder), and resumes once a folder " \
        "holds those files again" in \
        capsys.readouterr().out
    assert os.path.isdir(tmp_path / "tfds" / "jaxae_folder" / earlier)
    again = DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"),
                                   image_size=8, channels=3)
    assert "(prepared earlier)" in again.source
    # The folder moved (a run may follow it): its set is read again, not prepared twice.
    moved_root = tmp_path / "moved" / "pets"
    os.makedirs(moved_root.parent)
    os.rename(root, moved_root)
    sets = sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder"))
    moved = DATASETS.get("folder")(path=str(moved_root), tfds_dir=str(tmp_path / "tfds"),
                                   image_size=8, channels=3)
    assert "(prepared earlier)" in moved.source and moved.fingerprint == changed.fingerprint
    assert sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder")) == sets
    os.rename(moved_root, root)
    # A set given its own name is that name's: a changed folder is refused, naming the fix.
    assert named.fingerprint == data.fingerprint
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("folder")(path=str(root), tfds_dir=str(tmp_path / "tfds"), image_size=8,
                               channels=3, prepared_name="pets")
    one_line(excinfo, "made from its earlier files (some were added, removed or edited",
             "give another prepared_name")


def test_a_folder_prepared_under_the_name_without_its_fingerprint_is_read_not_made_again(
        tmp_path, capsys) -> None:
    """Sets were named by the folder's name and path alone before: one made from the same
    files and options is used as it is."""
    root = tmp_path / "pets"
    make_image_folder(root)
    plan = folder.plan_folder(root, image_size=8, channels=3)
    tfds_dir = str(tmp_path / "tfds")
    earlier = DATASETS.get("folder")(path=str(root), tfds_dir=tfds_dir, image_size=8,
                                     channels=3, prepared_name=folder._default_name(plan))
    capsys.readouterr()
    data = DATASETS.get("folder")(path=str(root), tfds_dir=tfds_dir, image_size=8, channels=3)
    assert "(prepared earlier)" in data.source and "prepared before" not in capsys.readouterr().out
    assert data.source.split(" in ")[0] == earlier.source.split(" in ")[0]
    assert len(os.listdir(os.path.join(tfds_dir, "jaxae_folder"))) == 1


@pytest.mark.parametrize("extension", [".bmp", ".ppm", ".tif", ".webp"])
def test_folder_reads_the_lossless_formats_imagefolder_reads(tmp_path, extension,
                                                             capsys) -> None:
    rng = np.random.default_rng(0)
    images = {name: [rng.integers(0, 256, (6, 5, 3), np.uint8) for _ in range(3)]
              for name in ("a", "b")}
    for name, arrays in images.items():
        for i, array in enumerate(arrays):
            (tmp_path / "shots" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(tmp_path / "shots" / name / f"{i}{extension}",
                                        **({"lossless": True} if extension == ".webp" else {}))
    data = DATASETS.get("folder")(path=str(tmp_path / "shots"), tfds_dir=str(tmp_path / "tfds"))
    assert data.class_names == ("a", "b") and "ignored" not in data.source
    out = capsys.readouterr().out  # what is prepared, from where; not TFDS's "Downloading"
    assert f"preparing image folder {tmp_path / 'shots'} into {tmp_path / 'tfds'}" in out
    assert "prepared image folder" in out and "Downloading" not in out
    assert len(data.train_images) + len(data.test_images) == 6
    read = sorted(map(bytes, np.concatenate([data.train_images, data.test_images])))
    assert read == sorted(bytes(a) for arrays in images.values() for a in arrays)


def test_a_fifo_named_like_an_image_is_counted_among_the_other_files(tmp_path) -> None:
    """A received folder, untarred, may hold a FIFO: opened as an image it waited for ever
    (and a first SIGTERM could not end the wait)."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "shots" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), np.uint8)).save(
                tmp_path / "shots" / name / f"{i}.png")
    os.mkfifo(tmp_path / "shots" / "a" / "pipe.png")
    data = DATASETS.get("folder")(path=str(tmp_path / "shots"), tfds_dir=str(tmp_path / "tfds"))
    assert len(data.train_images) + len(data.test_images) == 6
    assert "a/pipe.png" in data.source and "ignored" in data.source


def test_two_folders_of_one_name_are_prepared_apart_and_a_second_prepare_waits(
        tmp_path, capsys) -> None:
    from jaxae.data import records

    tfds_dir = str(tmp_path / "tfds")
    for project, seed in (("a", 0), ("b", 1)):
        make_image_folder(tmp_path / project / "images", seed=seed)
    loaded = [DATASETS.get("folder")(path=str(tmp_path / p / "images"), tfds_dir=tfds_dir,
                                     image_size=8) for p in ("a", "b")]
    assert loaded[0].fingerprint != loaded[1].fingerprint
    assert not np.array_equal(loaded[0].train_images, loaded[1].train_images)
    again = DATASETS.get("folder")(path=str(tmp_path / "a" / "images"), tfds_dir=tfds_dir,
                                   image_size=8)
    np.testing.assert_array_equal(again.train_images, loaded[0].train_images)
    assert "prepared earlier" in again.source
    prepared = glob.glob(os.path.join(tfds_dir, "jaxae_folder", "images_*_8x8x3", "*",
                                      "dataset_info.json"))
    assert len(prepared) == 2
    # two runs start at once on a new folder: the second waits for the first's lock, then
    # reads what it prepared, through a builder made before the files were there
    plan = folder.plan_folder(tmp_path / "b" / "images", image_size=8)
    late = [folder.JaxaeFolder(config=folder.FolderConfig(name="late_8x8x3", plan=plan),
                               data_dir=tfds_dir) for _ in range(2)]
    where = os.fspath(late[0].data_path)
    outcome = []
    with records._preparing(where, "the first"):
        second = threading.Thread(
            target=lambda: outcome.append(records.prepare(late[1], "the second")))
        second.start()
        said = ""
        for _ in range(200):  # until the second says it waits on this lock (a loaded machine)
            said += capsys.readouterr().out
            if "waiting for another process preparing the second" in said:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the second never waited on the first's lock: {said!r}")
        assert second.is_alive() and not outcome
        late[0].download_and_prepare(file_format=records.FILE_FORMAT)
    second.join(10)
    assert outcome == [False]  # found it prepared: not prepared a second time
    split = records.PreparedSplit(where, "train", builder=late[1])
    assert len(split) == len(loaded[1].train_images)
    # what a preparation killed part-way left is removed by the next
    other = folder.JaxaeFolder(config=folder.FolderConfig(name="other_8x8x3", plan=plan),
                               data_dir=tfds_dir)
    killed = os.path.join(os.path.dirname(os.fspath(other.data_path)), "incomplete.Y_1.0.0")
    os.makedirs(killed)
    assert records.prepare(other, "image folder")
    assert not os.path.exists(killed)


def test_a_preparation_that_fails_on_a_truncated_image_leaves_no_folder(tmp_path,
                                                                        capsys) -> None:
    """Only the lock was left (a folder of its own, named after files no longer there once
    the image is replaced); a process that waited on that lock locks the one there now."""
    from jaxae.data import records

    root = tmp_path / "pets"
    make_image_folder(root)
    png = (root / "cat" / "0.png").read_bytes()
    (root / "cat" / "0.png").write_bytes(png[:len(png) // 2])
    tfds_dir = tmp_path / "tfds"
    with pytest.raises(DataError, match="truncated"):
        DATASETS.get("folder")(path=str(root), tfds_dir=str(tfds_dir), image_size=8)
    assert os.listdir(tfds_dir / "jaxae_folder") == []
    for name in ("dog/1.png", "grey/sub/2.png"):  # two more: all three named at once
        png = (root / name).read_bytes()
        (root / name).write_bytes(png[:len(png) // 2])
    with pytest.raises(DataError) as caught:
        DATASETS.get("folder")(path=str(root), tfds_dir=str(tfds_dir), image_size=8)
    line = one_line(caught, f"3 images in {root} are corrupt, truncated or not images: ",
                    ": replace or remove them")
    assert all(f"{name} (" in line for name in ("cat/0.png", "dog/1.png", "grey/sub/2.png"))
    assert os.listdir(tfds_dir / "jaxae_folder") == []
    where = str(tmp_path / "set" / "1.0.0")
    lock = tmp_path / "set" / records.PREPARE_LOCK
    waited, held = threading.Event(), records._preparing(where, "the second")
    with records._preparing(where, "the first"):
        second = threading.Thread(target=lambda: (held.__enter__(), waited.set()))
        second.start()
        for _ in range(100):  # until the second waits on this lock file
            if "waiting for another process preparing the second" in capsys.readouterr().out:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the second never waited on the first's lock")
        assert not waited.is_set()
    assert waited.wait(10)  # the first removed its lock file, the second made another
    fd = os.open(lock, os.O_RDONLY)
    with pytest.raises(BlockingIOError):  # and holds it
        records.fcntl.flock(fd, records.fcntl.LOCK_EX | records.fcntl.LOCK_NB)
    os.close(fd)
    held.__exit__(None, None, None)
    assert not lock.exists()


def test_a_lock_folder_removed_as_it_is_opened_is_made_again(tmp_path, monkeypatch) -> None:
    """Another process's clean-up (`_preparing`) may remove the folder between its making
    and the lock's opening: the lock is taken in a folder made again, not a traceback; so
    is the check that the data dir can be written."""
    from jaxae.data import records

    real, removed = os.makedirs, []

    def made_then_removed(path, exist_ok=False):
        real(path, exist_ok=exist_ok)
        if not removed:
            removed.append(path)
            os.rmdir(path)

    monkeypatch.setattr(records.os, "makedirs", made_then_removed)
    lock = str(tmp_path / "set" / records.PREPARE_LOCK)
    fd = records._locked(lock, "x")
    assert removed == [str(tmp_path / "set")] and os.path.isfile(lock)
    os.close(fd)
    probes, real_mkstemp = [], records.tempfile.mkstemp

    def vanished_once(**kwargs):
        probes.append(kwargs["dir"])
        if len(probes) == 1:
            raise FileNotFoundError(2, "No such file or directory")
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(records.tempfile, "mkstemp", vanished_once)
    records.check_writable(str(tmp_path / "set" / "1.0.0"), "x")  # no DataError
    assert len(probes) == 2


def test_a_data_dir_without_file_locks_is_one_line(tmp_path, monkeypatch) -> None:
    import errno

    from jaxae.data import records

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(records.fcntl, "flock", no_locks)
    make_image_folder(tmp_path / "pets")
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                               image_size=8)
    one_line(excinfo, "cannot lock", ".jaxae_prepare.lock",
             "pass a --config.data.tfds_dir on a file system with file locks")


def test_a_data_dir_where_no_folder_can_be_made_is_one_line(tmp_path, monkeypatch) -> None:
    """E.g. under /proc, or on a read-only mount: named, not an OSError's errno line."""
    import errno

    from jaxae.data import records

    def refuse(path, exist_ok=False):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    make_image_folder(tmp_path / "pets")
    monkeypatch.setattr(records.os, "makedirs", refuse)
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                               image_size=8)
    one_line(excinfo, f"cannot make the folder {tmp_path / 'tfds'}",
             "(Read-only file system): pass a writable --config.data.tfds_dir (or set "
             "$TFDS_DATA_DIR)")


def test_a_random_subset_of_a_folder_stored_class_by_class_holds_every_class(
        tmp_path, capsys) -> None:
    """train_size's first N of an image folder are one class (stored class by class): the
    run says so and names data.subset="random", which draws N from the whole split, the
    same N for the same data key, other keys other N."""
    from jaxae.data.arrays import from_arrays

    config = base_config()
    root = tmp_path / "pets"
    make_image_folder(root, n_per_class=8)
    set_fields(config, {"data.name": "folder", "data.path": str(root), "data.image_size": 8,
                        "data.tfds_dir": str(tmp_path / "tfds"), "data.train_size": 6,
                        "data.test_size": 3})
    first = build.load_data(config, derive_keys(0).data)
    assert len(set(first.train.labels.tolist())) == 1
    note = capsys.readouterr().err.strip().splitlines()
    assert note == ["warning: in pets, the first 6 training images hold 1 of its 3 classes; "
                    "the first 3 test images hold 2 of its 3 classes: set "
                    "--config.data.subset=random to draw them from every class"]
    build.load_data(config, derive_keys(0).data, new_run=False)  # a resume: no fix to offer
    assert capsys.readouterr().err == ""
    set_fields(config, {"data.subset": "random"})
    drawn = [build.load_data(config, derive_keys(seed).data) for seed in (0, 0, 1)]
    assert "warning" not in capsys.readouterr().err
    assert len(set(drawn[0].train.labels.tolist())) > 1 and len(drawn[0].train) == 6
    assert len(drawn[0].test) == 3
    np.testing.assert_array_equal(drawn[0].train.images, drawn[1].train.images)
    assert not np.array_equal(drawn[0].train.images, drawn[2].train.images)
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
    whole = make_splits(from_arrays(images, images), derive_keys(0).data, train_size=10,
                        subset="random")  # all of a split: the split as stored
    np.testing.assert_array_equal(whole.train.images, images)
    set_fields(config, {"data.subset": "shuffled"})
    with pytest.raises(ConfigError, match="config.data.subset='shuffled'"):
        validate(config)


def test_an_empty_carved_test_split_names_a_fix_that_exists(tmp_path) -> None:
    for name in ("cat", "dog"):
        save_png(tmp_path / "one" / name / "0.png", np.zeros((8, 8, 3), np.uint8))
        for i in range(2):
            save_png(tmp_path / "two" / name / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "one")
    one_line(excinfo, "empty test split", "no class has two images",
             "lay the folder out as train/<class>/ and test/<class>/")
    os.renames(tmp_path / "one", tmp_path / "train_only" / "train")  # train/ without test/
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "train_only")
    one_line(excinfo, "no class has two images", "add a test/ folder beside train/")
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "two", test_fraction=0.0)
    one_line(excinfo, "empty test split", "give a test_fraction above 0")


def test_load_image_centre_crop_and_modes(tmp_path) -> None:
    stripes = np.zeros((10, 20, 3), np.uint8)
    stripes[:, 5:15] = (0, 255, 0)
    save_png(tmp_path / "s.png", stripes)
    assert (load_image(str(tmp_path / "s.png"), (10, 10, 3)) == (0, 255, 0)).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)
    rgba[1, 1] = (200, 100, 50, 0)  # transparent: black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(str(tmp_path / "a.png"), (2, 2, 3))
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[1, 1]) == (0, 0, 0)
    deep = np.array([[0, 65535], [25600, 2047]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "b.png"), (2, 2, 1))[..., 0],
                                  [[0, 255], [100, 7]])
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="corrupt, truncated or not an image"):
        load_image(str(tmp_path / "c.png"), (2, 2, 3))


def test_array_options_match_pillow() -> None:
    """Grey <-> RGB and resizing of arrays (any source) are Pillow's own conversions."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 7, 5, 3), np.uint8)
    grey = ImageOptions(channels=1).apply(rgb)
    for image, out in zip(rgb, grey, strict=True):
        np.testing.assert_array_equal(out[..., 0], np.asarray(Image.fromarray(image).convert("L")))
    assert (ImageOptions(channels=3).apply(grey) == grey).all()
    assert ImageOptions(image_size=4).apply(rgb).shape == (3, 4, 4, 3)
    wide = ImageOptions(image_size=7, channels=3).apply(rgb)  # 7x5: to 7x10, centre 7x7
    assert wide.shape == (3, 7, 7, 3)
    for image, out in zip(rgb, wide, strict=True):
        resized = Image.fromarray(image).resize((7, 10), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(out, np.asarray(resized.crop((0, 1, 7, 8))))
    same = rgb[:, :4, :4]
    assert ImageOptions(image_size=4, channels=3).apply(same) is same  # unchanged: no copy


def test_npz_takes_the_options_and_has_a_fingerprint(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "a.npz"
    np.savez(path, train_images=rng.integers(0, 256, (6, 10, 10), np.uint8),
             test_images=rng.integers(0, 256, (2, 10, 10), np.uint8))
    data = load_npz(str(path), image_size=8, channels=3)
    assert data.image_shape == (8, 8, 3) and "made RGB" in data.source
    assert data.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_npz_labels_are_given_for_both_splits_or_neither(tmp_path) -> None:
    """Labels for one split alone would leave the other's images all class 0, unannounced."""
    images = {"train_images": np.zeros((6, 4, 4), np.uint8),
              "test_images": np.zeros((2, 4, 4), np.uint8)}
    path = tmp_path / "half.npz"
    np.savez(path, **images, train_labels=np.arange(6) % 2)
    with pytest.raises(DataError) as excinfo:
        load_npz(str(path))
    one_line(excinfo, "train_labels are given but test_labels are not",
             "give test_labels too, or neither")
    np.savez(path, **images, train_labels=np.arange(6) % 2, test_labels=np.array([0, -1]))
    with pytest.raises(DataError) as excinfo:
        load_npz(str(path))
    one_line(excinfo, "labels run from -1", "give class indices 0, 1, 2")
    np.savez(path, **images, train_labels=np.arange(6) % 3, test_labels=np.array([0, 1]),
             class_names=np.array(["a", "b"]))
    with pytest.raises(DataError) as excinfo:
        load_npz(str(path))
    one_line(excinfo, "labels run to 2 but 2 class names are given", "3 in all")


# --- any TFDS builder ----------------------------------------------------------------------------


class JaxaeTestTinyImages(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder of another package (no TensorFlow needed): 40 8x8x3 images, a class
    label named `category`, a train split only."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
            "category": tfds.features.ClassLabel(names=["a", "b", "c"])}),
            supervised_keys=("image", "category"), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(0)
        for i in range(n):
            yield i, {"image": rng.integers(0, 256, (8, 8, 3), np.uint8), "category": i % 3}


def test_any_tfds_builder_by_name(tmp_path) -> None:
    """A TFDS name is a valid config.data.name; its builder prepares the set as array_record,
    read without TensorFlow; a set without a test split holds out train's last tenth."""
    tfds_sets.tfds_names.cache_clear()
    config = base_config()
    with config.data.unlocked():
        config.data.name = "jaxae_test_tiny_images"
    validate(config)
    data = DATASETS.get("jaxae_test_tiny_images")(tfds_dir=str(tmp_path), image_size=4)
    assert data.train_images.shape == (36, 4, 4, 3) and data.test_images.shape == (4, 4, 4, 3)
    assert data.class_names == ("a", "b", "c") and data.train_labels[:4].tolist() == [0, 1, 2, 0]
    assert "test split train[90%:]" in data.source and data.fingerprint.startswith("tfds-")
    assert "tensorflow" not in sys.modules
    with config.data.unlocked():
        config.data.name = "no_such_data_set"
    with pytest.raises(ConfigError, match="any TFDS data set's name"):
        validate(config)


class JaxaeTestRawPixels(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder storing raw image bytes (as jaxae's own do) under other feature names:
    `pixels` (the label is `label`); 20 6x6x1 images, a train split only."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "pixels": tfds.features.Tensor(shape=(6, 6, 1), dtype=np.uint8,
                                           encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=["a", "b", "c", "d"])}),
            supervised_keys=("pixels", "label"), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(20):
            yield i, {"pixels": np.full((6, 6, 1), 10 * i, np.uint8), "label": i % 4}


class JaxaeTestRawUnlabelled(tfds.core.GeneratorBasedBuilder):
    """Raw image bytes and no label: 10 4x4x1 images, a train split only."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES)}),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(10):
            yield i, {"image": np.full((4, 4, 1), 20 * i, np.uint8)}


def test_a_tfds_builder_of_raw_bytes_is_read_by_its_own_feature_names(tmp_path) -> None:
    tfds_sets.tfds_names.cache_clear()  # the builders of this module, registered on import
    data = DATASETS.get("jaxae_test_raw_pixels")(tfds_dir=str(tmp_path))
    assert data.train_images.shape == (18, 6, 6, 1) and data.test_images.shape == (2, 6, 6, 1)
    assert data.train_images[:, 0, 0, 0].tolist() == [10 * i for i in range(18)]
    assert data.train_labels.tolist() == [i % 4 for i in range(18)]
    assert data.class_names == ("a", "b", "c", "d")
    unlabelled = DATASETS.get("jaxae_test_raw_unlabelled")(tfds_dir=str(tmp_path))
    assert unlabelled.train_images[:, 0, 0, 0].tolist() == [20 * i for i in range(9)]
    assert unlabelled.train_labels.tolist() == [0] * 9 and unlabelled.class_names == ("all",)


class JaxaeTestMixedSizes(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder of RGB images of ten sizes, 16x16 and 51x40 to 59x40 (zlib-compressed
    arrays)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=["a", "b"])}),
            supervised_keys=("image", "label"), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, image in enumerate(mixed_size_images()):
            yield i, {"image": image, "label": i % 2}


def mixed_size_images() -> list[np.ndarray]:
    """Nine sizes, and one image at the size they are fitted to (16x16)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (50 + i, 40, 3) if i else (16, 16, 3), np.uint8)
            for i in range(10)]


def test_a_tfds_sets_images_of_several_sizes_are_fitted_as_any_images_are(tmp_path) -> None:
    """Made grey, then resized (ImageOptions.apply's order), as an image folder's are."""
    tfds_sets.tfds_names.cache_clear()
    data = DATASETS.get("jaxae_test_mixed_sizes")(tfds_dir=str(tmp_path), image_size=16,
                                                  channels=1)
    want = np.stack([ImageOptions(16, 1).apply(image[None])[0]
                     for image in mixed_size_images()])
    np.testing.assert_array_equal(np.concatenate([data.train_images, data.test_images]), want)


def test_tfds_builder_that_needs_tensorflow_is_one_line(tmp_path, tmp_path_factory,
                                                        monkeypatch) -> None:
    """celeb_a's builder needs TensorFlow: said before anything is downloaded (TensorFlow is
    made to look absent, so the test runs where it is installed too)."""
    monkeypatch.setattr(tfds_sets, "tensorflow_installed", lambda: False)
    # TFDS's builder of a set not yet prepared leaves an empty folder in the temporary
    # folder (its bucket's lookup): in pytest's, not the machine's
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tfds_scratch")))
    with pytest.raises(DataError) as excinfo:
        DATASETS.get("celeb_a")(tfds_dir=str(tmp_path), image_size=64)
    one_line(excinfo, "celeb_a needs TensorFlow", "pip install 'jaxae[tfds]'")
    assert not any(tmp_path.iterdir())
    assert tfds_sets.is_missing_tensorflow(RuntimeError("x", ModuleNotFoundError(
        "No module named 'tensorflow'", name="tensorflow")))


# --- integrity -----------------------------------------------------------------------------------


def test_prepared_mnist_from_other_files_is_caught(tmp_path, monkeypatch) -> None:
    """mnist prepared from one IDX folder, then run with another
    data_dir and the same TFDS dir: one line naming both. The same data packed otherwise
    (unpacked .gz) is accepted."""
    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    first = write_folder(tmp_path / "first")
    tfds_dir = str(tmp_path / "tfds")
    data = load_dataset("mnist", data_dir=str(first), tfds_dir=tfds_dir)
    assert data.fingerprint.startswith("idx-files-sha256:")
    second = write_folder(tmp_path / "second", n_train=6)
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=str(second), tfds_dir=tfds_dir)
    one_line(excinfo, f"made from IDX files in {first}", f"not from the IDX files in {second}",
             "delete", "--config.data.tfds_dir")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    for gz in first.iterdir():
        (unpacked / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    again = load_dataset("mnist", data_dir=str(unpacked), tfds_dir=tfds_dir)
    np.testing.assert_array_equal(again.train_images, data.train_images)
    elsewhere = load_dataset("mnist", data_dir=str(unpacked), tfds_dir=str(tmp_path / "tfds2"))
    assert elsewhere.fingerprint != data.fingerprint  # other files ...
    assert elsewhere.content_sha256 == data.content_sha256 != ""  # ... of the same images
    assert load_dataset("mnist", data_dir=str(second), tfds_dir=str(tmp_path / "tfds3")
                        ).content_sha256 != data.content_sha256


def _another_process_prepares_first(module, monkeypatch, attribute: str, folder: Path,
                                    data) -> None:
    """Make `module.prepare` act as when another process, preparing the set from `folder`
    (read as `data`, the builder's `attribute`), held the lock first: it prepares that, then
    this call finds it prepared."""
    real = module.prepare

    def waited(builder, what, manual_dir=None, **options):
        mine = getattr(builder, attribute)
        setattr(builder, attribute, data)
        assert real(builder, what, str(folder), **options)  # the other process's
        setattr(builder, attribute, mine)
        return real(builder, what, manual_dir, **options)  # this one's: found prepared

    monkeypatch.setattr(module, "prepare", waited)


def test_a_set_another_process_prepared_meanwhile_is_checked_as_one_prepared_earlier(
        tmp_path, monkeypatch) -> None:
    from jaxae.data import sources
    from jaxae.data.builder import read_idx_files

    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    mine, theirs = write_folder(tmp_path / "mine"), write_folder(tmp_path / "theirs", n_train=6)
    _another_process_prepares_first(sources, monkeypatch, "manual_files", theirs,
                                    read_idx_files(str(theirs)))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=str(mine), tfds_dir=str(tmp_path / "tfds"))
    one_line(excinfo, f"made from IDX files in {theirs}", f"not from the IDX files in {mine}")
    same = load_dataset("mnist", data_dir=str(theirs), tfds_dir=str(tmp_path / "tfds2"))
    assert "prepared earlier from IDX files in" in same.source and len(same.train_images) == 6
    write_cifar_python(tmp_path / "my_cifar", seed=1)
    write_cifar_python(tmp_path / "their_cifar", seed=2)
    _another_process_prepares_first(cifar10, monkeypatch, "manual_data", tmp_path / "their_cifar",
                                    cifar10.read_cifar10(str(tmp_path / "their_cifar")))
    with pytest.raises(DataError) as excinfo:
        load_dataset_cifar(tmp_path / "tfds", tmp_path / "my_cifar")
    one_line(excinfo, "was made from", str(tmp_path / "their_cifar"), str(tmp_path / "my_cifar"))


def test_fashion_mnist_given_as_mnist_is_refused(tmp_path, monkeypatch) -> None:
    """The Fashion-MNIST IDX files the suite trains on (Debian's, recompressed: other
    checksums; or the published ones) given as MNIST are told by their labels or checksums;
    files with a published MNIST checksum given as Fashion-MNIST by that checksum."""
    found = sources.find_idx_dir("fashion_mnist")
    assert found is not None, "the suite needs Fashion-MNIST's IDX files (make setup)"
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", data_dir=found[0], tfds_dir=str(tmp_path))
    one_line(excinfo, "holds Fashion-MNIST, not MNIST", "--config.data.name=fashion_mnist")
    assert not (tmp_path / "jaxae_images").exists()
    folder_path = write_folder(tmp_path / "idx")
    sha = hashlib.sha256((folder_path / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    monkeypatch.setitem(sources.PUBLISHED_SHA256, sha, ("mnist", "t10k-images-idx3-ubyte.gz"))
    with pytest.raises(DataError) as excinfo:
        load_dataset("fashion_mnist", data_dir=str(folder_path), tfds_dir=str(tmp_path))
    one_line(excinfo, "holds MNIST, not Fashion-MNIST", "published sha256")


def test_the_mnist_subset_is_refused_as_fashion_mnist_and_never_written_over_files(
        tmp_path) -> None:
    """jaxae.data.mnist5k's 5,000 digits given as Fashion-MNIST are told by their sizes and
    first labels; its command refuses a folder that holds IDX files unless --overwrite, and
    --help is usage, not a folder."""
    from jaxae.data import mnist5k

    folder = tmp_path / "m5"
    mnist5k.write_idx(str(folder))
    with pytest.raises(DataError) as excinfo:
        load_dataset("fashion_mnist", data_dir=str(folder), tfds_dir=str(tmp_path / "tfds"))
    one_line(excinfo, "holds MNIST, not Fashion-MNIST (its 4,000 training labels begin as "
                      "MNIST's do)", "--config.data.name=mnist")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"full MNIST of the user's")
    command = [sys.executable, "-m", "jaxae.data.mnist5k"]
    refused = subprocess.run([*command, str(folder)], capture_output=True, text=True,
                             cwd=tmp_path)
    assert refused.returncode == 1 and refused.stderr.startswith(
        f"error: {folder} holds IDX files already (train-images-idx3-ubyte.gz, "), refused.stderr
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == b"full MNIST of the user's"
    usage = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 0 and "--overwrite" in usage.stdout
    assert sorted(os.listdir(tmp_path)) == ["m5"]
    (tmp_path / "notes.txt").write_text("")  # a file where the folder must be: one line
    with pytest.raises(SystemExit, match=r"^error: '\S+notes.txt' cannot be written \(File "
                                         r"exists\): give a folder you can write to$"):
        mnist5k.main([str(tmp_path / "notes.txt")])


def test_the_mnist_subsets_idx_files_are_the_same_bytes_whenever_written(tmp_path, monkeypatch
                                                                         ) -> None:
    """Its gzip headers hold no time of writing: the same images, the same bytes (a prepared
    set's fingerprint is of those bytes)."""
    from jaxae.data import mnist5k

    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28) % 256
    written = []
    for now in (1.0e9, 2.0e9):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        path = tmp_path / f"{int(now)}-idx3-ubyte.gz"
        mnist5k.write_idx_file(str(path), images)
        written.append(path.read_bytes())
    assert written[0] == written[1]
    np.testing.assert_array_equal(idx.read_idx(str(path)), images)


def test_damaged_prepared_folder_is_one_line(tmp_path, monkeypatch) -> None:
    """An array_record file cut to half its size: one line saying to delete the folder."""
    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    tfds_dir = tmp_path / "tfds"
    load_dataset("mnist", data_dir=str(write_folder(tmp_path / "idx")), tfds_dir=str(tfds_dir))
    (shard,) = tfds_dir.glob("jaxae_images/mnist/1.0.0/*train.array_record*")
    subprocess.run(["truncate", "-s", str(shard.stat().st_size // 2), str(shard)], check=True)
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tfds_dir=str(tfds_dir))
    one_line(excinfo, "is damaged", shard.name, "delete that folder so it is prepared again")


def test_unwritable_tfds_dir_is_one_line(tmp_path, monkeypatch) -> None:
    """A TFDS dir that cannot be written, data not prepared there yet: read-only by its mode,
    or, for root (whom modes do not stop), immutable (chattr +i, from e2fsprogs)."""
    monkeypatch.delenv("JAXAE_MNIST_DIR", raising=False)
    tfds_dir = tmp_path / "readonly"
    tfds_dir.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(tfds_dir)], check=True)
    else:
        tfds_dir.chmod(0o555)
    try:
        with pytest.raises(DataError) as excinfo:
            load_dataset("mnist", data_dir=str(write_folder(tmp_path / "idx")),
                         tfds_dir=str(tfds_dir))
        one_line(excinfo, "cannot be written", "writable --config.data.tfds_dir")
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(tfds_dir)], check=True)
        else:
            tfds_dir.chmod(0o755)


def test_a_run_failing_on_data_leaves_no_workdir(tmp_path) -> None:
    """A run that fails on data leaves no half-made workdir behind. Here a folder
    with one unreadable image; the error is one line and nothing is written anywhere."""
    from jaxae.training.trainer import train_and_evaluate

    root = tmp_path / "pets"
    make_image_folder(root)
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    config = base_config()
    config.data.name, config.data.path = "folder", str(root)
    config.data.tfds_dir, config.data.image_size = str(tmp_path / "tfds"), 8
    config.model.name = "conv_ae"
    workdir = tmp_path / "run"
    with pytest.raises(DataError) as excinfo:
        train_and_evaluate(config, str(workdir))
    one_line(excinfo, "broken.png cannot be read")
    assert not (tmp_path / "tfds").exists()
    assert not workdir.exists(), sorted(os.listdir(workdir))
    (root / "dog" / "empty.jpg").write_bytes(b"")  # every unreadable image named at once,
    for channels in (None, 3):  # whether or not the options leave anything to read
        config.data.channels = channels
        with pytest.raises(DataError) as excinfo:
            train_and_evaluate(config, str(workdir))
        one_line(excinfo, f"2 images in {root} cannot be read: cat/broken.png (",
                 "dog/empty.jpg (", "replace or remove them")
    assert not (tmp_path / "tfds").exists()  # before anything is prepared


# --- splits of a streamed data set -------------------------------------------------------------


def test_streamed_splits_hold_the_same_examples(cifar) -> None:
    """Streamed, the training split stays on disk but holds the examples the in-memory path
    keeps (train_size, validation carve); validation and test are in memory."""
    _, tfds_dir, _ = cifar
    key = derive_keys(3).data
    kwargs = {"train_size": 30, "test_size": 5, "val_size": 6}
    memory = make_splits(load_dataset_cifar(tfds_dir), key, **kwargs)
    data = load_dataset_cifar(tfds_dir, streaming="stream")
    assert data.streamed
    streamed = make_splits(data, key, **kwargs)
    assert streamed.streamed and not memory.streamed and len(streamed.train) == 24
    np.testing.assert_array_equal(np.asarray(streamed.train.images), memory.train.images)
    np.testing.assert_array_equal(np.asarray(streamed.train.labels), memory.train.labels)
    for split in ("val", "test"):
        np.testing.assert_array_equal(getattr(streamed, split).images,
                                      getattr(memory, split).images)
    drawn = {"train_size": 30, "test_size": 5, "val_size": 4, "subset": "random"}
    random_memory = make_splits(load_dataset_cifar(tfds_dir), key, **drawn)
    random_streamed = make_splits(data, key, **drawn)
    assert len(random_streamed.train) == 26 and len(random_streamed.val) == 4
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(getattr(random_streamed, split).images),
                                      getattr(random_memory, split).images)
    first = make_splits(load_dataset_cifar(tfds_dir), key, **{**drawn, "subset": "first"})
    assert first.train.images.shape == random_memory.train.images.shape
    assert not np.array_equal(random_memory.train.images, first.train.images)
    with pytest.raises(DataError, match="binarize=static"):
        make_splits(data, key, binarize="static")
    # "auto" streams what exceeds the budget, and holds a cut that fits it in memory
    auto = load_dataset_cifar(tfds_dir, streaming="auto", memory_budget_mb=0.1)
    assert auto.streamed and not make_splits(auto, key, train_size=10).streamed
    assert not load_dataset_cifar(tfds_dir, streaming="auto", memory_budget_mb=1).streamed


# --- the photo crops ---------------------------------------------------------------------------


def test_photo_crops_are_deterministic_and_held_out(tmp_path) -> None:
    """Crops of scikit-learn's two photographs: the same files from the same seed, test crops
    from a band no train crop touches."""
    from jaxae.data import photo_crops

    photos = [p for p in photo_crops.PHOTOS if p[1] == "sklearn"]
    try:
        photo_crops.find_photo(*photos[0][1:])
    except FileNotFoundError:
        pytest.skip("needs scikit-learn")
    kwargs = {"per_photo": 5, "size": 16, "scales": (1, 2), "seed": 3, "photos": photos}
    counts = photo_crops.build_photo_crops(str(tmp_path / "a"), **kwargs)
    assert counts == {"china": {"train": 4, "test": 1}, "flower": {"train": 4, "test": 1}}
    photo_crops.build_photo_crops(str(tmp_path / "b"), **kwargs)
    plans = [folder.plan_folder(tmp_path / d) for d in ("a", "b")]
    assert plans[0].layout == "train/test" and plans[0].files_sha256 == plans[1].files_sha256
    manifest = json.loads((tmp_path / "a" / photo_crops.MANIFEST).read_text())
    for rel, (_top, left, side) in manifest["crops"].items():
        cut = round(manifest["photos"][rel.split("/")[1]]["width"] * 0.8)
        assert (left >= cut) if rel.startswith("test/") else (left + side <= cut)
    # --overwrite that fails (a photograph not found, an option that makes nothing) leaves the
    # set it would replace: it had been deleted first
    for bad, error in [({"photos": [("x", "sklearn", "missing.jpg")]}, FileNotFoundError),
                       ({"per_photo": 0}, ValueError), ({"scales": (0,)}, ValueError),
                       ({"holdout": 1.0}, ValueError)]:
        with pytest.raises(error):
            photo_crops.build_photo_crops(str(tmp_path / "a"), overwrite=True, **(kwargs | bad))
        assert folder.plan_folder(tmp_path / "a").files_sha256 == plans[0].files_sha256
    photo_crops.build_photo_crops(str(tmp_path / "a"), overwrite=True, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # replaced whole, no .partial left



def test_a_folder_of_images_alone_is_one_class_and_images_beside_folders_are_refused(
        tmp_path) -> None:
    """An autoencoder needs no labels: a folder of images without class sub-folders is one
    class, "all", its test split carved as a class folder's is."""
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat"
    for i in range(10):
        save_png(flat / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    (flat / "notes.txt").write_text("not an image")
    data = DATASETS.get("folder")(path=str(flat), tfds_dir=str(tmp_path / "tfds"))
    assert data.class_names == ("all",)
    assert data.train_images.shape == (8, 8, 8, 3) and data.test_images.shape == (2, 8, 8, 3)
    assert set(data.train_labels.tolist()) == set(data.test_labels.tolist()) == {0}
    save_png(flat / "cats" / "0.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(flat)
    one_line(excinfo, f"image folder {flat} holds images beside sub-folders (e.g. 0.png beside "
                      "cats/): put every image in a <class>/ folder, or keep only images")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "empty")
    one_line(excinfo, f"image folder {tmp_path / 'empty'} holds no images: lay it out as")


def test_a_configs_test_fraction_carves_a_folder_and_is_refused_where_unread(tmp_path) -> None:
    root = tmp_path / "pets"
    make_image_folder(root, n_per_class=10)
    config = base_config()
    set_fields(config, {"data.name": "folder", "data.path": str(root),
                        "data.tfds_dir": str(tmp_path / "tfds"), "data.image_size": 8})
    sizes = {}
    for fraction in (None, 0.5):
        set_fields(config, {"data.test_fraction": fraction})
        validate(config)
        splits = build.load_data(config, derive_keys(0).data)
        sizes[fraction] = (len(splits.train), len(splits.test))
    assert sizes == {None: (24, 6), 0.5: (15, 15)}  # 0.2 of each class by default
    split = tmp_path / "split"  # a folder with its own test/ split: no fraction to carve
    make_image_folder(split / "train")
    make_image_folder(split / "test", seed=1)
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(split, test_fraction=0.5)
    one_line(excinfo, f"test_fraction=0.5 is given, but image folder {split} has its own test/ "
                      "split: leave it unset")
    assert folder.plan_folder(split, image_size=8).layout == "train/test"
    for fraction in (1.0, 0.0):  # no training images, or no test images
        set_fields(config, {"data.test_fraction": fraction})
        with pytest.raises(ConfigError, match=re.escape(
                f"config.data.test_fraction={fraction} must lie in (0, 1), e.g. 0.2")):
            validate(config)
    set_fields(config, {"data.test_fraction": 0.1, "data.name": "fashion_mnist",
                        "data.path": None})
    with pytest.raises(ConfigError, match=re.escape("config.data.test_fraction=0.1 is set, but "
                                                    "the fashion_mnist data set has its own test "
                                                    "split: leave it unset")):
        validate(config)


def test_an_image_folder_that_is_a_file_or_missing_is_named_as_such(tmp_path) -> None:
    (tmp_path / "my_models.py").write_text("")
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "my_models.py")
    one_line(excinfo, f"image folder {tmp_path / 'my_models.py'} is a file, not a folder: "
                      "point --config.data.path at a folder of PNG, JPEG, BMP, PPM, PGM, TIFF or "
                      "WebP images, in <class>/ sub-folders or alone")
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "nowhere")
    one_line(excinfo, f"image folder {tmp_path / 'nowhere'} does not exist")
    (tmp_path / "arrays.npz").write_bytes(b"")
    with pytest.raises(DataError) as excinfo:
        folder.plan_folder(tmp_path / "arrays.npz")
    one_line(excinfo, "is a file, not a folder", "--config.data.name=npz (load_npz)")


def test_preparing_a_folder_into_a_log_file_writes_no_tfds_progress_bars(tmp_path, capsys):
    from tensorflow_datasets.core.utils import tqdm_utils

    make_image_folder(tmp_path / "pets")
    shown = tqdm_utils._active
    DATASETS.get("folder")(path=str(tmp_path / "pets"), tfds_dir=str(tmp_path / "tfds"),
                           image_size=8, channels=3)
    out, err = capsys.readouterr()
    assert "preparing image folder" in out and "prepared image folder" in out
    assert "examples/s" not in out + err and "\r" not in out + err  # TFDS's tqdm lines
    assert tqdm_utils._active == shown  # as they were for the rest of the process


def test_npz_files_of_other_kinds_and_labels_past_any_class_count_are_one_line(tmp_path):
    """A .npy, a text file, labels that are no class indices: one line each; class names
    given as one string or as bytes read as names."""
    images = np.zeros((4, 8, 8), np.uint8)
    np.save(tmp_path / "one.npy", images)
    (tmp_path / "text.npz").write_text("not an archive")
    for name, words in (("one.npy", "it is a .npy file of one array, not an .npz of named "
                                    "arrays"),
                        ("text.npz", "not an .npz archive of numeric arrays")):
        with pytest.raises(DataError) as excinfo:
            load_npz(str(tmp_path / name))
        one_line(excinfo, words, "write it with numpy.savez")
    for labels, words in ((np.full(4, 10**6), "train_labels run to 1,000,000, past the "
                                               "100,000 classes"),
                          (np.full(4, 2**32 + 1), "train_labels run to 4,294,967,297"),
                          (np.full(4, -2**40), "labels run from -1099511627776")):
        np.savez(tmp_path / "labels.npz", train_images=images, test_images=images,
                 train_labels=labels, test_labels=np.zeros(4, int))
        with pytest.raises(DataError) as excinfo:
            load_npz(str(tmp_path / "labels.npz"))
        one_line(excinfo, words)
    np.savez(tmp_path / "one_name.npz", train_images=images, test_images=images,
             class_names="all")
    assert load_npz(str(tmp_path / "one_name.npz")).class_names == ("all",)
    np.savez(tmp_path / "bytes.npz", train_images=images, test_images=images,
             train_labels=np.array([0, 1, 0, 1]), test_labels=np.array([0, 1, 0, 1]),
             class_names=np.array([b"cat", b"dog"]))
    assert load_npz(str(tmp_path / "bytes.npz")).class_names == ("cat", "dog")
    for train, words in (
            (images.astype(np.int64), "train_images has dtype int64, not uint8: its values are "
                                      "0..255: store train_images.astype(np.uint8)"),
            (images.astype(np.float32) + 300, "has dtype float32, not uint8: store pixel values "
                                            "0..255 as uint8"),
            (np.zeros((4, 3, 8, 8), np.uint8), "has shape (4, 3, 8, 8): give [N, H, W] or "
             "[N, H, W, C] images with C = 1 or 3 and N, H, W > 0 (channels first? store "
             "np.transpose(train_images, (0, 2, 3, 1)))"),
            (np.zeros((4, 3, 8, 6), np.uint8), "(channels first? store np.transpose("),
            (np.full((4, 8, 8, 1), 0.5), "its values are in [0, 1]: store (train_images * "
                                         "255).round().astype(np.uint8)"),
            (np.full((4, 8, 8, 1), 200.0), "has dtype float64, not uint8: its values are "
                                           "0..255: store train_images.round().astype(np.uint8)"),
            (np.full((4, 8, 8, 1), np.nan), "train_images holds NaN: store pixel values"),
            (np.zeros((4, 8, 8, 4), np.uint8), "(RGBA? drop the alpha channel: "
                                               "train_images[..., :3])"),
            (np.zeros((32, 32, 3), np.uint8), "has shape (32, 32, 3), read as 32 grey images of "
             "32x3 pixels: give [N, H, W, C] images (one colour image: train_images[None]; grey "
             "images 3 pixels wide: train_images[..., None])"),
            (np.zeros((10, 0, 0), np.uint8), "has shape (10, 0, 0): give [N, H, W] or "
             "[N, H, W, C] images with C = 1 or 3 and N, H, W > 0")):
        np.savez(tmp_path / "kinds.npz", train_images=train, test_images=images)
        with pytest.raises(DataError) as excinfo:
            load_npz(str(tmp_path / "kinds.npz"))
        one_line(excinfo, words)
    np.savez(tmp_path / "keras.npz", x_train=images, x_test=images)
    with pytest.raises(DataError) as excinfo:
        load_npz(str(tmp_path / "keras.npz"))
    one_line(excinfo, "has no train_images, test_images (it holds x_test, x_train): it must hold")
    assert "to hold n images out" not in str(excinfo.value)
    np.savez(tmp_path / "train_only.npz", train_images=images)
    with pytest.raises(DataError) as excinfo:
        load_npz(str(tmp_path / "train_only.npz"))
    one_line(excinfo, "has no test_images (it holds train_images): it must hold")
    assert str(excinfo.value).endswith(
        "; to hold n images out for the test, shuffle the images x (and labels y, if any) "
        "alike, then numpy.savez(path, train_images=x[:-n], test_images=x[-n:], "
        "train_labels=y[:-n], test_labels=y[-n:])")


def test_pixels_all_0_or_1_are_taken_with_a_warning(tmp_path, capsys) -> None:
    """uint8 images holding only 0 and 1 (pixels in [0, 1] cast without scaling) trained as
    black images without a word."""
    binary = np.random.default_rng(0).integers(0, 2, (4, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "binary.npz", train_images=binary, test_images=binary)
    assert load_npz(str(tmp_path / "binary.npz")).train_images.max() == 1
    err = capsys.readouterr().err
    assert ("every pixel of train_images is 0 or 1: if they are pixels in [0, 1], store them "
            "as 0..255 ((x * 255).round().astype(np.uint8))") in err
    assert err.count("warning:") == 2  # once per array, naming the file
    from jaxae.data import from_arrays
    from_arrays(binary, binary)
    assert capsys.readouterr().err.count("warning: arrays given in memory: every pixel") == 2
    np.savez(tmp_path / "grey.npz", train_images=binary * 255, test_images=binary * 255)
    load_npz(str(tmp_path / "grey.npz"))
    assert "0 or 1" not in capsys.readouterr().err


def test_an_image_past_pillows_size_limit_is_one_line(tmp_path, monkeypatch) -> None:
    """Pillow refuses images past its decompression-bomb limit with an exception of its
    own: one line naming the image, whether the folder's shape is read or its images."""
    from PIL import Image

    from jaxae.data import load_folder

    for label in ("a", "b"):
        (tmp_path / "f" / label).mkdir(parents=True)
        for index in range(2):
            Image.new("L", (40, 40)).save(tmp_path / "f" / label / f"{index}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 40x40 image is then a "bomb"
    for options in ({}, {"image_size": 8, "channels": 1}):
        with pytest.raises(DataError) as excinfo:
            load_folder(str(tmp_path / "f"), tfds_dir=str(tmp_path / "tfds"), **options)
        one_line(excinfo, "is larger than Pillow reads", "shrink it, or remove it")


def test_a_truncated_npz_and_class_names_of_two_axes_are_one_line(tmp_path):
    images = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "whole.npz", train_images=images, test_images=images)
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError) as excinfo:
        load_npz(str(tmp_path / "cut.npz"))
    one_line(excinfo, "cannot be read", "write it with numpy.savez")
    np.savez(tmp_path / "names.npz", train_images=images, test_images=images,
             class_names=np.array([["a", "b"]]))
    with pytest.raises(DataError) as excinfo:
        load_npz(str(tmp_path / "names.npz"))
    one_line(excinfo, "class_names is an array of shape (1, 2): give one name per class")


def test_capitalised_train_and_test_folders_are_the_split_layout_not_two_classes(tmp_path):
    """Train/ and Test/ once read as two classes, each split mixing the other's images."""
    from jaxae.data.folder import plan_folder

    rng = np.random.default_rng(0)
    for split, n in (("Train", 4), ("Test", 2)):
        for name in ("cat", "dog"):
            for i in range(n):
                save_png(tmp_path / "pets" / split / name / f"{i}.png",
                         rng.integers(0, 256, (8, 8, 3), np.uint8))
    plan = plan_folder(tmp_path / "pets")
    assert plan.layout == "train/test" and plan.class_names == ("cat", "dog")
    assert all(rel.startswith("Train/") for rel, _ in plan.files["train"])
    assert all(rel.startswith("Test/") for rel, _ in plan.files["test"])
    assert len(plan.files["train"]) == 8 and len(plan.files["test"]) == 4
    save_png(tmp_path / "pets" / "Val" / "cat" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"mixes Train/ with other folders \(Val\)"):
        plan_folder(tmp_path / "pets")
    (tmp_path / "pets" / "Val" / "cat" / "0.png").unlink()
    (tmp_path / "pets" / "Val" / "cat").rmdir()
    (tmp_path / "pets" / "Val").rmdir()
    save_png(tmp_path / "pets" / "train" / "cat" / "9.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match=r"has Train/ and train/: merge them into one train/$"):
        plan_folder(tmp_path / "pets")


def test_linked_folders_inside_a_class_are_followed_once(tmp_path):
    """As torchvision's ImageFolder: a class's linked sub-folder is read (it was skipped
    without a word), and a link back up the tree does not loop."""
    from jaxae.data.folder import plan_folder

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(2):
            save_png(tmp_path / "shots" / name / f"{i}.png",
                     rng.integers(0, 256, (8, 8), np.uint8))
    for i in range(5):
        save_png(tmp_path / "elsewhere" / f"{i}.png", rng.integers(0, 256, (8, 8), np.uint8))
    (tmp_path / "shots" / "b" / "more").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "shots" / "b" / "loop").symlink_to(tmp_path / "shots" / "b")
    plan = plan_folder(tmp_path / "shots")
    listed = sorted(rel for split in ("train", "test") for rel, _ in plan.files[split])
    assert listed == ["a/0.png", "a/1.png", "b/0.png", "b/1.png",
                      *(f"b/more/{i}.png" for i in range(5))]


def test_a_32_bit_image_is_named_unusable_not_corrupt(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "f0.tif"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(path)  # a valid mode-F TIFF
    with pytest.raises(DataError) as excinfo:
        load_image(str(path), (4, 4, 1))
    assert str(excinfo.value) == (f"image {path} cannot be used: 32-bit mode F is not "
                                  "supported, save it as 8-bit PNG")


def test_a_split_binarised_alone_is_the_draw_make_splits_gives_it():
    """evaluate.py --images binarises other images as the run's own test split was."""
    images = np.random.default_rng(0).integers(0, 256, (12, 4, 4, 1), np.uint8)
    data, key = from_arrays(images[:8], images[8:]), jax.random.key(3)
    drawn = make_splits(data, key, binarize="static", val_size=2)
    plain = make_splits(data, key, val_size=2)
    for which in ("train", "val", "test"):
        alone = splits.binarized(getattr(plain, which), key, which)
        assert alone.binarized
        np.testing.assert_array_equal(alone.images, getattr(drawn, which).images)
    assert not np.array_equal(drawn.train.images[:4], drawn.test.images)  # streams differ
    grey = np.full((12, 4, 4, 1), 128, np.uint8)  # three splits of 4 alike: only keys differ
    alike = make_splits(from_arrays(grey[:8], grey[8:]), key, binarize="static", val_size=4)
    assert len({alike.train.images.tobytes(), alike.val.images.tobytes(),
                alike.test.images.tobytes()}) == 3
