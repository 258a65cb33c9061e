"""Time to quality: seconds from the start to the PyTorch peer's final test figure.

    python -m benchmarks.bench --mode quality --peer-python /tmp/torch/bin/python \
        --peer-script PATH/torch_autoencoders.py [--models conv_ae,vae]

For each model (default: the conv AE, judged on test BCE after the peer's 5 epochs, and the
VAE, on test ELBO after its 10; `benchmarks.parity.PAIRINGS`), the peer trains first, then
jaxae the matching config, one after the other in the same run on the same threads, each in
a process of its own. The target is the peer's final figure, and both sides' times to it
count from their process's start. jaxae's (`parity.run_jaxae_process`: a fresh workdir, no
persistent compilation cache, and the data set prepared afresh from the IDX files the peer
reads, unless --tfds-dir names a prepared one) are reported in parts: start-up (Python and
the imports), data loading, compilation and each evaluation apart from training
(`parity.Phases`). jaxae trains up to 2 epochs past the peer's (where the learning rate is
constant) to reach it, and there its test figure is checked --checks-per-epoch times an
epoch (default 4; each check is a full evaluation of the test split and its time counts):
checked at epochs' ends only, a figure reached a few steps into an epoch would be charged
the whole epoch. The peer's parts are its start-up and data loading (the process's wall time
less its training and evaluation loops), its training and its evaluation. The ratio is the
peer's time over jaxae's, both from the start and training alone.

One seed's figures differ between the two in the 4th digit either way, so whether jaxae
reaches the peer's figure at the peer's last epoch or one later is a matter of the draws:
--seeds N repeats the pair with seeds --seed .. --seed + N - 1 (each side with the same
seed) and reports each seed's row and, per model, the median ratio and its range.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys

from benchmarks import bench, parity
from benchmarks.workloads import WORKLOADS
from jaxae.provenance import usable_cpus

DEFAULT_MODELS = ("conv_ae", "vae")
EXTRA_EPOCHS = 2


def pairing_name(workload: str) -> str:
    """The parity pairing of a bench workload (conv_ae -> conv), or ValueError."""
    name = WORKLOADS[workload].peer
    if name not in parity.PAIRINGS:
        raise ValueError(f"{workload}: no time-to-quality pairing; choose from "
                         + ", ".join(w for w, spec in WORKLOADS.items()
                                     if spec.peer in parity.PAIRINGS))
    return name


def time_to_target(pairing: parity.Pairing, ours: dict, peer: dict) -> dict:
    """One row: the peer's final figure as the target, when jaxae first reached it (the
    epochs it had trained, 5.25 a quarter into the 6th; seconds from the start and their
    parts), and the peer's own time to it."""
    target = peer["value"]
    first = parity.reached(pairing, ours["epochs"], target)
    peer_loops = peer["epochs"][-1]
    peer_startup = max(0.0, peer["process_s"] - peer_loops["wall_s"])
    row = {"metric": pairing.label, "epochs": pairing.epochs, "target": target,
           "jaxae_at_peer_epochs": ours["value"],
           "peer_from_start_s": peer["process_s"], "peer_startup_data_s": peer_startup,
           "peer_train_s": peer_loops["train_s"], "peer_evaluation_s": peer_loops["evaluation_s"],
           "jaxae_epoch": None}
    if first:
        startup, data, compile_s = first["startup_s"], first["data_s"], first["compile_s"]
        evaluation = first["evaluation_s"]
        train = first["wall_s"] - startup - data - compile_s - evaluation
        row |= {"jaxae_epoch": first["epoch"], "jaxae_from_start_s": first["wall_s"],
                "jaxae_startup_s": startup, "jaxae_data_s": data, "jaxae_compile_s": compile_s,
                "jaxae_evaluation_s": evaluation, "jaxae_train_s": train,
                "speedup_from_start": peer["process_s"] / first["wall_s"],
                "speedup_training": peer_loops["train_s"] / train}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | seed | figure | peer's final (its epochs) | jaxae at those epochs | jaxae "
             "reaches it: epoch | jaxae s from start | start-up s | data s | compile s | "
             "evaluation s | training s | peer s from start | peer start-up + data s | "
             "peer training s | peer evaluation s | peer / jaxae, from start | "
             "peer / jaxae, training |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|---:|"]
    for r in rows:
        head = (f"| {r['model']} | {r['seed']} | {r['metric']} | {r['target']:.4f} "
                f"({r['epochs']}) | "
                f"{r['jaxae_at_peer_epochs']:.4f} | ")
        peer = (f"{r['peer_from_start_s']:.1f} | {r['peer_startup_data_s']:.1f} | "
                f"{r['peer_train_s']:.1f} | {r['peer_evaluation_s']:.1f} | ")
        if r["jaxae_epoch"] is None:
            lines.append(head + "not reached | - | - | - | - | - | - | " + peer + "- | - |")
            continue
        lines.append(head + f"{r['jaxae_epoch']:g} | {r['jaxae_from_start_s']:.1f} | "
                     f"{r['jaxae_startup_s']:.1f} | {r['jaxae_data_s']:.1f} | "
                     f"{r['jaxae_compile_s']:.1f} | "
                     f"{r['jaxae_evaluation_s']:.1f} | {r['jaxae_train_s']:.1f} | " + peer +
                     f"{r['speedup_from_start']:.2f}x | {r['speedup_training']:.2f}x |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """Per model over its seeds: the median ratios (from the start, training alone) with
    their range, and the epochs at which jaxae reached the peer's figure."""
    lines = ["| model | seeds | peer / jaxae from start: median (range) | training: median "
             "(range) | jaxae's epoch per seed (peer's epochs) |", "|---|---:|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        reached = [r for r in mine if r["jaxae_epoch"] is not None]
        cells = []
        for key in ("speedup_from_start", "speedup_training"):
            values = [r[key] for r in reached]
            cells.append(f"{statistics.median(values):.2f}x ({min(values):.2f}-"
                         f"{max(values):.2f}x)" if values else "not reached")
        epochs = ", ".join(f"{r['jaxae_epoch']:g}" if r["jaxae_epoch"] else "-"
                           for r in mine)
        lines.append(f"| {model} | {len(mine)} | {cells[0]} | {cells[1]} | {epochs} "
                     f"({mine[0]['epochs']}) |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[str | None, signal.Signals | None]:
    """The quality mode of `benchmarks.bench`: JSON lines, then the markdown tables of the
    runs measured (None if stopped before the first), and the signal that cut it short."""
    if not args.peer_python:
        raise SystemExit("--mode quality needs --peer-python and --peer-script (the PyTorch "
                         "peer is the target)")
    workloads = (args.models or ",".join(DEFAULT_MODELS)).split(",")
    seeds = range(args.seed, args.seed + args.seeds)
    rows = []

    def measure() -> None:  # a row once the peer and jaxae have both trained
        for workload in workloads:
            name = pairing_name(workload)
            pairing = parity.PAIRINGS[name]
            if args.epochs:
                pairing = parity.Pairing(**{**pairing.__dict__, "epochs": args.epochs})
            for seed in seeds:
                print(f"quality: {workload}, seed {seed}: the peer trains, then jaxae, each in "
                      "a process of its own", file=sys.stderr, flush=True)
                peer = parity.run_peer(args.peer_python, args.peer_script, name, pairing,
                                       usable_cpus(), seed)
                ours = parity.run_jaxae_process(pairing, args.tfds_dir, seed, EXTRA_EPOCHS,
                                                checks_per_extra_epoch=args.checks_per_epoch)
                row = {"model": workload, "seed": seed, **time_to_target(pairing, ours, peer),
                       "jaxae_epochs": ours["epochs"], "peer_epochs": peer["epochs"]}
                rows.append(row)
                print(json.dumps(row), flush=True)

    cut_short = bench.measure_rows(measure, rows)
    if not rows:
        return None, cut_short
    report = (table(rows) + ("\n\n" + summary(rows) if len(seeds) > 1 else "")
              + bench.cut_short_note(cut_short, "runs"))
    print("\n" + report, flush=True)
    seed_text = f"Seed {args.seed}" if len(seeds) == 1 else \
        f"Seeds {seeds[0]}-{seeds[-1]} (each side with the same seed)"
    checks = (f"its test figure checked {args.checks_per_epoch} times an epoch there"
              if args.checks_per_epoch > 1 else "its test figure checked at epochs' ends")
    return (f"{seed_text}, batch 128, float32, {usable_cpus()} threads; jaxae may train "
            f"{EXTRA_EPOCHS} epochs past the peer's (constant learning rate) to reach its "
            f"figure, {checks} (each check's evaluation counted).\n\n" + report), cut_short


if __name__ == "__main__":
    raise SystemExit("this module is run by the bench: "
                     "python -m benchmarks.bench --mode quality "
                     "(--help lists its options)")
