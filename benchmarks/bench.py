"""Training throughput on whatever device JAX sees: python -m benchmarks.bench [--peer-python P
--peer-script S]

For each workload and batch size: compile time, steady-state step time and images/s of the
training path `train.py` runs (--steps-per-chunk steps, or a whole epoch, compiled as one
loop, batches gathered on the device), FLOPs per step from XLA's cost analysis of the
step compiled for the host CPU, achieved FLOP/s and its fraction of the device's peak (an
n x n matmul of the run's compute dtype, timed in the same run), and peak memory where the
backend reports it. --compute-dtype float32,bfloat16 also times each workload with the Dense
matmuls in bfloat16 (`jaxae.kernels.precision`), beside the same float32 peer run.
Warm-up (compilation included) is left out of every rate; each timed chunk ends with a
device sync; the figure is the median of --chunks chunks. With --peer-python and
--peer-script (the PyTorch peer, torch_autoencoders.py, run with --mode step-bench: same
model, batch size and threads), the peer runs right after each workload it implements and
the ratio is printed. --write FILE writes the markdown report into that device's section of
FILE, keeping the other devices' sections. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxae import build
from jaxae import config as config_lib
from jaxae.data import batches, load_dataset
from jaxae.kernels import conv as conv_lib
from jaxae.kernels import precision
from jaxae.keys import Keys, derive_keys
from jaxae.objectives import Objective
from jaxae.tasks import Task
from jaxae.training import steps
from jaxae.training.workdir import git_commit


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
        """Whether its model takes a convolution implementation (config.model.conv)."""
        return "conv" in self.config().model


WORKLOADS = {
    "dense_ae": Workload(dense_ae, "dense"),
    "dae": Workload(dae, "dae"),
    "conv_ae": Workload(conv_ae, "conv"),
    "vae": Workload(vae, "vae"),
    "conv_vae": Workload(conv_vae, None),
}


def bench_config(workload: str, batch_size: int, conv: str = "patches",
                 compute_dtype: str = "float32") -> ml_collections.ConfigDict:
    """The workload's config at this batch size, convolution implementation (for models
    that have convolutions) and compute dtype, validated."""
    config = WORKLOADS[workload].config()
    config.train.batch_size, config.train.compute_dtype = batch_size, compute_dtype
    if "conv" in config.model:
        config.model.conv = conv
    config_lib.validate(config)
    return config


def _flops(compiled) -> float:
    """Total FLOPs XLA's cost analysis counts in a compiled computation (0 where it does
    not say)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0))


def peak_memory_bytes(device: jax.Device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return (stats or {}).get("peak_bytes_in_use")


def matmul_peak_flops(n: int, repeats: int = 5, compute_dtype: str = "float32") -> float:
    """The device's practical peak: median FLOP/s of an n x n matmul (2 n^3 FLOPs) of float32
    operands, or for "bfloat16" the matmul `jaxae.kernels.precision` runs (bfloat16
    operands, float32 accumulation)."""
    a = jax.random.uniform(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.uniform(jax.random.key(1), (n, n), jnp.float32)
    if compute_dtype == "bfloat16":
        a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    matmul = jax.jit(jnp.matmul if compute_dtype == "float32" else precision.bfloat16_matmul)
    matmul(a, b).block_until_ready()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        rates.append(2 * n ** 3 / (time.perf_counter() - start))
    return statistics.median(rates)


class FirstEpoch(NamedTuple):
    """What a timed training loop needs: the objects built from the config, seed 0's fresh
    train state, keys and epoch-0 batch order."""

    train_model: nn.Module  # built with the config's compute dtype
    task: Task
    objective: Objective
    tx: optax.GradientTransformation
    state: steps.TrainState
    keys: Keys
    order: jax.Array  # epoch 0's permutation of the training set
    num_batches: int  # steps in an epoch
    batch_size: int

    def train_step(self):
        """The compiled single training step (not yet lowered)."""
        return steps.make_train_step(self.train_model, self.task, self.objective)

    def train_chunk(self, max_steps: int):
        """The compiled loop of up to `max_steps` steps that the trainer runs."""
        return steps.make_train_chunk(self.train_model, self.task, self.objective,
                                      batch_size=self.batch_size, max_steps=max_steps)


def first_epoch(config: ml_collections.ConfigDict, arrays: dict) -> FirstEpoch:
    """The config's model, task and objective for images like `arrays["image"]` (uint8
    [N, H, W, C]), and seed 0's fresh train state, keys and epoch-0 batch order."""
    keys = derive_keys(0)
    image_shape = tuple(arrays["image"].shape[1:])
    num_classes = int(np.max(jax.device_get(arrays["label"]))) + 1
    task = config_lib.make_task(config)
    build.check_task(task, image_shape)
    model = build.make_model(config, image_shape, num_classes)
    train_model = build.make_model(config, image_shape, num_classes,
                                   config.train.compute_dtype)
    tx = build.make_optimizer(config)
    state = steps.create_train_state(model, tx, task.input_shape(image_shape), keys.init,
                                     config.model.init)
    num_examples = len(arrays["image"])
    batch_size = config.train.batch_size
    return FirstEpoch(train_model, task, build.make_objective(config, model), tx, state, keys,
                      batches.epoch_permutation(keys.data, 0, num_examples),
                      batches.steps_per_epoch(num_examples, batch_size), batch_size)


def bench_model(workload: str, batch_size: int, steps_per_chunk: int | None, chunks: int,
                arrays: dict, peak_flops: float | None = None, conv: str = "patches",
                compute_dtype: str = "float32") -> dict:
    """Times `chunks` chunks of `steps_per_chunk` training steps after one warm-up chunk;
    `steps_per_chunk=None` makes each chunk one whole epoch, one dispatch per epoch."""
    config = bench_config(workload, batch_size, conv, compute_dtype)
    epoch = first_epoch(config, arrays)
    state, keys, order, num_batches = epoch.state, epoch.keys, epoch.order, epoch.num_batches
    steps_per_chunk = steps_per_chunk or num_batches

    # Counted in the step compiled for the host CPU: a GPU's compiled step hands matmuls and
    # convolutions to cuBLAS/cuDNN calls, which XLA's cost analysis counts as 0 FLOPs.
    host_args = jax.device_put((state, batches.take_batch(arrays, order, 0, batch_size),
                                keys.train), jax.devices("cpu")[0])
    flops_per_step = _flops(epoch.train_step().lower(*host_args).compile())
    start = time.perf_counter()
    chunk = epoch.train_chunk(steps_per_chunk).lower(
        state, arrays, order, 0, keys.train, steps_per_chunk).compile()
    compile_s = time.perf_counter() - start

    def run(index: int):
        nonlocal state
        first = (index * steps_per_chunk) % max(1, num_batches - steps_per_chunk + 1)
        state, metrics = chunk(state, arrays, order, first, keys.train, steps_per_chunk)
        jax.block_until_ready((state, metrics))

    run(0)  # warm-up
    rates = []
    for c in range(chunks):
        start = time.perf_counter()
        run(c + 1)
        rates.append(steps_per_chunk * batch_size / (time.perf_counter() - start))
    images_per_s = statistics.median(rates)
    achieved = flops_per_step * images_per_s / batch_size
    return {"model": workload, "framework": "jaxae", "batch": batch_size,
            "conv": config.model.get("conv"), "compute_dtype": compute_dtype,
            "img_per_s": images_per_s, "step_ms": 1e3 * batch_size / images_per_s,
            "steps_per_chunk": steps_per_chunk,
            "epoch_ms": 1e3 * num_batches * batch_size / images_per_s,
            "chunk_img_per_s": [round(r) for r in rates], "compile_s": round(compile_s, 2),
            "flops_per_step": flops_per_step, "achieved_gflops": achieved / 1e9,
            "fraction_of_peak": achieved / peak_flops if peak_flops else None,
            "peak_memory_bytes": peak_memory_bytes(jax.devices()[0])}


def bench_peer(python: str, script: str, model: str, batch_size: int, num_steps: int,
               chunks: int, threads: int) -> dict:
    """The peer's own step-bench of the same model, as a subprocess; its JSON result."""
    command = [python, script, "--model", WORKLOADS[model].peer, "--mode", "step-bench",
               "--batch-size", str(batch_size), "--bench-steps", str(num_steps),
               "--bench-chunks", str(chunks), "--threads", str(threads), "--peak-n", "1024"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"model": model, "framework": f"torch {result['torch']}", "batch": batch_size,
            "img_per_s": result["img_per_s"], "chunk_img_per_s": result["chunk_img_per_s"],
            "fraction_of_peak": result.get("fraction_of_peak_median")}


def host_cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The host CPU's model name as the OS reports it (e.g. "AMD EPYC"), else its
    architecture: CPUs of one architecture differ several-fold in these benchmarks."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header() -> str:
    device = jax.devices()[0]
    return (f"{device.device_kind} x {jax.device_count()} ({device.platform}; host "
            f"{host_cpu()}, {platform.machine()}, {os.cpu_count()} CPU threads), "
            f"jax {jax.__version__}, {datetime.date.today().isoformat()}")


def device_title() -> str:
    """The heading of this device's section in the report: the accelerator's kind (e.g.
    "NVIDIA H100 80GB HBM3"), or on a CPU "cpu: <model name>", so that runs on different
    CPUs keep sections of their own."""
    device = jax.devices()[0]
    return f"cpu: {host_cpu()}" if device.platform == "cpu" else device.device_kind


def code_version() -> str:
    """" Code: jaxae commit <sha>." for the report (with uncommitted changes noted), so a
    section measured before a change says so; "" outside a git checkout."""
    commit = git_commit()
    if not commit:
        return ""
    dirty = " with uncommitted changes" if commit.endswith("+dirty") else ""
    return f" Code: jaxae commit {commit[:12]}{dirty}."


def write_section(path: str, section: str) -> None:
    """Writes `section` (starting "## <device>") into the report at `path`, replacing that
    device's earlier section and keeping the others, so each machine's run updates its own."""
    heading = section.splitlines()[0]
    sections = []
    if os.path.exists(path):
        with open(path) as f:
            sections = ["## " + part.strip() + "\n" for part in f.read().split("\n## ")[1:]]
    sections = [s for s in sections if s.splitlines()[0] != heading] + [section]
    with open(path, "w") as f:
        f.write("# Benchmarks\n\nOne section per device, each written by the command it "
                "quotes.\n\n" + "\n".join(sections))


def table(rows: list[tuple[dict, dict | None]]) -> str:
    """The markdown table of the results, with the peer's columns where it ran."""
    lines = ["| model | conv | dtype | batch | compile s | step ms | epoch ms | images/s | "
             "GFLOP/step | GFLOP/s | of peak | peak memory | peer images/s | jaxae / peer |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ours, peer in rows:
        fraction, memory = ours["fraction_of_peak"], ours["peak_memory_bytes"]
        of_peak = f"{fraction:.1%}" if fraction is not None else "n/a"
        memory_text = f"{memory / 2**20:.0f} MiB" if memory else "n/a"
        peer_rate = f"{peer['img_per_s']:,.0f}" if peer else "-"
        ratio = f"{ours['img_per_s'] / peer['img_per_s']:.2f}x" if peer else "-"
        lines.append(
            f"| {ours['model']} | {ours['conv'] or '-'} | "
            f"{ours['compute_dtype']} | {ours['batch']} | {ours['compile_s']:.1f} | "
            f"{ours['step_ms']:.2f} | {ours['epoch_ms']:,.0f} | {ours['img_per_s']:,.0f} | "
            f"{ours['flops_per_step'] / 1e9:.3f} | {ours['achieved_gflops']:.1f} | "
            f"{of_peak} | {memory_text} | {peer_rate} | {ratio} |")
    return "\n".join(lines)


def peak_text(peaks: dict[str, float]) -> str:
    """'float32 260.1 GFLOP/s, bfloat16 (float32 accumulation) 1,012.3 GFLOP/s'."""
    names = {"float32": "float32", "bfloat16": "bfloat16 (float32 accumulation)"}
    return ", ".join(f"{names[d]} {p / 1e9:,.1f} GFLOP/s" for d, p in peaks.items())


def chunk_steps(text: str) -> int | None:
    """--steps-per-chunk: a positive number of steps, or "epoch" (None: a whole epoch)."""
    if text == "epoch":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--steps-per-chunk={text!r}: give a positive number of steps or "
                         "'epoch', e.g. --steps-per-chunk=100")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(WORKLOADS),
                        help="comma-separated workloads: " + ", ".join(WORKLOADS))
    parser.add_argument("--batch-sizes", default="128", help="comma-separated")
    parser.add_argument("--steps-per-chunk", default="100",
                        help="training steps per timed dispatch, or 'epoch' for a whole epoch")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--conv", default="patches",
                        help="comma-separated config.model.conv values the models with "
                             "convolutions run with: " + ", ".join(conv_lib.IMPLEMENTATIONS))
    parser.add_argument("--compute-dtype", default="float32",
                        help="comma-separated config.train.compute_dtype values each model "
                             "runs with: " + ", ".join(precision.COMPUTE_DTYPES) + " (the "
                             "peer runs float32 once per model)")
    parser.add_argument("--peak-n", type=int, default=None,
                        help="matmul size for the peak (default: 2048 on CPU, 8192 else)")
    parser.add_argument("--peer-python", default=None,
                        help="a Python with torch installed: also run the PyTorch peer "
                             "(needs --peer-script)")
    parser.add_argument("--peer-script", default=None, metavar="PATH",
                        help="the PyTorch peer's script (torch_autoencoders.py); required "
                             "with --peer-python")
    parser.add_argument("--tfds-dir", default=None)
    parser.add_argument("--write", default=None, help="write the markdown report here")
    args = parser.parse_args(argv)
    check_peer_args(parser, args, required=False)
    unknown = [m for m in args.models.split(",") if m not in WORKLOADS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from "
                     f"{', '.join(WORKLOADS)}")
    try:
        chunk_steps(args.steps_per_chunk)
    except ValueError as error:
        parser.error(str(error))
    if unknown := [c for c in args.conv.split(",") if c not in conv_lib.IMPLEMENTATIONS]:
        parser.error(f"--conv: unknown {', '.join(unknown)}: choose from "
                     f"{', '.join(conv_lib.IMPLEMENTATIONS)}")
    if unknown := [d for d in args.compute_dtype.split(",")
                   if d not in precision.COMPUTE_DTYPES]:
        parser.error(f"--compute-dtype: unknown {', '.join(unknown)}: choose from "
                     f"{', '.join(precision.COMPUTE_DTYPES)}")
    return args


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    models = args.models.split(",")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    steps_per_chunk = chunk_steps(args.steps_per_chunk)
    convs, dtypes = args.conv.split(","), args.compute_dtype.split(",")
    on_cpu = jax.devices()[0].platform == "cpu"
    peak_n = args.peak_n or (2048 if on_cpu else 8192)
    print(f"# {header()}", flush=True)
    measured_code = code_version()  # at the start: files edited during the run do not count
    data = load_dataset("fashion_mnist", tfds_dir=args.tfds_dir)
    arrays = jax.device_put({"image": data.train_images, "label": data.train_labels})
    peaks = {dtype: matmul_peak_flops(peak_n, compute_dtype=dtype) for dtype in dtypes}
    print(json.dumps({"peak_matmul_n": peak_n,
                      **{f"peak_gflops_{d}": p / 1e9 for d, p in peaks.items()}}), flush=True)
    rows = []
    for batch_size in batch_sizes:
        for model in models:
            workload = WORKLOADS[model]
            peer = None  # one peer run per model, beside each of jaxae's runs of it
            for conv in convs if workload.uses_conv else convs[:1]:
                for dtype in dtypes:
                    ours = bench_model(model, batch_size, steps_per_chunk, args.chunks, arrays,
                                       peaks[dtype], conv, dtype)
                    print(json.dumps(ours), flush=True)
                    if peer is None and args.peer_python and workload.peer:
                        peer = bench_peer(args.peer_python, args.peer_script, model, batch_size,
                                          ours["steps_per_chunk"], args.chunks,
                                          os.cpu_count() or 1)
                        print(json.dumps(peer), flush=True)
                    rows.append((ours, peer))
    report = table(rows)
    print("\n" + report)
    if args.write:
        command = "python -m benchmarks.bench " + " ".join(
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if v is not None and k not in ("write", "tfds_dir"))
        section = (f"## {device_title()}\n\nMachine: {header()}.{measured_code}\n\n"
                   f"Matmul peak ({peak_n} x {peak_n}): {peak_text(peaks)}.\n\n"
                   f"Command: `{command}`\n\n{report}\n")
        write_section(args.write, section)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
