"""The bench's command line (`python -m benchmarks.bench`): its options (`parse_args`) and
every check made of them before anything runs, so that a wrong setting is one error line
(`OneLineErrors`) and not a failure after minutes of measuring; the checks of the PyTorch
peer's options and the size lists are shared with the other benchmark scripts (`parity`,
`same_draws_parity`, `narrow_gradient`, `permutation`). The command's documentation, which
--help prints, is `benchmarks.bench`'s docstring."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys

import jax
import numpy as np

from benchmarks import roofline
from benchmarks.report import device_title, section_contents
from benchmarks.workloads import (
    DTYPES,
    EPOCH_IMAGES,
    TRAIN_BATCH,
    WORKLOADS,
    bench_config,
    pool_size,
)
from jaxae import build
from jaxae import config as config_lib
from jaxae.cli.arguments import OneLineErrors
from jaxae.kernels import conv as conv_lib
from jaxae.keys import SEED_RANGE
from jaxae.training import memory

MODES = ("throughput", "quality", "precision", "determinism", "matmuls")
MODE_FLAGS = {  # the options each mode reads, besides --mode, --models, --write and --append
    "throughput": ("batch_sizes", "image_sizes", "channels", "widths", "steps_per_chunk",
                   "chunks", "conv", "compute_dtype", "peak_n", "background_load",
                   "background_pin", "no_roofs", "data", "peer_python", "peer_script",
                   "tfds_dir", "plot", "devices"),
    "quality": ("epochs", "seed", "seeds", "checks_per_epoch", "peer_python", "peer_script",
                "tfds_dir"),
    "precision": ("steps_per_chunk", "chunks", "compute_dtype", "peak_n", "no_roofs", "data",
                  "epochs", "seed", "tfds_dir"),
    "determinism": ("batch_sizes", "compute_dtype", "data", "steps"),
    "matmuls": ("batch_sizes", "steps_per_chunk", "chunks", "conv", "peak_n", "data",
                "peer_python", "peer_script", "tfds_dir"),
}
DEFAULT_PEAK_N = f"default {roofline.CPU_PEAK_N} on a CPU, {roofline.ACCELERATOR_PEAK_N} else"
PEAK_N_LEAST = 128  # a smaller matmul runs far from the peak, or faster than the timer
PEER_CHECK_TIMEOUT_S = 120  # `import torch` in the peer's Python, before anything runs
ONE_VALUE_FLAGS = {"determinism": ("batch_sizes", "compute_dtype"),  # lists: one value only
                   "matmuls": ("batch_sizes", "conv")}
PLOT_FORMATS = roofline.PLOT_FORMATS


def chunk_steps(text: str) -> int | None:
    """--steps-per-chunk: a positive number of steps, or "epoch" (None: a whole epoch)."""
    if text == "epoch":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--steps-per-chunk={text!r}: give a positive number of steps or "
                         "'epoch', e.g. --steps-per-chunk=100")
    return int(text)


def positive_ints(text: str) -> list[int]:
    """"128,1024" -> [128, 1024]: an argparse type (the benchmark scripts' size lists)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by "
                                         "commas")
    if twice := sorted({v for v in values if values.count(v) > 1}):
        raise argparse.ArgumentTypeError(  # each would be measured as often as it is named
            f"{text!r} names {', '.join(map(str, twice))} more than once: give each once")
    return values


def _ints(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        return positive_ints(text)
    except argparse.ArgumentTypeError as error:
        parser.error(f"{flag}={error}")


def parse_args(argv: list[str] | None = None, description: str | None = None
               ) -> argparse.Namespace:
    """The bench's options, checked; `description` is what --help prints above them (the
    command's documentation: `benchmarks.bench`'s docstring, which `bench.main` passes)."""
    parser = OneLineErrors(prog="python -m benchmarks.bench", description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           allow_abbrev=False)  # an option is read as written (--data's check)
    parser.add_argument("--mode", default="throughput",
                        help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--models", default=None,
                        help="comma-separated workloads: " + ", ".join(WORKLOADS) +
                             " (default: all for throughput; quality, precision, determinism "
                             "and matmuls take their own lists)")
    parser.add_argument("--batch-sizes", default="128", help="comma-separated")
    parser.add_argument("--devices", type=int, default=None, metavar="N",
                        help="throughput: split each batch over the first N devices, "
                             "data-parallel as train.py splits it over all (default: all "
                             "devices JAX sees); the roofs are those N devices' together")
    parser.add_argument("--image-sizes", default="28",
                        help="comma-separated square image sizes, e.g. 28,32,64,128 (other "
                             "than 28x28x1: random pixels)")
    parser.add_argument("--channels", default="1", help="comma-separated, e.g. 1,3")
    parser.add_argument("--widths", default="1",
                        help="comma-separated feature multipliers of the conv models")
    parser.add_argument("--steps-per-chunk", default="100",
                        help="training steps per timed dispatch, or 'epoch' for a whole epoch")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--conv", default=conv_lib.DEFAULT_IMPLEMENTATION,
                        help="comma-separated config.model.conv values the models with "
                             "convolutions run with: " + ", ".join(conv_lib.IMPLEMENTATIONS))
    parser.add_argument("--compute-dtype", default=None,
                        help="comma-separated: " + ", ".join(DTYPES) + " (tf32: GPUs only; "
                             "the peer runs float32 once per model). Default: float32; "
                             "precision: every one")
    parser.add_argument("--peak-n", type=int, default=None,
                        help=f"matmul size for the peak, {PEAK_N_LEAST} or more ({DEFAULT_PEAK_N})")
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="throughput: run N busy-looping processes meanwhile (a shared "
                             "machine, for jaxae and the peer alike)")
    parser.add_argument("--background-pin", action="store_true",
                        help="pin the --background-load processes to the last N CPUs")
    parser.add_argument("--no-roofs", action="store_true",
                        help="throughput only: skip the roofs measured between chunks")
    parser.add_argument("--data", default="fashion_mnist",
                        choices=("fashion_mnist", "random", "auto"),
                        help="28x28x1 workloads: Fashion-MNIST, random pixels, or "
                             "Fashion-MNIST where it loads")
    parser.add_argument("--epochs", type=int, default=None,
                        help="quality and precision: epochs of training (default: each "
                             "pairing's own: conv 5, VAE 10)")
    parser.add_argument("--seed", type=int, default=0, help="quality, precision: the seed")
    parser.add_argument("--seeds", type=int, default=1,
                        help="quality: repeat with seeds --seed .. --seed + N - 1 and report "
                             "the median ratio and its range")
    parser.add_argument("--checks-per-epoch", type=int, default=4,
                        help="quality: past the peer's epochs, jaxae's test figure is "
                             "checked N times an epoch (each check's evaluation counted); "
                             "1: at epochs' ends only")
    parser.add_argument("--steps", type=int, default=200,
                        help="determinism: training steps per run")
    parser.add_argument("--peer-python", default=None,
                        help="a Python with torch installed: also run the PyTorch peer "
                             "(needs --peer-script)")
    parser.add_argument("--peer-script", default=None, metavar="PATH",
                        help="the PyTorch peer's script (torch_autoencoders.py); required "
                             "with --peer-python")
    parser.add_argument("--tfds-dir", default=None, metavar="DIR",
                        help="the TFDS data dir Fashion-MNIST is prepared in (default: "
                             "TFDS's own; the quality mode's: a fresh one each run, as the "
                             "peer reads the IDX files each run); its IDX files: "
                             "$JAXAE_FASHION_MNIST_DIR")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="throughput: plot the achieved FLOP/s and the fraction of the "
                             "roof against FLOPs/step")
    parser.add_argument("--write", default=None, help="write the markdown report into this "
                                                      "device's section of this file")
    parser.add_argument("--append", default=None,
                        help="add the markdown report to the end of this device's section")
    args = parser.parse_args(argv)
    try:  # first: every workload would be refused for it, as though of its size
        config_lib.require_32_bits()
    except config_lib.ConfigError as error:
        parser.error(str(error))
    check_peer_args(parser, args, required=False)
    for flag, value in (("--mode", args.mode), ("--models", args.models)):
        if value and "" in value.split(","):
            parser.error(f"{flag} {value} has an empty name: give names separated by single "
                         "commas")
    modes = args.mode.split(",")
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--mode: unknown {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if len(set(modes)) < len(modes):
        parser.error(f"--mode {args.mode} names a mode twice: give each once")
    if args.models == "":
        parser.error("--models needs a comma-separated list, or leave it out for each mode's "
                     "own")
    if args.background_pin and not hasattr(os, "sched_setaffinity"):
        parser.error("--background-pin needs CPU affinity (os.sched_setaffinity: Linux): "
                     "leave it out here")
    if args.background_pin and not args.background_load:
        parser.error("--background-pin pins the --background-load processes: give "
                     "--background-load N too")
    if "matmuls" in modes and jax.default_backend() != "cpu":
        parser.error(f"--mode matmuls compares the CPU's products with the CPU peer's, but "
                     f"JAX runs on {jax.default_backend()}: run it with JAX_PLATFORMS=cpu")
    if args.models:
        if unknown := [m for m in args.models.split(",") if m not in WORKLOADS]:
            parser.error(f"unknown model(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(WORKLOADS)}")
    try:
        chunk_steps(args.steps_per_chunk)
    except ValueError as error:
        parser.error(str(error))
    for flag in ("batch_sizes", "image_sizes", "channels", "widths"):
        _ints(parser, _option(flag), getattr(args, flag))
    given = sys.argv[1:] if argv is None else argv
    shapes = {(int(s), int(c)) for s in args.image_sizes.split(",")
              for c in args.channels.split(",")}
    data_given = any(a == "--data" or a.startswith("--data=") for a in given)
    if data_given and args.data != "random" and modes == ["throughput"] and (28, 1) not in shapes:
        parser.error(f"--data {args.data} is read by the 28x28x1 workloads, and --image-sizes "
                     f"{args.image_sizes} --channels {args.channels} ask for none (other shapes "
                     "train on random pixels): drop --data, or add 28 and 1")
    check_epoch_fits(parser, args, modes)
    for mode, flags in ONE_VALUE_FLAGS.items():
        for flag in flags:
            value = getattr(args, flag)
            if mode in modes and value and "," in value:
                parser.error(f"--mode {mode} measures one {_option(flag)} value, not {value}: give "
                             f"one, and run {mode} once per value")
    if unknown := [c for c in args.conv.split(",") if c not in conv_lib.IMPLEMENTATIONS]:
        parser.error(f"--conv: unknown {', '.join(unknown)}: choose from "
                     f"{', '.join(conv_lib.IMPLEMENTATIONS)}")
    dtypes = (args.compute_dtype or "float32").split(",")
    if unknown := [d for d in dtypes if d not in DTYPES]:
        parser.error(f"--compute-dtype: unknown {', '.join(unknown)}: choose from "
                     f"{', '.join(DTYPES)}")
    if set(dtypes) == {"tf32"} and jax.default_backend() == "cpu":
        parser.error("--compute-dtype tf32: a CPU has no TensorFloat-32, so nothing would be "
                     "measured: give float32 or bfloat16, or run on a GPU")
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: give 1 or more")
    if not SEED_RANGE[0] <= args.seed <= args.seed + args.seeds - 1 <= SEED_RANGE[1]:
        parser.error(f"--seed {args.seed} (with --seeds {args.seeds}): the seeds must lie in "
                     f"[{SEED_RANGE[0]}, {SEED_RANGE[1]}], as a config's seed does")
    if args.checks_per_epoch < 1:
        parser.error(f"--checks-per-epoch {args.checks_per_epoch}: give 1 or more")
    if args.write and args.append:
        parser.error("--write FILE replaces this device's section, --append FILE adds to it: "
                     "give one")
    if args.peak_n is not None and args.peak_n < PEAK_N_LEAST:
        parser.error(f"--peak-n {args.peak_n} is too small to measure a matmul peak (its "
                     "products are over before the timer resolves them, or run far from the "
                     f"peak): give {PEAK_N_LEAST} or more ({DEFAULT_PEAK_N})")
    if args.peak_n is not None:  # a typo's extra digit: an out-of-memory error after compiling
        available, where = memory.available_bytes(jax.devices()[0])
        needed = 3 * args.peak_n ** 2 * 4  # its two float32 factors and their product
        if available is not None and needed > available:
            parser.error(f"--peak-n {args.peak_n}: its three {args.peak_n}x{args.peak_n} "
                         f"float32 matrices need {needed / 2**30:,.1f} GiB, and "
                         f"{available / 2**30:,.1f} GiB of {where} is free: give a smaller one "
                         f"({DEFAULT_PEAK_N})")
    for flag, value, least in (("--chunks", args.chunks, 1),
                               ("--epochs", args.epochs, 1), ("--steps", args.steps, 1),
                               ("--background-load", args.background_load, 0)):
        if value is not None and value < least:
            parser.error(f"{flag} {value}: give {least} or more")
    if "quality" in modes:
        from benchmarks import quality
        for model in args.models.split(",") if args.models else ():
            try:
                quality.pairing_name(model)
            except ValueError as error:
                parser.error(f"--mode quality: {error}")
        check_peer_args(parser, args, required=True)  # it races the peer
    if "throughput" in modes:
        check_shapes_fit(parser, args)
    check_devices(parser, args, modes)
    check_output_paths(parser, args)
    check_flags_read(parser, args, modes)
    if args.peer_python:
        check_peer_torch(parser, args.peer_python)
        check_peer_script(parser, args.peer_python, args.peer_script)
    args.devices = args.devices or jax.device_count()  # checked against the defaults first
    return args


def check_devices(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  modes: list[str]) -> None:
    """--devices within the devices JAX sees, and every batch split evenly over them; the
    quality and precision modes train at batch 128 over every device, as train.py does, so
    the device count must divide 128 there (found here, not after the peer has run)."""
    count = jax.device_count()
    if args.devices is not None and not 1 <= args.devices <= count:
        parser.error(f"--devices {args.devices}: JAX sees {count} device(s): give "
                     + (f"1 to {count}" if count > 1 else "1 (on a CPU, XLA_FLAGS="
                        "--xla_force_host_platform_device_count=N makes N)"))
    devices = args.devices or count
    if "throughput" in modes:
        if uneven := [b for b in _ints(parser, "--batch-sizes", args.batch_sizes)
                      if b % devices]:
            parser.error(f"--batch-sizes {uneven[0]} does not split over {devices} devices: "
                         f"give multiples of {devices}, or --devices to a count that divides it")
    if trains := [m for m in ("quality", "precision") if m in modes]:
        if TRAIN_BATCH % count:
            parser.error(f"--mode {','.join(trains)} trains at batch {TRAIN_BATCH} over every "
                         f"device, as train.py does, and {count} devices do not split it: run "
                         "it on a device count that divides it (on a CPU, XLA_FLAGS="
                         "--xla_force_host_platform_device_count=N)")


def devices_used(args: argparse.Namespace) -> int:
    """The devices a run's measurements use (`header`): throughput's --devices (default all);
    all for quality and precision; the first alone for determinism and matmuls."""
    modes = set(args.mode.split(","))
    if modes <= {"determinism", "matmuls"}:
        return 1
    return args.devices if "throughput" in modes else jax.device_count()


def check_epoch_fits(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     modes: list[str]) -> None:
    """Every batch fits the epoch of EPOCH_IMAGES images the workloads train on, and a chunk
    of --steps-per-chunk steps fits an epoch at the largest batch."""
    largest = max(int(b) for b in args.batch_sizes.split(","))
    if largest > EPOCH_IMAGES:
        parser.error(f"--batch-sizes {largest} is larger than the {EPOCH_IMAGES:,}-image epoch "
                     f"every workload trains on: give at most {EPOCH_IMAGES:,}")
    steps = chunk_steps(args.steps_per_chunk)
    if steps is not None and {"throughput", "matmuls", "precision"} & set(modes) and \
            steps > EPOCH_IMAGES // largest:
        parser.error(f"--steps-per-chunk {steps} is more than the {EPOCH_IMAGES // largest} "
                     f"steps of an epoch at batch {largest}: give at most "
                     f"{EPOCH_IMAGES // largest}, or 'epoch'")


def check_shapes_fit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every model takes every --image-sizes x --channels x --widths it is asked for (its
    config and module built, nothing traced), before any data is loaded or compiled."""
    models = (args.models or ",".join(WORKLOADS)).split(",")
    widths = [int(w) for w in args.widths.split(",")]
    largest_batch = max(map(int, args.batch_sizes.split(",")))
    available, where = memory.available_bytes(jax.devices()[0])
    for size in map(int, args.image_sizes.split(",")):
        shape = (size, size, max(map(int, args.channels.split(","))))
        pixels = int(np.prod(shape))
        # a lower bound: the random images kept (two batches at least, uint8) and one float32
        # batch in and out; the activations come on top
        needed = pool_size(shape, largest_batch) * pixels + 8 * largest_batch * pixels
        if available is not None and needed > available:
            parser.error(f"--image-sizes {size} (--channels {shape[2]}) at batch "
                         f"{largest_batch} needs at least "
                         f"{needed / 2**30:,.1f} GiB, and {available / 2**30:,.1f} GiB of "
                         f"{where} is free: give smaller --image-sizes or --batch-sizes")
    for model in models:
        if model not in WORKLOADS:
            continue  # named by --models' own check
        for size in map(int, args.image_sizes.split(",")):
            for channels in map(int, args.channels.split(",")):
                for width in widths if WORKLOADS[model].uses_conv else [1]:
                    shape = (size, size, channels)
                    try:
                        config = bench_config(model, 128, width=width)
                        build.check_task(config_lib.make_task(config), shape)
                        build.make_model(config, shape, 10)
                    except config_lib.ConfigError as error:
                        parser.error(f"{model} at {size}x{size}x{channels}, width {width}: "
                                     f"{error}: drop that size from --image-sizes")


def _option(dest: str) -> str:
    """The command-line spelling of an argparse destination: batch_sizes -> --batch-sizes."""
    return "--" + dest.replace("_", "-")


def check_flags_read(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     modes: list[str]) -> None:
    """An option given away from its default that none of the chosen `modes` reads is an
    error (MODE_FLAGS), not a setting silently ignored."""
    read = {flag for mode in modes for flag in MODE_FLAGS[mode]}
    for flag in sorted({f for fs in MODE_FLAGS.values() for f in fs} - read):
        if getattr(args, flag) != parser.get_default(flag):
            readers = [mode for mode in MODES if flag in MODE_FLAGS[mode]]
            parser.error(f"{_option(flag)} is read by --mode {', '.join(readers)}, not by "
                         f"{', '.join(modes)}: drop it, or add one of those modes")


def check_writable_file(parser: argparse.ArgumentParser, flag: str, path: str) -> None:
    """A file `path` can be written: not a folder, in a folder that exists and is writable
    (through a link, the file it names and its folder: a report is written beside it and
    renamed over it)."""
    folder = os.path.dirname(os.path.realpath(path))
    if os.path.isdir(path):
        parser.error(f"{flag} {path} is a folder: give a file in it")
    if not os.path.isdir(folder):
        parser.error(f"{flag} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        parser.error(f"{flag} {path} cannot be written: choose a writable place")


def check_output_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--write, --append and --plot are checked before anything runs, so that a run of
    minutes or hours never ends in a path that cannot be written; --write refuses to replace
    a section that holds anything (--append adds to it)."""
    for flag, path in (("--write", args.write), ("--append", args.append),
                       ("--plot", args.plot)):
        if path == "":
            parser.error(f"{flag} needs a file name")
        if path:
            check_writable_file(parser, flag, path)
    if args.append and not os.path.isfile(args.append):
        parser.error(f"--append {args.append}: no such file: name an existing report, or "
                     "start one with --write")
    if args.plot and "throughput" not in args.mode.split(","):
        parser.error("--plot draws the throughput mode's rows: add --mode throughput, or drop "
                     "--plot")
    if args.plot and os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
        parser.error(f"--plot {args.plot}: give a file ending in "
                     f"{', '.join(PLOT_FORMATS)}")
    if args.plot and args.no_roofs:
        parser.error("--plot draws each row's fraction of the roof, which --no-roofs skips: "
                     "drop one of them")
    if args.write and (held := section_contents(args.write, device_title())):
        parser.error(f"--write {args.write} would replace its section '## {device_title()}', "
                     f"which holds {held}: add this run with --append {args.write}, or move "
                     "that section away first")


def check_peer_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    required: bool) -> None:
    """--peer-python and --peer-script come together (both, where `required`), and the
    script exists: a clear argparse error otherwise."""
    if required and not args.peer_python:
        parser.error("--peer-python PYTHON is required: a Python with torch installed")
    if args.peer_python and not args.peer_script:
        parser.error("--peer-python needs --peer-script PATH: the PyTorch peer's script "
                     "(torch_autoencoders.py), which is not part of this repository")
    if args.peer_script and not args.peer_python:
        parser.error("--peer-script is only used with --peer-python PYTHON (a Python with "
                     "torch installed)")
    if args.peer_script and not os.path.isfile(args.peer_script):
        parser.error(f"--peer-script {args.peer_script} does not exist")
    if args.peer_python and not shutil.which(args.peer_python):
        parser.error(f"--peer-python {args.peer_python} is not a program that can be run: "
                     "give the path of a Python with torch installed")


def check_peer_torch(parser: argparse.ArgumentParser, python: str) -> None:
    """The peer's Python imports torch: checked once, after every other option (it takes a
    second or two), and before anything runs."""
    try:
        done = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True,
                              timeout=PEER_CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        parser.error(f"--peer-python {python} does not run ({error})")
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no error message"])[-1]
        parser.error(f"--peer-python {python} cannot import torch ({said}): give a Python "
                     "with torch installed")


def check_peer_script(parser: argparse.ArgumentParser, python: str, script: str) -> None:
    """The peer's script is the PyTorch peer: its --help offers the step-bench mode the bench
    runs (a script of another kind would fail only after jaxae's rows were measured)."""
    try:
        done = subprocess.run([python, script, "--help"], capture_output=True, text=True,
                              timeout=PEER_CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        parser.error(f"--peer-script {script} does not run ({error})")
    if done.returncode != 0 or "step-bench" not in done.stdout:
        said = (done.stderr.strip().splitlines() or [""])[-1]
        parser.error(f"--peer-script {script} is not the PyTorch peer (its --help offers no "
                     f"step-bench mode{': ' + said if said else ''}): give "
                     "torch_autoencoders.py")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run: $XLA_FLAGS where set (the CPU's device count
    comes from it), then its options that differ from the defaults, and --devices wherever
    more than one ran (the default counts the devices JAX sees, which the flags set)."""
    defaults = vars(parse_args([]))
    flags = os.environ.get("XLA_FLAGS")
    return (f"XLA_FLAGS={shlex.quote(flags)} " if flags else "") + \
        "python -m benchmarks.bench " + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}")
            for k, v in vars(args).items()
            if (v != defaults.get(k) or (k == "devices" and isinstance(v, int) and v > 1))
            and k not in ("write", "append", "tfds_dir"))
