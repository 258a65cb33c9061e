"""Any TFDS image data set by name (`--config.data.name=svhn_cropped`, `celeb_a`, ...).

TFDS's own builder prepares the data set once, as array_record, into the TFDS data dir; it is
then read without TensorFlow (Pillow decodes its PNG / JPEG images). TFDS's image builders
need TensorFlow to prepare (to extract archives, read files with `tf.io.gfile` or encode
images): without it that is one line, before anything is downloaded, with the install
command. A data set prepared elsewhere as array_record (copied into the TFDS data dir) reads
without TensorFlow. The labels are the data set's supervised label when it is a class label;
data sets without one (CelebA) have one class, "all". The test split is "test", else
"validation", else the last tenth of "train".
"""

from __future__ import annotations

import functools
import importlib.util
import os

import tensorflow_datasets as tfds

from jaxae.data.dataset import ONE_CLASS, Dataset, from_prepared
from jaxae.data.errors import DataError
from jaxae.data.images import ImageOptions
from jaxae.data.records import (
    JaxaeBuilder,
    PreparedSplit,
    is_prepared,
    prepare,
    sha256_json,
)
from jaxae.messages import causes, first_line

INSTALL_HINT = "pip install 'jaxae[tfds]'"  # the optional extra holding TensorFlow
HELD_OUT = "train[90%:]"  # the test split of a data set that has neither test nor validation


@functools.cache
def tfds_names() -> frozenset[str]:
    """The names of the data sets TFDS (and any builder registered with it) can prepare."""
    return frozenset(tfds.list_builders(with_community_datasets=False))


def builder_name(name: str) -> str:
    """'celeb_a/align:2.1.0' -> 'celeb_a'."""
    return name.split("/")[0].split(":")[0]


def is_tfds_name(name: str) -> bool:
    """Whether `name` ('svhn_cropped', 'celeb_a/align:2.1.0') names a TFDS data set."""
    return builder_name(name) in tfds_names()


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported (without importing it, which takes seconds)."""
    return importlib.util.find_spec("tensorflow") is not None


def needs_tensorflow(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether preparing `builder` needs TensorFlow: every image builder TFDS ships does
    (checked on TFDS 4.9); ours (JaxaeBuilder) and builders of other packages are tried."""
    return not isinstance(builder, JaxaeBuilder) and \
        type(builder).__module__.startswith("tensorflow_datasets.")


def is_missing_tensorflow(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from, is TensorFlow's failed import (TFDS wraps
    it in ExtractError or rewrites its message)."""
    return any((isinstance(cause, ImportError) and cause.name == "tensorflow")
               or "No module named 'tensorflow'" in str(cause) for cause in causes(error))


def tensorflow_error(name: str) -> DataError:
    """The one-line error for a TFDS builder that needs TensorFlow, which is missing."""
    return DataError(
        f"TFDS data set {name} needs TensorFlow to be prepared (TFDS's builder reads, extracts "
        f"or encodes its files with it) and TensorFlow is not installed: run `{INSTALL_HINT}` "
        "(or put a copy prepared as array_record elsewhere into --config.data.tfds_dir)"
    )


def _builder(name: str, tfds_dir: str | None) -> tfds.core.DatasetBuilder:
    try:
        return tfds.builder(name, data_dir=tfds_dir)
    except Exception as e:  # noqa: BLE001 (DatasetNotFoundError, a bad config or version)
        raise DataError(f"TFDS has no data set {name} ({first_line(e)}): see tfds.list_builders() "
                        "for the names") from None


def _prepare(name: str, builder: tfds.core.DatasetBuilder) -> None:
    """Let TFDS's builder download and prepare the data set as array_record."""
    if needs_tensorflow(builder) and not tensorflow_installed():
        raise tensorflow_error(name)
    try:
        prepare(builder, f"TFDS data set {name}")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 (network, checksum, manual download, ...)
        if is_missing_tensorflow(e):
            raise tensorflow_error(name) from None
        raise DataError(f"TFDS could not prepare {name} ({type(e).__name__}: {first_line(e)}): "
                        "follow TFDS's instructions for it, or retry") from e


def _keys(info: tfds.core.DatasetInfo, name: str) -> tuple[str, str | None, tuple[str, ...]]:
    """(image feature, class label feature or None, class names) of a data set."""
    features = info.features
    supervised = info.supervised_keys or ()
    image_key = supervised[0] if supervised and isinstance(supervised[0], str) else "image"
    if image_key not in features:
        raise DataError(f"TFDS data set {name} has no image feature {image_key!r} (its "
                        f"features: {', '.join(features.keys())}): it is not an image data set")
    label_key = None
    for candidate in ([supervised[1]] if len(supervised) > 1 else []) + ["label"]:
        if isinstance(candidate, str) and candidate in features and \
                isinstance(features[candidate], tfds.features.ClassLabel):
            label_key = candidate
            break
    names = tuple(features[label_key].names) if label_key else (ONE_CLASS,)
    return image_key, label_key, names


def _test_split(info: tfds.core.DatasetInfo) -> tuple[str, str]:
    """(train split, test split): "test", else "validation", else the last tenth of train."""
    splits = set(info.splits.keys())
    if "train" not in splits:
        raise DataError(f"TFDS data set {info.full_name} has no train split (it has "
                        f"{', '.join(sorted(splits))}): it cannot be trained on as it is")
    for test in ("test", "validation"):
        if test in splits:
            return "train", test
    return "train[:90%]", HELD_OUT


def fingerprint_of(builder: tfds.core.DatasetBuilder) -> str:
    """TFDS's own identity of a prepared set: its full name (data set, config, version), the
    checksums TFDS registers for the files it is made from, and its splits' sizes."""
    try:
        url_infos = dict(builder.url_infos or {})
    except Exception:  # noqa: BLE001 (a builder without a checksums file)
        url_infos = {}
    checksums = {str(url): str(getattr(info, "checksum", info)) for url, info in url_infos.items()}
    splits = {name: [int(split.num_examples), int(split.num_bytes)]
              for name, split in builder.info.splits.items()}
    return "tfds-sha256:" + sha256_json({"name": builder.info.full_name, "checksums": checksums,
                                         "splits": splits})


def load_tfds(name: str, *, tfds_dir: str | None = None, image_size: int | None = None,
              channels: int | None = None, streaming: str = "memory",
              memory_budget_mb: float | None = None) -> Dataset:
    """TFDS data set `name` as uint8 images [N, H, W, C], prepared once by TFDS's builder."""
    options = ImageOptions(image_size, channels)
    builder = _builder(name, tfds_dir)
    if is_prepared(builder.data_path):
        how = "prepared earlier"
    else:
        _prepare(name, builder)
        builder = _builder(name, tfds_dir)  # reread: the splits and checksums are on disk now
        how = "prepared now"
    info = builder.info
    image_key, label_key, class_names = _keys(info, name)
    train_split, test_split = _test_split(info)
    where = os.fspath(builder.data_path)
    splits = [PreparedSplit(where, split, options=options, builder=builder, image_key=image_key,
                            label_key=label_key) for split in (train_split, test_split)]
    change = options.describe(splits[0].stored_shape)
    return from_prepared(
        *splits, name=builder_name(name), class_names=class_names,
        source=f"TFDS {info.full_name} in {where} ({how}; test split {test_split})"
        + (f", {change}" if change else ""),
        fingerprint=fingerprint_of(builder), streaming=streaming,
        memory_budget_mb=memory_budget_mb)
