"""Benchmarks on whatever device JAX sees: python -m benchmarks.bench [--mode MODES] ...

Modes (--mode, comma-separated; each writes its own part of the report):

throughput (default)
    For each workload, image shape, width and batch size: compile time, steady-state step
    time and images/s of the training path `train.py` runs (--steps-per-chunk steps, or a
    whole epoch, compiled as one loop, batches gathered on the device, each batch split
    over --devices devices, all by default, as train.py splits it), and the step's
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
sections); --append FILE adds it to the end of that section. Run from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple, NoReturn

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from benchmarks import roofline
from jaxae import build, registry
from jaxae import config as config_lib
from jaxae.data import batches, load_dataset
from jaxae.kernels import conv as conv_lib
from jaxae.keys import Keys, derive_keys
from jaxae.models import MODELS
from jaxae.objectives import Objective
from jaxae.provenance import head_commit, host_cpu, uncommitted_files, usable_cpus
from jaxae.tasks import Task
from jaxae.training import memory, parallel, steps

# Names the commit whose files a copy holds, where its .git is missing or older than its
# files (a GPU machine's copy): set, the reports name it and do not ask that copy's git.
COMMIT_VAR = "JAXAE_COMMIT"


def measured_commit() -> str:
    """The commit a report names: $JAXAE_COMMIT where set, else the checkout's HEAD."""
    return os.environ.get(COMMIT_VAR) or head_commit()

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
    "matmuls": ("batch_sizes", "steps_per_chunk", "chunks", "conv", "data", "peer_python",
                "peer_script", "tfds_dir"),
}
PEER_CHECK_TIMEOUT_S = 120  # `import torch` in the peer's Python, before anything runs
ONE_VALUE_FLAGS = {"determinism": ("batch_sizes", "compute_dtype"),  # lists: one value only
                   "matmuls": ("batch_sizes", "conv")}
CODE_SUFFIXES = (".py", ".toml", ".sh", ".cfg", ".txt")  # an uncommitted change to the code
EPOCH_IMAGES = 60_000  # an epoch in every row: Fashion-MNIST's training set
TRAIN_BATCH = 128  # the batch the quality and precision modes train at (the peer's)
FASHION_SHAPE = (28, 28, 1)
RANDOM_POOL_BYTES = 256 * 2**20  # random pixels at other sizes: at most this many bytes
# Bench dtypes: the config's compute dtype, and the precision float32 matmuls run at.
# "float32" asks for full float32 matmuls (XLA's GPU default is TF32); "tf32" (GPUs only)
# leaves them at TensorFloat-32; "bfloat16" is `jaxae.kernels.precision`.
DTYPES = ("float32", "bfloat16", "tf32")
PLOT_FORMATS = roofline.PLOT_FORMATS
UNSTEADY_SPREAD = 1.5  # a row whose fastest chunk beats its slowest by more is flagged


def dense_ae() -> ml_collections.ConfigDict:
    """The material's dense autoencoder (d = 10, MSE): the base config."""
    return config_lib.base_config()


def dae() -> ml_collections.ConfigDict:
    """The material's DAE: dropout-corrupted input, code of 940, kept pixels rescaled as
    nn.Dropout does (as the peer)."""
    config = config_lib.base_config()
    config.model.latent_dim = 940
    config.task.name, config.task.corruption = "denoise", "dropout"
    config.task.dropout_rescale = True
    return config


def conv_ae() -> ml_collections.ConfigDict:
    """The material's convolutional autoencoder (4x4x8 code), BCE."""
    config = config_lib.base_config()
    config.model = {"name": "conv_ae", "init": "glorot", "conv": "patches"}
    config.objective.loss = "bce"
    return config


def vae() -> ml_collections.ConfigDict:
    """The MLP VAE with a 2-D latent."""
    config = config_lib.base_config()
    config.model = {"name": "vae", "latent_dim": 2, "init": "glorot"}
    return config


def conv_vae() -> ml_collections.ConfigDict:
    """The convolutional VAE with a 16-D latent."""
    config = config_lib.base_config()
    config.model = {"name": "conv_vae", "latent_dim": 16, "init": "glorot", "conv": "patches"}
    return config


@dataclasses.dataclass(frozen=True)
class Workload:
    """A benchmarked model in the setting the PyTorch peer uses for it."""

    config: Callable[[], ml_collections.ConfigDict]
    peer: str | None  # the peer's --model for the same model; None: the peer has none

    @property
    def uses_conv(self) -> bool:
        """Whether its model declares a convolution implementation (config.model.conv),
        and so a width (config.model.width)."""
        return "conv" in registry.parameters(MODELS.get(self.config().model.name))


WORKLOADS = {
    "dense_ae": Workload(dense_ae, "dense"),
    "dae": Workload(dae, "dae"),
    "conv_ae": Workload(conv_ae, "conv"),
    "vae": Workload(vae, "vae"),
    "conv_vae": Workload(conv_vae, None),
}


def config_dtype(dtype: str) -> str:
    """The config's compute dtype for a bench dtype (TF32 is float32 at another precision)."""
    return "bfloat16" if dtype == "bfloat16" else "float32"


def dtypes_here(dtypes: list[str]) -> tuple[list[str], str]:
    """(the compute dtypes this device runs, the report's line on any left out): a CPU has
    no TensorFloat-32, so "tf32" is left out there, said once on stdout and in the report."""
    if jax.devices()[0].platform != "cpu" or "tf32" not in dtypes:
        return list(dtypes), ""
    print("# tf32: no TensorFloat-32 on a CPU; left out", flush=True)
    return [d for d in dtypes if d != "tf32"], "tf32 left out: a CPU has no TensorFloat-32. "


def matmul_precision(dtype: str) -> contextlib.AbstractContextManager:
    """The scope a bench dtype's programs are traced in: full float32 matmuls for
    "float32", TensorFloat-32 for "tf32" (on a CPU both are float32)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "bfloat16":
        return contextlib.nullcontext()
    return jax.default_matmul_precision("tensorfloat32" if dtype == "tf32" else "float32")


def bench_config(workload: str, batch_size: int, conv: str = conv_lib.DEFAULT_IMPLEMENTATION,
                 compute_dtype: str = "float32", width: int = 1) -> ml_collections.ConfigDict:
    """The workload's config at this batch size, convolution implementation and width (for
    models that have convolutions) and compute dtype, validated."""
    config = WORKLOADS[workload].config()
    config.train.batch_size = batch_size
    config.train.compute_dtype = config_dtype(compute_dtype)
    if WORKLOADS[workload].uses_conv:
        config.model.conv = conv
        if width != 1:
            config.model.width = width
    elif width != 1:
        raise ValueError(f"{workload} has no convolutions to widen (--widths applies to "
                         "conv_ae and conv_vae)")
    config_lib.validate(config)
    return config


def random_arrays(image_shape: tuple[int, int, int], count: int, seed: int = 0) -> dict:
    """`count` images of uniform random uint8 pixels and labels 0-9, on the device."""
    rng = np.random.default_rng(seed)
    return jax.device_put({"image": rng.integers(0, 256, (count, *image_shape), np.uint8),
                           "label": rng.integers(0, 10, count).astype(np.int32)})


def pool_size(image_shape: tuple[int, int, int], batch_size: int) -> int:
    """Random images kept for a workload: an epoch's worth where they fit in
    RANDOM_POOL_BYTES, else as many as fit (at least two batches); batches then reuse them."""
    fit = RANDOM_POOL_BYTES // int(np.prod(image_shape))
    return min(EPOCH_IMAGES, max(2 * batch_size, fit))


class BenchData:
    """The images each workload trains on: Fashion-MNIST at 28x28x1 (unless `source` is
    "random"), random pixels at other shapes; loaded once, cached per shape."""

    def __init__(self, source: str = "fashion_mnist", tfds_dir: str | None = None):
        if source not in ("fashion_mnist", "random", "auto"):
            raise ValueError(f"data {source!r}: fashion_mnist, random or auto")
        self.source, self.tfds_dir, self._cache = source, tfds_dir, {}

    def arrays(self, image_shape: tuple[int, int, int], batch_size: int) -> tuple[dict, str]:
        """(arrays, what they are) for this shape and batch size."""
        image_shape = tuple(image_shape)
        if image_shape == FASHION_SHAPE and self.source != "random":
            if "fashion" not in self._cache:
                try:
                    data = load_dataset("fashion_mnist", tfds_dir=self.tfds_dir)
                    self._cache["fashion"] = jax.device_put(
                        {"image": data.train_images, "label": data.train_labels})
                except Exception as error:  # noqa: BLE001 - "auto" falls back to random pixels
                    if self.source != "auto":
                        said = str(error).splitlines()[0] if str(error) else type(error).__name__
                        raise BenchRefused(
                            "Fashion-MNIST does not load ("
                            + said.replace("--config.data.tfds_dir", "--tfds-dir")
                            + "): give --tfds-dir, or $JAXAE_FASHION_MNIST_DIR (its IDX "
                            "files), or --data random") from error
                    self._cache["fashion"] = None
            if self._cache["fashion"] is not None:
                return self._cache["fashion"], "Fashion-MNIST"
        count = pool_size(image_shape, batch_size)
        key = (image_shape, count)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k == "fashion"}
            self._cache[key] = random_arrays(image_shape, count)
        return self._cache[key], f"random pixels ({count:,} images)"


class FirstEpoch(NamedTuple):
    """What a timed training loop needs: the objects built from the config, seed 0's fresh
    train state, keys and epoch-0 batch order."""

    train_model: nn.Module  # built with the config's compute dtype
    task: Task
    objective: Objective
    tx: optax.GradientTransformation
    state: steps.TrainState
    keys: Keys
    order: jax.Array  # epoch 0's order: indices into the training arrays
    num_batches: int  # steps in an epoch
    batch_size: int

    def train_step(self):
        """The compiled single training step (not yet lowered)."""
        return steps.make_train_step(self.train_model, self.task, self.objective)

    def train_chunk(self, max_steps: int, mesh: Mesh | None = None):
        """The compiled loop of up to `max_steps` steps that the trainer runs (with `mesh`,
        each batch split over its devices, as the trainer splits it)."""
        return steps.make_train_chunk(self.train_model, self.task, self.objective,
                                      batch_size=self.batch_size, max_steps=max_steps,
                                      mesh=mesh)


def first_epoch(config: ml_collections.ConfigDict, arrays: dict,
                epoch_images: int | None = None) -> FirstEpoch:
    """The config's model, task and objective for images like `arrays["image"]` (uint8
    [N, H, W, C]), and seed 0's fresh train state, keys and epoch-0 batch order. An epoch
    is `epoch_images` images (default: N); where that is more than N, its order draws the
    N images repeatedly."""
    keys = derive_keys(0)
    image_shape = tuple(arrays["image"].shape[1:])
    num_classes = int(np.max(jax.device_get(arrays["label"]))) + 1
    task, model, train_model, objective = build.run_objects(config, image_shape, num_classes,
                                                            train=True)
    tx = build.make_optimizer(config)
    state = steps.create_train_state(model, tx, task.input_shape(image_shape), keys.init,
                                     build.init_scheme(config), check=False)
    num_examples = len(arrays["image"])
    epoch_images = epoch_images or num_examples
    # placed on the device once, as the trainer places it, not again with every timed call
    order = jax.device_put(batches.epoch_permutation(keys.data, 0, epoch_images))
    if epoch_images != num_examples:
        order = order % num_examples
    batch_size = config.train.batch_size
    return FirstEpoch(train_model, task, objective, tx, state, keys, order,
                      batches.steps_per_epoch(epoch_images, batch_size), batch_size)


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
    meter = roof_meter(peak_n or (2048 if on_cpu else 8192), cost.footprint,
                       compute_dtype, mesh) if roofs else None

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
    command = [python, script, "--model", WORKLOADS[model].peer, "--mode", "step-bench",
               "--batch-size", str(batch_size), "--bench-steps", str(num_steps),
               "--bench-chunks", str(chunks), "--threads", str(threads), "--peak-n", "1024"]
    result = peer_result(command, f"the peer's step-bench of {model} ({script})")
    return {"model": model, "framework": f"torch {result['torch']}", "batch": batch_size,
            "img_per_s": result["img_per_s"], "chunk_img_per_s": result["chunk_img_per_s"],
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


def header(devices: int = 1) -> str:
    """The machine line of a report: the kind of device and how many of the machine's the
    measurements ran on (`devices`: throughput splits each batch over them; quality and
    precision train as train.py does, over all; determinism and matmuls use the first)."""
    device, count = jax.devices()[0], jax.device_count()
    used = f"x {devices}" if devices == count else f"({devices} of {count} devices used)"
    return (f"{device.device_kind} {used} ({device.platform}; host "
            f"{host_cpu()}, {platform.machine()}, {usable_cpus()} CPU threads), "
            f"jax {jax.__version__}, {datetime.date.today().isoformat()}")


def device_title() -> str:
    """The heading of this device's section in the report: the accelerator's kind (e.g.
    "NVIDIA H100 80GB HBM3"), or on a CPU "cpu: <model name>", so that runs on different
    CPUs keep sections of their own."""
    device = jax.devices()[0]
    return f"cpu: {host_cpu()}" if device.platform == "cpu" else device.device_kind


def code_version(commit: str | None = None) -> str:
    """" Code: jaxae commit <sha>." for the report (of `commit`, default `measured_commit`:
    $JAXAE_COMMIT, labelled so, or the checkout's HEAD), naming up to three uncommitted code
    files apart from the other uncommitted files (a report, a log or a plot written before
    it is committed changes no code measured), so a section measured before a change says
    so and one measured beside new reports says that it is not; "" outside a git
    checkout."""
    commit = measured_commit() if commit is None else commit
    if not commit:
        return ""
    if os.environ.get(COMMIT_VAR):  # whoever set it vouches for the files: git is not asked
        return f" Code: jaxae commit {commit[:12]} (named by ${COMMIT_VAR}, not checked)."
    files = uncommitted_files()  # one `git status` for both the mark and the names

    def named(paths: list[str]) -> str:
        return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")

    code = [f for f in files if f.endswith(CODE_SUFFIXES) or os.path.basename(f) == "Makefile"]
    other = [f for f in files if f not in code]
    if code:
        dirty = f" with uncommitted changes to code: {named(code)}" + (
            f" (and to {len(other)} other file{'s' if len(other) > 1 else ''})" if other else "")
    else:
        dirty = f" (uncommitted: {named(other)}; no code)" if other else ""
    return f" Code: jaxae commit {commit[:12]}{dirty}."


REPORT_PREAMBLE = ("# Benchmarks\n\nOne section per device, each written by the command it "
                   "quotes.\n")  # a new report's text above its sections


def _split_report(path: str) -> tuple[str, list[str]]:
    """(the text above the first "## " section, the sections) of the report at `path`; a
    report that does not exist yet has REPORT_PREAMBLE and no sections."""
    if not os.path.exists(path):
        return REPORT_PREAMBLE, []
    with open(path) as f:
        lines = f.read().splitlines()
    parts, fence = [[]], None  # the open fence's marker (``` or ~~~, 3 or more), if any
    for line in lines:  # a "## " line inside a fenced block is code, not a heading
        marker = line[:len(line) - len(line.lstrip("`~"))] if line[:3] in ("```", "~~~") else ""
        if marker and fence is None:
            fence = marker
        elif marker and marker[0] == fence[0] and len(marker) >= len(fence) and \
                not line.strip(marker[0]).strip():
            fence = None  # a closing fence: the same character, as long, nothing after it
        if line.startswith("## ") and fence is None:
            parts.append([])
        parts[-1].append(line)
    preamble, *sections = ("\n".join(part) for part in parts)
    return preamble.strip("\n") + "\n", [part.strip() + "\n" for part in sections]


def _sections(path: str) -> list[str]:
    return _split_report(path)[1]


def write_section(path: str, section: str, append: bool = False) -> None:
    """Writes `section` (starting "## <device>") into the report at `path`, replacing that
    device's earlier section and keeping the others and the text above them, so each
    machine's run updates its own; with `append`, adds the section's body to the end of that
    device's section instead."""
    heading = section.splitlines()[0]
    preamble, sections = _split_report(path)
    if append and any(s.splitlines()[0] == heading for s in sections):
        body = section.split("\n", 1)[1].strip("\n")
        sections = [s.rstrip("\n") + "\n\n" + body + "\n" if s.splitlines()[0] == heading
                    else s for s in sections]
    else:
        sections = [s for s in sections if s.splitlines()[0] != heading] + [section]
    path = os.path.realpath(path)  # through a link: the file it names gets the run
    partial = f"{path}.partial"  # written whole, then renamed: a killed run keeps the old file
    with open(partial, "w") as f:
        f.write((preamble + "\n" if preamble.strip() else "") + "\n".join(sections))
    if os.path.exists(path):
        shutil.copymode(path, partial)  # the report keeps its permissions
    os.replace(partial, path)


def _fraction_text(row: dict, prefix: str = "") -> str:
    """A row's fraction of the roof (`prefix` "device_bytes_": under the device's byte
    count), or why it has none."""
    fraction = row.get(f"{prefix}fraction_of_roof")
    if fraction is not None:
        return f"{fraction:.1%}"
    if row.get(f"{prefix}roof_errors"):
        return "over the roof: mismeasured"
    return "n/a"


def table(rows: list[tuple[dict, dict | None]]) -> str:
    """The markdown table of the results, with the roofline's and the peer's columns (and,
    off the CPU, the device program's bytes per step and the fraction of the roof they
    give)."""
    device = any("device_bytes_fraction_of_roof" in ours for ours, _ in rows)
    lines = ["| model | conv | dtype | image | width | batch | compile s | step ms | epoch ms | "
             "images/s | GFLOP/step | MB/step | FLOP/byte | GFLOP/s | GB/s | peak GFLOP/s | "
             "bandwidth GB/s | bound | of roof | "
             + ("device MB/step | device bound | of roof (device bytes) | " if device else "")
             + "step memory | peer images/s | jaxae / peer |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---|---:|" + ("---:|---|---:|" if device else "") + "---:|---:|---:|"]
    for ours, peer in rows:
        # the compiled step's arguments, results and temporaries (XLA's memory analysis), not
        # the device's peak_bytes_in_use: that is the process's high-water mark, never reset
        memory = ours.get("footprint_bytes")
        memory_text = f"{memory / 2**20:,.0f} MiB" if memory else "n/a"
        peer_rate = f"{peer['img_per_s']:,.0f}" if peer else "-"
        ratio = f"{ours['img_per_s'] / peer['img_per_s']:.2f}x" if peer else "-"
        height, wide, channels = ours["image_shape"]
        peak, bandwidth = ours.get("peak_gflops"), ours.get("bandwidth_gbytes_per_s")
        lines.append(
            f"| {ours['model']} | {ours['conv'] or '-'} | {ours['compute_dtype']} | "
            f"{height}x{wide}x{channels} | {ours.get('width', 1)} | {ours['batch']} | "
            f"{ours['compile_s']:.1f} | {ours['step_ms']:.2f} | {ours['epoch_ms']:,.1f} | "
            f"{ours['img_per_s']:,.0f} | {ours['flops_per_step'] / 1e9:.3f} | "
            f"{ours['bytes_per_step'] / 1e6:,.1f} | {ours['intensity']:.1f} | "
            f"{ours['achieved_gflops']:,.1f} | {ours['achieved_gbytes_per_s']:,.1f} | "
            f"{f'{peak:,.0f}' if peak else 'n/a'} | "
            f"{f'{bandwidth:,.1f}' if bandwidth else 'n/a'} | {ours.get('bound', 'n/a')} | "
            f"{_fraction_text(ours)} | {_device_columns(ours) if device else ''}"
            f"{memory_text} | {peer_rate} | {ratio} |")
    unsteady = [f"{ours['model']} {ours['compute_dtype']} {'x'.join(map(str, ours['image_shape']))}"
                f" width {ours.get('width', 1)} batch {ours['batch']} "
                f"({side}: {min(rates):,.0f}-{max(rates):,.0f} images/s)"
                for ours, peer in rows
                for side, rates in (("jaxae", ours.get("chunk_img_per_s")),
                                    ("peer", peer and peer.get("chunk_img_per_s")))
                if rates and min(rates) > 0 and max(rates) / min(rates) > UNSTEADY_SPREAD]
    if unsteady:
        lines += ["", f"Chunks that varied more than {UNSTEADY_SPREAD}x (a busy moment?): "
                  f"{', '.join(unsteady)}; the rates are their medians, rerun before quoting."]
    return "\n".join(lines)


def _device_columns(row: dict) -> str:
    """The device program's bytes per step, its bound and fraction cells (with the bar)."""
    if not row.get("device_bytes_per_step"):
        return "n/a | n/a | n/a | "
    return (f"{row['device_bytes_per_step'] / 1e6:,.1f} | {row.get('device_bytes_bound', 'n/a')}"
            f" | {_fraction_text(row, 'device_bytes_')} | ")


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
    return values


def _ints(parser: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        return positive_ints(text)
    except argparse.ArgumentTypeError as error:
        parser.error(f"{flag}={error}")


class BenchRefused(ValueError):
    """A setting found wrong only once a workload's data is known: the whole run stops with
    one line, and nothing is written."""


class OneLineErrors(argparse.ArgumentParser):
    """An ArgumentParser whose error is one line (argparse prints its whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists every option)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python -m benchmarks.bench", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
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
                        help="matmul size for the peak (default: 2048 on CPU, 8192 else)")
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
                             "TFDS's own); its IDX files: $JAXAE_FASHION_MNIST_DIR")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="throughput: plot the achieved FLOP/s and the fraction of the "
                             "roof against FLOPs/step")
    parser.add_argument("--write", default=None, help="write the markdown report into this "
                                                      "device's section of this file")
    parser.add_argument("--append", default=None,
                        help="add the markdown report to the end of this device's section")
    args = parser.parse_args(argv)
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
    if args.checks_per_epoch < 1:
        parser.error(f"--checks-per-epoch {args.checks_per_epoch}: give 1 or more")
    if args.write and args.append:
        parser.error("--write FILE replaces this device's section, --append FILE adds to it: "
                     "give one")
    for flag, value, least in (("--chunks", args.chunks, 1), ("--peak-n", args.peak_n, 1),
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
    if steps is not None and {"throughput", "matmuls"} & set(modes) and \
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


def section_contents(path: str, title: str) -> str:
    """What the section headed `## title` of the report at `path` holds ('2 runs', '1 run',
    or 'text' where it holds no run), '' where it is missing or empty: --write replaces none
    of it, since notes written by hand beside a run cannot be told from its report."""
    for section in _sections(path):
        lines = section.splitlines()
        if lines[0] == f"## {title}" and any(line.strip() for line in lines[1:]):
            runs = runs_in_section(path, title)
            return f"{runs} run{'s' * (runs != 1)}" if runs else "text"
    return ""


def runs_in_section(path: str, title: str) -> int:
    """How many runs (each with its "Machine:" line) the report at `path` holds in the
    section headed `## title`; 0 where there is no such file or section."""
    for section in _sections(path):
        if section.splitlines()[0] == f"## {title}":
            return sum(line.startswith("Machine: ") for line in section.splitlines())
    return 0


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


def throughput(args: argparse.Namespace) -> tuple[str, bool]:
    """The throughput mode: every workload x shape x width x batch x conv x dtype, with its
    roofline and, for the 28x28x1 workloads the peer implements, the peer's rate; prints
    JSON lines and returns (the markdown report, whether an interrupt cut the run short),
    and draws --plot."""
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

    cut_short = False
    try:
        measure()
    except KeyboardInterrupt:  # e.g. `timeout --signal=INT` at a time budget (gpu.sh)
        cut_short = True
        print(f"# interrupted after {len(rows)} row(s): those are reported", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # measured: a late interrupt loses no report
    if not rows:
        raise BenchRefused("interrupted before the first row; nothing is written" if cut_short
                           else "no workload was measured (the lines above say why each was "
                           "skipped); nothing is written")
    report = table(rows)
    if peer_failed:
        report += (f"\n\nThe peer failed ({peer_failed[0]}): the rows from its model on were "
                   "measured without it.")
    if devices > 1:
        report += (f"\n\nEach batch split over {devices} devices: FLOPs, bytes and step memory "
                   "are the whole batch's, as one device's program counts them, and the roofs "
                   f"the {devices} devices' together; per device, divide images/s and GFLOP/s "
                   f"by {devices}.")
    if cut_short:
        report += ("\n\nCut short by an interrupt: the workloads after these rows were not "
                   "measured.")
    print("\n" + report, flush=True)
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
        print(f"# wrote {args.plot}", flush=True)
    return text, cut_short


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


def main(argv: list[str] | None = None) -> bool:
    """Runs the bench; returns whether an interrupt cut its measurements short (the report
    of what was measured is written all the same)."""
    args = parse_args(argv)
    print(f"# {header(devices_used(args))}", flush=True)
    commit = measured_commit()  # at the start: files edited during the run do not count
    measured_code = code_version(commit)
    parts, interrupted = [], False
    for mode in args.mode.split(","):
        if mode == "throughput":
            with background_load(args.background_load, args.background_pin):
                text, interrupted = throughput(args)
            if args.background_load:
                text = (f"Under {args.background_load} busy-looping background process(es)"
                        f"{', pinned' if args.background_pin else ''}.\n\n" + text)
            parts.append(("Throughput and roofline", text))
        elif mode == "quality":
            from benchmarks import quality
            parts.append(("Time to quality", quality.run(args)))
        elif mode == "precision":
            from benchmarks import precision_matrix
            parts.append(("Precision matrix", precision_matrix.run(args)))
        elif mode == "determinism":
            from benchmarks import determinism
            parts.append(("Determinism", determinism.run(args)))
        elif mode == "matmuls":
            from benchmarks import matmul_floor
            parts.append(("A step's matmuls and the rest", matmul_floor.run(args)))
    path = args.write or args.append
    if path:
        write_section(path, report_section(parts, measured_code, command_line(args), commit,
                                           devices_used(args)), append=bool(args.append))
    return interrupted


def main_or_refuse(argv: list[str] | None = None) -> None:
    """`main`, with a BenchRefused as one error line and exit status 2; a run interrupted
    mid-measurement exits 130 as soon as its report is written (an interpreter shutting
    down after XLA was interrupted mid-call can crash)."""
    try:
        interrupted = main(argv)
    except BenchRefused as error:
        print(f"python -m benchmarks.bench: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    if interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def report_section(parts: list[tuple[str, str]], measured_code: str, command: str,
                   commit: str = "", devices: int = 1) -> str:
    """A run's markdown: this device's heading, then the run's own heading (what it measured,
    the date and the `commit` measured), the machine and the command, then each mode's
    part."""
    titles = ", ".join(title for title, _ in parts)
    when = datetime.date.today().isoformat() + (f", {commit[:7]}" if commit else "")
    if len(parts) == 1:
        body = parts[0][1]
    else:
        body = "\n\n".join(f"#### {title}\n\n{text}" for title, text in parts)
    return (f"## {device_title()}\n\n### {titles} ({when})\n\n"
            f"Machine: {header(devices)}.{measured_code}\n\nCommand: `{command}`\n\n{body}\n")


if __name__ == "__main__":
    # the modes raise benchmarks.bench's BenchRefused: run that module, not this __main__ copy
    from benchmarks import bench

    np.set_printoptions(precision=3)
    bench.main_or_refuse()
