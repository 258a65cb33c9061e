"""Every shipped config trained and evaluated by its own commands: the README's configs table.

    python scripts/config_results.py --out results \
        --mnist-data-dir results/data/mnist5k_idx --mnist-tfds-dir results/data/tfds_mnist5k

Runs each config as its docstring says, `train.py` then `evaluate.py` (and, for the photo-crop
configs, `scripts/pca_baseline.py`), into `<out>/runs/configs/<config>`: a finished run is
reloaded and evaluated again, not retrained. The MNIST configs read `--mnist-data-dir`'s IDX
files (the 5,000 offline digits of `python -m jaxae.data.mnist5k DIR`) into their own TFDS
dir where one is given, else full MNIST through TFDS; the photo-crop configs read
`--photos` (`python -m jaxae.data.photo_crops DIR`). Writes `<out>/configs/table.json` and
`table.md`, naming the machine, commit and each command; `python -m jaxae.experiments report`
adds the table to RESULTS.md. A config whose data is missing is listed as not run, with the
error line that says why, unless an earlier command measured it: its row is kept, the failure
recorded beside it (`last_failure`); any failure makes the exit status 1. `--only` reruns
some of them, keeping the other rows. A stop (Ctrl-C, SIGTERM, SIGUSR1) lets the running
command stop as it does, starts no other, records no row for its config and ends the script
as the signal does: rerun the same command to go on from there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from anywhere: the repository's jaxae

from jaxae.cli import output  # noqa: E402
from jaxae.cli.arguments import OneLineErrors  # noqa: E402
from jaxae.cli.signals import GracefulStop, end_by_signal, not_ignored  # noqa: E402
from jaxae.config import ConfigError, require_32_bits  # noqa: E402
from jaxae.experiments.common import machine  # noqa: E402
from jaxae.experiments.render import describe_commit, describe_machine  # noqa: E402
from jaxae.training.files import write_whole  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of a config's row: its label, where it is read from, how it is printed."""

    label: str
    key: str  # a key of eval/metrics.json, or "pca" for pca_baseline.json's PSNR
    fmt: str
    unit: str = ""
    scale: float = 1.0  # e.g. 100 for a fraction printed in %


MSE, BCE = Figure("MSE", "test_mse", ".4f"), Figure("BCE", "test_bce", ".3f")
PSNR = Figure("PSNR", "test_psnr", ".1f", " dB")
ELBO = Figure("ELBO", "test_elbo", "+.1f", " nats")
INPUT = Figure("input", "test_input_psnr", ".1f", " dB")  # the corrupted input's PSNR
BASELINE = Figure("baseline", "test_baseline_psnr", ".1f", " dB")  # the classical method's
IWAE1 = Figure("IWAE k=1", "test_iwae_k1", "+.1f", " nats")  # the ELBO on the IWAE's images
IWAE = Figure("IWAE k=1000", "test_iwae_k1000", "+.1f", " nats")
KL = Figure("KL", "test_kl_nats", ".1f", " nats")
PCA = Figure("PCA", "pca", ".1f", " dB")  # PSNR with as many components as the code


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A shipped config, the data it needs ("fashion_mnist", "mnist", "photos"), its figures."""

    name: str
    data: str
    figures: tuple[Figure, ...]
    pca: bool = False  # the linear baseline at the code's size (scripts/pca_baseline.py)
    # on the 4,000 offline digits: the epochs its docstring's offline command gives them, about
    # as many steps as its own epochs take on full MNIST's 60,000 (None: the config's own)
    offline_epochs: int | None = None


CONFIGS = (
    Shipped("default", "fashion_mnist", (MSE, PSNR)),
    Shipped("conv_ae_fashion", "fashion_mnist", (BCE, PSNR)),
    Shipped("conv_ae_mnist", "mnist", (BCE, PSNR), offline_epochs=75),
    Shipped("dae_dropout", "fashion_mnist", (PSNR, INPUT, BASELINE)),
    Shipped("dae_gaussian", "fashion_mnist", (PSNR, INPUT, BASELINE)),
    Shipped("superres", "fashion_mnist", (PSNR, BASELINE)),
    Shipped("superres_ae", "fashion_mnist", (PSNR, BASELINE)),
    Shipped("deep_ae", "fashion_mnist", (MSE, PSNR)),
    Shipped("vae_fashion_2d", "fashion_mnist",
            (ELBO, KL, IWAE1, Figure("IWAE k=50", "test_iwae_k50", "+.1f", " nats"), IWAE)),
    Shipped("vae_mnist_2d", "mnist", (ELBO, KL, IWAE), offline_epochs=150),
    Shipped("vae_binarized_mnist", "mnist", (ELBO, KL, IWAE)),
    Shipped("conv_vae", "fashion_mnist", (ELBO, KL, IWAE1, IWAE)),
    Shipped("cvae", "fashion_mnist",
            (ELBO, Figure("samples recognised", "cvae_samples_recognised", ".1f", "%", 100),
             Figure("probe accuracy", "cvae_probe_test_accuracy", ".1f", "%", 100))),
    Shipped("conv_ae_folder", "photos", (MSE, PSNR, PCA), True),
    Shipped("conv_vae_folder", "photos",
            (ELBO, KL, IWAE1, Figure("IWAE k=100", "test_iwae_k100", "+.1f", " nats"), MSE, PSNR,
             PCA),
            True),
)


# where the data each kind of config reads comes from, offline (named when its run fails)
DATA_HINTS = {
    "mnist": "offline, write the 5,000 digits with python -m jaxae.data.mnist5k DIR and give "
             "--mnist-data-dir DIR",
    "photos": "write the crops with python -m jaxae.data.photo_crops DIR and give --photos DIR",
}


# how train.py's line begins where a config's data is missing (a stop, a fault, another
# error is not about the data: no hint)
DATA_ERRORS = ("error: data set ", "error: image folder ", "error: IDX folder ",
               "error: config.data.")


def from_root(path: str) -> str:
    """`path` as the commands, run from the repository root, must name it: an absolute one
    as it is, one relative to the current folder relative to the root."""
    return path if os.path.isabs(path) else os.path.relpath(os.path.abspath(path), ROOT)


def data_flags(shipped: Shipped, args: argparse.Namespace) -> list[str]:
    """The overrides that point a config at the offline data given on the command line."""
    if shipped.data == "mnist" and args.mnist_data_dir:
        flags = [f"--config.data.data_dir={from_root(args.mnist_data_dir)}"]
        flags += ([f"--config.data.tfds_dir={from_root(args.mnist_tfds_dir)}"]
                  if args.mnist_tfds_dir else [])
        return flags + ([f"--config.train.num_epochs={shipped.offline_epochs}"]
                        if shipped.offline_epochs else [])
    if shipped.data == "photos" and args.photos:
        return [f"--config.data.path={from_root(args.photos)}"]
    return []


def commands(shipped: Shipped, workdir: str, flags: list[str]) -> list[list[str]]:
    """The config's commands, as its docstring gives them (with the data's overrides)."""
    config = os.path.join("configs", f"{shipped.name}.py")
    out = [["train.py", f"--config={config}", f"--workdir={workdir}", *flags],
           ["evaluate.py", f"--workdir={workdir}"]]
    if shipped.pca:
        out.append([os.path.join("scripts", "pca_baseline.py"), f"--workdir={workdir}"])
    return out


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def run_command(command: list[str]) -> tuple[int, str]:
    """Runs `python command` from the repository root, its stderr passed through as it comes
    (progress bars included) and kept; returns (exit status, stderr)."""
    process = subprocess.Popen([sys.executable, *command], cwd=ROOT, stderr=subprocess.PIPE)
    kept, passing = bytearray(), True
    while chunk := process.stderr.read1(4096):
        if passing:
            try:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
            except OSError:  # this script's reader gone (a job's `| tee` stopped with it),
                passing = False  # its disk full: the command's output is still read to its end
        kept += chunk
    return process.wait(), kept.decode(errors="replace")


@contextlib.contextmanager
def stops_after_the_command() -> Iterator[list[int]]:
    """While the configs run, a stop signal (Ctrl-C, a scheduler's SIGTERM or SIGUSR1) is
    recorded in the list yielded, and said at once, not acted on: sent to the job (a
    terminal's Ctrl-C, `timeout`, a scheduler, `kill -- -PGID`) it reached the running
    command too, which stops as it does (train.py with a checkpoint); this script starts no
    other command (`run_commands`) and stops once that one has ended. Passed on, it would
    reach the command twice (a second stop: train.py's without its checkpoint); ending this
    script alone would leave the command running, its output cut off."""
    received: list[int] = []

    def record(signum: int, frame) -> None:
        if not received:
            with contextlib.suppress(OSError):
                os.write(2, f"{signal.Signals(signum).name} received: config_results.py "
                            "stops once the running command has ended (the signal stops it "
                            f"too where it reached it: a terminal's Ctrl-C, a scheduler's "
                            f"stop, kill -- -{os.getpgid(0)}); the rows measured are kept\n"
                            .encode())
        received.append(signum)

    previous = {}
    try:
        for sig in not_ignored(GracefulStop.SIGNALS):
            previous[sig] = signal.signal(sig, record)
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_commands(shipped: Shipped, workdir: str, flags: list[str],
                 stopped: list[int] | None = None) -> dict:
    """Runs the config's commands: {"train_seconds": train.py's wall time where it trained
    (None where it reloaded a finished run), "eval_seconds": the others'}, with "error": the
    first failure's last line; none after a stop signal (`stopped`, of
    `stops_after_the_command`), nor after a command that failed as the output they share
    could not be written (ended by SIGPIPE, or this script's line saying the failure cannot
    be written either: a reader gone, a full disk), which joins `stopped`."""
    stopped = [] if stopped is None else stopped
    log = os.path.join(ROOT, workdir, "metrics.jsonl")
    before = _size(log)
    out: dict = {"train_seconds": None, "eval_seconds": 0.0}
    for number, command in enumerate(commands(shipped, workdir, flags)):
        if not stopped:
            print(f"# {shipped.name}: python {shlex.join(command)}", flush=True)
        if stopped:  # (also where that line could not be written)
            return {**out, "error": "stopped"}
        started = time.perf_counter()
        status, errors = run_command(command)
        seconds = round(time.perf_counter() - started, 1)
        if status == -signal.SIGPIPE:
            stopped.append(signal.SIGPIPE)
        if stopped:  # (a stop signal that reached the command too)
            return {**out, "error": "stopped"}
        if status != 0:
            print(f"# {shipped.name}: {command[0]} failed (exit status {status})", flush=True)
            if stopped:  # that line could not be written either: the output failed them both
                return {**out, "error": "stopped"}
            lines = [line for line in errors.replace("\r", "\n").splitlines() if line.strip()]
            error = lines[-1] if lines else f"exit status {status}"
            hint = DATA_HINTS.get(shipped.data) if number == 0 and \
                error.startswith(DATA_ERRORS) else None
            return {**out, "error": f"{error} ({hint})" if hint else error}
        if number > 0:
            out["eval_seconds"] += seconds
        elif _size(log) > before:  # it wrote training records: it trained
            out["train_seconds"] = seconds
    return out


def read_figures(shipped: Shipped, workdir: str) -> dict[str, float]:
    """The row's figures from the run's eval/metrics.json (and pca_baseline.json)."""
    with open(os.path.join(ROOT, workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    if shipped.pca:
        with open(os.path.join(ROOT, workdir, "eval", "pca_baseline.json")) as f:
            pca = json.load(f)["pca"]
        [(k, values)] = pca.items()  # one k: the code's size
        metrics["pca"], metrics["pca_k"] = values["test_psnr"], int(k)
    figures = {figure.label: metrics[figure.key] * figure.scale for figure in shipped.figures
               if metrics[figure.key] is not None}  # a figure not finite is null: left out
    figures["images"] = f"{metrics['dataset']}, {metrics['test_images']:,} test images" + \
        fewer_images(shipped, metrics)
    figures["step"] = metrics["step"]
    if "pca_k" in metrics:  # PCA's size
        figures["pca_k"] = metrics["pca_k"]
    if "baseline" in metrics:  # the classical baseline's name
        figures["baseline_name"] = metrics["baseline"]
    return figures


def fewer_images(shipped: Shipped, metrics: dict) -> str:
    """Which of the row's figures average over fewer of the test images (the IWAE bounds,
    over eval.iwae_images): " (IWAE k=1, IWAE k=1000: the first 1,000)"; "" where none do."""
    test, counts = metrics["test_images"], metrics.get("counts", {})
    fewer: dict[int, list[str]] = {}
    for figure in shipped.figures:
        if counts.get(figure.key, test) < test:
            fewer.setdefault(counts[figure.key], []).append(figure.label)
    said = "; ".join(f"{', '.join(labels)}: the first {count:,}"
                     for count, labels in sorted(fewer.items()))
    return f" ({said})" if said else ""


def label(figure: Figure, figures: dict) -> str:
    """A figure's label in its row, naming PCA's size and the classical baseline."""
    if figure is PCA:
        return f"PCA-{figures['pca_k']} PSNR"
    if figure is BASELINE:
        return f"{figures['baseline_name']} PSNR"
    if figure is INPUT:
        return "input PSNR"
    return figure.label


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _cell(text: str) -> str:
    """Text as one markdown table cell: its pipes escaped."""
    return text.replace("|", "\\|")


def row_text(shipped: Shipped, row: dict) -> str:
    commit = describe_commit(row["machine"])
    if row.get("error"):
        return f"| `{shipped.name}` | not run: {_cell(row['error'])} | | | | {commit} |"
    figures = row["figures"]
    shown = ", ".join(f"{label(f, figures)} {format(figures[f.label], f.fmt)}{f.unit}"
                      for f in shipped.figures if f.label in figures)  # a kept row: its own
    return (f"| `{shipped.name}` | {shown} | {figures['images']} | "
            f"{_seconds(row['train_seconds'])} | {_seconds(row['eval_seconds'])} | {commit} |")


def table(rows: dict[str, dict]) -> str:
    """The markdown section of the results (level-2 heading: RESULTS.md takes it whole)."""
    commands = sorted({row["command"] for row in rows.values()})
    machines = sorted({describe_machine(row["machine"]) for row in rows.values()})
    dates = sorted(row["date"] for row in rows.values())
    lines = ["## Shipped configs: test figures after training", "",
             f"Written by {' and '.join(f'`{c}`' for c in commands)} on "
             f"{dates[0] if dates[0] == dates[-1] else f'{dates[0]} to {dates[-1]}'}, on "
             f"{'; '.join(machines)}. Each row is its config's own commands (`train.py`, "
             "`evaluate.py`; `scripts/pca_baseline.py` for PCA at the code's size), with the "
             "data overrides below; figures are those of `eval/metrics.json`. Seconds: "
             "`train.py`'s wall time where it trained (a finished run is reloaded: its time is "
             "carried from the record that trained it, at the same step), and the other "
             "commands'.", "",
             "| config | test figures | images | train s | evaluate s | jaxae commit |",
             "|---|---|---|---:|---:|---|"]
    by_name = {s.name: s for s in CONFIGS}
    lines += [row_text(by_name[name], row) for name, row in rows.items()]
    overrides: dict[str, list[str]] = {}  # the flags -> the configs given them
    for name, row in rows.items():
        if row["flags"]:
            overrides.setdefault(" ".join(row["flags"]), []).append(name)
    if overrides:
        lines += ["", "Overrides for the offline data: " + "; ".join(
            f"`{flags}` ({', '.join(names)})" for flags, names in overrides.items()) + "."]
    return "\n".join(lines) + "\n"


def ordered_rows(rows: dict[str, dict]) -> dict[str, dict]:
    return {s.name: rows[s.name] for s in CONFIGS if s.name in rows}


def write_table(folder: str, rows: dict[str, dict]) -> None:
    """Writes `folder`/table.json and table.md (rows in CONFIGS' order), each whole or not
    at all: a stop meanwhile leaves the previous ones."""
    ordered = ordered_rows(rows)
    os.makedirs(folder, exist_ok=True)
    write_whole(os.path.join(folder, "table.json"),
                json.dumps({"rows": ordered}, indent=2) + "\n")
    write_whole(os.path.join(folder, "table.md"), table(ordered))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineErrors(prog="python scripts/config_results.py",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results",
                        help="results folder: the runs go to OUT/runs/configs, the table to "
                             "OUT/configs (default: results)")
    parser.add_argument("--mnist-data-dir", default=None,
                        help="IDX files of MNIST for the MNIST configs (offline: the 5,000 "
                             "digits of python -m jaxae.data.mnist5k DIR)")
    parser.add_argument("--mnist-tfds-dir", default=None,
                        help="the TFDS dir those are prepared into (one of their own)")
    parser.add_argument("--photos", default=None,
                        help="the photo crops' folder (default: the configs' data/photo_crops)")
    parser.add_argument("--only", default=None, help="comma-separated config names")
    args = parser.parse_args(argv)
    names = [s.name for s in CONFIGS]
    if args.only is not None:
        asked = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(asked) - set(names))
        if not asked or unknown:
            what = f"no shipped config {', '.join(unknown)}" if unknown else "no names"
            parser.error(f"--only {args.only!r}: {what}: give names, comma-separated, from "
                         f"{', '.join(names)}")
        args.only = ",".join(asked)
    if args.mnist_tfds_dir and not args.mnist_data_dir:
        parser.error("--mnist-tfds-dir prepares --mnist-data-dir's files: give both")
    return args


def main(argv: list[str] | None = None) -> None:
    output.usable_streams()
    args = parse_args(argv)
    try:  # each command would refuse it, one by one
        require_32_bits()
    except ConfigError as e:
        sys.exit(f"error: {e}")
    chosen = [s for s in CONFIGS if not args.only or s.name in args.only.split(",")]
    folder = os.path.join(args.out, "configs")
    rows = {}  # the last record's rows: kept where not rerun (--only), and the training
    if os.path.isfile(os.path.join(folder, "table.json")):  # time of a reloaded run
        with open(os.path.join(folder, "table.json")) as f:
            rows = json.load(f)["rows"]
    command = shlex.join(["python", "scripts/config_results.py",
                          *(argv if argv is not None else sys.argv[1:])])
    about = machine()
    failed: list[str] = []

    output_errors: list[OSError] = []

    def output_failed(error: OSError) -> None:  # as the stop signals: no further command
        if not stopped:
            output.say_failure(error, "config_results.py runs no further command; the rows "
                                      "measured are kept")
        output_errors.append(error)
        stopped.append(signal.SIGPIPE)

    with stops_after_the_command() as stopped, output.watched(output_failed):
        for shipped in chosen:
            if stopped:
                break
            if config_row(shipped, args, command, about, rows, folder, stopped):
                failed.append(shipped.name)
    if stopped:
        if stopped[0] == signal.SIGPIPE and output_errors and \
                not isinstance(output_errors[0], BrokenPipeError):
            sys.exit(1)  # a full disk: an error's status (train.py's too), not SIGPIPE's
        end_by_signal(stopped[0])
    with output.watched(output.dropped):  # the table is written: a reader gone loses nothing
        print("\n" + table(ordered_rows(rows)), flush=True)
        print(f"wrote {os.path.join(folder, 'table.md')} and table.json beside it", flush=True)
    if failed:
        sys.exit(f"error: {len(failed)} config(s) did not run: {', '.join(failed)} (see their "
                 "rows, or the warnings above for rows kept from earlier)")


def config_row(shipped: Shipped, args: argparse.Namespace, command: str, about: dict,
               rows: dict[str, dict], folder: str, stopped: list[int]) -> bool | None:
    """Runs one config's commands and writes its row into `rows` and the table (a measured
    row is kept where its rerun could not run); returns whether it failed, or None where a
    stop signal came meanwhile (`stopped`): its row is left as it was, for a rerun."""
    workdir = from_root(os.path.join(args.out, "runs", "configs", shipped.name))
    flags = data_flags(shipped, args)
    row = {"command": command, "machine": about,
           "flags": flags, "commands": [shlex.join(["python", *c])
                                        for c in commands(shipped, workdir, flags)],
           **run_commands(shipped, workdir, flags, stopped),
           "date": datetime.datetime.now(datetime.UTC).isoformat(
               timespec="seconds")}  # when the row's commands ended
    if stopped:
        return None
    if "error" not in row:
        try:
            row["figures"] = read_figures(shipped, workdir)
        except (KeyError, OSError) as e:  # a figure the run's files do not hold
            row["error"] = f"its eval files hold no {e}"
    before = rows.get(shipped.name, {})
    if "figures" in row and row["train_seconds"] is None and \
            before.get("figures", {}).get("step") == row["figures"]["step"]:
        row["train_seconds"] = before.get("train_seconds")
    failed = "error" in row
    if failed and "figures" in before:  # a measured row is not lost to a run that could not
        row = {**before, "last_failure": {k: row[k] for k in ("command", "date", "error")}}
        print(f"warning: {shipped.name} did not run ({row['last_failure']['error']}): "
              f"its row measured on {before['date']} is kept", file=sys.stderr, flush=True)
    rows[shipped.name] = row
    write_table(folder, rows)  # after each row: a stop keeps those measured
    return failed


if __name__ == "__main__":
    main()
