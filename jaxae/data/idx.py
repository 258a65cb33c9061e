"""Reader for the (Fashion-)MNIST IDX files, with one-line errors that name the file and the fix."""

from __future__ import annotations

import math
import os
import struct
import sys
import zlib
from collections.abc import Callable

import numpy as np

from jaxae.data.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZIP_MAGIC = b"\x1f\x8b"
FIX_HINT = ("re-download it (Fashion-MNIST: or reinstall dataset-fashion-mnist; the offline "
            "MNIST digits: write them again with python -m jaxae.data.mnist5k DIR)")


def read_stored(path: str) -> bytes:
    """Return an IDX file's bytes as stored (gzipped or not)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist: {FIX_HINT}") from None
    except OSError as e:
        raise DataError(f"IDX file {path} is corrupt or truncated ({e}): {FIX_HINT}") from None


def _gunzip(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of the gzip stream `data`, its members one after another (as
    gzip.decompress reads them), inflating no further than that."""
    out = bytearray()
    inflate, pending = zlib.decompressobj(zlib.MAX_WBITS | 16), data
    while len(out) < limit and pending:
        out += inflate.decompress(pending, limit - len(out))
        pending = inflate.unconsumed_tail
        if inflate.eof:  # a member ends: another may follow
            pending = inflate.unused_data
            if pending[:2] != GZIP_MAGIC:
                break
            inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
    return bytes(out)


def _payload(path: str, data: bytes) -> bytes:
    """Return the file's payload, gunzipped when it starts with the gzip magic (sniffing the
    content, not the name, also handles TFDS's hashed download names): at most one byte more
    than its header declares, so a small file that inflates to gigabytes is told too long
    from that byte, not after filling the memory."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        head = _gunzip(data, 4)
        if len(head) < 4 or int.from_bytes(head, "big") not in (IMAGES_MAGIC, LABELS_MAGIC):
            return head  # (told wrong or truncated by the header's check)
        header_size = 4 + 4 * head[3]  # the magic's last byte: the dimensions
        head = _gunzip(data, header_size)
        if len(head) < header_size:
            return head
        shape = struct.unpack(f">{head[3]}I", head[4:])
        return _gunzip(data, min(header_size + math.prod(shape) + 1, sys.maxsize))
    except zlib.error as e:
        raise DataError(f"IDX file {path} is corrupt or truncated ({e}): {FIX_HINT}") from None


def _parse_header(path: str, data: bytes) -> tuple[int, tuple[int, ...]]:
    """Return (magic, shape) from an IDX header, checking the header itself is complete."""
    if len(data) < 4:
        raise DataError(f"IDX file {path} is truncated (only {len(data)} bytes): {FIX_HINT}")
    magic = struct.unpack(">I", data[:4])[0]
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(
            f"IDX file {path} has wrong magic number {magic} (expected {IMAGES_MAGIC} for images "
            f"or {LABELS_MAGIC} for labels): it is not an MNIST IDX file, {FIX_HINT}"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"IDX file {path} is truncated (header needs {header_size} bytes, got {len(data)}): "
            f"{FIX_HINT}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    return magic, tuple(int(d) for d in shape)


def read_idx(path: str | os.PathLike[str], stored: bytes | None = None) -> np.ndarray:
    """Read one IDX file (images magic 2051 or labels magic 2049) as a uint8 array; `stored`:
    its bytes (`read_stored`) when already read."""
    path = os.fspath(path)
    stored = read_stored(path) if stored is None else stored
    data = _payload(path, stored)
    magic, shape = _parse_header(path, data)
    header_size = 4 + 4 * len(shape)
    expected = header_size + math.prod(shape)  # Python's ints: no overflow to 0
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        got = len(data) if len(data) < expected or stored[:2] != GZIP_MAGIC else "more"
        raise DataError(
            f"IDX file {path} is {what} (expected {expected} bytes, got {got}): {FIX_HINT}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def find_idx_file(folder: str, stem: str) -> str | None:
    """Return the path of `stem.gz` or `stem` in `folder` (gzip preferred), or None if absent."""
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def idx_file_paths(folder: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """Return {split: (images_path, labels_path)}, raising DataError naming any missing file."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DataError(
            f"IDX folder {folder} does not exist: point it at a folder holding "
            f"{', '.join(s + '.gz' for pair in SPLIT_FILES.values() for s in pair)}"
        )
    paths, missing = {}, []
    for split, stems in SPLIT_FILES.items():
        found = [find_idx_file(folder, stem) for stem in stems]
        missing += [stem + ".gz" for stem, p in zip(stems, found, strict=True) if p is None]
        if None not in found:
            paths[split] = (found[0], found[1])
    if missing:
        raise DataError(
            f"IDX folder {folder} is missing {', '.join(missing)}: copy the four (Fashion-)MNIST "
            "IDX .gz files there or reinstall dataset-fashion-mnist"
        )
    return paths


def _check_kind(path: str, array: np.ndarray, images: bool) -> None:
    """Raise DataError when an images file holds labels (or vice versa) or images are not 28x28."""
    if images and array.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"IDX file {path} does not hold 28x28 images (shape {array.shape}): it should be an "
            f"images file with magic {IMAGES_MAGIC}, {FIX_HINT}"
        )
    if not images and array.ndim != 1:
        raise DataError(
            f"IDX file {path} does not hold labels (shape {array.shape}): it should be a labels "
            f"file with magic {LABELS_MAGIC}, {FIX_HINT}"
        )


def read_idx_split(
    images_path: str, labels_path: str, read: Callable[[str], np.ndarray] = read_idx
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's images (uint8 [N,28,28]) and labels (int64 [N]), each file with
    `read`; the counts must match."""
    images = read(images_path)
    _check_kind(images_path, images, images=True)
    labels = read(labels_path)
    _check_kind(labels_path, labels, images=False)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"IDX files {images_path} and {labels_path} disagree ({images.shape[0]} images, "
            f"{labels.shape[0]} labels): one of them is from another data set, {FIX_HINT}"
        )
    return images, labels.astype(np.int64)


def read_idx_folder(
    folder: str | os.PathLike[str],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and validate the four IDX files of `folder` as {split: (images, labels)}."""
    return {split: read_idx_split(*pair) for split, pair in idx_file_paths(folder).items()}
