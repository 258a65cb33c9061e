"""Times a Dense kernel's gradient in XLA's two layouts: x.T @ g, [K, N], as JAX writes it,
and (g.T @ x).T, [N, K] then transposed, as `jaxae.kernels.dense.kernel_gradient` computes
it for a narrow kernel (N <= NARROW_OUTPUTS < K) on the CPU.

    python -m benchmarks.narrow_gradient [--batch-sizes 128,1024] [--inputs 512,784]
        [--outputs 2,4,8,10,16,32,64]

Each product is its own compiled program, called back to back; a program that only adds
one element of each operand is timed too and its time (the call's own) taken off both.
Medians of 5 repeats, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
from jax import lax

from benchmarks.bench_args import positive_ints
from benchmarks.report import header
from jaxae.cli.arguments import OneLineErrors
from jaxae.kernels import dense


def _time_us(fn, *args, calls: int) -> float:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    repeats = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            out = compiled(*args)
        jax.block_until_ready(out)
        repeats.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(repeats)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrors(prog="python -m benchmarks.narrow_gradient",
                           description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=positive_ints, default=[128, 1024])
    parser.add_argument("--inputs", type=positive_ints, default=[512, 784], help="K values")
    parser.add_argument("--outputs", type=positive_ints, default=[2, 4, 8, 10, 16, 32, 64],
                        help="N values")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"# {header()}; NARROW_OUTPUTS = {dense.NARROW_OUTPUTS}\n")
    print("| batch | K | N | x.T @ g, us | (g.T @ x).T, us | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    key = jax.random.key(0)
    for batch in args.batch_sizes:
        for inputs in args.inputs:
            for outputs in args.outputs:
                x = jax.random.normal(key, (batch, inputs))
                g = jax.random.normal(jax.random.fold_in(key, 1), (batch, outputs))
                floor = _time_us(lambda x, g: x[0, 0] + g[0, 0], x, g, calls=args.calls)
                as_written = _time_us(lambda x, g: x.T @ g, x, g, calls=args.calls) - floor
                transposed = _time_us(lambda x, g: lax.optimization_barrier(g.T @ x).T,
                                      x, g, calls=args.calls) - floor
                print(f"| {batch} | {inputs} | {outputs} | {as_written:.1f} | "
                      f"{transposed:.1f} | {as_written / max(transposed, 0.1):.1f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
