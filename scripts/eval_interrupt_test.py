"""Ctrl-C an evaluation at many moments: its folder must then hold one evaluation whole.

    python scripts/eval_interrupt_test.py [--root /tmp/jaxae_eval_interrupt] [--stops 16]

Trains configs/test.py (2-D code) for one epoch and evaluates it (evaluation A), trains a
second epoch and evaluates that into another folder (evaluation B), then, --stops times,
puts A back in the run's eval/ folder, starts `evaluate.py` and sends it SIGINT after a
delay that grows by --step seconds from --first. After each, eval/ must hold exactly A's
files or exactly B's, byte for byte, and nothing else. Prints one line per stop and
exits 1 if any left a mixed or cluttered folder.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=ROOT)


def _holds(folder: str, reference: str, names: list[str]) -> bool:
    return all(filecmp.cmp(os.path.join(folder, n), os.path.join(reference, n), shallow=False)
               for n in names)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/jaxae_eval_interrupt",
                        help="a scratch folder (emptied first)")
    parser.add_argument("--stops", type=int, default=16)
    parser.add_argument("--first", type=float, default=0.5, help="the first delay, seconds")
    parser.add_argument("--step", type=float, default=0.25, help="seconds added per stop")
    args = parser.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    workdir, old, new = (os.path.join(args.root, n) for n in ("run", "A", "B"))
    base = ["--config=configs/test.py", f"--workdir={workdir}", "--config.model.latent_dim=2"]
    _run("train.py", *base, "--config.train.num_epochs=1")
    _run("evaluate.py", f"--workdir={workdir}")
    shutil.copytree(os.path.join(workdir, "eval"), old)
    _run("train.py", *base, "--config.train.num_epochs=2")
    _run("evaluate.py", f"--workdir={workdir}", f"--eval_dir={new}")
    names = sorted(os.listdir(old))
    if names != sorted(os.listdir(new)):
        raise SystemExit(f"the two evaluations wrote different files: {names}")
    bad = 0
    for i in range(args.stops):
        delay = args.first + i * args.step
        folder = os.path.join(workdir, "eval")
        shutil.rmtree(folder)
        shutil.copytree(old, folder)
        process = subprocess.Popen([sys.executable, "evaluate.py", f"--workdir={workdir}"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        code = process.wait()
        whole = sorted(os.listdir(folder)) == names
        held = ("old" if whole and _holds(folder, old, names) else
                "new" if whole and _holds(folder, new, names) else "MIXED OR CLUTTERED")
        bad += held.startswith("MIXED")
        print(f"stop after {delay:.2f} s: exit {code}, eval/ holds the {held} evaluation",
              flush=True)
    print(f"{args.stops - bad} of {args.stops} stops left one evaluation whole")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
