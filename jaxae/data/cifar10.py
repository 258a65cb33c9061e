"""TFDS builder `jaxae_cifar10`: CIFAR-10 as raw uint8 arrays in array_record files, no TensorFlow.

`--config.data.name=cifar10`. Online it downloads the canonical python-pickle archive (size
and sha256 registered, so TFDS verifies them); offline it reads a manual folder holding
`cifar-10-python.tar.gz` or the extracted `cifar-10-batches-py/` (the binary versions,
`cifar-10-binary.tar.gz` or `cifar-10-batches-bin/`, which TFDS's own `cifar10` builder uses,
are accepted too).

TFDS's own `cifar10` builder cannot be used without TensorFlow: its extraction
(`dl_manager.download_and_extract`), file reads (`tf.io.gfile`) and PNG encoding
(`tf.image.encode_png`) all import TensorFlow. Here the archive is downloaded with
`dl_manager.download` only (plain `requests`) and read with Python's `tarfile`.

Offline: put cifar-10-python.tar.gz (or cifar-10-batches-py/) in a folder and pass it as
--config.data.data_dir (or $JAXAE_CIFAR10_DIR); it is prepared once into the TFDS data dir.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from numpy._core.multiarray import _reconstruct, scalar  # numpy 2 (pyproject's floor)

from jaxae.data.dataset import Dataset, from_prepared, reads_paths
from jaxae.data.errors import DataError
from jaxae.data.images import ImageOptions
from jaxae.data.records import (
    JaxaeBuilder,
    PreparedSplit,
    Sha256Reader,
    array_examples,
    bytes_entry,
    files_entries,
    is_prepared,
    manual_dir_or_none,
    prepare,
    raw_image_info,
    read_source_record,
    sha256_file,
    sha256_json,
    write_source_record,
)
from jaxae.data.sources import host_reachable
from jaxae.messages import first_line

SPLITS = ("train", "test")

HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# The canonical python-pickle archive. Its size is the one published on HOMEPAGE; the sha256
# is the one Keras (keras.datasets.cifar10) pins for the same URL. TFDS's own `cifar10` builder
# does NOT register this file: it downloads the binary archive below.
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/" + ARCHIVE_NAME
ARCHIVE_SIZE = 170498071
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
# The binary archive, as TFDS registers it (tensorflow_datasets/url_checksums/cifar10.txt);
# only read from a manual folder here, never downloaded.
BINARY_ARCHIVE_NAME = "cifar-10-binary.tar.gz"
BINARY_ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/" + BINARY_ARCHIVE_NAME
BINARY_ARCHIVE_SIZE = 170052171
BINARY_ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3
PY_DIR = "cifar-10-batches-py"
BIN_DIR = "cifar-10-batches-bin"
# {split: batch files} of each format, and the file naming the classes.
PY_SPLIT_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
BIN_SPLIT_FILES = {s: tuple(f + ".bin" for f in fs) for s, fs in PY_SPLIT_FILES.items()}
PY_META = "batches.meta"
BIN_META = "batches.meta.txt"
ENV_VAR = "JAXAE_CIFAR10_DIR"
FIX_HINT = f"re-download {ARCHIVE_NAME} from {ARCHIVE_URL}"
GZIP_MAGIC = b"\x1f\x8b"
MAX_MEMBER_BYTES = 64 * 2**20  # a member is read whole: a batch is about 31 MB in either format
# The only globals a CIFAR-10 batch pickle refers to (numpy arrays, python-3 protocol-2 bytes).
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


@dataclasses.dataclass(frozen=True)
class Cifar10Format:
    """One of CIFAR-10's two distributions (pickled "python" batches, or "binary" records):
    its archive, the folder in it, its files, and how they are read."""

    name: str
    archive_name: str
    folder: str
    meta: str
    split_files: dict[str, tuple[str, ...]]
    parse_batch: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]
    parse_class_names: Callable[[bytes, str], tuple[str, ...]]

    def names(self) -> tuple[str, ...]:
        """Return the member names needed: the meta file, then the batches in split order."""
        return (self.meta, *(f for s in SPLITS for f in self.split_files[s]))


@dataclasses.dataclass(frozen=True)
class Cifar10Files:
    """Where CIFAR-10 was found, in which `format`; `archive` whether `path` is a .tar.gz
    (else the folder of batch files)."""

    path: str
    format: Cifar10Format
    archive: bool

    def names(self) -> tuple[str, ...]:
        """Return the member names needed: the meta file, then the batches in split order."""
        return self.format.names()


@dataclasses.dataclass(frozen=True, eq=False)
class Cifar10Data:
    """Validated CIFAR-10 arrays: {split: (uint8 images [N,32,32,3], int64 labels [N])}.

    `fingerprint` identifies the source files; `content_sha256` the arrays themselves, so the
    archive, its extracted folder and the binary version of the same data agree on it.
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: tuple[str, ...]
    fingerprint: str
    content_sha256: str
    description: str


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that refuses any global a CIFAR-10 batch does not use (pickles can run code)."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed numpy / codecs global, or raise UnpicklingError."""
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refers to {module}.{name}, which no CIFAR-10 batch does (not loaded)"
            ) from None


def _unpickle(data: bytes, where: str) -> Any:
    """Unpickle a python-format batch with encoding='bytes'; failures become DataError."""
    try:
        return _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # pickle raises many types on damaged input
        raise DataError(
            f"CIFAR-10 file {where} is corrupt or truncated, or not a pickle "
            f"({type(e).__name__}: {e}): {FIX_HINT}"
        ) from None


def _chw_to_hwc(rows: np.ndarray) -> np.ndarray:
    """Turn uint8 rows [N, 3072] in CIFAR's channel-major (R plane, G, B) order into [N,32,32,3]."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def parse_python_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one python-format batch into (uint8 images [N,32,32,3], int64 labels [N])."""
    batch = _unpickle(data, where)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        hint = " (b'fine_labels': that is CIFAR-100)" if isinstance(batch, dict) and (
            b"fine_labels" in batch) else ""
        raise DataError(
            f"CIFAR-10 file {where} is not a CIFAR-10 batch: it holds {keys}{hint}, expected a "
            f"dict with b'data' and b'labels': {FIX_HINT}"
        )
    rows, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or (
            rows.shape[1] != PIXELS):
        what = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise DataError(
            f"CIFAR-10 file {where} has b'data' of {what}, expected uint8 [N, {PIXELS}] "
            f"(32x32x3 images): {FIX_HINT}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(
            f"CIFAR-10 file {where} has unreadable b'labels' ({e}): {FIX_HINT}"
        ) from None
    return _check_labels(where, _chw_to_hwc(rows), labels)


def parse_binary_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one binary-format batch (records of 1 label byte + 3072 pixel bytes)."""
    if len(data) % (PIXELS + 1):
        raise DataError(
            f"CIFAR-10 file {where} is truncated ({len(data)} bytes is not a whole number of "
            f"{PIXELS + 1}-byte records): {FIX_HINT}"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, PIXELS + 1)
    return _check_labels(where, _chw_to_hwc(records[:, 1:]), records[:, 0].astype(np.int64))


def _check_labels(
    where: str, images: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Check there is one label in 0..9 per image, and at least one image."""
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"CIFAR-10 file {where} has {images.shape[0]} images but {labels.shape[0]} labels: "
            f"it is truncated or damaged, {FIX_HINT}"
        )
    if images.shape[0] == 0:
        raise DataError(f"CIFAR-10 file {where} holds no images: {FIX_HINT}")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataError(
            f"CIFAR-10 file {where} has labels outside 0..9 ({labels.min()}..{labels.max()}): "
            f"it is not CIFAR-10, {FIX_HINT}"
        )
    return images, labels


def _python_class_names(data: bytes, where: str) -> tuple[str, ...]:
    """The class names pickled in `batches.meta`."""
    meta = _unpickle(data, where)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names):
        raise DataError(
            f"CIFAR-10 file {where} has no b'label_names' list of class names: {FIX_HINT}"
        )
    return tuple(n.decode("ascii", "replace") for n in names)


def _binary_class_names(data: bytes, where: str) -> tuple[str, ...]:
    """The class names in `batches.meta.txt`, one a line."""
    return tuple(line.strip() for line in data.decode("ascii", "replace").splitlines()
                 if line.strip())


PYTHON = Cifar10Format("python", ARCHIVE_NAME, PY_DIR, PY_META, PY_SPLIT_FILES,
                       parse_python_batch, _python_class_names)
BINARY = Cifar10Format("binary", BINARY_ARCHIVE_NAME, BIN_DIR, BIN_META, BIN_SPLIT_FILES,
                       parse_binary_batch, _binary_class_names)
FORMATS = (PYTHON, BINARY)  # the python one first: TFDS's download, and where both are found


def parse_meta(data: bytes, fmt: Cifar10Format, where: str) -> tuple[str, ...]:
    """Return the class names in the format's meta file, which must be CIFAR-10's."""
    found = fmt.parse_class_names(data, where)
    if found != CLASS_NAMES:
        raise DataError(
            f"CIFAR-10 file {where} names the classes {list(found)}, not CIFAR-10's "
            f"{list(CLASS_NAMES)}: it is another data set, {FIX_HINT}"
        )
    return found


def find_cifar10(path: str | os.PathLike[str]) -> Cifar10Files:
    """Locate CIFAR-10 in `path`: an archive file, a batches folder, or a folder holding either.

    Preference in a folder: cifar-10-python.tar.gz, cifar-10-batches-py/, cifar-10-binary.tar.gz,
    cifar-10-batches-bin/, then the folder itself as a batches folder.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return Cifar10Files(path, _archive_format(path), archive=True)
    if not os.path.isdir(path):
        raise DataError(
            f"CIFAR-10 folder {path} does not exist: point it at a folder holding {ARCHIVE_NAME} "
            f"or {PY_DIR}/ (download it from {ARCHIVE_URL})"
        )
    for fmt in FORMATS:
        for name, archive in ((fmt.archive_name, True), (fmt.folder, False)):
            full = os.path.join(path, name)
            if (os.path.isfile if archive else os.path.isdir)(full):
                return Cifar10Files(full, fmt, archive)
    for fmt in FORMATS:
        if any(os.path.isfile(os.path.join(path, n)) for n in fmt.names()):
            return Cifar10Files(path, fmt, archive=False)
    raise DataError(
        f"CIFAR-10 folder {path} holds neither {ARCHIVE_NAME} nor {PY_DIR}/ (nor "
        f"{BINARY_ARCHIVE_NAME} / {BIN_DIR}/): put one of them there (download {ARCHIVE_URL})"
    )


def _archive_format(path: str) -> Cifar10Format:
    """A CIFAR-10 archive's format, from its name (else python): `_read_archive` settles it
    by the folder inside."""
    return BINARY if "binary" in os.path.basename(path) else PYTHON


def _read_archive(files: Cifar10Files) -> tuple[Cifar10Format, dict[str, bytes], str]:
    """Return (format, {member base name: bytes}, fingerprint) of the needed members of the
    .tar.gz, in one pass: the archive is hashed as it is read.

    The format is settled by the member folder found (cifar-10-batches-py/ or -bin/), so TFDS's
    hashed download names do not matter.
    """
    wanted = {fmt.folder: set(fmt.names()) for fmt in FORMATS}
    found: dict[str, dict[str, bytes]] = {fmt.folder: {} for fmt in FORMATS}
    try:
        with open(files.path, "rb") as f:
            if f.read(2) != GZIP_MAGIC:
                raise DataError(
                    f"CIFAR-10 archive {files.path} is not a gzip file: {FIX_HINT}"
                )
            f.seek(0)
            archive = Sha256Reader(f)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                for member in tar:
                    folder, _, base = member.name.lstrip("./").rpartition("/")
                    folder = folder.rpartition("/")[2]
                    if member.isfile() and base in wanted.get(folder, ()):
                        if member.size > MAX_MEMBER_BYTES:  # read whole, it filled the memory
                            raise DataError(
                                f"CIFAR-10 archive {files.path} holds {member.name} of "
                                f"{member.size:,} bytes, where a batch is about 31 MB: it is "
                                f"no CIFAR-10 archive, {FIX_HINT}")
                        found[folder][base] = tar.extractfile(member).read()
            fingerprint = "sha256:" + archive.hexdigest()
    except DataError:
        raise
    except (OSError, EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"CIFAR-10 archive {files.path} is corrupt or truncated ({type(e).__name__}: {e}): "
            f"{FIX_HINT}"
        ) from None
    fmt = next((f for f in FORMATS if found[f.folder]), PYTHON)
    folder, members = fmt.folder, found[fmt.folder]
    missing = [n for n in fmt.names() if n not in members]
    if missing:
        raise DataError(
            f"CIFAR-10 archive {files.path} lacks {', '.join(f'{folder}/{n}' for n in missing)}: "
            f"it is truncated or not the CIFAR-10 archive, {FIX_HINT}"
        )
    return fmt, members, fingerprint


def _read_folder(files: Cifar10Files) -> tuple[dict[str, bytes], str]:
    """Return ({file name: bytes}, fingerprint) of the meta file and the six batches of a
    batches folder, each file read once."""
    names = files.names()
    missing = [n for n in names if not os.path.isfile(os.path.join(files.path, n))]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {files.path} is missing {', '.join(missing)}: copy the whole "
            f"{files.format.folder}/ folder there, or {FIX_HINT}"
        )
    out = {}
    for n in names:
        with open(os.path.join(files.path, n), "rb") as f:
            out[n] = f.read()
    return out, _folder_fingerprint([bytes_entry(n, out[n]) for n in sorted(out)])


def _folder_fingerprint(entries: list[list]) -> str:
    """A batches folder's fingerprint from its files' sorted [name, size, sha256]."""
    return "files-sha256:" + sha256_json(entries)


def fingerprint_of(files: Cifar10Files) -> str:
    """Return 'sha256:<hex>' of an archive, or 'files-sha256:<hex>' over a batches folder's files
    (sorted names, sizes and sha256 of the meta file and six batches), hashing them only."""
    if files.archive:
        return "sha256:" + sha256_file(files.path)
    return _folder_fingerprint(files_entries(files.path, files.names()))


def read_cifar10(
    path: str | os.PathLike[str], *, fingerprint: str | None = None
) -> Cifar10Data:
    """Read and validate CIFAR-10 from `path` (see `find_cifar10`) into uint8 arrays.

    The files are hashed as they are read; `fingerprint`, when already known (TFDS verified
    the download), is recorded instead.
    """
    files = find_cifar10(path)
    if files.archive:
        fmt, members, read_fingerprint = _read_archive(files)
    else:
        fmt, (members, read_fingerprint) = files.format, _read_folder(files)

    def where(name: str) -> str:
        return f"{files.path}:{name}" if files.archive else os.path.join(files.path, name)

    class_names = parse_meta(members[fmt.meta], fmt, where(fmt.meta))
    splits = {}
    for split in SPLITS:
        parts = [fmt.parse_batch(members[n], where(n)) for n in fmt.split_files[split]]
        splits[split] = (np.concatenate([p[0] for p in parts]),
                         np.concatenate([p[1] for p in parts]))
    fingerprint = fingerprint or read_fingerprint
    canonical = {ARCHIVE_SHA256: ARCHIVE_NAME, BINARY_ARCHIVE_SHA256: BINARY_ARCHIVE_NAME}
    if files.archive:
        sha = fingerprint.removeprefix("sha256:")
        check = (f"the published {canonical[sha]}" if sha in canonical
                 else "NOT the published archive's sha256")
        what = f"{fmt.name} archive {files.path} ({check})"
    else:
        what = f"{fmt.name} batches folder {files.path}"
    counts = " / ".join(f"{len(splits[s][0])} {s}" for s in SPLITS)
    return Cifar10Data(splits, class_names, fingerprint, content_sha256(splits),
                       f"CIFAR-10 {counts} from {what}")


def content_sha256(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Return sha256 over every split's images (uint8 HWC) and labels (int64), in split order."""
    digest = hashlib.sha256()
    for split in SPLITS:
        images, labels = splits[split]
        digest.update(np.ascontiguousarray(images, np.uint8).tobytes())
        digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return digest.hexdigest()


class JaxaeCifar10(JaxaeBuilder):
    """CIFAR-10 from the canonical python-pickle archive, downloaded or taken from manual_dir."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw uint8 32x32x3 images, array_record storage, no TensorFlow."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put {ARCHIVE_NAME} (from {ARCHIVE_URL}) or its extracted {PY_DIR}/ folder in "
        f"manual_dir ({BINARY_ARCHIVE_NAME} or {BIN_DIR}/ work too)."
    )
    url_infos = {
        ARCHIVE_URL: tfds.download.checksums.UrlInfo(
            size=tfds.core.units.Size(ARCHIVE_SIZE), checksum=ARCHIVE_SHA256, filename=ARCHIVE_NAME
        )
    }
    # The manual_dir's data when the caller has already read (and so checked) it: preparing
    # then does not read the files again.
    manual_data: Cifar10Data | None = None

    def _info(self) -> tfds.core.DatasetInfo:
        """A raw 32x32x3 uint8 image (stored as bytes) and its class label; record i is image i
        of the batches in order (data_batch_1..5, test_batch). metadata.json records the source
        files' fingerprint."""
        return raw_image_info(
            self, IMAGE_SHAPE, CLASS_NAMES, homepage=HOMEPAGE,
            description="CIFAR-10: 60,000 32x32 colour images in 10 classes, 50,000 train / "
                        "10,000 test, as raw uint8 bytes.")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        """Read the manual_dir when set, else download (TFDS checks size and sha256)."""
        manual_dir = manual_dir_or_none(dl_manager)
        if manual_dir is not None:
            data = self.manual_data or read_cifar10(manual_dir)
        else:
            path = dl_manager.download(ARCHIVE_URL)
            verified = self.url_infos[ARCHIVE_URL].checksum  # TFDS checked the download
            data = read_cifar10(path, fingerprint="sha256:" + verified)
        write_source_record(self, fingerprint=data.fingerprint, source=data.description,
                            content_sha256=data.content_sha256)
        return {split: self._generate_examples(*data.splits[split]) for split in SPLITS}

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (index, {image, label}) for every example of one split, in file order."""
        return array_examples(images, labels)


def _check_same_data(builder: JaxaeCifar10, files: Cifar10Files, record: dict) -> None:
    """Raise DataError when `files` hold other images or labels than the set prepared with
    source record `record`.

    Same source fingerprint: done (hashing only). Otherwise the files are read and their
    content hash compared, so a re-packed copy of the same data is accepted.
    """
    if fingerprint_of(files) == record.get("fingerprint"):
        return
    if read_cifar10(files.path).content_sha256 == record.get("content_sha256"):
        return
    raise DataError(
        f"CIFAR-10 prepared in {builder.data_path} was made from "
        f"{record.get('source', 'files that were not recorded')}, not from {files.path}, whose "
        f"images or labels differ: delete {builder.data_path} to prepare it again from these "
        "files, or pass another --config.data.tfds_dir"
    )


@reads_paths(data_dir="file or folder")  # its archive, or a folder holding it
def load_cifar10(
    *, data_dir: str | None = None, tfds_dir: str | None = None, image_size: int | None = None,
    channels: int | None = None, streaming: str = "memory",
    memory_budget_mb: float | None = None, download: bool = True,
) -> Dataset:
    """CIFAR-10 as uint8 images [N, 32, 32, 3] (or the size and channels asked for).

    Uses the set already prepared in `tfds_dir` (None: TFDS's default dir); otherwise
    prepares it from `data_dir` (or $JAXAE_CIFAR10_DIR), a folder holding the canonical files;
    otherwise downloads the canonical archive (when `download`). A `data_dir` whose images or
    labels differ from those the prepared set was made from raises DataError (the same data
    packed otherwise is fine). `streaming`, `memory_budget_mb`: see
    `jaxae.data.dataset.should_stream`.
    """
    manual_dir = data_dir or os.environ.get(ENV_VAR) or None
    options = ImageOptions(image_size, channels)
    builder = JaxaeCifar10(data_dir=tfds_dir)
    if manual_dir is not None:
        files = find_cifar10(manual_dir)  # DataError when absent or unrecognised
    where = os.fspath(builder.data_path)
    prepared_now = False
    if not is_prepared(where):
        if manual_dir is not None:  # files are validated before TFDS writes anything
            builder.manual_data = read_cifar10(files.path)
            try:
                prepared_now = prepare(builder, "CIFAR-10", manual_dir)
            finally:
                builder.manual_data = None
            how = f"prepared from {manual_dir}"
        else:
            prepared_now = _download(builder, download)
            how = f"downloaded from {ARCHIVE_URL}"
    record = read_source_record(where)
    if not prepared_now:  # earlier, or by another process while this one waited for it
        if manual_dir is not None:
            _check_same_data(builder, files, record)
        how = "prepared earlier"
    splits = [PreparedSplit(where, split, options=options, builder=builder) for split in SPLITS]
    change = options.describe(splits[0].stored_shape)
    return from_prepared(
        *splits, name="cifar10", title="CIFAR-10", class_names=CLASS_NAMES,
        source=f"TFDS {JaxaeCifar10.name}:{builder.version} in {where} ({how}; "
        f"{record.get('source', 'source not recorded')})" + (f", {change}" if change else ""),
        fingerprint=str(record.get("fingerprint", "unrecorded")),
        content_sha256=str(record.get("content_sha256") or ""), streaming=streaming,
        memory_budget_mb=memory_budget_mb)


def _download(builder: JaxaeCifar10, download: bool) -> bool:
    """Let TFDS download the canonical archive (size and sha256 checked) and prepare it;
    False when another process prepared it meanwhile (`records.prepare`)."""
    if not download or not host_reachable(ARCHIVE_URL):
        reason = "downloads are off" if not download else "www.cs.toronto.edu is unreachable"
        raise DataError(
            f"CIFAR-10 is not prepared in {builder.data_path} and {reason}: download "
            f"{ARCHIVE_URL} and pass the folder holding it as --config.data.data_dir (or "
            f"${ENV_VAR})"
        )
    try:
        return prepare(builder, "CIFAR-10")
    except DataError:
        raise
    except Exception as e:  # any TFDS or network failure (checksum mismatch included)
        raise DataError(
            f"TFDS could not download CIFAR-10 from {ARCHIVE_URL} ({type(e).__name__}: "
            f"{first_line(e)}): retry, or download it yourself and pass its folder as "
            f"--config.data.data_dir"
        ) from e
