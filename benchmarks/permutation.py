"""Times an epoch's training order drawn two ways: `jax.random.permutation` whole, sorted
by XLA, and `jaxae.data.batches.epoch_permutation`'s CPU path, the same sort keys drawn by
JAX and sorted by NumPy (`batches.sort_by_rounds`); checks that both give the same order.

    python -m benchmarks.permutation [--sizes 10000,60000,1000000] [--epochs 5]

Both programs are compiled first; medians over --epochs epochs, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from benchmarks.bench_args import positive_ints
from benchmarks.report import header
from jaxae.cli.arguments import OneLineErrors
from jaxae.data import batches


def _median_ms(fn, epochs: int) -> float:
    fn(0)
    times = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        fn(epoch)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrors(prog="python -m benchmarks.permutation", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=positive_ints, default=[10_000, 60_000, 1_000_000],
                        help="examples an epoch, comma-separated")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# {header()}\n")
    print("| examples | sort rounds | XLA's sort, ms | NumPy's sort, ms | ratio | same order |")
    print("|---:|---:|---:|---:|---:|---|")
    key = jax.random.key(0)
    for size in args.sizes:
        def xla(epoch: int, size: int = size) -> np.ndarray:
            return np.asarray(batches.sorted_by_xla(key, epoch, size))

        def host(epoch: int, size: int = size) -> np.ndarray:
            return batches.sort_by_rounds(np.asarray(batches.shuffle_sort_keys(key, epoch,
                                                                               size)))

        xla_ms, host_ms = _median_ms(xla, args.epochs), _median_ms(host, args.epochs)
        same = all(np.array_equal(xla(e), host(e)) for e in range(args.epochs + 1))
        rounds = batches.shuffle_sort_keys(key, 0, size).shape[0]
        print(f"| {size:,} | {rounds} | {xla_ms:.1f} | {host_ms:.1f} | "
              f"{xla_ms / host_ms:.1f}x | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
