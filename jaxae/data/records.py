"""Prepared data sets on disk: what they were made from, their integrity, and reading them.

Every source but `.npz` is prepared once into a TFDS data dir as array_record files. Our own
builders (MNIST, CIFAR-10, image folders) write `jaxae_source.json` into the prepared folder
while TFDS prepares it (so it appears with the data or not at all): the source's fingerprint,
a hash of the arrays, and the source in words. A prepared split is opened as a
`PreparedSplit` (its shard files checked against the counts TFDS recorded) and read either
whole, in chunks, or on demand through a `RecordArray`: uint8 images [N, H, W, C] (or int32
labels [N]) that are read from disk only when indexed, which is how a training split larger
than the memory budget is streamed (`jaxae.data.streaming`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from jaxae.data.errors import DataError, MixedImageSizes
from jaxae.data.images import ImageOptions
from jaxae.messages import causes, first_line

FILE_FORMAT = "array_record"
SOURCE_FILE = "jaxae_source.json"  # written by our builders into the prepared folder
READ_CHUNK = 512  # records decoded at once when a split is read into memory; larger chunks
# leave more transient memory behind with the allocator
HASH_CHUNK = 1 << 20
RUN_READER_OPTIONS = "readahead_buffer_size:4194304"  # a reader of consecutive records


def array_examples(images: np.ndarray, labels: np.ndarray
                   ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, {image, label}) for every example of one split, in order: what the
    `_generate_examples` of a raw-image builder (`raw_image_info`) yields."""
    for i in range(images.shape[0]):
        yield i, {"image": images[i], "label": int(labels[i])}


class LocalDatasetInfo(tfds.core.DatasetInfo):
    """The DatasetInfo of a set only this machine prepares: never looked for in TFDS's bucket
    (TFDS's own lookup, made for every builder of a set not yet prepared, leaves an empty
    temporary folder behind each time)."""

    def initialize_from_bucket(self) -> None:
        return None


def raw_image_info(builder: tfds.core.DatasetBuilder, image_shape: Sequence[int],
                   class_names: Sequence[str], **info: Any) -> tfds.core.DatasetInfo:
    """The DatasetInfo of jaxae's own builders: a raw uint8 image of `image_shape` stored as
    bytes (read back without decoding, `PreparedSplit`) and its class label. Shuffling is
    disabled, so record i is example i of the source. `info`: description, homepage, ..."""
    return LocalDatasetInfo(
        builder=builder,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=tuple(image_shape), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=list(class_names)),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        **info,
    )


class Sha256Reader:
    """A binary file read from start to end that hashes (sha256) what is read from it, so
    that one pass both reads and fingerprints it."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        """The hex sha256 of the whole file: what was not read yet is read first."""
        while self.read(HASH_CHUNK):
            pass
        return self._digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's contents."""
    with open(path, "rb") as f:
        return Sha256Reader(f).hexdigest()


def sha256_json(value: Any) -> str:
    """The hex sha256 of `value` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def bytes_entry(name: str, data: bytes) -> list:
    """[name, size, sha256] of a file already read, as `files_entries` lists it."""
    return [name, len(data), hashlib.sha256(data).hexdigest()]


def files_entries(root: str, relpaths: Iterable[str], every_s: float | None = None
                  ) -> list[list]:
    """[relative path, size, sha256] of each file, sorted by path; with `every_s`, a line
    "hashed N of M files" every `every_s` seconds (`logged_progress`), terminal or not."""
    entries = []
    ordered = sorted(relpaths)
    for rel in ordered if every_s is None else logged_progress(
            ordered, "files", every_s, verb="hashed", on_terminal=True):
        path = os.path.join(root, rel)
        entries.append([rel.replace(os.sep, "/"), os.path.getsize(path), sha256_file(path)])
    return entries


def arrays_sha256(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def read_only(array: np.ndarray) -> np.ndarray:
    """Mark `array` read-only, so a shared Dataset cannot be changed by accident."""
    array.setflags(write=False)
    return array


# --- preparing ---------------------------------------------------------------------------------


def manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> str | None:
    """The manual_dir when the user gave one that exists, else None (then: download)."""
    try:
        manual_dir = dl_manager.manual_dir
    except AssertionError:
        return None
    if manual_dir is None or not manual_dir.exists():
        return None
    return os.fspath(manual_dir)


def is_prepared(path: str | os.PathLike[str]) -> bool:
    """Whether a prepared data set (its dataset_info.json) is in `path`."""
    return os.path.isfile(os.path.join(path, "dataset_info.json"))


def write_source_record(builder: tfds.core.DatasetBuilder, **fields: Any) -> None:
    """Write SOURCE_FILE into the folder TFDS is preparing (its temporary folder, renamed to
    the final one with the data), from a builder's `_split_generators`."""
    with open(os.path.join(os.fspath(builder.data_dir), SOURCE_FILE), "w") as f:
        json.dump(fields, f, indent=1, sort_keys=True)


def read_source_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The SOURCE_FILE of a prepared folder, or {} when it has none (an older jaxae's)."""
    try:
        with open(os.path.join(path, SOURCE_FILE)) as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DataError(f"prepared data set {path} has an unreadable {SOURCE_FILE} ({e}): "
                        "delete that folder so it is prepared again") from None


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(data_path: str | os.PathLike[str], what: str) -> None:
    """Raise DataError when the folder a data set would be prepared into cannot be written
    (read-only mount, permissions), before anything is downloaded or decoded."""
    for _ in range(3):  # a folder another process removed meanwhile: its parent, again
        probe_dir = _existing_ancestor(os.fspath(data_path))
        try:
            fd, probe = tempfile.mkstemp(prefix=".jaxae_write_test.", dir=probe_dir)
            os.close(fd)
            os.remove(probe)
            return
        except FileNotFoundError:
            continue
        except OSError as e:
            error = e
            break
    else:
        return  # it kept vanishing: the preparation's own writes will say what fails
    raise DataError(
        f"{what} is not prepared yet and the TFDS data dir cannot be written ({probe_dir}: "
        f"{error.strerror}): pass a writable --config.data.tfds_dir (or set $TFDS_DATA_DIR)")


PREPARE_LOCK = ".jaxae_prepare.lock"  # beside the version folders of a prepared set


class JaxaeBuilder(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder of jaxae's own (MNIST, CIFAR-10, image folders), which only jaxae
    prepares: `prepare` removes what a preparation of it killed part-way left, and says what
    it prepares from where, in place of TFDS's "Downloading and preparing dataset Unknown
    size" (a local source is not downloaded, and the sizes are known only once written)."""

    def _log_download_bytes(self) -> None:
        """Nothing: `prepare` says it."""

    def _log_download_done(self) -> None:
        """Nothing: `prepare` says it."""


def prepare(builder: tfds.core.DatasetBuilder, what: str, manual_dir: str | None = None
            ) -> bool:
    """Prepare `builder` as array_record files (from `manual_dir` when given); an unwritable
    data dir is one line. Processes preparing the same set at once take turns under a file
    lock: the first prepares it, the others find it prepared (TFDS alone would fail them on
    its rename). For a JaxaeBuilder, the incomplete.* folders a preparation killed part-way
    left are removed first, under the lock. Returns whether this call prepared it (False:
    another process did meanwhile)."""
    check_writable(builder.data_path, what)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    where = os.fspath(builder.data_path)
    own = isinstance(builder, JaxaeBuilder)
    try:
        with _preparing(where, what):
            if is_prepared(where):  # another process did, while this one waited
                return False
            if own:
                _remove_unfinished(where)
                source = f"from {manual_dir} " if manual_dir else ""
                print(f"preparing {what} {source}into {where} (once: later runs read it there)",
                      flush=True)
            start = time.perf_counter()
            with _tfds_bars(sys.stderr.isatty()):
                builder.download_and_prepare(download_config=config, file_format=FILE_FORMAT)
            if own:
                print(f"prepared {what} in {time.perf_counter() - start:.1f} s", flush=True)
            return True
    except PermissionError as e:
        raise DataError(f"{what} cannot be written into {builder.data_path} ({e.strerror}): "
                        "pass a writable --config.data.tfds_dir") from None
    except (OSError, RuntimeError) as e:  # array_record's writer raises RuntimeError
        if not _is_disk_full(e):
            raise
        raise DataError(f"{what} could not be prepared into {builder.data_path}: no space left "
                        "on the device (or in the quota): free space there, or pass "
                        "--config.data.tfds_dir on a disk with room, and rerun") from None


def _is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` (or one it was raised from) is a full disk's or a spent quota's:
    ENOSPC or EDQUOT, or a writer's message of them."""
    return any(getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
        words in str(cause) for words in ("No space left on device", "Disk quota exceeded"))
        for cause in causes(error))


LOG_EVERY_S = 30.0  # a preparation's progress line where no progress bar is shown


def logged_progress(items: Sequence[Any], what: str, every_s: float | None = None,
                    verb: str = "prepared", on_terminal: bool = False) -> Iterator[Any]:
    """The items, with a line "<verb> N of M <what> (P%, R a second)" every `every_s`
    seconds (default LOG_EVERY_S) where standard error is no terminal (TFDS's bars are
    hidden there, `_tfds_bars`: a folder of many photographs takes minutes), and also on
    one with `on_terminal` (work that shows no bar of its own)."""
    every_s = LOG_EVERY_S if every_s is None else every_s
    logged = on_terminal or not sys.stderr.isatty()
    start = last = time.perf_counter()
    for done, item in enumerate(items, 1):
        yield item
        now = time.perf_counter()
        if logged and now - last >= every_s and done < len(items):
            last = now
            print(f"{verb} {done:,} of {len(items):,} {what} ({done / len(items):.0%}, "
                  f"{done / (now - start):,.0f} a second)", flush=True)


@contextlib.contextmanager
def _tfds_bars(shown: bool):
    """TFDS's own progress bars shown or not for the duration (not where the output is a log
    file: their carriage returns fill it with partial lines), then as they were."""
    from tensorflow_datasets.core.utils import tqdm_utils

    was = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(shown)
    try:
        yield
    finally:
        tfds.display_progress_bar(was)


def _remove_unfinished(where: str) -> None:
    """Removes TFDS's incomplete.* folders beside `where`: what a preparation killed
    part-way left."""
    parent = os.path.dirname(where.rstrip(os.sep))
    for name in os.listdir(parent):
        if name.startswith("incomplete.") and os.path.isdir(os.path.join(parent, name)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


@contextlib.contextmanager
def _preparing(where: str, what: str) -> Iterator[None]:
    """Holds an exclusive lock (a POSIX file lock, on a file any user of a shared data dir
    can open) beside the prepared set's folder while it is prepared; says so when it waits.
    A preparation that leaves nothing there but the lock (it failed before TFDS wrote: a
    corrupt image, an interrupt) removes the lock and its folder as it lets go."""
    parent = os.path.dirname(where.rstrip(os.sep))
    path = os.path.join(parent, PREPARE_LOCK)
    fd = _locked(path, what)
    try:
        yield
    finally:
        try:
            if os.listdir(parent) == [PREPARE_LOCK]:
                os.remove(path)  # a process waiting on it opens the lock again (`_locked`)
                os.rmdir(parent)
        except OSError:
            pass  # left as it is: the next preparation uses it
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _locked(path: str, what: str) -> int:
    """A descriptor of the lock file `path`, created with its folder if missing, held
    exclusively; opened again when the file was removed or replaced while this waited."""
    while True:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:  # /proc, a read-only mount, a file on the way
            raise DataError(f"cannot make the folder {os.path.dirname(path)} for {what} "
                            f"({e.strerror}): pass a writable --config.data.tfds_dir (or set "
                            "$TFDS_DATA_DIR)") from None
        try:  # its folder may be removed between the two calls (`_preparing`)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another process preparing {what} ({path})", flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(path)
        except FileNotFoundError:
            os.close(fd)  # removed as this waited: open the one there now
            continue
        except OSError as e:
            os.close(fd)
            raise DataError(f"cannot lock {path} ({e.strerror}): pass a "
                            "--config.data.tfds_dir on a file system with file locks") from None
        held = os.fstat(fd)
        if (held.st_ino, held.st_dev) == (current.st_ino, current.st_dev):
            return fd
        os.close(fd)  # replaced as this waited


# --- reading -----------------------------------------------------------------------------------


def damaged_error(where: str, detail: str) -> DataError:
    """The one-line error for a prepared folder whose files are damaged."""
    return DataError(f"prepared data set {where} is damaged ({detail}): delete that folder so it "
                     "is prepared again")


def _first_clause(error: BaseException) -> str:
    """The start of an error's message: its first line, up to the first ';'."""
    return first_line(error).split(";")[0][:160]


class Source(Protocol):
    """Examples by record key: what a RecordArray reads from."""

    image_shape: tuple[int, int, int]
    where: str

    def __len__(self) -> int: ...

    def read(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _raw_decoder(stored: tuple[int, ...], image_key: str, label_key: str | None, where: str
                 ) -> Callable[[Sequence[bytes]], tuple[np.ndarray, np.ndarray]]:
    """Decoder of records that hold raw image bytes (our builders' kind) and an integer label
    (zeros where `label_key` is None)."""
    shape = tuple(stored) if len(stored) == 3 else (*stored, 1)
    per_image = int(np.prod(shape))

    def decode(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        try:
            features = [tf_example_pb2.Example.FromString(r).features.feature for r in records]
            pixels = b"".join(f[image_key].bytes_list.value[0] for f in features)
            labels = np.fromiter((f[label_key].int64_list.value[0] if label_key else 0
                                  for f in features), np.int64, count=len(features))
        except Exception as e:  # noqa: BLE001 (protobuf raises several types on bad bytes)
            raise damaged_error(where, f"a record cannot be decoded: {type(e).__name__}") from None
        if len(pixels) != len(features) * per_image:
            raise damaged_error(where, f"its records do not hold {shape} images")
        images = np.frombuffer(pixels, dtype=np.uint8).reshape(len(features), *shape)
        return images, labels.astype(np.int32)

    return decode


def _tfds_decoder(features: tfds.features.FeaturesDict, image_key: str, label_key: str | None,
                  options: ImageOptions, where: str
                  ) -> Callable[[Sequence[bytes]], tuple[np.ndarray, np.ndarray]]:
    """Decoder of any TFDS builder's records (PNG / JPEG images decoded without TensorFlow);
    images of several sizes are fitted to options (`ImageOptions.apply`) one by one."""

    def decode(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        try:
            examples = [features.deserialize_example_np(r) for r in records]
        except Exception as e:  # noqa: BLE001
            raise damaged_error(
                where, f"a record cannot be decoded: {type(e).__name__}: {e}") from None
        images = []
        for example in examples:
            image = np.asarray(example[image_key], np.uint8)
            if image.ndim == 2:
                image = image[..., None]
            if options.image_size is not None:  # each as `read` would: channels, then size
                image = options.apply(image[None])[0]
            images.append(image)
        if len({image.shape for image in images}) > 1:
            raise MixedImageSizes(f"images of {where} differ in size")
        labels = np.array([int(e[label_key]) for e in examples] if label_key else
                          np.zeros(len(examples)), np.int32)
        stacked = np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
        return stacked, labels

    return decode


class PreparedSplit:
    """One split of a prepared array_record data set, read by record key, with the image
    options applied after decoding. Thread-safe; the shard files are checked on opening."""

    def __init__(self, path: str, split: str, *, options: ImageOptions | None = None,
                 builder: tfds.core.DatasetBuilder | None = None,
                 image_key: str = "image", label_key: str | None = "label"):
        options = options or ImageOptions()
        self.path, self.split, self.options = os.fspath(path), split, options
        self.where = f"{self.path} [{split}]"
        try:
            builder = builder or tfds.builder_from_directory(self.path)
            info = builder.info
            if not info.splits and is_prepared(self.path):  # prepared by another process
                info = tfds.builder_from_directory(self.path).info  # after `builder` was made
            instructions = info.splits[split].file_instructions
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 (a damaged dataset_info.json, features.json...)
            raise damaged_error(self.path, f"{type(e).__name__}: {first_line(e)}") from None
        file_format = getattr(info.file_format, "value", info.file_format)
        if file_format != FILE_FORMAT:
            raise DataError(f"prepared data set {self.path} is stored as {file_format}, which "
                            "jaxae does not read (only TensorFlow does): delete that folder so "
                            f"it is prepared again as {FILE_FORMAT}")
        self._check_shards(instructions)
        feature = info.features[image_key]
        stored = tuple(feature.shape)
        raw = isinstance(feature, tfds.features.Tensor) and \
            feature._encoding == tfds.features.Encoding.BYTES and None not in stored
        if raw:
            self._decode = _raw_decoder(stored, image_key, label_key, self.where)
            stored = stored if len(stored) == 3 else (*stored, 1)
        else:
            self._decode = _tfds_decoder(info.features, image_key, label_key, options,
                                         self.where)
            channels = stored[2] if len(stored) == 3 else 1
            if None in stored[:2]:
                if options.image_size is None:
                    raise MixedImageSizes(f"images of {self.path} differ in size")
                stored = (options.image_size, options.image_size, channels)
            stored = (stored[0], stored[1], channels)
        self.stored_shape: tuple[int, int, int] = tuple(int(d) for d in stored)
        self.image_shape: tuple[int, int, int] = options.shape(self.stored_shape)
        self.num_examples = sum(int(i.take) for i in instructions)
        self._instructions = instructions
        self._source = None
        self._local = threading.local()  # each thread's shard readers (`_read_run`)

    def _check_shards(self, instructions) -> None:
        """Every shard file exists and holds the records TFDS recorded (a truncated
        array_record file loses its footer, and with it its records)."""
        from array_record.python import array_record_module  # noqa: PLC0415

        for instruction in instructions:
            filename = os.fspath(instruction.filename)
            if not os.path.isfile(filename):
                raise damaged_error(self.path, f"{os.path.basename(filename)} is missing")
            try:
                reader = array_record_module.ArrayRecordReader(filename,
                                                              "readahead_buffer_size:0")
                count = reader.num_records()
                reader.close()
            except Exception as e:  # noqa: BLE001
                raise damaged_error(self.path, f"{os.path.basename(filename)} cannot be "
                                    f"read: {_first_clause(e)}") from None
            if count != int(instruction.examples_in_shard):
                raise damaged_error(self.path, f"{os.path.basename(filename)} holds {count} of "
                                    f"its {instruction.examples_in_shard} records: it is "
                                    "truncated")

    def __len__(self) -> int:
        return self.num_examples

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_source"] = None
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _local=threading.local())

    @property
    def source(self):
        """array_record's random-access source over the split's shards (opened lazily)."""
        if self._source is None:
            from array_record.python import array_record_data_source  # noqa: PLC0415

            self._source = array_record_data_source.ArrayRecordDataSource(self._instructions)
        return self._source

    def _read_run(self, start: int, stop: int) -> list[bytes]:
        """Records start..stop-1, read as one range of each shard they lie in: a reader
        reads a range in one pass, faster than array_record's data source reads the same
        records by key (it starts threads for every call). Each thread opens its own reader
        of a shard once (an open reads the shard's index)."""
        if not 0 <= start < stop <= self.num_examples:
            raise IndexError(f"records {start}..{stop - 1} are not all among the split's "
                             f"{self.num_examples}")
        from array_record.python import array_record_module  # noqa: PLC0415

        readers = self._local.__dict__.setdefault("readers", {})
        records, offset = [], 0
        for index, instruction in enumerate(self._instructions):
            take, skip = int(instruction.take), int(instruction.skip)
            first, last = max(start, offset), min(stop, offset + take)
            if first < last:
                if index not in readers:
                    readers[index] = array_record_module.ArrayRecordReader(
                        os.fspath(instruction.filename), RUN_READER_OPTIONS)
                records.extend(readers[index].read(skip + first - offset,
                                                   skip + last - offset))
            offset += take
        return records

    def read(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 images [n, *image_shape], int32 labels [n]) of the records `keys`; keys
        that run k, k + 1, ... (a whole split read in order) are read as ranges."""
        keys = np.asarray(keys, np.int64)
        if len(keys) == 0:
            return np.zeros((0, *self.image_shape), np.uint8), np.zeros(0, np.int32)
        try:
            if keys[-1] - keys[0] == len(keys) - 1 and np.all(np.diff(keys) == 1):
                records = self._read_run(int(keys[0]), int(keys[-1]) + 1)
            else:
                records = self.source.__getitems__(keys.tolist())
        except (RuntimeError, OSError, ValueError) as e:
            raise damaged_error(self.path, f"reading failed: {_first_clause(e)}") from None
        images, labels = self._decode(records)
        return self.options.apply(images), labels


class InMemorySource:
    """Arrays already in host memory, read by index like a PreparedSplit."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, where: str = "arrays"):
        self.images, self.labels, self.where = images, labels, where
        self.image_shape = tuple(images.shape[1:])

    def __len__(self) -> int:
        return len(self.images)

    def read(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(keys, np.int64)
        return np.take(self.images, keys, axis=0), np.take(self.labels, keys, axis=0)


FIELDS = ("image", "label")


class RecordArray:
    """uint8 images [N, H, W, C] (field "image") or int32 labels [N] (field "label") of a
    source, read only when indexed: `take` and indexing read, `subset` stays lazy.

    `np.asarray(a)` reads it all. Example k is record `keys[k]` of the source (all records in
    order when `keys` is None).
    """

    def __init__(self, source: Source, field: str = "image", keys: np.ndarray | None = None):
        if field not in FIELDS:
            raise ValueError(f"field {field!r} is not one of {FIELDS}")
        self.source, self.field = source, field
        if keys is not None:
            keys = read_only(np.asarray(keys, np.int64).reshape(-1))
        self.keys = keys

    def __len__(self) -> int:
        return len(self.source) if self.keys is None else len(self.keys)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.source.image_shape) if self.field == "image" else (len(self),)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.field == "image" else np.int32)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def record_keys(self, positions: np.ndarray | None = None) -> np.ndarray:
        """The source's record keys of examples `positions` (all when None), indexed as numpy
        indexes: a negative position counts from the end, one out of range is an
        IndexError, a boolean mask of len(self) picks where it is true."""
        if positions is None:
            return np.arange(len(self), dtype=np.int64) if self.keys is None else self.keys
        positions, count = np.asarray(positions), len(self)
        if positions.dtype == np.bool_:
            if positions.shape != (count,):
                raise IndexError(f"a boolean mask of shape {positions.shape} for {count} "
                                 f"examples of {self.source.where}: give one of shape ({count},)")
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.int64)
        if outside := positions[(positions < -count) | (positions >= count)].tolist():
            raise IndexError(f"index {outside[0]} is out of range for the {count} examples of "
                             f"{self.source.where}: use 0..{count - 1} (or -{count}..-1)")
        positions = np.where(positions < 0, positions + count, positions)
        return positions if self.keys is None else self.keys[positions]

    def subset(self, positions: np.ndarray | slice) -> RecordArray:
        """The examples at `positions` (or a slice), still on disk."""
        if isinstance(positions, slice):
            positions = np.arange(len(self))[positions]
        return RecordArray(self.source, self.field, self.record_keys(positions))

    def with_field(self, field: str) -> RecordArray:
        """The other field of the same examples."""
        return RecordArray(self.source, field, self.keys)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Read examples `positions` into memory."""
        return self.source.read(self.record_keys(positions))[FIELDS.index(self.field)]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self.take(np.array([index]))[0]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.take(np.asarray(index))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = read_all(self)[FIELDS.index(self.field)]  # reads both fields: one pass
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"RecordArray({self.field}, shape={self.shape}, from {self.source.where})"


HostArray = np.ndarray | RecordArray  # a split's images or labels: in memory, or streamed


def is_lazy(array: Any) -> bool:
    """Whether `array` is a RecordArray (read from its source when indexed)."""
    return isinstance(array, RecordArray)


def read_all(images: RecordArray, chunk: int = READ_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int32 labels) of every example of `images`, read in chunks into one
    preallocated array each (peak memory: the arrays plus one chunk); both read-only."""
    keys = images.record_keys()
    out_images = np.empty((len(keys), *images.source.image_shape), np.uint8)
    out_labels = np.empty(len(keys), np.int32)
    for start in range(0, len(keys), chunk):
        part_images, part_labels = images.source.read(keys[start:start + chunk])
        out_images[start:start + chunk] = part_images
        out_labels[start:start + chunk] = part_labels
    return read_only(out_images), read_only(out_labels)

