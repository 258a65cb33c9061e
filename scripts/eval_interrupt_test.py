"""Ctrl-C an evaluation at many moments: its folder must then hold one evaluation whole.

    python scripts/eval_interrupt_test.py [--root /tmp/jaxae_eval_interrupt] [--stops 16]

Trains configs/test.py (2-D code) for one epoch and evaluates it (evaluation A), trains a
second epoch and evaluates that into another folder (evaluation B), timing that whole
`evaluate.py`. Then, --stops times, it puts A back in the run's eval/ folder, starts
`evaluate.py` and sends it SIGINT after a delay spread evenly from a tenth of that time to
a tenth past it, so that stops land during the start, the metrics, the pictures and the
move. After each, eval/ must hold exactly A's files (exit 130) or exactly B's (exit 0, or
130 where the stop came during the move, which it lets finish), byte for byte, and nothing
else. Prints one line per stop; exits 1 if any stop left a
mixed or cluttered folder or the other exit code, or if no stop left each outcome.
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
    args = parser.parse_args()
    if args.stops < 2:
        parser.error(f"--stops {args.stops}: give 2 or more (both outcomes must be seen)")
    shutil.rmtree(args.root, ignore_errors=True)
    workdir, old, new = (os.path.join(args.root, n) for n in ("run", "A", "B"))
    base = ["--config=configs/test.py", f"--workdir={workdir}", "--config.model.latent_dim=2"]
    _run("train.py", *base, "--config.train.num_epochs=1")
    _run("evaluate.py", f"--workdir={workdir}")
    shutil.copytree(os.path.join(workdir, "eval"), old)
    _run("train.py", *base, "--config.train.num_epochs=2")
    start = time.monotonic()
    _run("evaluate.py", f"--workdir={workdir}", f"--eval_dir={new}")
    whole_s = time.monotonic() - start
    names = sorted(os.listdir(old))
    if names != sorted(os.listdir(new)):
        raise SystemExit(f"the two evaluations wrote different files: {names}")
    print(f"an evaluation takes {whole_s:.2f} s", flush=True)
    bad, seen = 0, set()
    for i in range(args.stops):
        delay = whole_s * (0.1 + i / (args.stops - 1))
        folder = os.path.join(workdir, "eval")
        shutil.rmtree(folder)
        shutil.copytree(old, folder)
        process = subprocess.Popen([sys.executable, "evaluate.py", f"--workdir={workdir}"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        code = process.wait()
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + it
        deadline = time.monotonic() + 10  # a stopped evaluation's staging folder is removed
        while sorted(os.listdir(folder)) != names and time.monotonic() < deadline:
            time.sleep(0.05)  # by a process of its own once it has exited
        whole = sorted(os.listdir(folder)) == names
        held = ("old" if whole and _holds(folder, old, names) else
                "new" if whole and _holds(folder, new, names) else "MIXED OR CLUTTERED")
        # a stop during the move waits for it: the new evaluation whole, and exit 130
        wrong = not ((held == "old" and code == 130) or (held == "new" and code in (0, 130)))
        bad += wrong
        seen.add(held)
        print(f"stop after {delay:.2f} s: exit {code}, eval/ holds the {held} evaluation"
              + (" (NOT THAT EXIT'S)" if wrong else ""), flush=True)
    print(f"{args.stops - bad} of {args.stops} stops left one evaluation whole; outcomes "
          f"seen: {', '.join(sorted(seen))}")
    return 1 if bad or not {"old", "new"} <= seen else 0


if __name__ == "__main__":
    sys.exit(main())
