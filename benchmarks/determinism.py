"""A seeded run repeated bit for bit, with XLA's deterministic-ops flag, and what it costs.

    python -m benchmarks.bench --mode determinism [--models conv_ae,vae] [--steps 200]

For each model, four fresh processes train it from seed 0 for --steps steps (one compiled
loop, batches gathered on the device, the throughput bench's workloads at its one
--batch-sizes and --compute-dtype) and print a SHA-256 of the resulting parameters and their
step time: two with XLA's default GPU kernels, two with `--xla_gpu_deterministic_ops=true`
in XLA_FLAGS (no atomics in reductions and scatters, deterministic cuDNN/cuBLAS algorithms).
The report says whether each pair repeated bit for bit, and the deterministic runs' step time
against the default's. On a CPU the flag has no effect and every run repeats: a dry run of
the mode.
Each process runs `python -m benchmarks.determinism --child ...`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from jaxae.cli.arguments import OneLineErrors
from jaxae.cli.determinism import DETERMINISTIC_FLAG as FLAG  # the flag train.py adds

DEFAULT_MODELS = ("conv_ae", "vae")


def child(model: str, steps: int, batch_size: int, dtype: str, data_source: str,
          timed_chunks: int) -> dict:
    """In this (fresh) process: train `steps` steps from seed 0, hash the parameters, then
    time `timed_chunks` more chunks of the same length."""
    import jax
    import numpy as np

    from benchmarks import workloads

    data = workloads.BenchData(data_source)
    arrays, source = data.arrays(workloads.FASHION_SHAPE, batch_size)
    config = workloads.bench_config(model, batch_size, compute_dtype=dtype)
    with workloads.matmul_precision(dtype):
        epoch = workloads.first_epoch(config, arrays)
        steps = min(steps, epoch.num_batches)
        start = time.perf_counter()
        chunk = epoch.train_chunk(steps).lower(epoch.state, arrays, epoch.order, 0,
                                               epoch.keys.train, steps).compile()
        compile_s = time.perf_counter() - start
    state, _ = chunk(epoch.state, arrays, epoch.order, 0, epoch.keys.train, steps)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(state.params)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    seconds = []
    for _ in range(timed_chunks):
        start = time.perf_counter()
        state, metrics = chunk(state, arrays, epoch.order, 0, epoch.keys.train, steps)
        jax.block_until_ready((state, metrics))
        seconds.append((time.perf_counter() - start) / steps)
    return {"model": model, "steps": steps, "sha256": digest.hexdigest(),
            "step_ms": 1e3 * statistics.median(seconds), "compile_s": round(compile_s, 2),
            "data": source, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def spawn(model: str, steps: int, batch_size: int, dtype: str, data_source: str,
          deterministic: bool) -> dict:
    """One child run in a fresh process, with or without the deterministic-ops flag."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").replace(FLAG, "").strip()
    env["XLA_FLAGS"] = f"{flags} {FLAG}".strip() if deterministic else flags
    command = [sys.executable, "-m", "benchmarks.determinism", "--child", "--model", model,
               "--steps", str(steps), "--batch-size", str(batch_size), "--dtype", dtype,
               "--data", data_source]
    from benchmarks import bench

    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return bench.json_result(done, f"the determinism run of {model}"
                             f"{' with ' + FLAG if deterministic else ''}")


def table(rows: list[dict], on_cpu: bool = False) -> str:
    """The markdown table; the flag's cost is "n/a" on a CPU, where it changes nothing and
    the runs' step times differ by noise alone."""
    lines = ["| model | steps | XLA flag | run 1 SHA-256 | run 2 SHA-256 | bit for bit | step ms "
             "| cost |", "|---|---:|---|---|---|---|---:|---:|"]
    for r in rows:
        for deterministic in (False, True):
            runs = r["deterministic" if deterministic else "default"]
            same = runs[0]["sha256"] == runs[1]["sha256"]
            step_ms = statistics.mean(run["step_ms"] for run in runs)
            cost = ("-" if not deterministic else "n/a" if on_cpu else
                    f"{step_ms / r['default_step_ms'] - 1:+.1%}")
            lines.append(f"| {r['model']} | {runs[0]['steps']} | "
                         f"{'`' + FLAG + '`' if deterministic else 'default'} | "
                         f"`{runs[0]['sha256'][:16]}` | `{runs[1]['sha256'][:16]}` | "
                         f"{'yes' if same else '**no**'} | {step_ms:.3f} | {cost} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[str | None, signal.Signals | None]:
    """The determinism mode of `benchmarks.bench`: JSON lines, then the markdown table of the
    models measured (None if stopped before the first), and the signal that cut it short."""
    import jax

    from benchmarks import bench

    models = (args.models or ",".join(DEFAULT_MODELS)).split(",")
    batch_size = int(args.batch_sizes)  # one value (bench_args.ONE_VALUE_FLAGS)
    dtype = args.compute_dtype or "float32"
    rows = []

    def measure() -> None:  # a model's row once its four runs are done
        for model in models:
            row = {"model": model, "default": [], "deterministic": []}
            for deterministic in (False, True, False, True):  # alternating: a busy moment
                row["deterministic" if deterministic else "default"].append(  # is shared
                    spawn(model, args.steps, batch_size, dtype, args.data, deterministic))
            row["default_step_ms"] = statistics.mean(r["step_ms"] for r in row["default"])
            rows.append(row)
            print(json.dumps(row), flush=True)

    cut_short = bench.measure_rows(measure, rows)
    if not rows:
        return None, cut_short
    on_cpu = jax.devices()[0].platform == "cpu"
    report = table(rows, on_cpu) + bench.cut_short_note(cut_short, "models")
    print("\n" + report, flush=True)
    note = " (a CPU: the flag changes nothing; a dry run)" if on_cpu else ""
    trained = {r["default"][0]["steps"] for r in rows}
    if trained != {args.steps}:  # a run trains within one epoch (`child`)
        capped = (f" --steps {args.steps} is more than an epoch at batch {batch_size}: each "
                  f"run trained one epoch ({', '.join(map(str, sorted(trained)))} steps).")
        print(f"#{capped}", flush=True)
        note += ";" + capped[:-1]
    return (f"Batch {batch_size}, {dtype}, seed 0, each run a fresh process{note}; SHA-256 "
            "of the parameters after the steps, first 16 hex digits.\n\n" + report), cut_short


def main() -> None:
    parser = OneLineErrors(prog="python -m benchmarks.determinism",
                           description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help="one run (internal)")
    parser.add_argument("--model", default="conv_ae")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--data", default="auto")
    parser.add_argument("--timed-chunks", type=int, default=3)
    args = parser.parse_args()
    if not args.child:
        parser.error("run the mode as python -m benchmarks.bench --mode determinism")
    print(json.dumps(child(args.model, args.steps, args.batch_size, args.dtype, args.data,
                           args.timed_chunks)), flush=True)


if __name__ == "__main__":
    main()
