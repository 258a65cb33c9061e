"""Data sets from arrays: a `.npz` file, or numpy arrays handed over by the caller.

They are held in host memory; a training split larger than the memory budget is streamed to
the device from there (`jaxae.data.streaming`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import zipfile
from collections.abc import Sequence

import numpy as np

from jaxae.data.dataset import (
    ONE_CLASS,
    Dataset,
    reads_paths,
    should_stream,
    training_bytes,
)
from jaxae.data.errors import DataError
from jaxae.data.images import ImageOptions
from jaxae.data.records import (
    InMemorySource,
    RecordArray,
    arrays_sha256,
    sha256_file,
    sha256_json,
)

NPZ_KEYS = "train_images, test_images and optionally train_labels, test_labels, class_names"
MAX_CLASSES = 100_000  # label ids past this are not class indices (pictures draw each class)


def _images(name: str, array: np.ndarray, where: str, warn_binary: bool = True) -> np.ndarray:
    """uint8 [N, H, W, C] from uint8 [N, H, W] or [N, H, W, C] (C = 1 or 3). Images whose
    pixels are all 0 or 1 are taken with a warning (unless `warn_binary` is False: the
    caller has warned): pixels 0..1 stored as uint8 by mistake would train on black images."""
    if array.dtype != np.uint8:
        raise DataError(f"{where}: {name} has dtype {array.dtype}, not uint8: "
                        f"{_uint8_fix(name, array)}")
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[1] != array.shape[2]:
        raise DataError(f"{where}: {name} has shape {array.shape}, read as {array.shape[0]} "
                        f"grey images of {array.shape[1]}x{array.shape[2]} pixels: give "
                        f"[N, H, W, C] images (one colour image: {name}[None]; grey images "
                        f"{array.shape[2]} pixels wide: {name}[..., None])")
    stored = array.shape  # as the user gave it, for the message
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or not array.size:
        hint = ""
        if array.ndim == 4 and array.shape[-1] == 4:
            hint = f" (RGBA? drop the alpha channel: {name}[..., :3])"
        elif array.ndim == 4 and array.shape[1] in (1, 3):  # [N, C, H, W]
            hint = f" (channels first? store np.transpose({name}, (0, 2, 3, 1)))"
        raise DataError(f"{where}: {name} has shape {stored}: give [N, H, W] or "
                        f"[N, H, W, C] images with C = 1 or 3 and N, H, W > 0{hint}")
    if warn_binary and array.max() <= 1:
        print(f"warning: {where}: every pixel of {name} is 0 or 1: if they are pixels in "
              f"[0, 1], store them as 0..255 ((x * 255).round().astype(np.uint8)); binary "
              "images stored as 0 and 1 train as nearly black ones", file=sys.stderr,
              flush=True)
    return array


def _uint8_fix(name: str, array: np.ndarray) -> str:
    """How to store `array` as uint8 pixels 0..255, from what its values are."""
    integer = np.issubdtype(array.dtype, np.integer)
    if not array.size or not (integer or np.issubdtype(array.dtype, np.floating)):
        return "store pixel values 0..255 as uint8"
    if not integer and np.isnan(array).any():
        return f"{name} holds NaN: store pixel values 0..255 as uint8"
    low, high = array.min(), array.max()
    if integer and 0 <= low and high <= 255:
        return f"its values are 0..255: store {name}.astype(np.uint8)"
    if 0 <= low and high <= 1:
        return f"its values are in [0, 1]: store ({name} * 255).round().astype(np.uint8)"
    if 0 <= low and high <= 255:
        return f"its values are 0..255: store {name}.round().astype(np.uint8)"
    return "store pixel values 0..255 as uint8"


def from_arrays(train_images: np.ndarray, test_images: np.ndarray,
                train_labels: np.ndarray | None = None, test_labels: np.ndarray | None = None,
                class_names: Sequence[str] | None = None, *, name: str = "arrays",
                source: str = "arrays given in memory", fingerprint: str | None = None,
                warn_binary: bool = True) -> Dataset:
    """A Dataset from uint8 image arrays; without labels every image is class 0. Its
    content_sha256 is a hash of the arrays and class names; its fingerprint, unless given,
    of the arrays. warn_binary=False: the caller has warned of images of only 0s and 1s."""
    train = _images("train_images", np.asarray(train_images), source, warn_binary)
    test = _images("test_images", np.asarray(test_images), source, warn_binary)
    if train.shape[1:] != test.shape[1:]:
        raise DataError(f"{source}: train images {train.shape[1:]} and test images "
                        f"{test.shape[1:]} differ in shape: give both splits one shape (an npz's "
                        "are brought to one by load_npz's image_size and channels, "
                        "--config.data.image_size and --config.data.channels in a config)")
    if (train_labels is None) != (test_labels is None):
        given, missing = ("train", "test") if test_labels is None else ("test", "train")
        raise DataError(f"{source}: {given}_labels are given but {missing}_labels are not: "
                        f"give {missing}_labels too, or neither (every image is then class 0)")
    labels = []
    for split, images, given in (("train", train, train_labels), ("test", test, test_labels)):
        array = np.zeros(len(images), np.int32) if given is None else np.asarray(given)
        if array.shape != (len(images),) or not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{source}: {split}_labels must be {len(images)} integers, one per "
                            f"image (got {array.dtype} {array.shape})")
        if len(array) and int(array.min()) < 0:
            raise DataError(f"{source}: {split}_labels run from {int(array.min())}: give class "
                            "indices 0, 1, 2, ...")
        if len(array) and int(array.max()) >= MAX_CLASSES:
            raise DataError(f"{source}: {split}_labels run to {int(array.max()):,}, past the "
                            f"{MAX_CLASSES:,} classes a data set may have: give class indices "
                            "0, 1, 2, ... (one per class)")
        labels.append(array.astype(np.int32))
    num_classes = int(max(labels[0].max(), labels[1].max())) + 1
    if class_names is None and train_labels is not None and num_classes > 1 and \
            not any((array == 0).any() for array in labels):
        print(f"warning: {source}: no image has label 0, so class '0' is empty: if the labels "
              "count from 1, subtract 1 from them; else give class_names", file=sys.stderr,
              flush=True)
    names = tuple(class_names) if class_names is not None else (
        tuple(str(c) for c in range(num_classes)) if num_classes > 1 else (ONE_CLASS,))
    if len(names) < num_classes:
        raise DataError(f"{source}: labels run to {num_classes - 1} but {len(names)} class "
                        f"names are given: give one name per class, {num_classes} in all")
    for array in (train, test, *labels):
        array.setflags(write=False)
    arrays = arrays_sha256(train, labels[0], test, labels[1])
    return Dataset(name=name, train_images=train, train_labels=labels[0], test_images=test,
                   test_labels=labels[1], class_names=names, source=source,
                   fingerprint=f"arrays-sha256:{arrays}" if fingerprint is None else fingerprint,
                   content_sha256=sha256_json({"arrays": arrays, "class_names": names}))


def _class_names(names: np.ndarray) -> list[str]:
    """An npz's class_names as strings: one name (a 0-d array) or several; bytes decoded."""
    if np.ndim(names) > 1:
        raise DataError(f"class_names is an array of shape {np.shape(names)}: give one name per "
                        "class, a 1-D array of strings")
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n)
            for n in np.atleast_1d(names).tolist()]


@reads_paths(path="file")
def load_npz(path: str, *, image_size: int | None = None, channels: int | None = None,
             streaming: str = "memory", memory_budget_mb: float | None = None) -> Dataset:
    """A Dataset from a .npz file holding train_images and test_images (uint8 [N, H, W(, C)])
    and optionally train_labels, test_labels and class_names; resized and converted as
    `image_size` and `channels` ask. Streamed (`streaming`, `memory_budget_mb`), its training
    split stays in host memory and is sent to the device batch by batch."""
    if not path:
        raise DataError("data set npz needs a file: set --config.data.path=FILE.npz")
    if not os.path.isfile(path):
        raise DataError(f"npz file {path} does not exist: set --config.data.path to a .npz "
                        f"holding {NPZ_KEYS}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy: one array, not a set of named ones
            raise ValueError("it is a .npy file of one array, not an .npz of named arrays")
        with loaded as f:
            arrays = {key: f[key] for key in f.files}
    except MemoryError:  # a header's claim: NumPy allocates its shape before reading
        raise DataError(f"npz file {path} holds an array larger than this machine's memory "
                        "(its header says so): write a smaller one, or read the data as a "
                        "folder of images, which streams") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        reason = (str(e) if "npy" in str(e) else "not an .npz archive of numeric arrays"
                  if "pickle" in str(e) else str(e))
        raise DataError(f"npz file {path} cannot be read ({reason}): write it with "
                        f"numpy.savez holding {NPZ_KEYS}") from None
    missing = [k for k in ("train_images", "test_images") if k not in arrays]
    if missing:
        held = f"it holds {', '.join(sorted(arrays))}" if arrays else "it holds no arrays"
        split = ("; to hold n images out for the test, shuffle the images x (and labels y, "
                 "if any) alike, then numpy.savez(path, train_images=x[:-n], "
                 "test_images=x[-n:], train_labels=y[:-n], test_labels=y[-n:])"
                 if missing == ["test_images"] else "")
        raise DataError(f"npz file {path} has no {', '.join(missing)} ({held}): it must hold "
                        f"{NPZ_KEYS}{split}")
    digest = sha256_file(path)
    names = arrays.get("class_names")
    options = ImageOptions(image_size, channels)
    images, stored = {}, {}
    for key in ("train_images", "test_images"):
        array = _images(key, np.asarray(arrays[key]), path)
        stored[key] = array.shape[1:]
        images[key] = options.apply(array)
    change = options.describe(stored["train_images"])
    data = from_arrays(images["train_images"], images["test_images"],
                       arrays.get("train_labels"), arrays.get("test_labels"),
                       None if names is None else _class_names(names), name="npz",
                       source=f"{os.path.abspath(path)} (sha256 {digest[:12]})"
                       + (f", {change}" if change else ""), fingerprint=f"sha256:{digest}",
                       warn_binary=False)  # warned above, of the file's own arrays
    data = dataclasses.replace(data, title=os.path.basename(path))  # pictures name the file
    if not should_stream(streaming, training_bytes(len(data.train_images), data.image_shape),
                         memory_budget_mb):
        return data
    train = RecordArray(InMemorySource(data.train_images, data.train_labels, path))
    return dataclasses.replace(data, train_images=train, train_labels=train.with_field("label"),
                               streaming=streaming, memory_budget_mb=memory_budget_mb)
