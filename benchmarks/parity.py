r"""Quality and time to quality against the PyTorch peer, both trained in one run.

    python -m benchmarks.parity --peer-python /tmp/torch/bin/python \
        --peer-script PATH/torch_autoencoders.py [--models dense,conv,vae]

For each model the peer implements (its script, --peer-script, is not part of this
repository), jaxae trains the matching config and the peer trains its own model on the same
Fashion-MNIST files, same batch size (128), optimiser (Adam 1e-3), initialisation scheme and
number of epochs, one after the other on the same threads. Printed per model: each side's
test figure after the last epoch, the relative difference, each side's training wall time
(the peer's: its training and evaluation loops; jaxae's: from the call, so loading the data
and compiling count too), and when jaxae first reached the peer's final figure. With a
constant learning rate, jaxae trains --extra-epochs more epochs (default 2) for that last
column only: its first epochs are the same bits as a run of the pairing's length, and its
figure and wall time are read at the pairing's last epoch. --compute-dtype bfloat16 runs
jaxae's Dense matmuls in bfloat16 (`jaxae.kernels.precision`); the peer stays float32. JSON
lines, then a markdown table; --write FILE also writes the table. --seeds N repeats every
run with seeds 0..N-1 and reports means and standard deviations: one short run (the dense
AE's single epoch) moves by several percent from seed to seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import jax
import ml_collections

from benchmarks.bench import json_result
from benchmarks.bench_args import (
    check_peer_args,
    check_peer_torch,
    check_writable_file,
)
from benchmarks.report import header
from benchmarks.workloads import BenchRefused
from jaxae import build, cli
from jaxae.cli.arguments import OneLineErrors
from jaxae.data import batches
from jaxae.experiments.common import load_config
from jaxae.kernels import precision
from jaxae.provenance import usable_cpus
from jaxae.training import trainer


@dataclasses.dataclass(frozen=True)
class Pairing:
    """One peer model, the jaxae config that matches it, and the figure they are judged on."""

    config: str  # jaxae.configs.<config> (configs/<config>.py)
    epochs: int
    train_images: int  # an epoch: the training split (jaxae: 468 full batches of 128; the
    # peer: 469, its last of 96 images)
    peer_init: str  # the peer's --init that matches the config's init scheme
    metric: str  # jaxae's test metric (without 'test_')
    peer_metric: str  # the peer's key for the same figure
    label: str
    higher_is_better: bool = False


# Figures defined alike on both sides (means per pixel; the ELBO: BCE summed over the pixels
# plus the analytic KL, one sample, beta 1). Not so, and so not to be paired: the peer's VAE
# `test_mse_per_pixel` decodes a sampled z (jaxae's: z = z_mean), and its DAE's reconstructs
# the clean input (jaxae's scores the denoised corrupted one).
PAIRINGS = {
    "dense": Pairing("default", 1, 60_000, "glorot", "mse", "test_mse_per_pixel", "test MSE"),
    "conv": Pairing("conv_ae_fashion", 5, 60_000, "glorot", "bce", "test_bce", "test BCE"),
    "vae": Pairing("vae_fashion_2d", 10, 60_000, "torch", "elbo", "test_elbo_nats",
                   "test ELBO (nats)", higher_is_better=True),
}


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/..
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class Phases:
    """Seconds a training run spends loading its data, compiling and evaluating, counted
    while it runs: compilation from JAX's monitoring events (tracing, lowering and XLA's
    compile of every jitted function), data loading and evaluation by timing the trainer's
    calls of `build.load_data` and `trainer.evaluate_splits` (less the compiles inside
    them). The rest of the run's wall time is training (checkpoint writes included)."""

    def __init__(self):
        self.seconds = {"data": 0.0, "compile": 0.0, "evaluation": 0.0}
        self._inside: list[list] = []  # [phase, compile seconds within it]

    def _on_event(self, event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            self.seconds["compile"] += duration
            for frame in self._inside:
                frame[1] += duration

    def _timed(self, phase: str, fn):
        def wrapper(*args, **kwargs):
            frame = [phase, 0.0]
            self._inside.append(frame)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._inside.remove(frame)
                self.seconds[phase] += time.perf_counter() - start - frame[1]
        return wrapper

    def __enter__(self) -> Phases:
        self._saved = build.load_data, trainer.evaluate_splits
        build.load_data = self._timed("data", build.load_data)
        trainer.evaluate_splits = self._timed("evaluation", trainer.evaluate_splits)
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        build.load_data, trainer.evaluate_splits = self._saved
        jax.monitoring.unregister_event_duration_listener(self._on_event)

    def snapshot(self) -> dict[str, float]:
        return {f"{phase}_s": seconds for phase, seconds in self.seconds.items()}


def run_jaxae(pairing: Pairing, workdir: str, tfds_dir: str | None, seed: int,
              extra_epochs: int = 0, compute_dtype: str = "float32",
              config_name: str | None = None, checks_per_extra_epoch: int = 1) -> dict:
    """Trains the pairing's config from scratch; per-evaluation test figures and wall times
    (counted from the call: data loading and compilation included), each with the seconds
    spent so far loading data, compiling and evaluating (`Phases`). With a constant
    learning rate, `extra_epochs` more epochs follow (the first ones are unchanged), in
    which the test figure is checked `checks_per_extra_epoch` times an epoch (each check an
    evaluation, its time counted); "value" and "wall_s" are those of the pairing's last
    epoch. A record's "epoch" is the epochs trained at it (5.25: a quarter into the 6th)."""
    config: ml_collections.ConfigDict = load_config(config_name or pairing.config)
    if config.optim.schedule != "constant":  # a longer run would decay at another pace
        extra_epochs = 0
    config.train.num_epochs, config.seed = pairing.epochs + extra_epochs, seed
    config.train.compute_dtype = compute_dtype
    if tfds_dir:
        config.data.tfds_dir = tfds_dir
    steps_per_epoch = batches.steps_per_epoch(pairing.train_images, config.train.batch_size)
    checks = [pairing.epochs * steps_per_epoch + round(k * steps_per_epoch
                                                      / checks_per_extra_epoch)
              for k in range(1, extra_epochs * checks_per_extra_epoch)]
    epochs = []
    start = time.perf_counter()
    with Phases() as phases:
        def record(step: int, epoch: int, metrics: dict[str, float]) -> None:
            if not epochs and step != steps_per_epoch:  # the first: epoch 1's end
                raise RuntimeError(f"{pairing.config} ran {step} steps in its first epoch, "
                                   f"not {steps_per_epoch}: its data is not the peer's")
            epochs.append({"epoch": step / steps_per_epoch, "step": step,
                           "value": metrics[f"test_{pairing.metric}"],
                           "wall_s": time.perf_counter() - start, **phases.snapshot()})

        cli.run(trainer.train_and_evaluate, config, workdir, on_evaluation=record,
                evaluate_at_steps=checks)
    last = next(r for r in epochs if r["step"] == pairing.epochs * steps_per_epoch)
    return {"value": last["value"], "wall_s": last["wall_s"], "epochs": epochs}


def run_reporting(command: list[str], label: str, note: Callable[[dict], str | None],
                  **popen) -> subprocess.CompletedProcess:
    """Runs `command` to its end as `subprocess.run(capture_output=True, text=True)` does,
    reading its stdout line by line meanwhile: for each line that is a JSON object `note`
    gives a text for, "  LABEL: TEXT" goes to stderr at once (a training's progress, epoch
    by epoch, rather than silence until it ends). Stopped meanwhile (the bench's stop, a
    Ctrl-C), it kills the command first, as subprocess.run does: a stop signal sent to this
    process alone (gpu.sh's time budget) would otherwise wait for the command's end."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **popen) as process:
        errors: list[str] = []  # drained alongside, so that a full pipe cannot stall it
        drain = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
        drain.start()
        lines = []
        try:
            for line in process.stdout:
                lines.append(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and (text := note(record)):
                    print(f"  {label}: {text}", file=sys.stderr, flush=True)
            process.wait()
        except BaseException:
            process.kill()
            raise
        finally:
            drain.join()
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines),
                                       "".join(errors))


def epoch_note(key: str) -> Callable[[dict], str | None]:
    """A `run_reporting` note for each evaluation record of the figure `key`: "epoch E: KEY
    V", with the step where the record has one (checks within an epoch); none for the final
    result, which holds its list of "epochs"."""
    def note(record: dict) -> str | None:
        if ("epoch" not in record or "epochs" in record
                or not isinstance(record.get(key), (int, float))):
            return None
        step = f", step {record['step']}" if "step" in record else ""
        return f"epoch {record['epoch']:g}{step}: {key} {record[key]:.4f}"
    return note


def run_jaxae_process(pairing: Pairing, tfds_dir: str | None, seed: int,
                      extra_epochs: int = 0, checks_per_extra_epoch: int = 1) -> dict:
    """`run_jaxae` in a fresh Python process (`benchmarks.jaxae_run`), timed as the peer's
    run is: each record's wall_s counts from the process's start, and its "startup_s" is
    the part before the training call (Python starting, the imports); "process_s" is the
    process's whole wall time. As in a new user's first run, the persistent compilation
    cache is off, so every program is compiled, and without `tfds_dir` the data set is
    prepared afresh from its IDX files, which the peer reads in every run (a set prepared
    by an earlier run had been read in a fraction of that time)."""
    spec = {"pairing": dataclasses.asdict(pairing), "seed": seed, "extra_epochs": extra_epochs,
            "tfds_dir": tfds_dir and os.path.abspath(tfds_dir),
            "checks_per_extra_epoch": checks_per_extra_epoch}
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    with tempfile.TemporaryDirectory(prefix=f"jaxae_quality_{pairing.config}_") as workdir, \
            tempfile.TemporaryDirectory(prefix="jaxae_quality_data_") as fresh_data:
        spec["tfds_dir"] = spec["tfds_dir"] or fresh_data
        spawned = time.time()
        done = run_reporting([sys.executable, "-m", "benchmarks.jaxae_run", json.dumps(spec),
                              workdir], "jaxae", epoch_note(f"test_{pairing.metric}"),
                             env=env, cwd=REPO_ROOT)
        process_s = time.time() - spawned
    result = json_result(done, f"jaxae's {pairing.config} run (seed {seed})")
    startup = result.pop("called_at") - spawned
    for record in result["epochs"]:
        record["wall_s"] += startup
        record["startup_s"] = startup
    return {**result, "wall_s": result["wall_s"] + startup, "process_s": process_s}


def run_peer(python: str, script: str, name: str, pairing: Pairing, threads: int, seed: int
             ) -> dict:
    """The peer's own training run, as a subprocess; per-epoch figures and wall times
    (its training and evaluation loops: data loading not included), and "process_s", the
    subprocess's whole wall time (Python and torch starting, data loading included)."""
    command = [python, script, "--model", name, "--mode", "train", "--epochs",
               str(pairing.epochs), "--threads", str(threads), "--init", pairing.peer_init,
               "--seed", str(seed)]
    start = time.perf_counter()
    done = run_reporting(command, "peer", epoch_note(pairing.peer_metric))
    process_s = time.perf_counter() - start
    result = json_result(done, f"the peer's {name} run (seed {seed})")
    epochs, wall = [], 0.0
    train_s = eval_s = 0.0
    for record in result["epochs"]:
        wall += record["epoch_wall_s"] + record["eval_wall_s"]
        train_s += record["epoch_wall_s"]
        eval_s += record["eval_wall_s"]
        epochs.append({"epoch": record["epoch"], "value": record[pairing.peer_metric],
                       "wall_s": wall, "train_s": train_s, "evaluation_s": eval_s})
    return {"value": epochs[-1]["value"], "wall_s": wall, "epochs": epochs,
            "process_s": process_s, "torch": result["torch"]}


def reached(pairing: Pairing, epochs: list[dict], target: float) -> dict | None:
    """The first epoch whose figure is at least as good as `target`, or None."""
    for record in epochs:
        good = record["value"] >= target if pairing.higher_is_better else \
            record["value"] <= target
        if good:
            return record
    return None


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def compare(name: str, pairing: Pairing, ours: list[dict], peer: list[dict]) -> dict:
    """One row over the seeds: mean figures and their spread, jaxae's relative shortfall
    (negative: better), mean wall times, and when seed 0's jaxae run reached seed 0's peer
    figure."""
    ours_values, peer_values = [r["value"] for r in ours], [r["value"] for r in peer]
    ours_mean, peer_mean = statistics.mean(ours_values), statistics.mean(peer_values)
    shortfall = (peer_mean - ours_mean) if pairing.higher_is_better else (ours_mean - peer_mean)
    first = reached(pairing, ours[0]["epochs"], peer[0]["value"])
    return {"model": name, "config": pairing.config, "epochs": pairing.epochs,
            "metric": pairing.label, "seeds": len(ours), "jaxae": ours_mean, "peer": peer_mean,
            "jaxae_std": _spread(ours_values), "peer_std": _spread(peer_values),
            "jaxae_per_seed": ours_values, "peer_per_seed": peer_values,
            "jaxae_worse_by": shortfall / abs(peer_mean),
            "jaxae_wall_s": statistics.mean(r["wall_s"] for r in ours),
            "peer_wall_s": statistics.mean(r["wall_s"] for r in peer),
            "jaxae_reaches_peer_final_at_epoch": first and first["epoch"],
            "jaxae_time_to_peer_final_s": first and first["wall_s"],
            "jaxae_epochs": ours[0]["epochs"], "peer_epochs": peer[0]["epochs"]}


def _figure(row: dict, side: str) -> str:
    """A side's mean figure, with its standard deviation over the seeds when there are some."""
    spread = f" ± {row[side + '_std']:.4f}" if row["seeds"] > 1 else ""
    return f"{row[side]:.4f}{spread}"


def table(rows: list[dict]) -> str:
    lines = ["| model | epochs | seeds | figure | jaxae | peer | jaxae worse by | jaxae wall s | "
             "peer wall s | jaxae reaches the peer's final figure (seed 0) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        when = (f"epoch {r['jaxae_reaches_peer_final_at_epoch']:g}, "
                f"{r['jaxae_time_to_peer_final_s']:.0f} s"
                if r["jaxae_reaches_peer_final_at_epoch"] else "not within the epochs")
        lines.append(f"| {r['model']} (`{r['config']}`) | {r['epochs']} | {r['seeds']} | "
                     f"{r['metric']} | {_figure(r, 'jaxae')} | {_figure(r, 'peer')} | "
                     f"{r['jaxae_worse_by']:+.2%} | "
                     f"{r['jaxae_wall_s']:.0f} | {r['peer_wall_s']:.0f} | {when} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python -m benchmarks.parity", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default=None,
                        help="a Python with torch installed (see the README); required")
    parser.add_argument("--peer-script", default=None, metavar="PATH",
                        help="the PyTorch peer's script (torch_autoencoders.py); required")
    parser.add_argument("--models", default=",".join(PAIRINGS), help="comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per model")
    parser.add_argument("--extra-epochs", type=int, default=2,
                        help="epochs jaxae may train past the pairing's to reach the peer's "
                             "final figure (constant learning rates only)")
    parser.add_argument("--compute-dtype", choices=precision.COMPUTE_DTYPES, default="float32",
                        help="jaxae's config.train.compute_dtype (the peer runs float32)")
    parser.add_argument("--tfds-dir", default=None)
    parser.add_argument("--write", default=None, help="also write the markdown table into "
                        "this file, whole (a report of sections such as BENCHMARKS.md is "
                        "refused)")
    args = parser.parse_args(argv)
    check_peer_args(parser, args, required=True)
    if args.write is not None:
        check_table_file(parser, args.write)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: give 1 or more")
    if args.extra_epochs < 0:
        parser.error(f"--extra-epochs {args.extra_epochs}: give 0 or more")
    unknown = [n for n in args.models.split(",") if n not in PAIRINGS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(PAIRINGS)}")
    check_peer_torch(parser, args.peer_python)
    return args


def check_table_file(parser: argparse.ArgumentParser, path: str) -> None:
    """--write's file can be written, before any training: and since it is written whole, it
    is not a report of "## " sections (BENCHMARKS.md) that the table would replace."""
    if not path:
        parser.error("--write needs a file name")
    check_writable_file(parser, "--write", path)
    if os.path.isfile(path):
        with open(path, errors="replace") as f:
            if any(line.startswith("## ") for line in f):
                parser.error(f"--write {path} holds a report's sections, which the table would "
                             "replace: give a file of its own")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = args.models.split(",")
    print(f"# {header()}; jaxae's compute dtype: {args.compute_dtype}", flush=True)
    rows = []
    for name in names:
        pairing, ours, peer = PAIRINGS[name], [], []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory(prefix=f"jaxae_parity_{name}_") as workdir:
                ours.append(run_jaxae(pairing, workdir, args.tfds_dir, seed,
                                      args.extra_epochs, args.compute_dtype))
            peer.append(run_peer(args.peer_python, args.peer_script, name, pairing,
                                 usable_cpus(), seed))
        rows.append(compare(name, pairing, ours, peer))
        print(json.dumps(rows[-1]), flush=True)
    report = table(rows)
    print("\n" + report)
    if args.write:
        with open(args.write, "w") as f:
            f.write(f"Machine: {header()}. jaxae's compute dtype: {args.compute_dtype}; "
                    f"the peer's: float32.\n\n{report}\n")


if __name__ == "__main__":
    try:
        main()
    except BenchRefused as error:  # a run that failed: one line, not a traceback
        print(f"python -m benchmarks.parity: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
