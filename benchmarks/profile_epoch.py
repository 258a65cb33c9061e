"""Where one whole-epoch dispatch spends its device time: the kernels, by total time.

    python -m benchmarks.profile_epoch --model conv_ae --conv patches --batch-size 128

Compiles one epoch of training steps as the trainer does (one compiled loop), runs it once to
warm up, traces a second run with `jax.profiler`, and prints per training step the time and
count of the most expensive kernels (the GPU's kernels where there is a GPU, else the host's
XLA operations). The workloads are the bench's (`benchmarks.workloads`); run it from the
repository root.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile

import jax

from benchmarks import workloads
from jaxae.cli.arguments import OneLineErrors
from jaxae.data import load_dataset
from jaxae.kernels import conv, precision


def kernel_times(trace_dir: str) -> tuple[str, collections.Counter, collections.Counter]:
    """(plane name, total ns, count) per (line, event) of the trace's device plane. On the
    host, a line is one of XLA's worker threads, which share out the same operations, so
    their events are summed under one line, "threads"."""
    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    planes = list(jax.profiler.ProfileData.from_file(path).planes)
    plane = next((p for p in planes if "GPU" in p.name or "TPU" in p.name), None)
    on_host = plane is None
    plane = plane or next(p for p in planes if p.name.startswith("/host:CPU"))
    totals, counts = collections.Counter(), collections.Counter()
    for line in plane.lines:
        if line.name == "python":  # the host plane also holds Python's own frames
            continue
        for event in line.events:
            if event.name.startswith("ThunkExecutor"):  # wrappers around the CPU's ops
                continue
            key = ("threads" if on_host else line.name, event.name)
            totals[key] += event.duration_ns
            counts[key] += 1
    return plane.name, totals, counts


def main() -> None:
    parser = OneLineErrors(prog="python -m benchmarks.profile_epoch",
                           description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list(workloads.WORKLOADS), default="conv_ae")
    parser.add_argument("--conv", choices=conv.IMPLEMENTATIONS, default="patches")
    parser.add_argument("--compute-dtype", choices=precision.COMPUTE_DTYPES, default="float32")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=None, help="first N images only")
    parser.add_argument("--tfds-dir", default=None)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size}: give 1 or more")
    if args.train_size is not None and not args.batch_size <= args.train_size:
        parser.error(f"--train-size {args.train_size} holds no batch of {args.batch_size}: "
                     f"give at least {args.batch_size}")
    data = load_dataset("fashion_mnist", tfds_dir=args.tfds_dir)
    images, labels = data.train_images[:args.train_size], data.train_labels[:args.train_size]
    arrays = jax.device_put({"image": images, "label": labels})
    config = workloads.bench_config(args.model, args.batch_size, args.conv, args.compute_dtype)
    first = workloads.first_epoch(config, arrays)
    state, keys, order, num_steps = first.state, first.keys, first.order, first.num_batches
    epoch = first.train_chunk(num_steps).lower(
        state, arrays, order, 0, keys.train, num_steps).compile()
    state, _ = epoch(state, arrays, order, 0, keys.train, num_steps)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            state, _ = epoch(state, arrays, order, 0, keys.train, num_steps)
            jax.block_until_ready(state)
        plane, totals, counts = kernel_times(folder)
    conv_text = f", conv={config.model.conv}" if "conv" in config.model else ""
    print(f"{args.model}{conv_text}, batch {args.batch_size}, {num_steps} steps; "
          f"{plane}: {sum(totals.values()) / 1e6:.1f} ms of events in all")
    print("  us/step  calls/step  [line] kernel")
    for (line, name), total in totals.most_common(args.top):
        print(f"{total / 1e3 / num_steps:9.2f} {counts[(line, name)] / num_steps:11.2f}  "
              f"[{line}] {name[:100]}")


if __name__ == "__main__":
    main()
