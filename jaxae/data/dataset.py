"""`Dataset`, what every source gives, and the choice between device memory and streaming."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from jaxae.data.errors import DataError
from jaxae.data.records import HostArray, PreparedSplit, RecordArray, is_lazy, read_all

STREAMING_MODES = ("auto", "memory", "stream")
ONE_CLASS = "all"  # the class name of a data set without labels (every image is class 0)
MIB = 1 << 20  # memory_budget_mb counts MiB
PATH_KINDS = ("file", "folder", "file or folder")
Loader = TypeVar("Loader", bound=Callable[..., Any])


def reads_paths(**kinds: str) -> Callable[[Loader], Loader]:
    """Declares the config.data fields a loader reads as paths, each a "file", a "folder" or
    a "file or folder": `config.check_data_paths` names one of the wrong kind before a run
    starts (a file given for a folder would otherwise read as missing)."""
    if unknown := [k for k in kinds.values() if k not in PATH_KINDS]:
        raise ValueError(f"path kinds {unknown}: use {', '.join(PATH_KINDS)}")

    return _declaring("path_kinds", kinds)


def unset_means(**values: Any) -> Callable[[Loader], Loader]:
    """Declares what a loader makes of config.data fields left unset (None), where that is
    a value of theirs (a folder's carved test share): a run that set one to it and its
    resume that leaves it unset made the same choice (`declared_unset_values`)."""
    return _declaring("unset_values", values)


def _declaring(attribute: str, value: dict) -> Callable[[Loader], Loader]:
    def declare(loader: Loader) -> Loader:
        setattr(loader, attribute, value)
        return loader

    return declare


def _declared(loader: Callable[..., Any], attribute: str) -> dict:
    """What a loader declares under `attribute` (empty where nothing), also through
    functools.partial."""
    while not hasattr(loader, attribute) and hasattr(loader, "func"):
        loader = loader.func
    return dict(getattr(loader, attribute, {}))


def declared_unset_values(loader: Callable[..., Any]) -> dict[str, Any]:
    """The values a loader declares for its fields left unset (`unset_means`)."""
    return _declared(loader, "unset_values")


def declared_paths(loader: Callable[..., Any]) -> dict[str, str]:
    """The path kinds a loader declares (`reads_paths`)."""
    return _declared(loader, "path_kinds")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """One data set: uint8 images [N, H, W, C], int32 labels [N], class names, where it came
    from in words (`source`) and as a hash (`fingerprint`: the same source files give the same
    fingerprint, other files another), and, where the source records it, a hash of the images
    and labels themselves (`content_sha256`: the same however they are packed; "" unknown).

    The images and labels are read-only numpy arrays, or, for a training split streamed from
    disk, `RecordArray`s read when indexed (`streamed`).
    """

    name: str
    train_images: HostArray = dataclasses.field(repr=False)
    train_labels: HostArray = dataclasses.field(repr=False)
    test_images: HostArray = dataclasses.field(repr=False)
    test_labels: HostArray = dataclasses.field(repr=False)
    class_names: tuple[str, ...]
    source: str
    title: str = ""  # how pictures and tables name it (default: its name)
    fingerprint: str = ""
    content_sha256: str = ""
    streaming: str = "memory"  # as asked when loaded (`should_stream`), so that `make_splits`
    memory_budget_mb: float | None = None  # can hold a cut that fits the budget in memory

    def __post_init__(self):
        if not self.title:
            object.__setattr__(self, "title", self.name)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        """The classes a model is built for (`build_model(..., num_classes=)`), as Splits'."""
        return len(self.class_names)

    @property
    def streamed(self) -> bool:
        """Whether the training images stay on disk, read batch by batch."""
        return is_lazy(self.train_images)


def should_stream(mode: str, train_bytes: int, memory_budget_mb: float | None) -> bool:
    """config.data.streaming: "memory" never streams, "stream" always does, "auto" streams
    when the training images take more than memory_budget_mb MiB (None: no budget)."""
    if mode not in STREAMING_MODES:
        raise DataError(f"streaming={mode!r} is unknown: choose one of "
                        f"{', '.join(STREAMING_MODES)}")
    if mode == "auto":
        return memory_budget_mb is not None and train_bytes > memory_budget_mb * MIB
    return mode == "stream"


def training_bytes(num_images: int, image_shape: tuple[int, ...]) -> int:
    """Bytes of `num_images` uint8 training images of `image_shape`."""
    return num_images * int(np.prod(image_shape))


def from_prepared(train: PreparedSplit, test: PreparedSplit, *, name: str,
                  class_names: tuple[str, ...], source: str, fingerprint: str, title: str = "",
                  content_sha256: str = "", streaming: str = "memory",
                  memory_budget_mb: float | None = None) -> Dataset:
    """A Dataset of two prepared splits: read into memory, or (streamed) left on disk."""
    if train.image_shape != test.image_shape:
        raise DataError(f"the train and test images of {train.path} differ in shape "
                        f"({train.image_shape} and {test.image_shape}): set "
                        "--config.data.image_size to bring them to one size")
    stream = should_stream(streaming, training_bytes(len(train), train.image_shape),
                           memory_budget_mb)
    if stream:
        train_images, test_images = RecordArray(train), RecordArray(test)
        train_labels, test_labels = train_images.with_field("label"), \
            test_images.with_field("label")
    else:
        train_images, train_labels = read_all(RecordArray(train))
        test_images, test_labels = read_all(RecordArray(test))
    return Dataset(name=name, train_images=train_images, train_labels=train_labels,
                   test_images=test_images, test_labels=test_labels,
                   class_names=tuple(class_names), source=source, title=title,
                   fingerprint=fingerprint, content_sha256=content_sha256,
                   streaming=streaming, memory_budget_mb=memory_budget_mb)
