"""Benchmarks on whatever device JAX sees: python -m benchmarks.bench [--mode MODES] ...

Modes (--mode, comma-separated; each writes its own part of the report):

throughput (default)
    For each workload, image shape, width and batch size: compile time, steady-state step
    time and images/s of the training path `train.py` runs (--steps-per-chunk steps, or a
    whole epoch, compiled as one loop, batches gathered on the device, each batch split
    over --devices devices, all by default, as train.py splits it; XLA's default kernels,
    where train.py asks a GPU for deterministic ones: docs/devices.md), and the step's
    roofline (`benchmarks.roofline`): FLOPs and bytes moved per step from XLA's cost
    analysis, their ratio (the arithmetic intensity), the matmul peak and the STREAM
    bandwidth measured between every two timed chunks, the roof that binds and the fraction
    of it reached. Warm-up (compilation included) is left out of every rate; each timed
    chunk ends with a device sync; a row is its median chunk by rate (with an even --chunks,
    the slower of the middle two), its roofs those read beside that chunk. Off the CPU,
    the bytes are counted in the step compiled for the host (the device's library calls
    count no FLOPs), and a second fraction of the roof uses the device program's own byte
    count (columns "device MB/step", "device bound", "of roof (device bytes)"). With
    --peer-python and --peer-script (the PyTorch peer, torch_autoencoders.py, --mode
    step-bench), the peer runs right after each 28x28x1 workload it implements, same model,
    batch size and threads, and the ratio is printed.
    --image-sizes, --channels and --widths grow the workloads (random pixels at sizes other
    than Fashion-MNIST's 28x28x1; --widths multiplies the conv models' features); --plot
    FILE.png draws the achieved FLOP/s and the fraction of the roof against FLOPs per step.
quality
    Time to quality against the peer (`benchmarks.parity`): seconds from the start to the
    peer's final test figure (conv AE BCE after 5 epochs, VAE ELBO after 10), data loading,
    compilation and evaluation reported apart from training, jaxae and the peer in one run;
    --seeds N repeats the pair over N seeds (the median ratio and its range).
precision
    The precision matrix (`benchmarks.precision_matrix`): float32, bfloat16 (and TF32 on a
    GPU) per model, the step's speed and the test figure after the same training.
determinism
    A seeded run repeated in fresh processes, with and without XLA's deterministic-ops flag
    (`benchmarks.determinism`): whether the parameters repeat bit for bit, and the cost.
matmuls
    Each model's training step split into its matrix products, each timed alone in XLA and
    in the peer's library, and the rest (`benchmarks.matmul_floor`): the float32 floor
    under the throughput ratio.

--write FILE puts the report in that device's section of FILE (keeping the other devices'
sections); --append FILE adds it to the end of that section. A stop (Ctrl-C, SIGTERM,
SIGUSR1) ends a mode with the rows it measured, which are reported and written; the modes
after it do not run, and the exit status is 128 + the signal. Run from the repository root.
"""
# (The docstring above is the command's --help.) This module measures: the throughput mode's
# timed chunks and roofs, the peer's runs, and `main`. The workloads and their data are in
# `benchmarks.workloads`, the report file and its tables in `benchmarks.report`, the options
# and their checks in `benchmarks.bench_args`.

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from benchmarks import roofline
from benchmarks.bench_args import chunk_steps, command_line, devices_used, parse_args
from benchmarks.report import (
    code_version,
    device_title,
    header,
    measured_commit,
    report_section,
    table,
    write_section,
)
from benchmarks.workloads import (
    EPOCH_IMAGES,
    FASHION_SHAPE,
    WORKLOADS,
    BenchData,
    BenchRefused,
    FirstEpoch,
    bench_config,
    dtypes_here,
    first_epoch,
    matmul_precision,
)
from jaxae import build
from jaxae import config as config_lib
from jaxae.cli import output
from jaxae.cli.signals import GracefulStop, not_ignored
from jaxae.data import batches
from jaxae.kernels import conv as conv_lib
from jaxae.provenance import usable_cpus
from jaxae.training import memory, parallel, steps


def step_cost(epoch: FirstEpoch, arrays: dict) -> roofline.Cost:
    """One training step's FLOPs and bytes, as XLA counts them in the step compiled on its
    own for one batch (the chunked loop's cost analysis would count the whole training set
    as read by the gather of each batch), without the gradient norm the loop computes only
    at a chunk's last step. Counted in the step compiled for the host CPU: a GPU's compiled
    step hands matmuls and convolutions to cuBLAS/cuDNN calls, which XLA's cost analysis
    counts as 0 FLOPs. The footprint is that of the step compiled for the device, and the
    device program's own counts are kept beside the host's: its fusions differ from the
    CPU's, so its bytes can be far fewer."""
    train_step = steps.train_step_fn(epoch.train_model, epoch.task, epoch.objective)
    step = jax.jit(lambda state, batch, key: train_step(state, batch, key, False))
    batch = batches.take_batch(arrays, epoch.order, 0, epoch.batch_size)
    args = (epoch.state, batch, epoch.keys.train)
    device_cost = roofline.step_cost(step.lower(*args).compile())
    if jax.devices()[0].platform == "cpu":
        return device_cost
    host = roofline.step_cost(step.lower(*jax.device_put(args, jax.devices("cpu")[0]))
                              .compile())
    return dataclasses.replace(host, footprint=device_cost.footprint,
                               device_flops=device_cost.flops, device_bytes=device_cost.bytes)


def check_fits(compiled: Any, batch_size: int, devices: int) -> None:
    """A ConfigError (the row is skipped, with a line that says why) where the compiled
    chunk's own buffers, its temporaries and outputs beside the arrays (and the roof meter's)
    already placed, are more than the device has free (`memory.check_fits`): running it
    would end in an out-of-memory traceback. CPU devices share the host's memory: each needs
    its own."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return
    needed = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes
              - analysis.alias_size_in_bytes)
    memory.check_fits(needed * (devices if jax.devices()[0].platform == "cpu" else 1),
                      f"its steps at batch {batch_size}", "skipped (give smaller "
                      "--batch-sizes, --widths or --image-sizes)", jax.devices()[0])


_METERS: dict[tuple, roofline.RoofMeter] = {}


def roof_meter(peak_n: int, footprint: int, dtype: str, mesh: Mesh | None = None
               ) -> roofline.RoofMeter:
    """A RoofMeter for this matmul size and dtype, a step of this footprint and the devices
    of `mesh` (reused)."""
    key = (peak_n, roofline.stream_array_bytes(footprint), dtype, mesh)
    if key not in _METERS:
        _METERS.clear()  # one at a time: their arrays can be large
        _METERS[key] = roofline.RoofMeter(peak_n, key[1], dtype, mesh=mesh)
    return _METERS[key]


def bench_model(workload: str, batch_size: int, steps_per_chunk: int | None, chunks: int,
                arrays: dict, conv: str = conv_lib.DEFAULT_IMPLEMENTATION,
                compute_dtype: str = "float32",
                width: int = 1, peak_n: int | None = None, epoch_images: int | None = None,
                roofs: bool = True, optimizer: str | None = None, devices: int = 1) -> dict:
    """Times `chunks` chunks of `steps_per_chunk` training steps after one warm-up chunk;
    `steps_per_chunk=None` makes each chunk one whole epoch, one dispatch per epoch. With
    `roofs`, the matmul peak (n = `peak_n`) and the STREAM bandwidth are measured before the
    first chunk and after every chunk, and each chunk's fraction of the roof is taken under
    the better of the measurements on either side of it. `optimizer` replaces the
    workload's (Adam) by another of `config.optim.name`'s. `devices` > 1: each batch is
    split over the first `devices` devices, data-parallel as train.py splits it, and the
    roofs are those devices' together (the step's FLOPs and bytes are the whole batch's)."""
    config = bench_config(workload, batch_size, conv, compute_dtype, width)
    if optimizer:
        config.optim.name = optimizer
        config_lib.validate(config)
    with matmul_precision(compute_dtype):
        epoch = first_epoch(config, arrays, epoch_images)
        state, keys, order, num_batches = (epoch.state, epoch.keys, epoch.order,
                                           epoch.num_batches)
        if steps_per_chunk is not None and steps_per_chunk > num_batches:
            raise BenchRefused(
                f"--steps-per-chunk {steps_per_chunk} is more than the {num_batches} steps of "
                f"an epoch at batch {batch_size}: give at most {num_batches}, or 'epoch'")
        steps_per_chunk = steps_per_chunk or num_batches
        cost = step_cost(epoch, arrays)  # of the whole batch, on one device
        mesh = parallel.data_mesh(jax.devices()[:devices]) if devices > 1 else None
        train_arrays, train_key = arrays, keys.train
        if mesh is not None:  # placed as the trainer places them: replicated, then split
            state, train_arrays, order, train_key = parallel.put_replicated(
                (state, arrays, order, keys.train), mesh)
        start = time.perf_counter()
        chunk = epoch.train_chunk(steps_per_chunk, mesh).lower(
            state, train_arrays, order, 0, train_key, steps_per_chunk).compile()
        compile_s = time.perf_counter() - start
    on_cpu = jax.devices()[0].platform == "cpu"
    default_n = roofline.CPU_PEAK_N if on_cpu else roofline.ACCELERATOR_PEAK_N
    meter = roof_meter(peak_n or default_n, cost.footprint,
                       compute_dtype, mesh) if roofs else None
    check_fits(chunk, batch_size, devices)  # with the meter's arrays placed

    def run(index: int):
        nonlocal state
        first = (index * steps_per_chunk) % max(1, num_batches - steps_per_chunk + 1)
        state, metrics = chunk(state, train_arrays, order, first, train_key, steps_per_chunk)
        jax.block_until_ready((state, metrics))

    run(0)  # warm-up
    measured = [meter.measure()] if meter else []
    seconds = []
    for c in range(chunks):
        start = time.perf_counter()
        run(c + 1)
        seconds.append((time.perf_counter() - start) / steps_per_chunk)
        if meter:
            measured.append(meter.measure())
    rates = [batch_size / s for s in seconds]
    middle = median_chunk(seconds)
    images_per_s = rates[middle]
    step_s = batch_size / images_per_s
    row = {"model": workload, "framework": "jaxae", "batch": batch_size, "devices": devices,
           "image_shape": list(arrays["image"].shape[1:]), "width": width,
           "conv": config.model.get("conv"), "compute_dtype": compute_dtype,
           "img_per_s": images_per_s, "step_ms": 1e3 * step_s,
           "steps_per_chunk": steps_per_chunk, "epoch_ms": 1e3 * num_batches * step_s,
           "chunk_img_per_s": [round(r) for r in rates], "compile_s": round(compile_s, 2),
           "flops_per_step": cost.flops, "bytes_per_step": cost.bytes,
           "footprint_bytes": cost.footprint, "intensity": cost.intensity,
           "device_flops_per_step": cost.device_flops,
           "device_bytes_per_step": cost.device_bytes,
           "achieved_gflops": cost.flops / step_s / 1e9,
           "achieved_gbytes_per_s": cost.bytes / step_s / 1e9}
    if meter:
        row.update(roof_columns(cost, seconds, measured, meter))
        row.update(device_bytes_roof(cost, seconds, measured))
    row["median_chunk"] = middle
    return row


def median_chunk(seconds: list[float]) -> int:
    """The index of the median chunk by its rate (the slower of the middle two): a row's
    images/s, and its roofline columns, are that one chunk's."""
    slowest_first = sorted(range(len(seconds)), key=lambda i: -seconds[i])
    return slowest_first[(len(seconds) - 1) // 2]


def roof_columns(cost: roofline.Cost, seconds: list[float], measured: list[roofline.Roofs],
                 meter: roofline.RoofMeter | None = None) -> dict:
    """The roofline columns of a row, all of its median chunk (`median_chunk`, the chunk
    whose rate the row reports): the roofs held against it, the better of those read just
    before and after it (`roofline.chunk_fractions`), the roof they make binding and its
    fraction of that roof. So a row recomputes: its GFLOP/s over min(peak, bandwidth x
    FLOP/byte). Every chunk's fraction and roofs are kept beside it."""
    fractions, errors = roofline.chunk_fractions(cost, seconds, measured)
    index = median_chunk(seconds)
    roofs = measured[index] | measured[index + 1]
    _, bound = roofline.attainable(cost, roofs)
    columns = {"peak_gflops": roofs.peak_flops / 1e9,
               "bandwidth_gbytes_per_s": roofs.bandwidth / 1e9,
               "chunk_peak_gflops": [round(r.peak_flops / 1e9, 1) for r in measured],
               "chunk_bandwidth_gbytes_per_s": [round(r.bandwidth / 1e9, 1) for r in measured],
               "bound": bound, "fraction_of_roof": fractions[index],
               "chunk_fraction_of_roof": [f and round(f, 4) for f in fractions],
               "roof_errors": errors}
    if meter:
        columns |= {"peak_n": meter.peak_n, "stream_array_bytes": meter.array_bytes}
    return columns


def device_bytes_roof(cost: roofline.Cost, seconds: list[float],
                      measured: list[roofline.Roofs]) -> dict:
    """Off the CPU, the roof again with the bytes the device program's own cost analysis
    counts (its fusions, not the host's) and the host's FLOPs (the device's leave out the
    cuBLAS/cuDNN calls). A count that puts a chunk over the measured bandwidth is too high;
    one that stays under may still be too low (a library call's traffic it does not see),
    so the two fractions bound the truth between them. Empty where there is no device
    count."""
    if not cost.device_bytes:
        return {}
    columns = roof_columns(dataclasses.replace(cost, bytes=cost.device_bytes), seconds,
                           measured)
    return {f"device_bytes_{name}": columns[name]
            for name in ("bound", "fraction_of_roof", "roof_errors")}


def bench_peer(python: str, script: str, model: str, batch_size: int, num_steps: int,
               chunks: int, threads: int) -> dict:
    """The peer's own step-bench of the same model, as a subprocess; its JSON result."""
    workload = WORKLOADS[model]
    command = [python, script, "--model", workload.peer, "--mode", "step-bench",
               "--batch-size", str(batch_size), "--bench-steps", str(num_steps),
               "--bench-chunks", str(chunks), "--threads", str(threads), "--peak-n", "1024",
               "--init", build.init_scheme(workload.config())]  # jaxae's (the same speed)
    result = peer_result(command, f"the peer's step-bench of {model} ({script})")
    rates = result["chunk_img_per_s"]
    # its median as jaxae's (`median_chunk`): of an even count, the slower of the middle two
    # (the peer's own median, their mean, would favour it)
    rate = result["img_per_s"] if len(rates) % 2 else sorted(rates)[(len(rates) - 1) // 2]
    return {"model": model, "framework": f"torch {result['torch']}", "batch": batch_size,
            "img_per_s": rate, "chunk_img_per_s": rates,
            "fraction_of_peak": result.get("fraction_of_peak_median")}


def json_result(done: subprocess.CompletedProcess, what: str) -> dict:
    """The JSON object a finished subprocess printed last; one that failed, or printed no
    JSON last, is a BenchRefused naming `what` and its last error line (one line, and the
    run stops)."""
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchRefused(f"{what} failed with exit status {done.returncode}: {last}")
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        said = repr(lines[-1][:80]) if lines else "nothing"
        raise BenchRefused(f"{what} printed {said} where its result (a JSON line) belongs: "
                           "is it the peer's script?") from None


def peer_result(command: list[str], what: str) -> dict:
    """`json_result` of running `command` (the peer, in its own Python)."""
    return json_result(subprocess.run(command, capture_output=True, text=True), what)


class Stopped(BaseException):
    """A stop signal (a scheduler's SIGTERM or SIGUSR1, Ctrl-C) turned into an interrupt of
    the measurements, which the rows measured so far survive. Not a KeyboardInterrupt: a
    training run inside a mode (`cli.run`) would end the process on one."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum)


def _stop(signum: int, frame) -> None:
    raise Stopped(signum)


def _handle(signals: list[signal.Signals], handler) -> None:
    """Sets `handler` for each of `signals` (the bench's stop, or SIG_IGN between its parts)."""
    for sig in signals:
        signal.signal(sig, handler)


def measure_rows(measure: Callable[[], None], rows: list) -> signal.Signals | None:
    """Runs `measure`, which appends each row to `rows` as it is measured, until it ends or
    a stop signal (Ctrl-C, `timeout --signal=INT` at gpu.sh's budget, a scheduler's SIGTERM or
    SIGUSR1) cuts it short; returns that signal, or None. The rows measured are kept for the
    report, and the stop signals are ignored once it returns or raises, so that a late one
    loses no report (`main` gives the next mode its stop handler again)."""
    cut_short = None
    stops = not_ignored(GracefulStop.SIGNALS)  # SIGINT, SIGTERM, SIGUSR1
    try:
        _handle(stops, _stop)
        measure()
    except (Stopped, KeyboardInterrupt) as interrupt:
        cut_short = getattr(interrupt, "signal", signal.SIGINT)
    finally:
        _handle(stops, signal.SIG_IGN)
    if cut_short:
        _say(f"# interrupted ({cut_short.name}) after {len(rows)} row(s): those are "
             "reported")
    return cut_short


def cut_short_note(cut_short: signal.Signals | None, what: str) -> str:
    """The report's last paragraph for a mode cut short by `cut_short` ("" if it was not)."""
    return (f"\n\nCut short by {cut_short.name}: the {what} after these rows were not "
            "measured." if cut_short else "")


def throughput(args: argparse.Namespace) -> tuple[str | None, signal.Signals | None]:
    """The throughput mode: every workload x shape x width x batch x conv x dtype, with its
    roofline and, for the 28x28x1 workloads the peer implements, the peer's rate; prints
    JSON lines and returns (the markdown report, None if stopped before its first row; the
    signal that cut the run short or None), and draws --plot."""
    models = (args.models or ",".join(WORKLOADS)).split(",")
    steps_per_chunk = chunk_steps(args.steps_per_chunk)
    convs, dtypes = args.conv.split(","), (args.compute_dtype or "float32").split(",")
    dtypes, skipped = dtypes_here(dtypes)
    widths = [int(w) for w in args.widths.split(",")]
    if flat := [m for m in models if not WORKLOADS[m].uses_conv and widths != [1]]:
        print(f"# --widths widens the conv models only: {', '.join(flat)} run at width 1",
              flush=True)
    shapes = [(s, s, c) for s in map(int, args.image_sizes.split(","))
              for c in map(int, args.channels.split(","))]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    data = BenchData(args.data, args.tfds_dir)
    if FASHION_SHAPE in shapes and args.data != "random":  # one that does not load: said
        data.arrays(FASHION_SHAPE, batch_sizes[0])  # before any row is measured
    rows, sources = [], {}
    devices = args.devices  # as train.py: every device, by default (parse_args)
    peer_failed = []  # the peer's failure, once: the rows after it are measured without it
    output_failed = [failed] if (failed := output.failure()) else []  # (the header's line)

    def measure() -> None:  # appends each workload's row as it is measured
        for shape in shapes:
            for batch_size in batch_sizes:
                arrays, source = data.arrays(shape, batch_size)
                sources["x".join(map(str, shape))] = source
                for model in models:
                    workload = WORKLOADS[model]
                    peer = None  # one peer run per model, beside each of jaxae's runs of it
                    for width in widths if workload.uses_conv else [1]:
                        for conv in convs if workload.uses_conv else convs[:1]:
                            for dtype in dtypes:
                                try:
                                    ours = bench_model(model, batch_size, steps_per_chunk,
                                                       args.chunks, arrays, conv, dtype, width,
                                                       args.peak_n, EPOCH_IMAGES,
                                                       roofs=not args.no_roofs,
                                                       devices=devices)
                                except config_lib.ConfigError as error:
                                    print(f"# {model} at {shape}, width {width}: {error}",
                                          flush=True)
                                    continue
                                print(json.dumps(ours), flush=True)
                                if (peer is None and args.peer_python and workload.peer
                                        and not peer_failed
                                        and tuple(shape) == FASHION_SHAPE and width == 1):
                                    try:
                                        peer = bench_peer(args.peer_python, args.peer_script,
                                                          model, batch_size,
                                                          ours["steps_per_chunk"], args.chunks,
                                                          usable_cpus())
                                    except BenchRefused as error:
                                        peer_failed.append(str(error))
                                        print(f"# {error}: the rows from here on have no "
                                              "peer", flush=True)
                                    else:
                                        print(json.dumps(peer), flush=True)
                                rows.append((ours, peer if width == 1 else None))
                                # an output that failed (its reader ended, its disk full)
                                if output_failed:  # is a stop, as SIGPIPE's: the row is kept
                                    raise Stopped(signal.SIGPIPE)

    def measure_watched() -> None:
        with output.watched(output_failed.append):
            measure()

    cut_short = measure_rows(measure_watched, rows)
    if cut_short and not rows:
        return None, cut_short
    if not rows:
        raise BenchRefused("no workload was measured (the lines above say why each was "
                           "skipped); nothing is written")
    report = table(rows)
    if peer_failed:
        report += (f"\n\nThe peer failed ({peer_failed[0]}): the rows from its model on were "
                   "measured without it.")
    if devices > 1:
        report += (f"\n\nEach batch split over {devices} devices: FLOPs, bytes and step memory "
                   "are the whole batch's (its step compiled for one device), and the roofs "
                   f"the {devices} devices' together; per device, divide images/s and GFLOP/s "
                   f"by {devices}.")
    if args.peer_python and not peer_failed and any(peer is None for _, peer in rows):
        report += ("\n\nThe peer's columns read \"-\" where it has no such model, or at other "
                   "images than Fashion-MNIST's 28x28x1 or other widths than 1: it runs its own "
                   "models at their own size only.")
    report += cut_short_note(cut_short, "workloads")
    _say("\n" + report)
    notes = ", ".join(f"{shape}: {source}" for shape, source in sources.items())
    rows_are = ("Each row is its median chunk by rate (the slower of the middle two): its "
                "images/s, step and epoch times")
    roofs = (f"Roofs not measured (--no-roofs). {rows_are}. " if args.no_roofs else
             "Roofs measured between chunks: the matmul peak (the best of n = "
             f"{rows[0][0].get('peak_n', '-')} and smaller sizes) and a STREAM triad/copy over "
             "the step's footprint (`benchmarks/roofline.py` says how bytes are counted). "
             f"{rows_are}, and, beside it, the better of the roofs read just before and after "
             "it (peak, bandwidth), the roof they make binding and the fraction of it reached, "
             "so its GFLOP/s over min(peak, bandwidth x FLOP/byte) gives its fraction. ")
    text = (f"{skipped}Data: {notes}. {roofs}An epoch is the trainer's at every size: the "
            f"full batches of {EPOCH_IMAGES:,} images (Fashion-MNIST's training set; the "
            "remainder left out, so that every step has one shape).\n\n" + report)
    if args.plot and rows:
        roofline.plot([ours for ours, _ in rows], args.plot,
                      f"{device_title()}, {datetime.date.today().isoformat()}")
        text += (f"\n\nPlot: `{args.plot}` (achieved FLOP/s and fraction of the roof against "
                 "FLOPs per step).")
        _say(f"# wrote {args.plot}")
    return text, cut_short


def _say(line: str) -> None:
    """Prints a line of the report's end; where the output cannot be written (a job's `| tee`
    stopped with it, a full disk) the report is still written to its file."""
    with output.watched(output.dropped):
        print(line, flush=True)


@contextlib.contextmanager
def background_load(count: int, pin: bool = False):
    """`count` busy-looping processes (one thread each) for the duration: a shared machine,
    reproducibly. With `pin`, each is pinned to one of the last `count` CPUs, as another
    job given its own core would be; unpinned, the scheduler moves them."""
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                 for _ in range(count)]
    try:
        if pin:
            cpus = sorted(os.sched_getaffinity(0))
            for process, cpu in zip(processes, reversed(cpus), strict=False):
                os.sched_setaffinity(process.pid, {cpu})
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()


OTHER_MODES = {  # --mode -> (its report's title, the module whose run(args) measures it)
    "quality": ("Time to quality", "benchmarks.quality"),
    "precision": ("Precision matrix", "benchmarks.precision_matrix"),
    "determinism": ("Determinism", "benchmarks.determinism"),
    "matmuls": ("A step's matmuls and the rest", "benchmarks.matmul_floor"),
}


def _not_run(later: list[str], interrupted: signal.Signals | None) -> str:
    """The report's line for the modes a stop left unrun ("" if none), also printed."""
    if not (interrupted and later):
        return ""
    _say(f"# not run: --mode {', '.join(later)}")
    return f"\n\nNot run, after it: --mode {', '.join(later)}."


def _run_mode(mode: str, args: argparse.Namespace
              ) -> tuple[str, str | None, signal.Signals | None]:
    """(the mode's title, its report or None if stopped before its first row, the signal
    that cut it short or None)."""
    if mode != "throughput":  # its module imported only when it runs
        title, module = OTHER_MODES[mode]
        return (title, *importlib.import_module(module).run(args))
    with background_load(args.background_load, args.background_pin):
        text, interrupted = throughput(args)
    if args.background_load and text is not None:
        text = (f"Under {args.background_load} busy-looping background process(es)"
                f"{', pinned' if args.background_pin else ''}.\n\n" + text)
    return "Throughput and roofline", text, interrupted


def main(argv: list[str] | None = None) -> signal.Signals | None:
    """Runs the bench; returns the signal that cut its measurements short, if one did: the
    report of what was measured is written all the same, the modes after it are not run.
    From the first mode on, a stop signal ends the run with that report (in a mode's set-up
    too: the modes before it are reported); the process's own handlers are put back at the
    end."""
    args = parse_args(argv, description=__doc__)
    commit = measured_commit()  # at the start: files edited during the run do not count
    measured_code = code_version(commit)
    # the output names what measured it (a log of it is a record of its own)
    print(f"# {header(devices_used(args))}.{measured_code}\n# Command: {command_line(args)}",
          flush=True)
    parts, interrupted = [], None
    handlers = {sig: signal.getsignal(sig) for sig in GracefulStop.SIGNALS}
    stops = not_ignored(GracefulStop.SIGNALS)  # one the process was started ignoring stays so
    modes = args.mode.split(",")
    try:
        for number, mode in enumerate(modes):
            _handle(stops, _stop)  # (measure_rows leaves them ignored after a mode's rows)
            try:
                title, text, interrupted = _run_mode(mode, args)
            except Stopped as stop:  # in the mode's set-up, before it measured a row
                _handle(stops, signal.SIG_IGN)
                title, text, interrupted = mode, None, stop.signal
            later = _not_run(modes[number + 1:], interrupted)
            if text is not None:
                parts.append((title, text + later))
            elif interrupted and parts:  # the report so far says where it stopped
                parts[-1] = (parts[-1][0], parts[-1][1] + f"\n\nStopped by {interrupted.name} "
                             f"in --mode {mode}, before its first row." + later)
            if interrupted:
                break
        _handle(stops, signal.SIG_IGN)  # a late stop loses no report
        path = args.write or args.append
        if path and not parts:
            _say(f"# stopped before the first row: nothing is written to {path}")
        elif path:
            write_section(path, report_section(parts, measured_code, command_line(args),
                                               commit, devices_used(args)),
                          append=bool(args.append))
            _say(f"# wrote {path}")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return interrupted


def main_or_refuse(argv: list[str] | None = None) -> None:
    """`main`, with a BenchRefused as one error line and exit status 2; a run stopped
    mid-measurement exits 128 + the signal (130 for Ctrl-C) as soon as its report is
    written (an interpreter shutting down after XLA was interrupted mid-call can crash).
    An output that cannot be written stops the measurements as SIGPIPE would (`throughput`:
    after the row being measured), and is dropped elsewhere: the report is written to its
    file all the same."""
    output.usable_streams()
    with output.watched(output.dropped):
        try:
            interrupted = main(argv)
        except BenchRefused as error:
            print(f"python -m benchmarks.bench: error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)
        if interrupted:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(128 + interrupted)


if __name__ == "__main__":
    # the modes import benchmarks.bench (its bench_model, its roof meters): run that module,
    # not this __main__ copy
    from benchmarks import bench

    np.set_printoptions(precision=3)
    bench.main_or_refuse()
