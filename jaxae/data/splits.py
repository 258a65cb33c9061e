"""The train / validation / test arrays a run uses, cut from a loaded data set."""

from __future__ import annotations

import dataclasses
import operator

import jax
import numpy as np

from jaxae.data import batches
from jaxae.data.dataset import Dataset, should_stream
from jaxae.data.errors import DataError
from jaxae.data.records import HostArray, is_lazy, read_all
from jaxae.keys import check_key

BINARIZATIONS = ("none", "static", "dynamic")
SUBSETS = ("first", "random")  # which train_size / test_size images a run keeps


@dataclasses.dataclass(frozen=True)
class Split:
    images: HostArray  # uint8 [N, H, W, C]; a RecordArray when streamed
    labels: HostArray  # int32 [N]
    binarized: bool = False  # the images are a static Bernoulli draw (data.binarize=static)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:  # the shapes, not every pixel
        shape = "x".join(map(str, self.images.shape[1:]))
        return (f"Split({len(self):,} images of {shape}, {self.images.dtype}"
                f"{', streamed' if self.streamed else ''})")

    @property
    def streamed(self) -> bool:
        """Whether the images stay on disk (or in host memory), read batch by batch."""
        return is_lazy(self.images)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Split
    val: Split | None  # carved from the training split when val_size > 0
    test: Split
    class_names: tuple[str, ...]
    source: str  # where the data came from, for logs and result pages
    title: str = ""  # the data set's display name
    fingerprint: str = ""  # the data set's source, as a hash (`Dataset.fingerprint`)
    content_sha256: str = ""  # its images and labels, as a hash (`Dataset.content_sha256`)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def streamed(self) -> bool:
        """Whether the training split is streamed (`jaxae.data.streaming`); the validation
        and test splits are always in memory."""
        return self.train.streamed


def make_splits(data: Dataset, data_key: jax.Array, *, train_size: int | None = None,
                test_size: int | None = None, val_size: int = 0,
                binarize: str = "none", subset: str = "first") -> Splits:
    """train_size / test_size images of each split (`subset`: the "first" ones in stored
    order, or "random" ones, drawn with a fixed permutation of the data key), a validation
    split of val_size carved from the training images, and static binarisation if asked for.

    A streamed training split stays on disk, unless the data set was loaded with
    streaming="auto" and the part of it kept here fits the memory budget after all.
    """
    train_size, test_size, val_size = _check_split_args(data, train_size, test_size, val_size,
                                                        binarize, subset)
    check_key(data_key, "make_splits' data_key")
    keep_train = _kept(len(data.train_images), train_size, subset, data_key, "train")
    keep_test = _kept(len(data.test_images), test_size, subset, data_key, "test")
    if data.streamed:
        train, val, test = _streamed_splits(data, data_key, keep_train, keep_test, val_size)
    else:
        train = Split(data.train_images[keep_train], data.train_labels[keep_train])
        test = Split(data.test_images[keep_test], data.test_labels[keep_test])
        val = None
        if val_size:
            (train_x, train_y), (val_x, val_y) = batches.split_validation(
                train.images, train.labels, val_size, data_key)
            train, val = Split(train_x, train_y), Split(val_x, val_y)
    if binarize == "static":
        if train.streamed:
            raise DataError(
                "config.data.binarize=static draws one binarisation of the whole training "
                "split, which is streamed here: use --config.data.binarize=dynamic, "
                "or hold it in memory (--config.data.streaming=memory, or a larger "
                "--config.data.memory_budget_mb)")
        train, val, test = (binarized(split, data_key, which) for split, which in
                            zip((train, val, test), SPLIT_NAMES, strict=True))
    return Splits(train, val, test, tuple(data.class_names), data.source, data.title,
                  data.fingerprint, data.content_sha256)


def _count(size) -> int:
    """`size` as an int (a Python or numpy integer, or a 0-d integer array), or -1."""
    try:
        return operator.index(size)
    except TypeError:
        return -1


class SplitSizeError(DataError):
    """A split size make_splits cannot honour with the data it was given (a config's
    data.train_size, test_size, val_size: `jaxae.build.load_data` names the field so)."""


def _check_split_args(data: Dataset, train_size: int | None, test_size: int | None,
                      val_size: int, binarize: str, subset: str
                      ) -> tuple[int | None, int | None, int]:
    """The sizes as ints, or a DataError naming the fix for sizes and choices `make_splits`
    cannot honour (a negative size would slice from the end; an empty split trains on
    nothing)."""
    if subset not in SUBSETS:
        raise DataError(f"subset={subset!r} is unknown: choose one of {', '.join(SUBSETS)}")
    if binarize not in BINARIZATIONS:
        raise DataError(f"binarize={binarize!r} is unknown: choose one of "
                        f"{', '.join(BINARIZATIONS)}")
    for name, size in (("train_size", train_size), ("test_size", test_size)):
        if size is not None and not _count(size) >= 1:
            raise DataError(f"{name}={size!r}: give a number of images, 1 or more, or None "
                            "for all of them")
    if not _count(val_size) >= 0:
        raise DataError(f"val_size={val_size!r}: give a number of images, 0 or more")
    train_size, test_size, val_size = (None if train_size is None else _count(train_size),
                                       None if test_size is None else _count(test_size),
                                       _count(val_size))
    for name, size, have, split in (("train_size", train_size, len(data.train_images), "training"),
                                    ("test_size", test_size, len(data.test_images), "test")):
        if size is not None and size > have:  # cutting, never padding: fewer than asked
            raise SplitSizeError(f"{name}={size} is more than the {have} images of "
                                 f"{data.name}'s {split} split: use at most {have}, or leave "
                                 "it unset for all of them")
    num_train = train_size or len(data.train_images)
    if (problem := val_size_problem(val_size, num_train)) is not None:
        raise SplitSizeError(problem)
    return train_size, test_size, val_size


def spread(split: Split, count: int) -> Split:
    """`count` of the split's images, spread evenly over it (a folder's split runs class by
    class, so its first images would be the first classes only); a streamed split is read
    at those images only. The split itself where it holds no more."""
    if count >= len(split):
        return split
    index = np.unique(np.linspace(0, len(split) - 1, count).round().astype(np.int64))
    return Split(split.images[index], split.labels[index])


def spread_sample(split: Split, max_bytes: int, bytes_per_pixel: int) -> Split:
    """The split itself where it is in memory; of a streamed one (larger than memory,
    perhaps), as many images as fit `max_bytes` at `bytes_per_pixel`, `spread` over it."""
    if not split.streamed:
        return split
    pixels = int(np.prod(split.images.shape[1:]))
    return spread(split, max(2, max_bytes // (bytes_per_pixel * pixels)))


def val_size_problem(val_size: int, num_train: int) -> str | None:
    """Why `val_size` images cannot be carved from `num_train` training images, with the fix
    (the library's and the config's message alike), or None where they can."""
    if val_size < num_train:
        return None
    fix = (f"use at most {num_train - 1} (a fraction of them, e.g. {max(1, num_train // 10)})"
           if num_train > 1 else "use 0: the split has one image")
    return f"val_size={val_size} leaves no training images out of {num_train}: {fix}"


def _kept(num_examples: int, size: int | None, subset: str, data_key: jax.Array,
          split: str) -> slice | np.ndarray:
    """Which of a split's examples make_splits keeps: a slice of the first `size`, or
    (subset "random", a size below the split's) their sorted indices."""
    if subset == "first" or size is None or size >= num_examples:
        return slice(None, size)
    return batches.subset_indices(num_examples, size, data_key, split)


def first_images_note(data: Dataset, train_size: int | None, test_size: int | None,
                      subset: str) -> str | None:
    """A warning when the first train_size training (or test_size test) images, in memory,
    hold fewer of the data set's classes than the whole split does (an image folder is
    stored class by class)."""
    if subset != "first":
        return None
    short = []
    for what, labels, size in (("training", data.train_labels, train_size),
                               ("test", data.test_labels, test_size)):
        if size is None or is_lazy(labels) or size >= len(labels):
            continue
        kept, present = len(np.unique(labels[:size])), len(np.unique(labels))
        if kept < present:
            short.append(f"the first {size:,} {what} images hold {kept} of its {present} "
                         "classes")
    if not short:
        return None
    return (f"warning: in {data.title}, {'; '.join(short)}: set --config.data.subset=random "
            "to draw them from every class")


def _streamed_splits(data: Dataset, data_key: jax.Array, keep_train: slice | np.ndarray,
                     keep_test: slice | np.ndarray, val_size: int
                     ) -> tuple[Split, Split | None, Split]:
    """(train, val, test) of make_splits for a data set whose training images are a
    RecordArray: the same examples in the same order as in memory, the training split left
    on disk."""
    images = data.train_images.subset(keep_train)
    val = None
    if val_size:
        train_idx, val_idx = batches.validation_indices(len(images), val_size, data_key)
        val = Split(*read_all(images.subset(val_idx)))
        images = images.subset(train_idx)
    if data.streaming == "auto" and not should_stream("auto", images.nbytes,
                                                      data.memory_budget_mb):
        train = Split(*read_all(images))
    else:
        train = Split(images, images.with_field("label"))
    test_images = data.test_images
    if is_lazy(test_images):
        test = Split(*read_all(test_images.subset(keep_test)))
    else:
        test = Split(test_images[keep_test], data.test_labels[keep_test])
    return train, val, test


SPLIT_NAMES = ("train", "val", "test")  # each split's static binarisation: its own stream


def binarized(split: Split | None, data_key: jax.Array, which: str) -> Split | None:
    """`split` binarised once (data.binarize=static), as make_splits draws split `which`
    ("train", "val" or "test") of a run whose data key is `data_key`."""
    if split is None:
        return None
    key = jax.random.fold_in(data_key, SPLIT_NAMES.index(which))
    return Split(batches.binarize_static(split.images, key), split.labels, binarized=True)
