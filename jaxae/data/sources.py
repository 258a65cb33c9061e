"""`load_dataset`: MNIST / Fashion-MNIST from prepared TFDS data, an IDX folder or a TFDS
download, in that order, with one-line `DataError`s when none of them works.

A prepared set records the fingerprint of the IDX files it was made from; a run that names
other files (--config.data.data_dir or $JAXAE_<NAME>_DIR) against the same TFDS dir stops with
one line naming both. Files whose published checksums or first labels say they are the other
data set (Fashion-MNIST given as MNIST, or the reverse) are refused.
"""

from __future__ import annotations

import difflib
import inspect
import os
import socket
import subprocess
import threading
import urllib.parse
import urllib.request

from jaxae.data import idx
from jaxae.data.builder import (
    FASHION_MNIST_CONFIG,
    KNOWN_LABEL_STARTS,
    MNIST_CONFIG,
    IdxFiles,
    JaxaeImages,
    JaxaeImagesConfig,
    idx_content_sha256,
    idx_folder_fingerprint,
    read_idx_files,
)
from jaxae.data.dataset import Dataset, from_prepared, reads_paths
from jaxae.data.errors import DataError, DataUnavailable
from jaxae.data.images import ImageOptions
from jaxae.data.records import (
    PreparedSplit,
    RecordArray,
    prepare,
    read_all,
    read_source_record,
)
from jaxae.messages import first_line

CONFIGS: dict[str, JaxaeImagesConfig] = {c.name: c for c in (MNIST_CONFIG, FASHION_MNIST_CONFIG)}
MNIST_NAMES: tuple[str, ...] = tuple(CONFIGS)
REACHABILITY_TIMEOUT_S = 3.0
SPLITS = ("train", "test")
# sha256 of every published .gz file -> (data set, file name)
PUBLISHED_SHA256 = {sha: (c.name, name) for c in CONFIGS.values() for name, _, sha in c.files}

__all__ = ["Dataset", "MNIST_NAMES", "load_dataset", "class_names"]


def _config(name: str) -> JaxaeImagesConfig:
    """Return the builder config of `name`, or raise DataError listing the valid names."""
    if name not in CONFIGS:
        raise DataError(
            f"unknown data set {name!r}: valid names are {', '.join(MNIST_NAMES)}; for the "
            "others call jaxae.data.load_folder(path), load_npz(path), load_cifar10() or "
            "DATASETS.get(name)(**options), which reads any TFDS name too"
        )
    return CONFIGS[name]


def class_names(name: str) -> tuple[str, ...]:
    """Return the class names of data set `name`, indexed by label."""
    return _config(name).class_names


def env_var(name: str) -> str:
    """Return the environment variable that may point at data set `name`'s IDX folder."""
    return f"JAXAE_{name.upper()}_DIR"


def _dpkg_idx_dirs(package: str) -> list[str]:
    """Return the folders holding IDX files that dpkg lists for a Debian package, if any."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=10, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [os.path.dirname(p) for p in listing.splitlines()
            if p.endswith("train-images-idx3-ubyte.gz")]


def debian_idx_dir(config: JaxaeImagesConfig) -> str | None:
    """Return the folder of IDX files that the data set's Debian package (which it declares,
    if any) installed, else None."""
    if not config.debian_package:
        return None
    for folder in [*_dpkg_idx_dirs(config.debian_package), config.debian_folder]:
        if folder and idx.find_idx_file(folder, "train-images-idx3-ubyte") is not None:
            return folder
    return None


def find_idx_dir(name: str, idx_dir: str | None = None) -> tuple[str, str] | None:
    """Return (folder, where it came from) of a local IDX folder for `name`, or None.

    Order: the `idx_dir` argument, then $JAXAE_<NAME>_DIR, then the Debian package the data
    set declares (Fashion-MNIST's).
    """
    found = requested_idx_dir(name, idx_dir)
    if found is not None:
        return found
    config = CONFIGS.get(name)
    if config is not None and (folder := debian_idx_dir(config)) is not None:
        return folder, f"Debian package {config.debian_package}"
    return None


def requested_idx_dir(name: str, idx_dir: str | None = None) -> tuple[str, str] | None:
    """(folder, where it came from) of an IDX folder the user named: the `idx_dir` argument
    (config.data.data_dir) or $JAXAE_<NAME>_DIR; None when neither is set."""
    if idx_dir:
        return os.fspath(idx_dir), "config.data.data_dir"
    if folder := os.environ.get(env_var(name)):
        return folder, f"${env_var(name)}"
    return None


def identify_idx_files(name: str, folder: str, files: IdxFiles) -> None:
    """Raise DataError when the IDX files of `folder` are the other data set's: their
    published sha256, or (recompressed, unpacked, or jaxae.data.mnist5k's subset) the sizes
    and first labels of a version known here (`KNOWN_LABEL_STARTS`), say so."""
    config = _config(name)
    sha256 = {file_name: sha for file_name, _, sha in files.entries}
    for stems in idx.SPLIT_FILES.values():
        for stem in stems:
            file_name = stem + ".gz"  # an unpacked file has no published checksum
            owner = PUBLISHED_SHA256.get(sha256.get(file_name, ""))
            if owner is not None and owner[0] != name:
                raise _other_data_set(config, folder, owner[0],
                                      f"{file_name} has the published sha256 of "
                                      f"{CONFIGS[owner[0]].title}'s {owner[1]}")
    splits = files.splits
    for other, versions in KNOWN_LABEL_STARTS.items():
        if other == name:
            continue
        for version in versions:
            if all(len(splits[s][1]) == version[s][0] and
                   tuple(int(v) for v in splits[s][1][:10]) == version[s][1] for s in SPLITS):
                raise _other_data_set(config, folder, other,
                                      f"its {len(splits['train'][1]):,} training labels begin "
                                      f"as {CONFIGS[other].title}'s do")


def _other_data_set(config: JaxaeImagesConfig, folder: str, other: str, why: str) -> DataError:
    return DataError(
        f"IDX folder {folder} holds {CONFIGS[other].title}, not {config.title} ({why}): use "
        f"--config.data.name={other}, or point --config.data.data_dir at {config.title}'s files"
    )


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


def _prepare(builder: JaxaeImages, manual_dir: str | None) -> bool:
    """Write the array_record files, from `manual_dir` when given, else from a TFDS download;
    False when another process prepared them meanwhile (`records.prepare`)."""
    return prepare(builder, f"data set {builder.builder_config.name}", manual_dir)


def _prepare_from_folder(name: str, builder: JaxaeImages, folder: str) -> bool:
    """Prepare `name` from the IDX files of `folder`, validated and identified first (before
    TFDS writes anything), each file read once for both; False as `_prepare`."""
    files = read_idx_files(folder)
    identify_idx_files(name, folder, files)
    builder.manual_files = files
    try:
        return _prepare(builder, manual_dir=folder)
    finally:
        builder.manual_files = None


def _offline_error(name: str, config: JaxaeImagesConfig, builder: JaxaeImages
                   ) -> DataUnavailable:
    """Build the one-line error for: not prepared, no local folder, download host unreachable."""
    host = urllib.parse.urlsplit(config.base_url).hostname
    files = ", ".join(stem + ".gz" for pair in idx.SPLIT_FILES.values() for stem in pair)
    apt = (f", or run `apt-get install {config.debian_package}`" if config.debian_package else
           ", or write 5,000 real digits there with `python -m jaxae.data.mnist5k DIR` (and "
           "give them a --config.data.tfds_dir of their own)")
    return DataUnavailable(
        f"data set {name} is not prepared in {builder.data_path}, no local IDX folder was found "
        f"and {host} is unreachable: connect to the internet so TFDS downloads it, or point "
        f"--config.data.data_dir or ${env_var(name)} at a folder holding {files}{apt}"
    )


def _download(name: str, builder: JaxaeImages) -> bool:
    """Let TFDS download (checksums verified) and prepare `name`; failures become DataError;
    False as `_prepare`."""
    config = _config(name)
    if not host_reachable(config.base_url):
        raise _offline_error(name, config, builder)
    try:
        return _prepare(builder, manual_dir=None)
    except DataError:
        raise
    except Exception as e:  # any TFDS or network failure: same one-line hint
        raise DataError(
            f"TFDS could not download {name} from {config.base_url} ({type(e).__name__}: "
            f"{first_line(e)}): retry, or point ${env_var(name)} at a folder of the four IDX .gz "
            "files"
        ) from e


def _check_same_source(name: str, builder: JaxaeImages, folder: str, origin: str,
                       record: dict) -> None:
    """Raise DataError when the IDX files of `folder` (which the user named) are not the
    ones the prepared set was made from; the same data packed otherwise is accepted."""
    if record.get("fingerprint") == idx_folder_fingerprint(folder):
        return
    files = read_idx_files(folder)
    identify_idx_files(name, folder, files)
    recorded = record.get("content_sha256")
    if recorded is None:  # prepared by an older jaxae: compare with the prepared data itself
        prepared = {split: PreparedSplit(builder.data_path, split, builder=builder)
                    for split in SPLITS}
        recorded = idx_content_sha256({s: read_all(RecordArray(p)) for s, p in prepared.items()})
    if recorded == idx_content_sha256(files.splits):
        return
    made_from = record.get("source", "other files (not recorded: prepared by an older jaxae)")
    raise DataError(
        f"data set {name} prepared in {builder.data_path} was made from {made_from}, not from "
        f"the IDX files in {folder} ({origin}), which hold other images or labels: delete "
        f"{builder.data_path} to prepare it again from {folder}, or pass another "
        "--config.data.tfds_dir"
    )


@reads_paths(data_dir="folder")
def load_dataset(
    name: str, *, data_dir: str | None = None, tfds_dir: str | None = None,
    image_size: int | None = None, channels: int | None = None, streaming: str = "memory",
    memory_budget_mb: float | None = None, **others: object,
) -> Dataset:
    """Return data set `name` ('mnist' or 'fashion_mnist') as uint8 arrays [N, H, W, C].

    Uses the TFDS data set already prepared in `tfds_dir` (None: TFDS's default dir), after
    checking it was made from the IDX folder named by `data_dir` or $JAXAE_<NAME>_DIR, if
    any; otherwise prepares it from a validated local IDX folder (`data_dir`,
    $JAXAE_<NAME>_DIR, the Debian package); otherwise lets TFDS download it, after a short
    reachability check. `image_size` / `channels` resize and convert the 28x28 grey images;
    `streaming` and `memory_budget_mb` as in `jaxae.data.dataset.should_stream`.
    """
    config = _config(name)  # another name (load_dataset("folder", path=...)): what to call
    if others:
        takes = [p.name for p in inspect.signature(load_dataset).parameters.values()
                 if p.kind is p.KEYWORD_ONLY]
        wrong = next(iter(others))
        close = difflib.get_close_matches(wrong, takes, n=1)
        raise TypeError(f"load_dataset({name!r}) takes no {wrong}: "
                        + (f"did you mean {close[0]}? " if close else "")
                        + f"it takes {', '.join(takes)}")
    options = ImageOptions(image_size, channels)
    builder = _builder(name, tfds_dir)
    where = os.fspath(builder.data_path)
    prepared_now = False
    if not _is_prepared(builder):
        if (found := find_idx_dir(name, data_dir)) is not None:
            folder, origin = found
            prepared_now = _prepare_from_folder(name, builder, folder)
            how = f"prepared from {folder}, {origin}"
        else:
            prepared_now = _download(name, builder)
            how = f"downloaded from {config.base_url}"
    record = read_source_record(where)
    if not prepared_now:  # earlier, or by another process while this one waited for it
        requested = requested_idx_dir(name, data_dir)
        if requested is not None:
            _check_same_source(name, builder, *requested, record)
        how = "prepared earlier" + (f" from {record['source']}" if record.get("source") else "")
    splits = [PreparedSplit(where, split, options=options, builder=builder) for split in SPLITS]
    change = options.describe(splits[0].stored_shape)
    return from_prepared(
        *splits, name=name, class_names=class_names(name), title=config.title,
        source=f"TFDS {JaxaeImages.name}/{name}:{builder.version} in {where} ({how})"
        + (f", {change}" if change else ""),
        fingerprint=record.get("fingerprint", "unrecorded (prepared by an older jaxae)"),
        content_sha256=str(record.get("content_sha256") or ""), streaming=streaming,
        memory_budget_mb=memory_budget_mb)
