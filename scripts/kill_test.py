"""Fault injection: SIGKILL train.py at chosen and random moments, restart it until it
finishes, and check that it ends bitwise equal to a run that was never interrupted.

    python scripts/kill_test.py --tfds-dir=/tmp/tfds [--kills 8] [--seed 0]

The chosen moments: right after start-up, mid-epoch, during an evaluation, while Orbax
writes a checkpoint (its temporary `*.orbax-checkpoint-tmp*` folder exists), and two
faults that are not kills alone:

* second_writer: the run is paused mid-epoch and a second train.py on its workdir must be
  refused at once with one line (the workdir's lock); then an evaluate.py reads the
  workdir while the run goes on (it must evaluate an intact checkpoint and call none
  damaged), and the run, unless it finished meanwhile, is SIGKILLed (its lock must not
  outlive it: the next start takes it);
* failed_write: a start whose file writes are capped below a checkpoint's size
  (RLIMIT_FSIZE, a full disk's stand-in) must stop with one line naming the checkpoint
  that could not be written, within a chunk, and leave the older checkpoints intact.

The others are random (seeded) within the training that is left after start-up. Both runs
share a JAX compilation cache that the uninterrupted run fills first, so restarts only read
it and a kill never leaves a half-written cache entry (evaluate.py does not use it). Prints
one line per fault and a summary; exits 1 on any difference or misbehaviour.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FLAGS = ("--config=configs/test.py", "--config.seed=0", "--config.task.name=denoise",
               "--config.task.corruption=dropout", "--config.train.checkpoint_every_steps=2",
               "--config.train.log_every_steps=4")
POINTS = ("startup", "mid_epoch", "second_writer", "evaluation", "checkpoint_write",
          "failed_write")
TMP_MARK = ".orbax-checkpoint-tmp"
POLL_S = 0.002
ATTEMPT_TIMEOUT_S = 300.0
FILE_SIZE_LIMIT = 40 * 1024  # failed_write: below a checkpoint's data file, above the rest
REFUSAL_TIMEOUT_S = 60.0  # second_writer: the refusal comes before any data is loaded
THROTTLE_S = (0.02, 0.08)  # second_writer: the run runs, then pauses, while evaluate.py runs
BUSY_LINE = "is in use by another training run"
WRITE_FAILED_LINE = "error: could not write the checkpoint at step"
REMOVED_SAVE_LINE = "warning: removed the unfinished save of step"


def train_command(workdir: str, tfds_dir: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The train.py command line both runs use (the same one after every kill)."""
    return [sys.executable, os.path.join(ROOT, "train.py"), *TRAIN_FLAGS, *extra,
            f"--workdir={workdir}", f"--config.data.tfds_dir={tfds_dir}"]


def evaluate_command(workdir: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--workdir={workdir}"]


def cache_env(cache_dir: str | None) -> dict[str, str]:
    """The environment for train.py: a persistent JAX compilation cache when one is given."""
    env = dict(os.environ)
    if cache_dir:
        env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def tmp_checkpoints(workdir: str) -> set[str]:
    """Names of Orbax's temporary (unfinished) checkpoint folders in the workdir."""
    try:
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except FileNotFoundError:
        return set()
    return {name for name in names if TMP_MARK in name}


def checkpoint_steps(workdir: str) -> list[int]:
    """Steps of the finished checkpoints in the workdir."""
    try:
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


class Watch:
    """What one attempt of train.py has shown so far: its output lines and checkpoint folder."""

    def __init__(self, workdir: str, log_path: str):
        self.workdir, self.log_path = workdir, log_path
        self.started = time.monotonic()
        self.start_line_s: float | None = None  # when it said it starts training
        self.steps_per_epoch = 0  # from that line
        self.lines: list[str] = []
        self.step_times: list[tuple[float, int]] = []  # (seconds, step) of training records
        self._offset = 0
        self._leftovers = tmp_checkpoints(workdir)  # the kill before's: the trainer removes them
        self.new_tmp: set[str] = set()

    def poll(self) -> None:
        """Reads new complete output lines and notes temporary checkpoint folders."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        new = complete.decode(errors="replace").splitlines()
        self.lines += new
        self.step_times += [(self.seconds(), json.loads(line)["step"]) for line in new
                            if line.startswith("{") and "train_loss" in line]
        if self.start_line_s is None:
            found = [re.search(r"(\d+) steps per epoch", line) for line in self.lines]
            found = [m for m in found if m]
            if found:
                self.start_line_s, self.steps_per_epoch = self.seconds(), int(found[0][1])
        present = tmp_checkpoints(self.workdir)
        self._leftovers &= present  # once gone, a folder of that name is a new write
        self.new_tmp = present - self._leftovers

    def records(self) -> list[dict]:
        """The metric records this attempt printed."""
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def train_steps(self) -> list[int]:
        return [r["step"] for r in self.records() if "train_loss" in r]

    def eval_steps(self) -> list[int]:
        return [r["step"] for r in self.records() if "test_loss" in r]

    def started_training(self) -> bool:
        return self.start_line_s is not None

    def seconds(self) -> float:
        return time.monotonic() - self.started


def trigger(point: str, moment: float | None) -> Callable[[Watch], bool]:
    """When to kill for a point: a predicate over what the attempt has shown so far."""
    if point == "startup":
        return Watch.started_training
    if point in ("mid_epoch", "second_writer"):
        return lambda w: any(s % w.steps_per_epoch for s in w.train_steps())
    if point == "evaluation":
        return lambda w: any(s % w.steps_per_epoch == 0 for s in w.train_steps())
    if point == "checkpoint_write":
        return lambda w: bool(w.new_tmp)
    assert point == "random" and moment is not None
    return lambda w: w.started_training() and w.seconds() >= w.start_line_s + moment


@dataclasses.dataclass
class Kill:
    point: str  # the moment aimed at: one of POINTS, or "random"
    seconds: float  # after the attempt was started
    last_step: int | None  # the newest training record it printed
    steps_on_disk: list[int]  # finished checkpoints right after the kill
    during_write: bool  # a temporary checkpoint folder was left behind
    hit: bool  # it landed where it aimed
    note: str = ""  # what the fault's other processes said, or the failed write's error

    def line(self) -> str:
        where = "checkpoint write cut" if self.during_write else "no write in flight"
        return (f"{self.point:>16} at {self.seconds:5.2f} s, last logged step "
                f"{self.last_step}, checkpoints {self.steps_on_disk}, {where}"
                f"{'' if self.hit else ' (missed its aim)'}" + (f": {self.note}" if self.note
                                                                 else ""))


def landed(point: str, watch: Watch) -> bool:
    """Whether a kill hit the moment it aimed at, judged from what the attempt left."""
    if point == "checkpoint_write":
        return bool(watch.new_tmp)
    if point == "evaluation":
        ends = [s for s in watch.train_steps() if s % watch.steps_per_epoch == 0]
        return bool(ends) and ends[-1] not in watch.eval_steps()
    if point == "mid_epoch":
        return not watch.eval_steps() or max(watch.train_steps()) > max(watch.eval_steps())
    return True


# Sets RLIMIT_FSIZE, then becomes the command (same process): no Python runs between fork
# and exec in the caller, which may be a multithreaded JAX process (a test).
_LIMITED = ("import os, resource, sys; limit = int(sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
            "os.execv(sys.argv[2], sys.argv[2:])")


def with_file_size_limit(command: list[str], limit: int) -> list[str]:
    """`command`, with every file it writes capped at `limit` bytes (a full disk's stand-in:
    a write beyond it fails with EFBIG)."""
    return [sys.executable, "-c", _LIMITED, str(limit), *command]


def run_attempt(command: list[str], env: dict[str, str], workdir: str, log_dir: str,
                number: int, kill_when: Callable[[Watch], bool] | None,
                before_kill: Callable[[subprocess.Popen], None] | None = None,
                file_limit: int | None = None) -> tuple[int | None, Watch]:
    """Runs train.py once; SIGKILLs it as soon as `kill_when` holds (after `before_kill`,
    given the process). file_limit: caps the size of any file it writes (RLIMIT_FSIZE).

    Returns (exit code, or None when killed; what it showed).
    """
    log_path = os.path.join(log_dir, f"attempt{number}.out")
    with open(log_path, "w") as out, open(log_path[:-4] + ".err", "w") as err:
        watch = Watch(workdir, log_path)
        if file_limit:
            command = with_file_size_limit(command, file_limit)
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        try:
            while proc.poll() is None:
                watch.poll()
                if kill_when is not None and kill_when(watch):
                    if before_kill is not None:
                        before_kill(proc)
                        if proc.poll() is not None:  # it finished meanwhile
                            break
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    watch.poll()
                    return None, watch
                if watch.seconds() > ATTEMPT_TIMEOUT_S:
                    raise TimeoutError(f"train.py ran over {ATTEMPT_TIMEOUT_S} s: {log_path}")
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    watch.poll()
    return proc.returncode, watch


def error_lines(watch: Watch) -> list[str]:
    with open(watch.log_path[:-4] + ".err") as f:
        return f.read().strip().splitlines()


class Concurrency:
    """second_writer: with the run paused, a second train.py on its workdir must be refused
    with one line; then an evaluate.py runs while the run goes on, and must evaluate an
    intact checkpoint without calling any damaged. `note` says what they said."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: str, log_dir: str):
        self.command, self.env, self.workdir, self.log_dir = command, env, workdir, log_dir
        self.note = ""

    def __call__(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGSTOP)  # the run holds its lock, paused mid-epoch
        try:
            second = subprocess.run(self.command, cwd=ROOT, env=self.env, capture_output=True,
                                    text=True, timeout=REFUSAL_TIMEOUT_S)
        finally:
            proc.send_signal(signal.SIGCONT)
        lines = second.stderr.strip().splitlines()
        if second.returncode != 1 or len(lines) != 1 or BUSY_LINE not in lines[0]:
            raise RuntimeError(f"a second train.py on the busy workdir exited "
                               f"{second.returncode} saying:\n{second.stderr[-3000:]}")
        env = {k: v for k, v in self.env.items() if not k.startswith("JAX_")}  # no cache
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            reader = subprocess.Popen(evaluate_command(self.workdir), cwd=ROOT, env=env,
                                      stdout=out, stderr=err, text=True)
            # the run goes on at a fifth of its pace, so that it saves (and deletes)
            # checkpoints while evaluate.py lists and reads them
            deadline = time.monotonic() + ATTEMPT_TIMEOUT_S
            while reader.poll() is None and time.monotonic() < deadline:
                proc.send_signal(signal.SIGSTOP)
                time.sleep(THROTTLE_S[1])
                proc.send_signal(signal.SIGCONT)
                time.sleep(THROTTLE_S[0])
            if reader.poll() is None:
                reader.kill()
            reader.wait()
            out.seek(0)
            err.seek(0)
            evaluated = subprocess.CompletedProcess(reader.args, reader.returncode, out.read(),
                                                    err.read())
        said = re.search(r"evaluating the checkpoint at step (\d+)", evaluated.stdout)
        if evaluated.returncode != 0 or not said or "damaged" in evaluated.stderr:
            raise RuntimeError(f"evaluate.py during training exited {evaluated.returncode} "
                               f"saying:\n{evaluated.stderr[-3000:]}")
        self.note = (f"second train.py refused ({lines[0][len('error: '):80]}...); "
                     f"evaluate.py read step {said[1]} meanwhile")


def plan(kills: int) -> list[str]:
    """The points to kill at: the chosen ones first (as many as fit), then random ones."""
    chosen = list(POINTS[:kills])
    return chosen + ["random"] * (kills - len(chosen))


@dataclasses.dataclass
class Timing:
    """How long a start of train.py takes here: its start-up, and then each training step
    (checkpoints and evaluations included); updated from every attempt that trained."""

    startup_s: float
    step_s: float
    total_steps: int

    def update(self, watch: Watch) -> None:
        """Takes the pace of the attempt just watched (a restart reads the compile cache)."""
        if watch.start_line_s is not None:
            self.startup_s = watch.start_line_s
        if len(watch.step_times) >= 2:
            (t0, s0), (t1, s1) = watch.step_times[0], watch.step_times[-1]
            self.step_s = (t1 - t0) / (s1 - s0)

    def random_moment(self, fraction: float, done_steps: int) -> float:
        """A kill time after the start line: `fraction` of the training left after a step."""
        return fraction * self.step_s * (self.total_steps - done_steps)


@dataclasses.dataclass
class Outcome:
    kills: list[Kill]
    starts: int
    differences: list[str]

    @property
    def during_writes(self) -> int:
        return sum(k.during_write for k in self.kills if k.point != "failed_write")


def _failure(what: str, code: int, watch: Watch) -> RuntimeError:
    with open(watch.log_path[:-4] + ".err") as f:
        return RuntimeError(f"{what} exited {code}:\n{f.read()[-3000:]}")


def interrupted_run(workdir: str, tfds_dir: str, points: list[str], env: dict[str, str],
                    log_dir: str, timing: Timing | None, seed: int = 0,
                    extra: tuple[str, ...] = ()) -> tuple[list[Kill], int]:
    """Runs train.py into `workdir`, killing it at each point in turn, then lets it finish.

    `timing` (the uninterrupted run's) places the random kills. Returns the kills made and
    the number of starts.
    """
    if "random" in points and timing is None:
        raise ValueError("random kills need the timing of the uninterrupted run")
    command, kills, queue = train_command(workdir, tfds_dir, extra), [], list(points)
    rng, timing = random.Random(seed), dataclasses.replace(timing) if timing else None
    for number in range(1, len(points) + 2):
        point = queue[0] if queue else None
        moment = None
        if point == "random":
            done = max(checkpoint_steps(workdir), default=0)
            moment = timing.random_moment(rng.random(), done)
        if point == "failed_write":
            queue.pop(0)
            kills.append(failed_write(command, env, workdir, log_dir, number))
            print(f"fault {len(kills)}: {kills[-1].line()}", flush=True)
            continue
        when = trigger(point, moment) if point else None
        concurrency = Concurrency(command, env, workdir, log_dir) \
            if point == "second_writer" else None
        code, watch = run_attempt(command, env, workdir, log_dir, number, when, concurrency)
        if timing:
            timing.update(watch)
        if code == 0 and concurrency and concurrency.note:  # it finished meanwhile
            steps = watch.train_steps()
            kills.append(Kill(point, watch.seconds(), steps[-1] if steps else None,
                              checkpoint_steps(workdir), False, True,
                              concurrency.note + "; the run finished meanwhile"))
            print(f"fault {len(kills)}: {kills[-1].line()}", flush=True)
            queue.pop(0)
        if code is not None:
            if code != 0:
                raise _failure(f"train.py, after {len(kills)} kills,", code, watch)
            if queue:
                print(f"the run finished before the kills {queue}", flush=True)
            return kills, number
        steps = watch.train_steps()
        kill = Kill(point, watch.seconds(), steps[-1] if steps else None,
                    checkpoint_steps(workdir), bool(watch.new_tmp), landed(point, watch),
                    concurrency.note if concurrency else "")
        kills.append(kill)
        print(f"fault {len(kills)}: {kill.line()}", flush=True)
        queue.pop(0)
    raise RuntimeError("train.py did not finish after all the kills")


def failed_write(command: list[str], env: dict[str, str], workdir: str, log_dir: str,
                 number: int) -> Kill:
    """A start whose writes are capped below a checkpoint's size: it must stop with exactly
    one line naming the checkpoint it could not write (within a chunk: long before the
    attempt's timeout), and leave the checkpoints before it intact (the comparison at the
    end reads them all)."""
    before = checkpoint_steps(workdir)
    code, watch = run_attempt(command, env, workdir, log_dir, number, None,
                              file_limit=FILE_SIZE_LIMIT)
    lines = [line for line in error_lines(watch)  # a save the kill before it cut short is
             if not line.startswith(REMOVED_SAVE_LINE)]  # removed, saying so: not an error
    if code != 1 or len(lines) != 1 or not lines[0].startswith(WRITE_FAILED_LINE):
        raise _failure("train.py, its writes capped,", code, watch)
    if checkpoint_steps(workdir) != before:  # nothing saved, so nothing may be pruned
        raise RuntimeError(f"a failed write changed the checkpoints: {before} before, "
                           f"{checkpoint_steps(workdir)} after")
    steps = watch.train_steps()
    return Kill("failed_write", watch.seconds(), steps[-1] if steps else None,
                checkpoint_steps(workdir), bool(watch.new_tmp), True, lines[0])


def uninterrupted_run(workdir: str, tfds_dir: str, env: dict[str, str], log_dir: str,
                      extra: tuple[str, ...] = ()) -> Timing:
    """Trains into `workdir` without interruption; returns how long it took."""
    code, watch = run_attempt(train_command(workdir, tfds_dir, extra), env, workdir, log_dir,
                              0, None)
    if code != 0:
        raise _failure("the uninterrupted run", code, watch)
    total = int(re.findall(r"(\d+) steps in all", "\n".join(watch.lines))[0])
    startup_s = watch.start_line_s or 0.0
    return Timing(startup_s, (watch.seconds() - startup_s) / total, total)


def saved_arrays(workdir: str, step: int) -> dict:
    """Everything the checkpoint at `step` holds (step, params, opt_state), as Orbax reads
    it back without a target: the bits on disk, whatever the config says."""
    import orbax.checkpoint as ocp
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    checkpointer = ocp.StandardCheckpointer()
    try:
        return checkpointer.restore(os.path.join(os.path.abspath(workdir), "checkpoints",
                                                 str(step), "default"))
    finally:
        checkpointer.close()


def state_differences(reference: str, candidate: str, step: int) -> list[str]:
    """Which arrays of the two checkpoints at `step` differ in any bit (or dtype, shape)."""
    import jax
    import numpy as np

    trees = [saved_arrays(workdir, step) for workdir in (reference, candidate)]
    flat = [jax.tree_util.tree_flatten_with_path(jax.device_get(t))[0] for t in trees]
    if [p for p, _ in flat[0]] != [p for p, _ in flat[1]]:
        return [f"step {step}: the checkpoints hold different trees"]
    return [f"step {step}: {jax.tree_util.keystr(path)} differs"
            for (path, a), (_, b) in zip(*flat, strict=True)
            if a.dtype != b.dtype or not np.array_equal(np.asarray(a), np.asarray(b))]


def compare_runs(reference: str, candidate: str) -> list[str]:
    """Differences between two finished workdirs: newest step, every checkpoint both hold
    (bitwise), and metrics.jsonl (byte for byte)."""
    ours, theirs = checkpoint_steps(reference), checkpoint_steps(candidate)
    if not ours or not theirs or ours[-1] != theirs[-1]:
        return [f"newest checkpoints differ: {ours} against {theirs}"]
    differences = []
    for step in sorted(set(ours) & set(theirs)):
        differences += state_differences(reference, candidate, step)
    if read_bytes(reference, "metrics.jsonl") != read_bytes(candidate, "metrics.jsonl"):
        differences.append("metrics.jsonl differs")
    return differences


def read_bytes(workdir: str, name: str) -> bytes:
    with open(os.path.join(workdir, name), "rb") as f:
        return f.read()


def kill_test(tfds_dir: str, root: str, points: list[str], seed: int = 0,
              reference: tuple[str, Timing | None] | None = None,
              cache_dir: str | None = None, extra: tuple[str, ...] = ()) -> Outcome:
    """The whole test in `root`: an uninterrupted run (unless `reference` gives a finished
    one, made with the same flags and cache, and its timing), an interrupted one, and their
    comparison."""
    log_dir = os.path.join(root, "logs")
    os.makedirs(log_dir, exist_ok=True)
    env = cache_env(cache_dir)
    for name in ("uninterrupted", "interrupted"):  # left by an earlier test in this root
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    if reference is None:
        workdir = os.path.join(root, "uninterrupted")
        reference = workdir, uninterrupted_run(workdir, tfds_dir, env, log_dir, extra)
        timing = reference[1]
        print(f"uninterrupted run: {timing.startup_s + timing.step_s * timing.total_steps:.1f}"
              f" s, checkpoints {checkpoint_steps(workdir)}", flush=True)
    workdir = os.path.join(root, "interrupted")
    kills, starts = interrupted_run(workdir, tfds_dir, points, env, log_dir, reference[1],
                                    seed, extra)
    return Outcome(kills, starts, compare_runs(reference[0], workdir))


def report(outcome: Outcome) -> str:
    """The summary line."""
    found = outcome.differences
    verdict = ("final parameters, optimiser state and metrics.jsonl bitwise equal to the "
               "uninterrupted run" if not found else
               f"DIFFERENT from the uninterrupted run ({len(found)} differences): "
               + "; ".join(found[:5]))
    kills = [k for k in outcome.kills if k.point != "failed_write"
             and not k.note.endswith("the run finished meanwhile")]
    extra = []
    if any(k.point == "second_writer" for k in outcome.kills):
        extra.append("a second writer refused, evaluate.py run meanwhile")
    failed = [k for k in outcome.kills if k.point == "failed_write"]
    if failed:
        extra.append(f"a failed checkpoint write reported in {failed[0].seconds:.1f} s")
    return (f"survived {len(kills)} kills ({outcome.during_writes} during a checkpoint "
            f"write){''.join(f', {e}' for e in extra)} in {outcome.starts} starts: "
            f"{verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8,
                        help="faults to make (default 8: the 6 chosen ones and 2 at random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill times")
    parser.add_argument("--tfds-dir", required=True,
                        help="TFDS data dir holding the prepared Fashion-MNIST")
    parser.add_argument("--root", help="folder for the two workdirs and logs (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="compile from scratch in every start (slower)")
    parser.add_argument("--streaming", action="store_true",
                        help="every start streams its training batches with Grain "
                             "(--config.data.streaming=stream)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="jaxae_kill_test_")
    try:
        cache = None if args.no_compile_cache else os.path.join(root, "jax_cache")
        start = time.monotonic()
        extra = ("--config.data.streaming=stream",) if args.streaming else ()
        outcome = kill_test(args.tfds_dir, root, plan(args.kills), args.seed,
                            cache_dir=cache, extra=extra)
        print(report(outcome) + f" ({time.monotonic() - start:.0f} s)", flush=True)
        return 1 if outcome.differences else 0
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
