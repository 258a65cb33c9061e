"""Faults that need no finished run: signals at start-up and twice, a workdir that cannot be
written, sizes the data or the memory cannot hold, the fields a resumed run may change,
optimiser states that do not fit, a save that cannot be written, a garbage metrics line,
numerical faults named by their knob, and evaluation-time overrides.

Most run in this process through `cli.run`, as the entry points do; a process of its own
only where a signal must reach one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from tqdm import tqdm

from jaxae import cli, objectives, registry
from jaxae import config as config_lib
from jaxae import data as data_lib
from jaxae import models as models_lib
from jaxae.data.errors import DataError
from jaxae.evaluation import evaluate
from jaxae.training import checkpoints
from jaxae.training import files as files_lib
from jaxae.training import workdir as workdir_lib
from jaxae.training.faults import Faults
from jaxae.training.metric_writer import MetricWriter
from jaxae.training.trainer import StopRequested, train_and_evaluate
from jaxae.training.workdir import prepare_workdir
from tests.conftest import FailingOutput, lines_of, one_line, set_fields, tiny_model_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_run(fn, *args, **kwargs) -> int:
    """The exit code of fn(*args) run as the entry points run it (0 if it returns)."""
    try:
        cli.run(fn, *args, **kwargs)
        return 0
    except SystemExit as e:
        return int(e.code)


# ---------------------------------------------------------------------------- signals


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler, as a terminal's process has, for the test (pytest started
    with Ctrl-C ignored, as `cmd &` in a script is, inherits that ignore, and GracefulStop
    leaves an inherited ignore alone)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


FROM_A_TERMINAL = [sys.executable, "-c",  # then the script and its arguments
                   "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]
"""A Python process started as from a terminal, Ctrl-C not ignored, whatever this one's."""


def test_the_first_signal_asks_for_a_stop_the_handlers_go_with_the_block(ctrl_c_handled):
    before = signal.getsignal(signal.SIGINT)
    with cli.GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        deadline = time.monotonic() + 5
        while stop() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert stop() == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_the_process_was_started_ignoring_stays_ignored():
    """`train.py &` in a shell script: the shell starts it with Ctrl-C ignored, so that a
    Ctrl-C to the script leaves its background jobs running. Python and evaluate.py leave
    that ignore alone; train.py's handler went over it, and the Ctrl-C stopped them."""
    script = textwrap.dedent("""
        import os, signal, time
        from jaxae import cli

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the shell starts `cmd &`
        stop = cli.GracefulStop().install()
        os.kill(os.getpid(), signal.SIGINT)  # ignored: nothing happens
        time.sleep(0.2)
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        print(stop(), ignored, end=" ")
        os.kill(os.getpid(), signal.SIGTERM)  # still a stop
        deadline = time.monotonic() + 30
        while stop() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.uninstall()
        print(stop(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
              signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout) == (0, "None True SIGTERM True True\n"), done.stderr
    assert done.stderr == ("SIGTERM received: stopping, with a checkpoint of any steps "
                           "trained (a second SIGTERM stops at once, without it)\n")


def test_a_schedulers_warning_signal_asks_for_a_stop_too():
    """SLURM's --signal=USR1@120 before the time limit: it killed the run, no checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are installed from the main thread only")
    with cli.GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while stop() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert stop() == "SIGUSR1"
    assert cli.exits.stopped_exit_code("SIGUSR1") == 128 + signal.SIGUSR1


def test_in_a_notebook_a_second_interrupt_raises_and_the_kernel_lives_on(ctrl_c_handled):
    """GracefulStop(end_process=False): the second signal is a KeyboardInterrupt, as an
    interrupt is without it (it ended the process: a notebook's kernel)."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="^SIGINT received twice: stopped without a "
                                                "checkpoint of the last steps$"):
        with cli.GracefulStop(end_process=False) as stop:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 5
            while stop() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            assert stop() == "SIGINT"
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_signal_stops_at_once_with_one_line():
    """Wherever the main thread is (here: joining a thread, as in Orbax's wait for a save),
    the second signal ends the process with one line, killed by it."""
    script = ("import os, signal, threading, time\n"
              "from jaxae import cli\n"
              "cli.GracefulStop().install()\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "time.sleep(0.05)\n"
              "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
              "t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n"
              "t.start(); t.join()\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == -signal.SIGTERM
    assert result.stderr == ("SIGTERM received: stopping, with a checkpoint of any steps "
                             "trained (a second SIGTERM stops at once, without it)\n"
                             "error: SIGTERM received twice: stopped at once, without a "
                             "checkpoint of the last steps (a save still being written is lost "
                             "too); rerun the same command to continue from the newest "
                             "complete checkpoint\n")
    assert time.monotonic() - start < 20


def test_signals_after_the_work_is_done_leave_the_exit_code_alone():
    """Ctrl-C pressed twice as train.py stops: the run's work is saved when the second one
    comes, during the interpreter's teardown; the exit is still 0, not a kill (-2)."""
    script = ("import os, signal, sys, threading, time\n"
              "from jaxae import cli\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's\n"
              "cli.GracefulStop().install()\n"
              "cli.run(lambda: None, entry_point=True)\n"
              "def flood():\n"
              "    while True:\n"
              "        os.kill(os.getpid(), signal.SIGINT)\n"
              "        time.sleep(0.002)\n"
              "threading.Thread(target=flood, daemon=True).start()\n"
              "time.sleep(0.2)\n"
              "sys.exit(0)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


def test_a_record_echoed_under_a_progress_bar_starts_a_line_of_its_own(tmp_path, monkeypatch):
    """On a terminal the bar (stderr, redrawn in place) and the records (stdout) share the
    screen: a record printed after the bar's text ran on in the bar's line."""
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(sys, "stderr", screen)
    bar = tqdm(total=10, desc="epoch 1/2", file=sys.stderr)
    bar.update(3)
    MetricWriter(str(tmp_path)).write({"step": 3, "train_loss": 0.5})
    bar.close()
    shown = screen.getvalue()
    assert "epoch 1/2" in shown and re.search(r'(^|[\r\n])\{"step": 3, "train_loss": 0.5\}\n',
                                              shown), shown


def test_the_bar_s_images_per_second_are_timed_from_the_epoch_s_first_chunk_read(monkeypatch):
    """A chunk's read times its dispatch, not its steps: a rate per chunk swung a
    hundredfold within an epoch of a fast model; it is the epoch's since its first read."""
    from jaxae.training import trainer

    clock = iter([10.0, 10.5, 11.5, 20.0, 30.0])
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: next(clock))
    config = ml_collections.ConfigDict({"train": {"batch_size": 4, "log_every_steps": 100}})

    class Bar:
        disable = False  # on a terminal

        def __init__(self):
            self.done, self.shown = 0, []

        def update(self, count):
            self.done += count

        def set_postfix(self, **values):
            self.shown.append(values)

    log, bar = trainer._ChunkLog(config, None, 100, 200, faults=None), Bar()
    for first in (1, 3, 5, 7):  # chunks of 2 steps, each read as the next is dispatched
        log.add(first, 2, {"loss": jnp.full(2, 0.5)}, 0, bar)
    log.flush()
    assert bar.done == 8
    rates = [s.get("images_per_s") for s in bar.shown]
    assert rates == [None, "16", "11", "2"]  # images / s since the first read: 8/0.5, 16/1.5, 24/10
    other = Bar()  # a new epoch's bar starts its own count
    log.add(9, 2, {"loss": jnp.full(2, 0.5)}, 1, other)
    log.flush()
    assert other.shown == [{"loss": "0.5000"}]


def test_off_a_terminal_a_progress_line_says_the_rate_and_the_time_left(monkeypatch, capsys):
    """Where the bar is off (nohup, a cluster job's log), a line on stderr at most once a
    minute: its figures are the bar's; without it, such a log said nothing of the speed."""
    from jaxae import progress
    from jaxae.training import trainer

    clock = iter([0.0, 10.0, 70.0, 100.0, 131.0])  # reads of chunks 1-5
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: next(clock))
    config = ml_collections.ConfigDict(
        {"train": {"batch_size": 4, "log_every_steps": 100, "num_epochs": 3}})

    class Bar:
        disable = True  # tqdm's own choice where stderr is not a terminal

        def update(self, count):
            pass

        def set_postfix(self, **values):
            pass

    class Writer:
        def write(self, record):
            pass

    log, bar = trainer._ChunkLog(config, Writer(), 1000, 3000, faults=None), Bar()
    for first in range(1, 2000, 400):  # chunks of 400 steps, 1,600 images
        log.add(first, 400, {"loss": jnp.full(400, 0.25)}, 0, bar)
    log.flush()
    assert capsys.readouterr().err == (  # since the first read: 3,200 images in 70 s, 6,400
        "epoch 1/3, step 1,200 of 3,000: loss 0.2500, 46 images/s while training, 1 min 10 s in, "
        "about 2 min 38 s of training left (evaluations and saves not counted)\n"
        # (3,000 - 1,200) x 4 / (3,200 / 70) s; then 61 s later, not 30
        "epoch 1/3, step 2,000 of 3,000: loss 0.2500, 49 images/s while training, 2 min 11 s in, "
        "about 1 min 22 s of training left (evaluations and saves not counted)\n")
    assert progress.duration(3 * 3600 + 5 * 60 + 29) == "3 h 05 min"
    # an epoch of one chunk, evaluated at its end: timed across epochs, the evaluations left
    # out (timed within an epoch from its first read, such a run had said nothing)
    clock = iter([200.0, 230.0, 290.0])
    log = trainer._ChunkLog(config, Writer(), 400, 2000, faults=None)
    for epoch in range(3):
        log.add(1 + 400 * epoch, 400, {"loss": jnp.full(400, 0.25)}, epoch, Bar())
        log.flush()
        log.set_aside(20.0)  # the epoch's evaluation
    assert capsys.readouterr().err == (  # 3,200 images in 290 - 200 - 2 x 20 s
        "epoch 3/3, step 1,200 of 2,000: loss 0.2500, 64 images/s while training, 1 min 30 s in, "
        "about 50 s of training left (evaluations and saves not counted)\n")


@pytest.mark.parametrize("watched, code, said", [
    (False, cli.exits.EXIT_BROKEN_PIPE, "the output's reader ended (a pipe into `head`, say): "
                                        "stopped; rerun the same command to do it again\n"),
    (True, cli.exits.EXIT_ERROR, "error: the output cannot be written (No space left on "
                                 "device): stopped; rerun the same command to do it again\n")])
def test_an_output_that_cannot_be_written_is_one_line_and_its_exit_status(watched, code, said):
    """`evaluate.py | head`: the pipe closes while lines are still printed (141, a shell's
    SIGPIPE); its output on a full disk (`> /dev/full`) had ended in a traceback."""
    script = ("from jaxae import cli\n"
              "def chatty():\n"
              "    for i in range(10**6):\n"
              "        print('line', i, flush=True)\n"
              + ("with cli.output.watched(cli.output.raised):\n    " if watched else "")
              + "cli.run(chatty, entry_point=True)\n")
    with open("/dev/full" if watched else os.devnull, "w") as full:
        process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                                   stdout=full if watched else subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        if not watched:
            assert process.stdout.readline() == "line 0\n"
            process.stdout.close()  # as `head -1` does
        err = process.stderr.read()
    assert process.wait(timeout=60) == code
    assert err == said


def test_nested_watches_each_take_the_failure_and_a_run_inside_one_stops(monkeypatch, capfd):
    """A command's watch around a run's stop (the experiments'), or around its own inner one
    (the bench's): the watch next to the stream took the error, and the one inside it never
    heard of it (the run trained on into os.devnull, the bench measured on)."""
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    outer, inner = [], []
    with cli.output.watched(outer.append), cli.output.watched(inner.append):
        print("a row")
        print("another")
    assert len(outer) == len(inner) == 1 and outer[0] is inner[0]
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    with cli.output.watched(outer.append), cli.GracefulStop() as stop:
        assert stop() is None
        print("a training line")
        assert stop() == "SIGPIPE"
        assert cli.output.stopped_by(stop.output_error, stop())
        stop.requested = "SIGTERM"  # a signal first (`| tee` ended by the same SIGTERM):
        assert stop() == "SIGTERM"  # the stop is the signal's, not the output's
        assert not cli.output.stopped_by(stop.output_error, stop())
    assert capfd.readouterr().err == ""  # said by the command once the stop has ended the
    # run (a run polling it after its last step goes on to finish: no "stopping" line)


def test_a_run_started_after_the_output_failed_is_stopped_at_once(monkeypatch):
    """The experiments' runs each install a stop: one started after the output failed
    between two runs (`python -m jaxae.experiments ... | head`) had trained in full, into
    os.devnull."""
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    with cli.output.watched(cli.output.dropped):
        print("the experiment's table is written")
        with cli.GracefulStop() as stop:
            assert stop() == "SIGPIPE"
    with cli.GracefulStop() as stop:  # an output that has not failed: no stop
        assert stop() is None


@pytest.mark.slow
def test_train_py_whose_reader_ends_saves_the_steps_it_trained_then_ends_as_sigpipe_does(
        fashion_tfds_dir, tmp_path):
    """`train.py | head -1` (or `| tee log`, ended by the same SIGTERM as train.py): the
    next line met the closed pipe wherever it was printed, and the run ended (exit 141)
    without a checkpoint of the steps trained since the last one, here all of them."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--config=configs/test.py", f"--workdir={workdir}",
         f"--config.data.tfds_dir={fashion_tfds_dir}", "--config.train.checkpoint_every_epochs=2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == -signal.SIGPIPE, err  # as `yes | head` ends: quietly
    assert err.endswith("the output's reader ended (a pipe into `head`, say): stopped, with a "
                        "checkpoint of the steps trained; rerun the same command to continue\n")
    saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
    assert len(saved) == 1 and 0 < saved[0] < 32  # (2 epochs of 16 steps)


@pytest.mark.slow
@pytest.mark.parametrize("stdout", ["/dev/full", "closed"])
def test_train_py_on_a_full_disk_stops_in_one_line_and_with_its_stdout_closed_trains(
        stdout, fashion_tfds_dir, tmp_path):
    """Its output on a full disk (a log's, `> /dev/full`) had ended a run in a traceback,
    losing the steps since the last checkpoint: a stop (here before training: nothing to
    save), exit status 1. A closed stdout (`>&-`) had crashed it at its first line: the
    output goes nowhere and the run trains."""
    workdir = tmp_path / "run"
    command = [sys.executable, "train.py", "--config=configs/test.py", f"--workdir={workdir}",
               f"--config.data.tfds_dir={fashion_tfds_dir}", "--config.train.num_epochs=1"]
    if stdout == "closed":
        done = subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", *command], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert os.listdir(workdir / "checkpoints") == ["16"]
        return
    with open(stdout, "w") as full:
        done = subprocess.run(command, cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert done.returncode == 1
    assert done.stderr == ("error: the output cannot be written (No space left on device): "
                           "stopped; rerun the same command to continue\n")
    assert not workdir.exists()


def test_a_signal_as_the_handlers_go_in_waits_for_them(ctrl_c_handled, monkeypatch):
    """SIGTERM's handler goes in before SIGINT's: a Ctrl-C between the two (as train.py
    starts) met Python's default, a KeyboardInterrupt traceback. Both are blocked while
    the handlers go in, and as they were once they are in."""
    install_handler, masks = signal.signal, []

    def recording(sig, handler):
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return install_handler(sig, handler)

    monkeypatch.setattr(signal, "signal", recording)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    stop = cli.GracefulStop().install()
    try:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    finally:
        stop.uninstall()
    assert len(masks) >= 2 and all({signal.SIGINT, signal.SIGTERM} <= mask
                                   for mask in masks[:2]), masks


def test_a_ctrl_c_taken_by_another_thread_as_the_handlers_go_in_is_a_stop():
    """Where other threads run (JAX's, in the experiments), a Ctrl-C arriving between the
    two handlers going in is taken by one of them, and the main thread meets Python's
    default handler: its KeyboardInterrupt is the stop it asked for, the handlers all in.
    (A process of its own: Python's default Ctrl-C handler, as a user's process has.)"""
    script = textwrap.dedent("""
        import os, signal, threading, time
        from jaxae import cli

        # Python's own Ctrl-C handler, as in a terminal (a process started with Ctrl-C
        # ignored, as `cmd &` in a script is, inherits that and has none)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Thread(target=threading.Event().wait, daemon=True).start()  # takes it
        install_handler, pressed = signal.signal, []

        def then_ctrl_c(sig, handler):
            previous = install_handler(sig, handler)
            if sig == signal.SIGTERM and not pressed:  # the first in; Ctrl-C before the next
                pressed.append(True)
                os.kill(os.getpid(), signal.SIGINT)
                deadline = time.monotonic() + 60  # however busy the machine: the other
                while time.monotonic() < deadline:  # thread takes it, and the main thread
                    time.sleep(0.01)  # meets the default handler in this loop
            return previous

        signal.signal = then_ctrl_c
        stop = cli.GracefulStop().install()
        print(stop(), signal.getsignal(signal.SIGINT) == stop._handle,
              signal.getsignal(signal.SIGTERM) == stop._handle)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "SIGINT True True\n", "")


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM yet (its SigCgt mask, /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_ctrl_c_during_start_up_is_one_line_and_ends_by_the_signal(fashion_tfds_dir, tmp_path):
    """Ctrl-C while train.py still imports JAX: handled like one during training, and the
    exit is the signal's (it was 0, so a shell's loop of runs went on to the next run)."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen([*FROM_A_TERMINAL, "train.py", "--config=configs/test.py",
                             f"--workdir={workdir}", f"--config.data.tfds_dir={fashion_tfds_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not handlers_installed(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, err  # killed by it: a shell's loop stops too
    assert err == ("SIGINT received: stopping, with a checkpoint of any steps trained (a "
                   "second SIGINT stops at once, without it)\n")  # said at once
    assert lines_of(out) == ["SIGINT received before training started: nothing new to save; "
                             "rerun the same command to start"]
    assert not os.path.exists(workdir / "checkpoints")


@pytest.mark.parametrize("sig, done, said", [
    (signal.SIGINT, False, "error: interrupted (Ctrl-C): evaluation stopped before it "
                           "finished; rerun the same command to do it again\n"),
    (signal.SIGINT, True, "Ctrl-C received after the evaluation was written whole: "
                          "stopping\n"),
    (signal.SIGUSR1, False, "error: interrupted (SIGUSR1): evaluation stopped before it "
                            "finished; rerun the same command to do it again\n")])
def test_an_evaluation_stops_at_once_on_ctrl_c_even_inside_a_long_computation(sig, done,
                                                                             said):
    """The main thread blocked in one call (an IWAE bound of minutes, here a sleep): Ctrl-C
    still ends the process at once, with one line, killed by it (a Python handler would
    wait for the call to return, and the teardown could crash under XLA's threads). Once
    its files are written it says so (it had said the evaluation stopped unfinished)."""
    script = ("import signal, time\n"
              "signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal starts it\n"
              "from jaxae import cli\n"
              "cli.stop_at_once_on_signal('evaluation')\n"
              + ("cli.work_done()\n" if done else "") +
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    start = time.monotonic()
    proc.send_signal(sig)  # (SIGUSR1, a scheduler's warning, ended it without a word)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert proc.returncode == -sig
    assert err == said


def test_a_stop_during_evaluation_waits_for_files_moving_into_place(tmp_path):
    """The stop ends the process only once a set of files moving into place is all there,
    and removes this process's staging folders, whose files will never move."""
    staging = tmp_path / ".writing-staged"
    staging.mkdir()
    (staging / "picture.png").write_text("not moved")
    script = ("import signal, time, os\n"
              "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
              "from jaxae import cli\n"
              "from jaxae.training.lock import MOVING_FILES, STAGING_FOLDERS\n"
              "cli.stop_at_once_on_signal('evaluation')\n"
              f"STAGING_FOLDERS.add({str(staging)!r})\n"
              "with MOVING_FILES:\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(1)\n"
              f"    open({str(tmp_path / 'last')!r}, 'w').close()\n"
              "time.sleep(60)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGINT, proc.stderr
    assert (tmp_path / "last").exists()
    deadline = time.monotonic() + 30  # what had not moved goes once the process has
    while staging.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not staging.exists()


def test_a_ctrl_c_as_files_move_into_place_in_a_library_call_comes_after_the_move(tmp_path):
    """In a library caller's main thread (its own process: a test runner's worker may run
    tests in another thread), a Ctrl-C as the files move waits for the whole set."""
    source, target = tmp_path / "new", tmp_path / "old"
    for folder, text in ((source, "new"), (target, "old")):
        folder.mkdir()
        for name in ("a.png", "b.png", "metrics.json"):
            (folder / name).write_text(text)
    (target / "gone.png").write_text("old")
    script = ("import os, signal\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's\n"
              "from jaxae.training import files\n"
              "real, moved = os.replace, []\n"
              "def replace(a, b):\n"
              "    if not moved:\n"
              "        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the first file moves\n"
              "    moved.append(os.path.basename(b))\n"
              "    real(a, b)\n"
              "os.replace = replace\n"
              "try:\n"
              f"    files.move_files({str(source)!r}, {str(target)!r}, last='metrics.json',\n"
              "                       stale=['a.png', 'gone.png'])\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted after', moved,\n"
              "          signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    ended = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert ended.stdout.strip() == ("interrupted after ['a.png', 'b.png', 'metrics.json'] "
                                    "True"), ended.stderr[-2000:]
    assert sorted(os.listdir(target)) == ["a.png", "b.png", "metrics.json"]
    assert all((target / name).read_text() == "new" for name in os.listdir(target))


def test_an_evaluation_stopped_while_it_draws_leaves_the_previous_one_whole(
        tmp_path, monkeypatch):
    from jaxae.evaluation import plots

    _, workdir = _train_tiny_user_model(tmp_path, tmp_path)
    evaluate.evaluate_workdir(workdir)
    out_dir = os.path.join(workdir, "eval")
    before = {name: open(os.path.join(out_dir, name), "rb").read()
              for name in os.listdir(out_dir)}
    assert "metrics.json" in before and "reconstructions.png" in before
    drawn = []
    real = plots.image_rows

    def image_rows(rows, title, path):
        real(rows, title, path)
        drawn.append(path)
        raise KeyboardInterrupt  # Ctrl-C once the first picture is written

    monkeypatch.setattr(plots, "image_rows", image_rows)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_workdir(workdir, overrides={"eval.num_images": 2})
    assert os.path.dirname(drawn[0]) != out_dir  # drawn aside, not over the old one
    assert {name: open(os.path.join(out_dir, name), "rb").read()
            for name in os.listdir(out_dir)} == before  # nothing else left behind either
    host = socket.gethostname()
    killed = os.path.join(out_dir, f".writing-999999999@{host}.x")  # a killed process's
    os.makedirs(killed)
    idle = time.time() - 2 * files_lib.STAGING_IDLE_S
    os.utime(killed, (idle, idle))
    os.makedirs(os.path.join(out_dir, f".writing-1@another-{host}.x"))  # another host's
    os.makedirs(os.path.join(out_dir, f".writing-99999999999999999999@{host}.y"))  # odd
    with open(os.path.join(out_dir, "manifold.png"), "wb") as f:  # an older model's picture
        f.write(b"not this model's")
    metrics = json.loads(before["metrics.json"])
    metrics["pictures"]["manifold.png"] = "an older model's"
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    monkeypatch.setattr(plots, "image_rows", real)
    evaluate.evaluate_workdir(workdir, overrides={"eval.num_images": 2})
    assert sorted(os.listdir(out_dir)) == sorted(
        [*before, f".writing-1@another-{host}.x", f".writing-99999999999999999999@{host}.y"])


def test_a_stop_asked_before_training_is_one_line_and_the_signals_exit(tiny_config, tmp_path,
                                                                       capsys):
    assert cli_run(train_and_evaluate, tiny_config(), str(tmp_path),
                   stop_requested=lambda: "SIGTERM") == 128 + signal.SIGTERM
    assert capsys.readouterr().out == ("SIGTERM received before training started: nothing new "
                                       "to save; rerun the same command to start\n")
    with pytest.raises(StopRequested):  # a library caller gets the exception
        train_and_evaluate(tiny_config(), str(tmp_path), stop_requested=lambda: "SIGINT")
    capsys.readouterr()
    assert cli_run(train_and_evaluate, tiny_config(), str(tmp_path),  # a reason of its own
                   stop_requested=lambda: "time budget spent") == cli.exits.EXIT_ERROR
    assert capsys.readouterr().out.startswith("time budget spent received before training")


def test_a_stop_ends_a_run_early_or_finds_it_finished(tiny_config, tmp_path, capsys):
    """on_stopped (train.py's exit 130 / 143) only where the stop ended the run before its
    last step; a stop during the last evaluation leaves a finished run, and says so (it had
    exited 130 without a word)."""
    config = tiny_config(**{"train.num_epochs": 1})
    evaluated, stopped = [], []
    train_and_evaluate(config, str(tmp_path / "last"), on_stopped=stopped.append,
                       on_evaluation=lambda *args: evaluated.append(args),
                       stop_requested=lambda: "SIGINT" if evaluated else None)
    assert stopped == [] and capsys.readouterr().out.splitlines()[-1] == (
        "SIGINT received as the run ended: it is finished (step 16)")
    state = train_and_evaluate(config, str(tmp_path / "early"), on_stopped=stopped.append,
                               evaluate_at_steps=[8], on_evaluation=lambda *args: None,
                               stop_requested=lambda: "SIGTERM" if os.path.exists(
                                   tmp_path / "early" / "metrics.jsonl") else None)
    assert stopped == ["SIGTERM"] and 0 < int(state.step) < 16


def test_a_stop_as_the_first_chunk_is_set_up_saves_no_untrained_checkpoint(tiny_config,
                                                                           tmp_path):
    """A stop asked at any of the run's checks before its first chunk has run ends the run
    with 'nothing new to save', and nothing is saved: no step-0 checkpoint of an untrained
    model, which evaluate.py would evaluate and a rerun with another seed would refuse."""
    def stop_at(checks: int) -> Callable[[], str | None]:
        asked = []

        def stop() -> str | None:
            asked.append(True)
            return "SIGINT" if len(asked) >= checks else None
        return stop

    for checks in range(1, 7):
        workdir = tmp_path / str(checks)
        try:
            train_and_evaluate(tiny_config(), str(workdir), stop_requested=stop_at(checks))
        except StopRequested:
            folder = workdir / "checkpoints"
            steps_saved = os.listdir(folder) if folder.exists() else []
            assert [s for s in steps_saved if s.isdigit()] == [], (checks, steps_saved)
            continue
        assert checks > 4  # a stop after a chunk ran: its step is saved
        saved = [int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()]
        assert saved and min(saved) > 0, (checks, saved)


# ---------------------------------------------------------------------------- refused early


def test_the_memory_check_counts_a_limit_on_the_address_space():
    """Under `ulimit -v 6000000` the check read only the machine's free memory (22 GB), let
    a 6.3 GB state through, and the run died in XLA's allocator with a traceback."""
    script = ("import resource\n"
              "import jax\n"
              "from jaxae.training import memory\n"
              "size = next(int(line.split()[1]) * 1024 for line in open('/proc/self/status')"
              " if line.startswith('VmSize:'))\n"
              "resource.setrlimit(resource.RLIMIT_AS, (size + 2**29, resource.RLIM_INFINITY))\n"
              "print(memory.host_available_bytes())\n"
              "print(memory.available_bytes(jax.devices()[0])[1])\n")
    left, where = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                 text=True, check=True, cwd=ROOT).stdout.splitlines()
    assert 0 < int(left) <= 2**29  # half a GiB left by the limit, whatever the machine has
    assert where == "address space `ulimit -v` leaves this process (raise it)"


def test_the_memory_check_names_the_address_space_read_once(monkeypatch):
    """The address space left was read twice, the process growing between the reads: the
    bound it set was named "available host memory" (the suite failed on it now and then)."""
    from jaxae.training import memory

    reads = iter([2**20, 2**20 - 4096])  # the second read after the process grew a page
    monkeypatch.setattr(memory, "_address_space_left", lambda: next(reads))
    assert memory.available_bytes(jax.devices("cpu")[0]) == (
        2**20, "address space `ulimit -v` leaves this process (raise it)")


def test_memory_too_small_for_the_images_names_them_and_streaming(tiny_config, tmp_path,
                                                                    monkeypatch, capsys):
    from jaxae.training import memory

    monkeypatch.setattr(memory, "available_bytes",
                        lambda device: (600 * 2**10, "a simulated device"))
    assert cli_run(train_and_evaluate, tiny_config(), str(tmp_path / "run")) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: the dense_ae model's state (16,474 parameters, ")
    assert line.endswith("and the training images, held in device memory (394.0 KiB): that "
                         "needs at least 715.8 KiB, more than the 600.0 KiB of a simulated "
                         "device: stream them from disk: --config.data.streaming=stream"), line
    assert not (tmp_path / "run").exists()
    own = tmp_path / "own_data.py"  # a loader of one's own that cannot stream
    own.write_text("import numpy as np\nfrom jaxae.data import from_arrays\n\n"
                   "def load():\n    images = np.full((512, 28, 28, 1), 128, np.uint8)\n"
                   "    return from_arrays(images, images[:256], name='own')\n")
    mine = tiny_config(**{"data.name": f"{own}:load", "data.tfds_dir": None})
    assert cli_run(train_and_evaluate, mine, str(tmp_path / "own")) == 1
    line = one_line(capsys.readouterr().err)
    assert line.endswith("device: give the data set's loader a streaming parameter "
                         "(jaxae.data.load_folder and load_npz stream), or fewer training "
                         "images (config.data.train_size)"), line
    streamed = tiny_config(**{"data.streaming": "stream", "train.batch_size": 512})
    assert cli_run(train_and_evaluate, streamed, str(tmp_path / "run")) == 1
    line = one_line(capsys.readouterr().err)
    assert line.endswith("and a streamed chunk of 1 batch (394.0 KiB): that needs at least "
                         "715.8 KiB, more than the 600.0 KiB of a simulated device: lower "
                         "--config.train.batch_size (a streamed chunk is one batch already)"), line


@pytest.mark.parametrize("fault, overrides, words", [
    ("checkpoints is a file", {}, "/checkpoints is a file, not a folder: a run writes a folder "
                                  "there; move it away, or pass another --workdir"),
    ("data folder is a file", {"data.name": "mnist"},
     "config.data.data_dir='{tmp}/train-images.gz' is a file, not a folder: point it at the "
     "folder that holds the data set's files"),
    ("train_size above the data set's", {"data.train_size": 2049},  # of the tests' slice
     "config.data.train_size=2049 is more than the 2048 images of fashion_mnist's training "
     "split: use at most 2048, or leave it unset for all of them"),
    ("a model the memory cannot hold", {"model.latent_dim": 10_000_000},
     "the dense_ae model's state (15,690,000,784 parameters, 292.2 GiB) and the training "
     "images, held in device memory (394.0 KiB): that needs at least 292.2 GiB, more than "
     "the"),
])
def test_refused_before_anything_is_placed_on_a_device(fault, overrides, words, tiny_config,
                                                       tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    if fault == "checkpoints is a file":
        (workdir / "checkpoints").write_text("")
    if fault == "data folder is a file":
        (tmp_path / "train-images.gz").write_text("")
        overrides = {**overrides, "data.data_dir": str(tmp_path / "train-images.gz"),
                     "data.tfds_dir": str(tmp_path / "empty_tfds")}
    before = sorted(os.listdir(workdir))
    assert cli_run(train_and_evaluate, tiny_config(**overrides), str(workdir)) == 1
    line = one_line(capsys.readouterr().err)
    assert words.format(tmp=tmp_path) in line
    if fault == "a model the memory cannot hold":
        assert line.endswith(": lower --config.model.latent_dim (now 10000000)")
    assert set(os.listdir(workdir)) <= {*before, "train.lock"}  # nothing else written


def test_a_registered_loader_declares_the_paths_it_reads(tmp_path):
    # A user's loader says what its fields are (`reads_paths`); the check before a run
    # reads that declaration, not a table of jaxae's own data sets.
    @data_lib.DATASETS.register("declares_a_file_path")
    @data_lib.dataset.reads_paths(path="file")
    def load(path: str):
        raise AssertionError("not loaded by the check")

    config = config_lib.base_config()
    config.data.name, config.data.path = "declares_a_file_path", str(tmp_path)
    with pytest.raises(config_lib.ConfigError, match="is a folder, not a file"):
        config_lib.check_data_paths(config)
    (tmp_path / "arrays.bin").write_text("")
    config.data.path = str(tmp_path / "arrays.bin")
    config_lib.check_data_paths(config)


@pytest.mark.parametrize("data, field, kind, line", [
    ("folder", "path", "file", "config.data.path='{p}' is a file, not a folder: point it at the "
                               "folder that holds the data set's files"),
    ("npz", "path", "folder", "config.data.path='{p}' is a folder, not a file: point it at the "
                              "npz file itself"),
    ("fashion_mnist", "tfds_dir", "file", "config.data.tfds_dir='{p}' is a file, not a folder: "
     "point it at the folder where prepared data sets are kept (TFDS's data dir)"),
    ("mnist", "data_dir", "file", "config.data.data_dir='{p}' is a file, not a folder: point it "
                                  "at the folder that holds the data set's files"),
    ("cifar10", "data_dir", "file", None),  # its archive file is read as well as a folder
    ("npz", "path", "file", None),
    ("folder", "path", "folder", None),
    ("folder", "path", "npz", "config.data.path='{p}' is a file, not a folder: point it at the "
                              "folder that holds the data set's files, or read the file with "
                              "--config.data.name=npz"),
    ("mnist", "data_dir", "npz", "config.data.data_dir='{p}' is a file, not a folder: point it "
                                 "at the folder that holds the data set's files"),
])
def test_a_file_given_for_a_folder_is_named_so_not_missing(data, field, kind, line, tmp_path):
    path = tmp_path / ("given.npz" if kind == "npz" else "given")
    path.write_text("") if kind in ("file", "npz") else path.mkdir()
    config = config_lib.base_config()
    config.data.name, config.data[field] = data, str(path)
    if line is None:
        config_lib.check_data_paths(config)
        return
    workdir = tmp_path / "run"
    with pytest.raises(config_lib.ConfigError) as caught:
        prepare_workdir(str(workdir), config)  # refused before the workdir is made
    assert str(caught.value) == line.format(p=path)
    assert not workdir.exists()


def test_evaluating_a_checkpoints_file_names_it(tmp_path):
    write_config_json(tmp_path)
    (tmp_path / "checkpoints").write_text("")
    with pytest.raises(FileNotFoundError, match=r"/checkpoints is a file, not the folder of "
                                                r"the run's checkpoints: move it away"):
        evaluate.evaluate_workdir(str(tmp_path))
    assert not (tmp_path / "eval").exists()  # nothing written
    with pytest.raises(FileNotFoundError, match=r"config.json' is a file, not a run's folder"):
        evaluate.evaluate_workdir(str(tmp_path / "config.json"))


def write_config_json(workdir, **fields) -> None:
    config = config_lib.base_config()
    for path, value in fields.items():
        section, _, field = path.rpartition(".")
        config_lib.get(config, section)[field] = value
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort())


@pytest.mark.parametrize("saved, ours, refused", [
    ({}, {"train.num_epochs": 20, "train.stop_after_steps": 5, "optim.learning_rate": 1e-4,
          "train.log_every_steps": 7, "train.checkpoint_every_steps": 3,
          "train.keep_checkpoints": 1, "data.tfds_dir": "/elsewhere",
          "eval.iwae_samples": (1, 5)}, None),
    ({}, {"train.batch_size": 64}, "train.batch_size=128, but the config says 64"),
    ({}, {"data.train_size": 1024}, "data.train_size unset (its default), but the config "
     "says 1024"),
    ({}, {"optim.name": "sgd"}, "optim.name='adam', but the config says 'sgd'"),
    ({}, {"optim.name": "sgd", "train.batch_size": 8}, "optim.name='adam', but the config "
     "says 'sgd'; and train.batch_size=128, not 8"),  # every refused field, at once
    ({}, {"task.corruption": "gaussian"}, "task.corruption='dropout', but the config says "
                                          "'gaussian'"),
    ({"optim.schedule": "cosine"}, {"optim.schedule": "cosine", "train.num_epochs": 3},
     "train.num_epochs=10, but the config says 3 (under the cosine schedule the learning rate "
     "decays over the run's steps, so its length is part of the run)"),
    ({"optim.schedule": "cosine"}, {"optim.schedule": "cosine", "train.num_epochs": 3,
                                    "train.batch_size": 64},
     "train.batch_size=128, but the config says 64; and train.num_epochs=10, not 3 (under the "
     "cosine schedule the learning rate decays over the run's steps, so its length is part of "
     "the run)"),  # the reason stays with its field
])
def test_a_resumed_run_may_change_only_how_long_and_how_it_logs_saves_and_evaluates(
        saved, ours, refused, tmp_path):
    write_config_json(tmp_path, **saved)
    config = config_lib.base_config()
    for path, value in {**saved, **ours}.items():
        section, _, field = path.rpartition(".")
        config_lib.get(config, section)[field] = value
    if refused is None:
        prepare_workdir(str(tmp_path), config)
        return
    with pytest.raises(config_lib.ConfigError) as caught:
        prepare_workdir(str(tmp_path), config)
    fields = ", ".join(sorted(path for path in ours if path in refused))
    assert f"holds a run with {refused}: use a new --workdir, or the same {fields} (" \
        in str(caught.value)
    if "cosine" in refused and "; and" not in refused:  # its length alone: what can change
        assert str(caught.value).endswith("(--config.train.stop_after_steps stops it earlier; "
                                          "a longer run needs a new --workdir)")


def test_a_resume_on_other_threads_source_or_libraries_is_warned_of_and_recorded(
        tmp_path, monkeypatch):
    """A seeded run repeats its bits on the same threads, CPU, XLA_FLAGS, code and libraries:
    a resume on others is said and kept (environment.json describes only the last part); a
    run recorded before environment.json held XLA_FLAGS or the CPU is compared on the rest."""
    write_config_json(tmp_path)
    config = config_lib.base_config()
    workdir_lib.write_run_files(str(tmp_path), config)
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["cpu_threads"] >= 1 and len(environment["jaxae_sha256"]) == 64
    assert environment["jax"] == jax.__version__ and "jaxlib" in environment
    assert workdir_lib.resume_changes(str(tmp_path), config, 5) == (None, [], [])
    threads = environment["cpu_threads"]
    monkeypatch.setenv("PJRT_NPROC", str(threads + 1))
    monkeypatch.setattr(workdir_lib, "source_sha256", lambda: "0" * 64)
    monkeypatch.setattr(workdir_lib, "host_cpu_kind", lambda: "Another CPU (AVX2)")
    monkeypatch.setattr(workdir_lib, "_version_of",
                        lambda module: "9.9" if module == "optax" else environment[module])
    flags = environment["xla_flags"]
    monkeypatch.setenv("XLA_FLAGS", f"{flags} --xla_gpu_deterministic_ops=false".strip())
    changed = workdir_lib.resume_changes(str(tmp_path), config, 5)
    assert changed.record == {"step": 5, "config": {}, "cpu_threads": [threads, threads + 1],
                              "cpu": [environment["cpu"], "Another CPU (AVX2)"],
                              "jaxae_sha256": [environment["jaxae_sha256"], "0" * 64],
                              "xla_flags": [flags, os.environ["XLA_FLAGS"]],
                              "optax": [environment["optax"], "9.9"]}
    assert changed.warnings == [
        f"warning: the run trained with {threads} CPU thread(s) and resumes with {threads + 1}: "
        "XLA splits some sums by thread, so its bits may differ from an uninterrupted run's "
        f"(PJRT_NPROC={threads} runs as it did)",
        f"warning: the run trained on the CPU {environment['cpu']} and resumes on Another CPU "
        "(AVX2): XLA compiles for the CPU it runs on, so its bits may differ from an "
        "uninterrupted run's (on a CPU of the kind it trained on, they repeat)",
        f"warning: the run trained with XLA_FLAGS={flags!r} and resumes with "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}: XLA's options change its programs, so its bits "
        "may differ from an uninterrupted run's",
        "warning: jaxae's source has changed since the run's last part (uncommitted edits, or "
        "another copy; resumes.jsonl records its hashes once the run saves a checkpoint)",
        f"warning: the run resumes with other libraries (optax {environment['optax']} -> 9.9): "
        "they may compute in another order, so its bits may differ from an uninterrupted "
        "run's"]
    del environment["xla_flags"], environment["cpu"]  # recorded before it held them
    (tmp_path / "environment.json").write_text(json.dumps(environment))
    assert not {"xla_flags", "cpu"} & set(workdir_lib.resume_changes(str(tmp_path), config,
                                                                      5).record)


def test_environment_json_records_the_source_as_the_run_started(tmp_path, tiny_config,
                                                                monkeypatch):
    """An edit to jaxae while a run trains is not the code it runs: environment.json keeps
    the source's hash as the run imported it (and a resume compares against that)."""
    source = ["a" * 64]
    monkeypatch.setattr(workdir_lib, "source_sha256", lambda: source[0])

    def edit(*_):
        source[0] = "b" * 64

    train_and_evaluate(tiny_config(**{"train.num_epochs": 1}), str(tmp_path),
                       on_evaluation=edit, evaluate_at_steps=[1])
    assert source == ["b" * 64]  # edited before the first checkpoint was saved
    environment = json.loads((tmp_path / "environment.json").read_text())
    assert environment["jaxae_sha256"] == "a" * 64


def test_the_source_hash_follows_the_python_files_and_nothing_else(tmp_path, monkeypatch):
    from jaxae import provenance

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(provenance, "PACKAGE", str(tmp_path))
    first = provenance.source_sha256()
    (tmp_path / "__pycache__").mkdir()  # compiled files, notes and pictures do not count
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("n")
    assert provenance.source_sha256() == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")  # an edit
    edited = provenance.source_sha256()
    assert edited != first
    os.rename(tmp_path / "sub" / "b.py", tmp_path / "sub" / "c.py")  # a rename
    assert provenance.source_sha256() not in (first, edited)


def test_a_resume_s_changes_are_printed_and_kept_once_config_json_describes_the_last_part(
        tmp_path, monkeypatch):
    write_config_json(tmp_path)
    (tmp_path / "environment.json").write_text(json.dumps(
        {"devices": ["cpu0", "cpu1"], "git_commit": "abc"}))
    monkeypatch.setattr(workdir_lib, "git_commit", lambda: "abc")
    config = config_lib.base_config()
    moved = workdir_lib.resume_changes(str(tmp_path), config, 5)
    assert moved == ({"step": 5, "config": {}, "devices": [2, 1]}, [], [
        "warning: the run trained on 2 device(s) and resumes on 1: the batch's sums now run "
        "in another order, so its bits will differ from an uninterrupted run's"])
    config.optim.learning_rate, config.train.stop_after_steps = 0.01, 20
    changed = workdir_lib.resume_changes(str(tmp_path), config, 10)
    assert changed.notes == [
        "resumed at step 10 with optim.learning_rate 0.001 -> 0.01, train.stop_after_steps "
        "None -> 20 (resumes.jsonl keeps each resume's changes once it saves a checkpoint)"]
    assert not (tmp_path / "resumes.jsonl").exists()  # nothing kept before a checkpoint
    for record in (moved.record, changed.record):
        assert workdir_lib.append_resume(str(tmp_path), record) is None
    with open(tmp_path / "resumes.jsonl") as f:
        assert [json.loads(line) for line in f] == [
            {"step": 5, "config": {}, "devices": [2, 1]},
            {"step": 10, "config": {"optim.learning_rate": [0.001, 0.01],
                                    "train.stop_after_steps": [None, 20]}, "devices": [2, 1]}]
    monkeypatch.setattr(workdir_lib, "git_commit", lambda: "")  # a copy outside git: said
    assert "warning: the run's code was abc, now a copy outside git (resumes.jsonl records " \
        "it once the run saves a checkpoint)" in workdir_lib.resume_changes(
            str(tmp_path), config_lib.base_config(), 12).warnings  # (it read "now  (")
    monkeypatch.setattr(workdir_lib, "git_commit", lambda: "abc")
    (tmp_path / "environment.json").write_text(json.dumps(
        {"devices": ["cpu0"], "git_commit": "abc"}))
    nothing = (None, [], [])
    assert workdir_lib.resume_changes(str(tmp_path), config_lib.base_config(), 15) == nothing
    # a field added since the run began counts with its default: no change
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["train"]["log_every_steps"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    (tmp_path / "environment.json").write_text("{damaged")  # compares as empty
    assert workdir_lib.resume_changes(str(tmp_path), config_lib.base_config(), 20) == nothing
    # the other convolution implementation: allowed, and said to change the bits
    saved["model"]["conv"] = "patches"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = config_lib.base_config()
    config.model.conv = "xla"
    switched = workdir_lib.resume_changes(str(tmp_path), config, 25)
    assert switched.record["config"] == {"model.conv": ["patches", "xla"]}
    assert switched.warnings == ["warning: the convolutions' two implementations round "
                                 "differently: from here the bits will differ from an "
                                 "uninterrupted run's"]
    # no config.json: nothing to check against, which is said and kept
    (tmp_path / "config.json").unlink()
    unchecked = workdir_lib.resume_changes(str(tmp_path), config, 30)
    assert unchecked.record == {"step": 30, "unchecked": "config.json was missing"}
    [warning] = unchecked.warnings
    assert warning.startswith(f"warning: {tmp_path} holds checkpoints but no config.json, so "
                              "only the parameters' shapes and the batches (their size, the "
                              "training images' number) were checked against this config")


# ---------------------------------------------------------------------------- checkpoints


PARAMS = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}


def saved_with(directory: str, tx) -> ml_collections.ConfigDict:
    manager = checkpoints.make_manager(directory)
    checkpoints.save(manager, 1, {"step": jnp.int32(1), "params": PARAMS,
                                  "opt_state": tx.init(PARAMS)})
    checkpoints.close(manager)
    return checkpoints.make_manager(directory, read_only=True)


def test_trees_of_tuples_lists_and_typed_keys_save_and_restore(tmp_path):
    """Any pytree: a tuple or list at the top (a (params, opt_state) pair), and typed PRNG
    keys (jax.random.key), concrete or restored into eval_shape's abstract structure."""
    pair = ({"w": jnp.arange(3.0)}, [jnp.zeros(2), jnp.ones((2, 2))])
    manager = checkpoints.make_manager(str(tmp_path / "pair"))
    checkpoints.save(manager, 1, pair)
    back = checkpoints.restore(manager, pair)
    assert jax.tree.structure(back) == jax.tree.structure(pair)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back),
                                                     jax.tree.leaves(pair), strict=True))
    checkpoints.close(manager)
    tree = {"params": PARAMS, "key": jax.random.key(7),
            "rbg": jax.random.key(3, impl="rbg")}
    manager = checkpoints.make_manager(str(tmp_path / "keys"))
    checkpoints.save(manager, 1, tree)
    for like in (tree, jax.eval_shape(lambda: tree)):
        back = checkpoints.restore(manager, like)
        for name in ("key", "rbg"):
            assert jax.random.key_impl(back[name]) == jax.random.key_impl(tree[name])
            np.testing.assert_array_equal(jax.random.key_data(back[name]),
                                          jax.random.key_data(tree[name]))
        np.testing.assert_array_equal(jax.random.normal(back["key"], (3,)),
                                      jax.random.normal(tree["key"], (3,)))
    checkpoints.close(manager)


def test_a_dict_tree_is_saved_with_its_sha256_and_restored_without_it(tmp_path):
    manager = checkpoints.make_manager(str(tmp_path / "summed"))
    tree = {"params": {**PARAMS, "wide": jnp.arange(65536, dtype=jnp.float32)},
            "step": jnp.int32(3)}
    checkpoints.save(manager, 3, tree)
    checkpoints.close(manager)
    manager = checkpoints.make_manager(str(tmp_path / "summed"), read_only=True)
    assert checkpoints.saved_outline(manager, 3)[checkpoints.CHECKSUM] == ((32,), "uint8")
    restored = checkpoints.restore(manager, tree)
    assert set(restored) == {"params", "step"}
    assert (np.asarray(restored["params"]["dense"]["kernel"]) == 1).all()
    assert np.array_equal(checkpoints.checksum(restored), checkpoints.checksum(tree))
    assert not np.array_equal(checkpoints.checksum({**tree, "step": jnp.int32(4)}),
                              checkpoints.checksum(tree))
    files = [os.path.join(d, f) for d, _, names in os.walk(tmp_path / "summed" / "3")
             for f in names]
    largest = max(files, key=os.path.getsize)  # the arrays' data
    with open(largest, "r+b") as f:  # one bit flipped: Orbax reads it without complaint
        f.seek(os.path.getsize(largest) // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(checkpoints.ChecksumMismatch, match="its arrays are not the bits that "
                                                           "were saved at step 3"):
        checkpoints.restore(checkpoints.make_manager(str(tmp_path / "summed"), read_only=True),
                            tree)
    # one saved without a checksum (before they were written) restores as it did
    plain = checkpoints.make_manager(str(tmp_path / "plain"))
    plain.save(3, args=checkpoints.ocp.args.StandardSave(tree), force=True)
    checkpoints.close(plain)
    plain = checkpoints.make_manager(str(tmp_path / "plain"), read_only=True)
    assert set(checkpoints.restore(plain, tree)) == {"params", "step"}


@pytest.mark.parametrize("optimizer, words", [
    (optax.adamw(1e-3), "opt_state/2 is absent there, an empty state here"),
    (optax.sgd(1e-3),
     "opt_state/0 is a node holding count, mu, nu there, an empty state here"),
    (optax.adam(optax.cosine_decay_schedule(1e-3, 10)),
     "opt_state/1 is an empty state there, a node holding count here"),
])
def test_an_optimiser_state_that_does_not_fit_is_named_before_anything_is_read(
        optimizer, words, tmp_path):
    manager = saved_with(str(tmp_path), optax.adam(1e-3))
    like = {"step": jnp.int32(0), "params": PARAMS, "opt_state": optimizer.init(PARAMS)}
    with pytest.raises(checkpoints.CheckpointMismatch) as caught:
        checkpoints.restore(manager, like, 1, checkpoints.STATE_HINT)
    assert str(caught.value) == (f"the checkpoint at step 1 in {tmp_path} does not fit: {words} "
                                 "(make the optimiser as the saved one was: a run's "
                                 "config.json gives its optim.name and optim.schedule)")
    wrong_dtype = {**like, "opt_state": optax.adam(1e-3).init(PARAMS),
                   "params": {"dense": {**PARAMS["dense"], "bias": jnp.zeros(2, jnp.bfloat16)}}}
    with pytest.raises(checkpoints.CheckpointMismatch, match=r"params/dense/bias is "
                       r"float32\[2\] there, bfloat16\[2\] here"):
        checkpoints.restore(manager, wrong_dtype, 1)


def test_the_steps_a_manager_just_listed_are_searched_without_listing_them_again(
        tmp_path, monkeypatch):
    """The trainer searches its checkpoints with the manager it made under the workdir's
    lock (listed=True): the folder is listed once, when the manager is made; any other
    search lists the steps when it starts."""
    from flax.training import train_state

    like = train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=optax.adam(1e-3)
                                         ).replace(step=jnp.int32(0))
    manager = checkpoints.make_manager(str(tmp_path))
    checkpoints.save_state(manager, like.replace(step=jnp.int32(3)))
    checkpoints.close(manager)
    manager = checkpoints.make_manager(str(tmp_path))
    reloads = []
    reload = manager.reload
    monkeypatch.setattr(manager, "reload", lambda: (reloads.append(1), reload())[1])
    assert int(checkpoints.restore_newest_intact(manager, like, listed=True).step) == 3
    assert reloads == []
    assert int(checkpoints.restore_newest_intact(manager, like).step) == 3
    assert reloads == [1]
    checkpoints.close(manager)


def orbax_writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and not t.daemon
            and t is not threading.current_thread()
            and (type(t).__module__.startswith("orbax") or "orbax" in t.name.lower())]


def test_a_save_that_cannot_be_written_fails_at_once_and_leaves_no_thread_waiting(tmp_path):
    """The step folder is made in the calling thread: a folder that cannot be made fails the
    save itself (Orbax's asynchronous default left its writers waiting 300 s)."""
    folder = tmp_path / "checkpoints"
    manager = checkpoints.make_manager(str(folder))
    tree = {"step": jnp.int32(1), "params": PARAMS}
    checkpoints.save(manager, 1, tree)
    checkpoints.check_saved(manager)
    os.rename(folder, tmp_path / "moved")
    folder.write_text("")  # a file where the folder was: no step folder can be made
    start = time.monotonic()
    with pytest.raises(checkpoints.CheckpointWriteError) as caught:
        checkpoints.save(manager, 2, {**tree, "step": jnp.int32(2)})
    assert time.monotonic() - start < 10
    assert str(caught.value) == (f"could not write the checkpoint at step 2 to {folder} (Not a "
                                 "directory): no checkpoint is on disk yet; make that folder "
                                 "writable or free space on its disk, then rerun the same "
                                 "command")
    checkpoints.close(manager)
    assert not orbax_writers()


# ---------------------------------------------------------------------------- metrics.jsonl


def test_a_garbage_metrics_line_is_moved_aside_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 4, "loss": 1.0}\njunk\n[1, 2]\n{"step": 8, "loss": 0.5}\n'
                    '{"no_step": 1}\n{"step": 12, "loss": 0.2}\n')
    MetricWriter(str(tmp_path), echo=False).drop_after(8)
    assert path.read_text() == '{"step": 4, "loss": 1.0}\n{"step": 8, "loss": 0.5}\n'
    assert (tmp_path / "metrics.jsonl.rejected").read_text() == 'junk\n[1, 2]\n{"no_step": 1}\n'
    assert lines_of(capsys.readouterr().err) == [
        f"warning: {path} line {n} is not a metrics record ({text!r}): moved to {path}.rejected"
        for n, text in ((2, "junk"), (3, "[1, 2]"), (5, '{"no_step": 1}'))]


# ---------------------------------------------------------------------------- numerical faults


class Manager:
    """Stands for an Orbax manager: the newest step on disk (and older ones)."""

    def __init__(self, latest, older=()):
        self.latest, self.older = latest, list(older)

    def reload(self):
        pass

    def latest_step(self):
        return self.latest

    def all_steps(self):
        return [*self.older, *([] if self.latest is None else [self.latest])]


def test_a_flat_gradient_names_the_older_checkpoint_to_resume_from():
    """The way out of a checkpoint that may be flat: the step before it, where one is kept
    (it said "resume from an older one" where none was)."""
    config = config_lib.base_config()
    faults = Faults(config, None, manager=Manager(48, older=[16, 32]), first_step=33)
    assert str(faults.flat_gradient(50, 40)).endswith(
        "(the newest checkpoint, step 48, may hold a flat state too: the gradient was last "
        "seen nonzero at step 40); lower --config.optim.learning_rate (now 0.001) and train "
        "again in a new --workdir, or move step 48's folder out of the checkpoints to resume "
        "from step 32")
    assert str(faults.flat_gradient(50, 49)).endswith(
        "(the newest checkpoint, step 48, holds the last good state); lower "
        "--config.optim.learning_rate (now 0.001)")


@pytest.mark.parametrize("overrides, step, fix", [
    ({"optim.learning_rate": 10.0}, 7, "lower --config.optim.learning_rate (now 10)"),
    ({"objective.likelihood": "gaussian", "objective.gaussian_scale": 1e-18}, 1,
     "it is not finite at the parameters this run started from, before any update, so the "
     "learning rate is not the cause: raise --config.objective.gaussian_scale (now 1e-18)"),
    ({"objective.beta": 1e30}, 1, "it is not finite at the parameters this run started "
     "from, before any update, so the learning rate is not the cause: lower "
     "--config.objective.beta (now 1e+30)"),
    ({"objective.beta": 1e10}, 7, "lower --config.optim.learning_rate (now 0.001) or lower "
                                  "--config.objective.beta (now 1e+10)"),
])
def test_a_numerical_fault_names_the_knob_that_can_cause_it(overrides, step, fix):
    config = config_lib.base_config()
    for path, value in overrides.items():
        section, _, field = path.rpartition(".")
        config_lib.get(config, section)[field] = value
    objective = objectives.objective_for(True, loss=config_lib.make_loss(config),
                                         likelihood=config_lib.make_likelihood(config),
                                         beta=config.objective.beta)
    faults = Faults(config, objective, manager=Manager(None), first_step=1)
    assert str(faults.error("train_loss became inf", step)) == (
        f"train_loss became inf at step {step}: training stopped without writing a checkpoint "
        f"for it (no checkpoint was written yet); {fix}")
    kept = Faults(config, objective, Manager(6), 1).error("train_loss became nan", 7)
    assert "(the newest checkpoint, step 6, holds the last good state)" in str(kept)
    bernoulli = objectives.objective_for(True, likelihood=objectives.Bernoulli())
    knobs = str(Faults(config, bernoulli, Manager(None), 1).error("loss became inf", 1))
    assert "gaussian_scale" not in knobs  # the objective's own likelihood, not the config's
    plain = objectives.objective_for(False, loss=config_lib.make_loss(config),
                                     likelihood=config_lib.make_likelihood(config))
    assert str(Faults(config, plain, Manager(None), 1).error("loss became inf", 1)
               ).endswith("the learning rate is not the cause: check the objective section "
                          "and the data")  # a plain loss has neither knob


@pytest.mark.slow
def test_a_vae_whose_likelihood_overflows_is_told_so_not_to_lower_the_learning_rate(
        tiny_config, tmp_path, capsys):
    config = tiny_config(**{"model": {"name": "vae", "latent_dim": 2}, "data.train_size": 64,
                            "objective.likelihood": "gaussian",
                            "objective.gaussian_scale": 1e-18, "train.num_epochs": 1})
    assert cli_run(train_and_evaluate, config, str(tmp_path)) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: train_") and "inf at step 1: " in line
    assert line.endswith("(no checkpoint was written yet); it is not finite at the parameters "
                         "this run started from, before any update, so the learning rate is "
                         "not the cause: raise --config.objective.gaussian_scale (now 1e-18)")
    assert not os.path.exists(tmp_path / "config.json")  # a fixed rerun is not refused


# ---------------------------------------------------------------------------- evaluation


def test_evaluation_takes_its_own_fields_and_refuses_the_model_s():
    config = config_lib.base_config()
    evaluate.apply_overrides(config, {"eval.iwae_samples": (1, 5), "eval.iwae_images": 10,
                                      "data.tfds_dir": "/data"})
    assert (config.eval.iwae_samples, config.eval.iwae_images, config.data.tfds_dir) == \
        ((1, 5), 10, "/data")
    with pytest.raises(config_lib.ConfigError, match=r"^evaluation cannot change "
                       r"config.model.latent_dim: it takes only config.eval, "
                       r"config.data.tfds_dir, config.data.data_dir, config.data.path, "
                       r"and where a file of code moved, config.model.name, config.task.name, "
                       r"config.objective.loss, config.objective.likelihood, config.data.name; "
                       r"the "
                       r"rest is the trained run's \(its config.json\), so train another run "
                       r"to change it$"):
        evaluate.apply_overrides(config, {"model.latent_dim": 3})
    with pytest.raises(config_lib.ConfigError, match="config.eval.iwae_images=0 must be a "
                                                     "positive integer"):
        evaluate.apply_overrides(config, {"eval.iwae_images": 0})


def test_evaluation_output_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    (tmp_path / "eval").write_text("")
    write_config_json(tmp_path)
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(str(tmp_path)))
    checkpoints.save(manager, 1, {"step": jnp.int32(1), "params": PARAMS})
    checkpoints.close(manager)
    with pytest.raises(config_lib.ConfigError, match=r"eval cannot be written \(File exists\): "
                                                     r"pass --eval_dir=FOLDER"):
        evaluate.evaluate_workdir(str(tmp_path))
    for inside in ("checkpoints", "checkpoints/1"):  # where training deletes old steps
        with pytest.raises(config_lib.ConfigError, match=r"^--eval_dir=.* is in the run's "
                                                         r"checkpoints folder"):
            evaluate.evaluate_workdir(str(tmp_path), out_dir=str(tmp_path / inside))
    assert not any(name.endswith(".json") or name.endswith(".png")
                   for name in os.listdir(tmp_path / "checkpoints" / "1"))


def test_iwae_bounds_with_a_progress_bar_are_the_same_bits_its_time_left_weighs_k(
        monkeypatch):
    from jaxae import models, objectives
    from jaxae.data.splits import Split
    from jaxae.evaluation import iwae
    from jaxae.evaluation.metrics import padded_batches
    from jaxae.tasks import TASKS

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=(4, 4, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), sample=False)["params"]
    task = TASKS.get("reconstruct")()
    images = np.random.default_rng(0).integers(0, 256, (30, 4, 4, 1), dtype=np.uint8)
    batches = [b for _, b in padded_batches(Split(images, np.zeros(30, np.int32)), 8)]
    args = (model, task, objectives.Bernoulli(), params, batches, jax.random.key(1), (1, 7), 3)
    assert iwae.iwae_bounds(*args, progress=True) == iwae.iwae_bounds(*args, progress=False)
    bars = []

    class Bar(tqdm):  # what the bar was told: its total and each update
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            bars.append([self.total])

        def update(self, n=1):
            bars[-1].append(n)
            return super().update(n)

    monkeypatch.setattr(iwae, "tqdm", Bar)
    iwae.iwae_bounds(*args, progress=True)
    assert bars == [[8 * 4, 1, 1, 1, 1, 7, 7, 7, 7]]  # k = 7's batches take 7 times as long
    unpadded = [{"image": images[:16]}, {"image": images[16:]}]  # no masks: every image counts
    bounds = iwae.iwae_bounds(model, task, objectives.Bernoulli(), params, unpadded,
                              jax.random.key(1), (1,), 3)
    padded = iwae.iwae_bounds(model, task, objectives.Bernoulli(), params,
                              [b for _, b in padded_batches(Split(images, np.zeros(30, np.int32)),
                                                            16)], jax.random.key(1), (1,), 3)
    np.testing.assert_allclose(bounds[1], padded[1], rtol=1e-6)


def test_off_a_terminal_the_iwae_bounds_say_how_far_they_are_now_and_then(monkeypatch,
                                                                          capsys):
    """Where no bar draws (a log file), a line on stderr at most every OFF_TERMINAL_EVERY_S
    (here every batch): the bounds of large k had said nothing for minutes. The same bits."""
    from jaxae import models, objectives, progress
    from jaxae.data.splits import Split
    from jaxae.evaluation import iwae
    from jaxae.evaluation.metrics import padded_batches
    from jaxae.tasks import TASKS

    model = models.build_model({"name": "vae", "latent_dim": 2}, image_shape=(4, 4, 1))
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), sample=False)["params"]
    images = np.random.default_rng(0).integers(0, 256, (30, 4, 4, 1), dtype=np.uint8)
    batches = [b for _, b in padded_batches(Split(images, np.zeros(30, np.int32)), 8)]
    args = (model, TASKS.get("reconstruct")(), objectives.Bernoulli(), params, batches,
            jax.random.key(1), (1, 7), 3)
    quiet = iwae.iwae_bounds(*args, progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "OFF_TERMINAL_EVERY_S", 0.0)
    assert iwae.iwae_bounds(*args) == quiet  # stderr is not a terminal under capsys
    said = capsys.readouterr().err.splitlines()
    assert [re.sub(r"\d+ s in, about \d+ s left$", "", line) for line in said] == [
        f"IWAE bounds: k = {k}, {share} of the samples decoded, "  # 32 = (1 + 7) x 4 batches
        for k, share in [(1, "3%"), (1, "6%"), (1, "9%"), (1, "12%"), (7, "34%"), (7, "56%"),
                         (7, "78%"), (7, "100%")]]


def test_saving_a_step_the_folder_holds_is_refused_unless_replace_and_keeps_the_first(
        tmp_path):
    """Library use: a second save under the same step, in this process or a later one, is a
    CheckpointExists and the checkpoint on disk is kept; replace=True writes over it."""
    folder = str(tmp_path / "checkpoints")
    first = {"w": jnp.zeros(3)}
    manager = checkpoints.make_manager(folder)
    checkpoints.save(manager, 300, first)
    with pytest.raises(checkpoints.CheckpointExists) as caught:
        checkpoints.save(manager, 300, {"w": jnp.full(3, 7.0)})
    assert str(caught.value) == (f"step 300 is saved already in {folder}: save under another "
                                 "step, or pass replace=True to write over it")
    checkpoints.close(manager)
    later = checkpoints.make_manager(folder)  # as a new process would
    with pytest.raises(checkpoints.CheckpointExists):
        checkpoints.save(later, 300, {"w": jnp.ones(5)})
    np.testing.assert_array_equal(checkpoints.restore(later, first)["w"], np.zeros(3))
    checkpoints.save(later, 300, {"w": jnp.full(3, 7.0)}, replace=True)
    checkpoints.check_saved(later)
    np.testing.assert_array_equal(checkpoints.restore(later, first)["w"], np.full(3, 7.0))
    checkpoints.close(later)


def test_opening_a_writable_manager_keeps_a_save_in_flight_and_removes_abandoned_ones(
        tmp_path, capsys):
    """A second manager on a folder (a script looking at a run's checkpoints) must not take
    the temporary folder of a save being written there; one a killed process left behind,
    untouched for longer than a save may take, goes."""
    folder = tmp_path / "checkpoints"
    tree = {"w": jnp.arange(2**22, dtype=jnp.float32)}  # 16 MiB: still writing when asked
    writing = checkpoints.make_manager(str(folder))
    checkpoints.save(writing, 2, tree)
    checkpoints.close(checkpoints.make_manager(str(folder)))
    checkpoints.close(writing)  # raised CheckpointWriteError when Orbax's clean-up ran
    reader = checkpoints.make_manager(str(folder), read_only=True)
    np.testing.assert_array_equal(checkpoints.restore(reader, tree)["w"], np.asarray(tree["w"]))
    abandoned, recent = folder / "3.orbax-checkpoint-tmp", folder / "4.orbax-checkpoint-tmp"
    for path in (abandoned, recent):
        (path / "part").mkdir(parents=True)
        (path / "part" / "data").write_bytes(b"...")
    old = time.time() - 2 * checkpoints.SAVE_TIMEOUT_S
    for path in (abandoned, abandoned / "part", abandoned / "part" / "data"):
        os.utime(path, (old, old))
    capsys.readouterr()
    checkpoints.close(checkpoints.make_manager(str(folder)))
    assert sorted(os.listdir(folder)) == ["2", "4.orbax-checkpoint-tmp"]
    lost = ("warning: removed the unfinished save of step {} in {}: the save was cut short "
            "(a second stop signal, a kill, an interrupted notebook run, or a write that "
            "failed), so that checkpoint is lost\n")  # said: a rerun had started over from an
    # older step silently
    assert capsys.readouterr().err == lost.format(3, folder)
    # a training run holds its workdir's lock: no other process saves there, so every
    # temporary folder is one a killed process left, however young
    checkpoints.close(checkpoints.make_manager(str(folder), sole_writer=True))
    assert sorted(os.listdir(folder)) == ["2"]
    assert capsys.readouterr().err == lost.format(4, folder)
    assert checkpoints.remove_abandoned_saves(str(tmp_path / "none"), 0.0) == []


def test_a_workdir_that_is_a_glob_pattern_or_a_dangling_link_is_refused_before_writing(
        tmp_path):
    """Under 'sweep [lr=1e-3]' Orbax saved checkpoints without an error that could never be
    read back (it globs for their parts under the folder's path); a link to a folder not
    made yet had been 'cannot be written (File exists)'."""
    with pytest.raises(config_lib.ConfigError, match=r"^workdir '\S+/sweep \[lr=1e-3\]': its "
                       r"checkpoints could not be read back \('\[lr=1e-3\]' in it is a pattern "
                       r"to the glob by which Orbax finds a checkpoint's parts\): pass a "
                       r"--workdir whose path has no \[\.\.\.\] in a folder's name and no "
                       r"backslash$"):
        workdir_lib.check_writable(str(tmp_path / "sweep [lr=1e-3]"))
    with pytest.raises(checkpoints.CheckpointWriteError, match=r"could not be read back \(a "
                       r"backslash in it is a folder separator to TensorStore"):
        checkpoints.make_manager(str(tmp_path / "a\\b" / "checkpoints"))
    assert os.listdir(tmp_path) == []
    for fine in ("lr=1e-3 (50%) #2", "a[b/c]d"):  # no pattern in any one folder's name
        workdir_lib.check_writable(str(tmp_path / fine))
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "not yet" / "run", link)
    for under in ("", "/", "/sub"):  # the link itself, with a '/', or a folder above
        with pytest.raises(config_lib.ConfigError, match=rf"^workdir '\S+/dangling{under}': "
                           r"\S+/dangling is a link to '\S+/not yet/run', which does not "
                           r"exist: create that folder"):
            workdir_lib.check_writable(f"{link}{under}")


def test_restoring_from_a_folder_without_that_checkpoint_names_what_it_has(tmp_path):
    folder = str(tmp_path / "checkpoints")
    manager = checkpoints.make_manager(folder)
    tree = {"w": jnp.zeros(3)}
    with pytest.raises(FileNotFoundError) as caught:
        checkpoints.restore(manager, tree)
    assert str(caught.value) == f"no checkpoint in {folder}: it holds none"
    checkpoints.save(manager, 100, tree)
    checkpoints.save(manager, 200, tree)
    checkpoints.check_saved(manager)
    with pytest.raises(FileNotFoundError) as caught:
        checkpoints.restore(manager, tree, step=7)
    assert str(caught.value) == f"no checkpoint at step 7 in {folder}: it has steps 100, 200"
    checkpoints.close(manager)


def test_a_save_is_read_back_at_once_and_finished_when_a_script_ends_without_close(tmp_path):
    folder = str(tmp_path / "checkpoints")
    manager = checkpoints.make_manager(folder)
    checkpoints.save(manager, 1, {"w": jnp.arange(3.0)})  # still being written
    np.testing.assert_array_equal(checkpoints.restore(manager, {"w": jnp.zeros(3)})["w"],
                                  np.arange(3.0))
    checkpoints.close(manager)
    script = ("import jax.numpy as jnp\n"
              "from jaxae.training import checkpoints\n"
              f"manager = checkpoints.make_manager({str(tmp_path / 'script')!r})\n"
              "checkpoints.save(manager, 10, {'w': jnp.ones((256, 256))})\n")
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert ended.returncode == 0 and "Error" not in ended.stderr, ended.stderr[-2000:]
    assert os.listdir(tmp_path / "script") == ["10"]  # whole, not a *-tmp folder
    again = checkpoints.make_manager(str(tmp_path / "script"), read_only=True)
    assert float(checkpoints.restore(again, {"w": jnp.zeros((256, 256))})["w"].sum()) == 65536
    checkpoints.close(again)


def _photo_folder(root, seed: int) -> str:
    """Two classes of 12 small RGB PNGs (random pixels: what is checked is where they are)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
                root / label / f"{i}.png")
    return str(root)


def _run_on_photos(tmp_path) -> tuple[ml_collections.ConfigDict, str, str]:
    """A short run trained on `_photo_folder` in tmp_path/photos: its config, folder, workdir."""
    config = config_lib.base_config()
    photos = _photo_folder(tmp_path / "photos", 0)
    set_fields(config, {"data.name": "folder", "data.path": photos,
                        "data.tfds_dir": str(tmp_path / "tfds"), "model.latent_dim": 4,
                        "train.batch_size": 8, "train.num_epochs": 1, "eval.batch_size": 8,
                        "eval.num_images": 4})
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    return config, photos, workdir


def _draw_no_pictures(monkeypatch) -> None:
    """Evaluations draw no pictures, in a test that checks which run, files and images they
    take and their figures, not their pictures: drawing is most of an evaluation's time."""
    monkeypatch.setattr(evaluate, "write_pictures", lambda *args, **kwargs: {})


def test_a_run_is_scored_on_other_images_where_its_refusal_points(tmp_path, monkeypatch):
    """evaluate.py --images: every image of another folder, brought to the run's size and
    channels, scored and drawn into eval_on_<name>; a path that is not there is one line
    before the run is read. (The evaluations that check only which folder is taken draw
    no pictures.)"""
    config, photos, workdir = _run_on_photos(tmp_path)
    other = _photo_folder(tmp_path / "other_photos", 1)
    scored = evaluate.evaluate_workdir(workdir, images=other)
    assert (scored["images"], scored["dataset"], scored["test_images"]) == (other, "folder", 24)
    assert scored["images_source"].startswith("TFDS jaxae_folder/other_photos_")
    assert {"metrics.json", "reconstructions.png"} <= set(
        os.listdir(os.path.join(workdir, "eval_on_other_photos")))
    assert not os.path.exists(os.path.join(workdir, "eval"))  # the run's own: not written
    grey = tmp_path / "grey"  # of another size and grey: brought to the run's 8x8x3
    grey.mkdir()
    from PIL import Image
    for i in range(5):
        Image.fromarray(np.full((10, 12), 40 * i, np.uint8)).save(grey / f"{i}.png")
    assert evaluate.evaluate_workdir(workdir, images=str(grey))["test_images"] == 5
    with pytest.raises(FileNotFoundError, match=r"^--images='nowhere' does not exist: give a "
                                                r"folder of images"):
        evaluate.evaluate_workdir(workdir, images="nowhere")
    assert not os.path.exists(os.path.join(workdir, "eval_on_nowhere"))
    link = tmp_path / "links" / "other_photos"  # the same folder through a link: the same
    link.parent.mkdir()  # images, evaluated again into eval_on_other_photos (it was refused)
    os.symlink(other, link)
    with monkeypatch.context() as undrawn:
        _draw_no_pictures(undrawn)
        assert evaluate.evaluate_workdir(workdir, images=str(link))["test_images"] == 24
        namesake = _photo_folder(tmp_path / "b" / "other_photos", 2)  # of the same name
        with pytest.raises(config_lib.ConfigError) as caught:
            evaluate.evaluate_workdir(workdir, images=namesake)
        assert str(caught.value) == (
            f"{os.path.join(workdir, 'eval_on_other_photos')} holds the evaluation of the "
            f"images at {link}, not {namesake}: give --eval_dir=FOLDER for this one")
        scored = evaluate.evaluate_workdir(workdir, images=namesake,
                                           out_dir=str(tmp_path / "b_eval"))
        assert scored["images"] == namesake
    # a conditional model: images of any of its classes, labelled by their folders' names
    set_fields(config, {"model.name": "cvae", "model.latent_dim": 2})
    conditional = str(tmp_path / "cvae")
    train_and_evaluate(config, conditional)
    shutil.rmtree(os.path.join(other, "a"))
    assert evaluate.evaluate_workdir(conditional, images=other)["test_images"] == 12
    os.rename(os.path.join(other, "b"), os.path.join(other, "c"))
    with pytest.raises(DataError, match=r"hold classes the run's conditional model does not "
                                        r"take \(c; it takes a, b\): give images of its"):
        evaluate.evaluate_workdir(conditional, images=other)


def test_a_conditional_models_class_with_a_slash_is_its_folder_with_an_underscore(tmp_path):
    """Fashion-MNIST's class 0, T-shirt/top, can be no folder's name: T-shirt_top stands
    for it (it had been refused, the fix naming a folder that cannot exist)."""
    from PIL import Image

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), np.uint8)
    splits = data_lib.make_splits(data_lib.from_arrays(
        images, images, np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1]),
        class_names=("T-shirt/top", "Bag")), jax.random.key(0))
    config = config_lib.base_config()
    set_fields(config, {"data.tfds_dir": str(tmp_path / "tfds")})
    model = models_lib.build_model({"name": "cvae", "latent_dim": 2}, image_shape=(8, 8, 3),
                                   num_classes=2)
    run = evaluate.TrainedRun(config, model, None, None, {}, 1, splits)
    for name, count in (("T-shirt_top", 3), ("Bag", 2)):
        (tmp_path / "other" / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(images[i]).save(tmp_path / "other" / name / f"{i}.png")
    scored = evaluate.other_images(str(tmp_path / "other"), run)
    assert scored.class_names == ("T-shirt/top", "Bag")
    assert sorted(scored.test.labels.tolist()) == [0, 0, 0, 1, 1]


def test_a_run_whose_image_folder_moved_evaluates_and_resumes_from_its_new_place(
        tmp_path, monkeypatch):
    """data.path may change (train.py and evaluate.py) as long as the images there are the
    ones the run trained on, which its environment.json's fingerprint says."""
    config, photos, workdir = _run_on_photos(tmp_path)
    _draw_no_pictures(monkeypatch)
    moved = tmp_path / "moved" / "photos"
    os.renames(tmp_path / "photos", moved)
    with pytest.raises(config_lib.ConfigError) as caught:  # the recorded place, gone
        evaluate.evaluate_workdir(workdir)
    assert str(caught.value) == (
        f"config.data.path={photos!r} (where the run in {workdir!r} found its images) does not "
        "exist: point --config.data.path at where the run's images are now (they are checked "
        "to be the same images)")
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(config_lib.ConfigError) as caught:  # another place, not there either
        evaluate.evaluate_workdir(workdir, overrides={"data.path": nowhere})
    assert str(caught.value) == (
        f"config.data.path={nowhere!r} (the run in {workdir!r} trained on those at {photos!r}, "
        "not there either) does not exist: point --config.data.path at where the run's images "
        "are now (they are checked to be the same images)")
    os.renames(moved, tmp_path / "photos")  # back where the run found them: named
    with pytest.raises(config_lib.ConfigError) as caught:
        evaluate.evaluate_workdir(workdir, overrides={"data.path": nowhere})
    assert str(caught.value) == (
        f"config.data.path={nowhere!r} does not exist, and the run in {workdir!r} trained on "
        f"the images at {photos!r}: give --config.data.path={photos}")
    os.renames(tmp_path / "photos", moved)
    metrics = evaluate.evaluate_workdir(workdir, overrides={"data.path": str(moved)})
    assert metrics["step"] == 2
    other = _photo_folder(tmp_path / "other_photos", 1)
    prepared = sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder"))
    with pytest.raises(config_lib.ConfigError) as caught:
        evaluate.evaluate_workdir(workdir, overrides={"data.path": other})
    assert str(caught.value) == (
        f"the images at data.path={other!r} are not those the run in {workdir!r} trained on "
        f"(other files or options): point --config.data.path back at "
        f"{str(tmp_path / 'photos')!r}, or at a copy of them (to score the trained model on "
        "other images: evaluate.py --images=FOLDER (or FILE.npz))")
    with pytest.raises(config_lib.ConfigError) as caught:
        _resume(config, workdir, other, 2)
    assert str(caught.value).endswith("or at a copy of them")  # a resume: no evaluation's hint
    mixed = tmp_path / "mixed"  # the run's images and one of another size
    shutil.copytree(moved, mixed)
    from PIL import Image
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(mixed / "a" / "wide.png")
    refusal = (f"images in {str(mixed)} differ in size (8x8: 24 images, e.g. a/0.png; 12x10: "
               "1 image, a/wide.png), and the run in "
               f"{workdir!r} trained on images of one size at their own size: these are not "
               f"its images; point --config.data.path back at {photos!r}")
    for attempt in (lambda: evaluate.evaluate_workdir(workdir,
                                                      overrides={"data.path": str(mixed)}),
                    lambda: _resume(config, workdir, str(mixed), 2)):
        with pytest.raises(config_lib.ConfigError) as caught:  # not "set ...image_size"
            attempt()
        assert str(caught.value) == refusal
    with pytest.raises(DataError, match=r"differ in size \(8x8: 24 images, e.g. a/0.png; 12x10: "
                                        r"1 image, a/wide.png\): set --config.data.image_size "
                                        r"\(load_folder's image_size=\) to resize and centre-crop "
                                        r"them to one size, or remove the images of other sizes"):
        _resume(config, str(tmp_path / "new_run"), str(mixed), 2)  # a new run may resize
    assert not workdir_lib.holds_run(str(tmp_path / "new_run"))
    os.rename(os.path.join(workdir, "config.json"), tmp_path / "config.json")
    assert workdir_lib.holds_run(workdir)  # its checkpoints alone
    os.rename(tmp_path / "config.json", os.path.join(workdir, "config.json"))
    # refused before the other folder was prepared: no copy of it was made
    assert sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder")) == prepared
    state = _resume(config, workdir, str(moved), 2)
    assert int(state.step) == 4
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["data"]["path"] == str(moved)  # the run's new place, recorded
    wide = moved / "a" / "wide.png"  # the run's images changed where it recorded them
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(wide)
    with pytest.raises(config_lib.ConfigError, match=r"point --config.data.path at the images "
                                                     r"it trained on, or restore them there$"):
        evaluate.evaluate_workdir(workdir, overrides={"data.path": str(moved)})


def test_a_run_whose_folder_changed_since_is_evaluated_on_the_set_prepared_from_its_images(
        tmp_path, capsys, monkeypatch):
    """Images added to (or removed from) the folder a run trained on: evaluate.py reads the
    set prepared from the run's own images, still on disk, with a note, and prepares
    nothing; a resume, which would train on other images, is refused; another folder is not
    taken for the run's."""
    config, photos, workdir = _run_on_photos(tmp_path)
    _draw_no_pictures(monkeypatch)
    before = evaluate.evaluate_workdir(workdir)
    prepared = sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder"))
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "photos" / "a" / "new.png")
    (tmp_path / "photos" / "b" / "0.png").unlink()
    capsys.readouterr()
    after = evaluate.evaluate_workdir(workdir)
    assert f"note: {photos} holds other images than the run trained on" in \
        capsys.readouterr().err
    assert {k: v for k, v in after.items() if k.startswith("test_")} == \
        {k: v for k, v in before.items() if k.startswith("test_")}  # the same images
    assert sorted(os.listdir(tmp_path / "tfds" / "jaxae_folder")) == prepared
    with pytest.raises(config_lib.ConfigError, match="are not those the run"):
        _resume(config, workdir, photos, 2)
    other = _photo_folder(tmp_path / "other", 0)  # the same files, but another folder
    os.remove(os.path.join(other, "a", "3.png"))
    with pytest.raises(config_lib.ConfigError, match="are not those the run"):
        evaluate.evaluate_workdir(workdir, overrides={"data.path": other})


def _resume(config, workdir: str, path: str, epochs: int):
    resumed = config.copy_and_resolve_references()
    set_fields(resumed, {"data.path": path, "train.num_epochs": epochs})
    return train_and_evaluate(resumed, workdir)


def test_a_run_whose_npz_was_replaced_in_place_is_refused_and_its_record_kept(tmp_path):
    """The fingerprint is checked even where data.path stays: other images under the same
    name are not the run's."""
    path = str(tmp_path / "images.npz")

    def write(seed: int) -> None:
        rng = np.random.default_rng(seed)
        np.savez(path, train_images=rng.integers(0, 256, (24, 8, 8, 1), np.uint8),
                 test_images=rng.integers(0, 256, (8, 8, 8, 1), np.uint8))

    write(0)
    config = _npz_config(path)
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "environment.json")) as f:
        recorded = json.load(f)["data_fingerprint"]
    assert recorded
    write(1)
    message = (f"the images at data.path={path!r} are not those the run in {workdir!r} "
               "trained on (other files or options): restore the run's images, or train a new "
               "run on these in a new --workdir")
    with pytest.raises(config_lib.ConfigError) as caught:
        evaluate.evaluate_workdir(workdir)
    assert str(caught.value) == message + (" (to score the trained model on other images: "
                                           "evaluate.py --images=FOLDER (or FILE.npz))")
    with pytest.raises(config_lib.ConfigError) as caught:
        _resume(config, workdir, path, 2)
    assert str(caught.value) == message
    with open(os.path.join(workdir, "environment.json")) as f:
        assert json.load(f)["data_fingerprint"] == recorded  # the record is not overwritten


def test_a_run_whose_npz_was_saved_again_compressed_resumes_on_the_same_arrays(
        tmp_path, monkeypatch):
    """Other files holding the same images and labels (np.savez, then np.savez_compressed)
    are the run's images: environment.json records their content hash beside the files'
    fingerprint. A run recorded without that hash is still checked by its fingerprint."""
    path, moved = str(tmp_path / "images.npz"), str(tmp_path / "moved.npz")
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (24, 8, 8, 1), np.uint8),
              "test_images": rng.integers(0, 256, (8, 8, 8, 1), np.uint8)}
    np.savez(path, **arrays)
    config = _npz_config(path)
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    _draw_no_pictures(monkeypatch)
    environment_file = os.path.join(workdir, "environment.json")
    with open(environment_file) as f:
        environment = json.load(f)
    np.savez_compressed(path, **arrays)
    assert "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest() != \
        environment["data_fingerprint"]
    assert evaluate.evaluate_workdir(workdir)["step"] == 3
    assert int(_resume(config, workdir, path, 2).step) == 6
    np.savez_compressed(moved, **arrays, class_names=np.array(["photo"]))  # named otherwise
    with pytest.raises(config_lib.ConfigError, match="are not those the run"):
        evaluate.evaluate_workdir(workdir, overrides={"data.path": moved})
    np.savez(moved, **arrays)  # other files again
    with open(environment_file) as f:
        environment = json.load(f)
    environment.pop("data_content_sha256")  # as a run recorded before the content hash
    with open(environment_file, "w") as f:
        json.dump(environment, f)
    with pytest.raises(config_lib.ConfigError, match="are not those the run"):
        evaluate.evaluate_workdir(workdir, overrides={"data.path": moved})


def test_a_relative_data_path_is_recorded_absolute_so_the_run_evaluates_from_anywhere(
        tmp_path, monkeypatch):
    config = config_lib.base_config()
    _photo_folder(tmp_path / "project" / "photos", 0)
    monkeypatch.chdir(tmp_path / "project")
    set_fields(config, {"data.name": "folder", "data.path": "photos", "data.tfds_dir": "tfds",
                        "model.latent_dim": 4, "train.batch_size": 8, "train.num_epochs": 1,
                        "eval.batch_size": 8, "eval.num_images": 4})
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    _draw_no_pictures(monkeypatch)
    with open(os.path.join(workdir, "config.json")) as f:
        recorded = json.load(f)["data"]
    assert recorded["path"] == str(tmp_path / "project" / "photos")
    assert recorded["tfds_dir"] == str(tmp_path / "project" / "tfds")
    monkeypatch.chdir(tmp_path)
    assert evaluate.evaluate_workdir(workdir)["step"] == 2
    config.train.num_epochs = 2  # a relative path given again on resume, from its own folder
    monkeypatch.chdir(tmp_path / "project")
    assert int(train_and_evaluate(config, workdir).step) == 4
    os.remove(tmp_path / "project" / "photos" / "a" / "0.png")  # the same place, other images
    config.train.num_epochs, config.data.tfds_dir = 3, "tfds_again"  # prepared afresh
    with pytest.raises(config_lib.ConfigError, match="restore the run's images, or train a new"):
        train_and_evaluate(config, workdir)


def test_only_the_data_fields_a_loader_reads_from_disk_are_recorded_absolute(tmp_path,
                                                                             monkeypatch):
    from jaxae.training.workdir import recorded_config

    monkeypatch.chdir(tmp_path)
    config = config_lib.base_config()
    set_fields(config, {"data.name": "svhn_cropped", "data.path": "org/name",
                        "data.data_dir": "gs://bucket/data", "data.tfds_dir": "tfds"})
    recorded = recorded_config(config).data
    assert (recorded.path, recorded.data_dir) == ("org/name", "gs://bucket/data")
    assert recorded.tfds_dir == str(tmp_path / "tfds") and config.data.tfds_dir == "tfds"
    set_fields(config, {"data.name": "npz", "data.path": "arrays.npz"})
    assert recorded_config(config).data.path == str(tmp_path / "arrays.npz")
    # as tab completion gives it: recorded as the place it names (an absolute path was kept
    # as typed, and the same folder given without its '/' was taken for another one)
    set_fields(config, {"data.name": "folder", "data.path": f"{tmp_path}/a/../photos/"})
    assert recorded_config(config).data.path == str(tmp_path / "photos")
    older = json.loads(recorded_config(config).to_json_best_effort())  # as typed, then
    older["data"] |= {"path": f"{tmp_path}/photos/", "tfds_dir": f"{tmp_path}/tfds/"}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(older))
    saved, _, _ = workdir_lib._saved_and_current(str(tmp_path / "run"), config)
    assert config_lib.resumed_changes(saved, json.loads(
        recorded_config(config).to_json_best_effort())) == {}  # no change to record


def test_a_run_recorded_by_a_short_registered_name_resumes_under_its_located_name(tmp_path):
    from jaxae.training.workdir import prepare_workdir as prepare

    config = config_lib.base_config()
    set_fields(config, {"model.name": "tiny_dense_of_mine"})  # a user's registered name
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(config.to_json_best_effort())
    located = config.copy_and_resolve_references()
    set_fields(located, {"model.name": "/somewhere/my_models.py:tiny_dense_of_mine"})
    prepare(str(workdir), located)  # the same code: accepted
    set_fields(located, {"model.name": "/somewhere/my_models.py:other"})
    with pytest.raises(config_lib.ConfigError,
                       match="holds a run with model.name='tiny_dense_of_mine'"):
        prepare(str(workdir), located)
    builtin = config_lib.base_config()  # jaxae's own dense_ae is not a file's dense_ae
    (workdir / "config.json").write_text(builtin.to_json_best_effort())
    set_fields(located, {"model.name": "/somewhere/my_models.py:dense_ae"})
    with pytest.raises(config_lib.ConfigError, match="holds a run with model.name='dense_ae'"):
        prepare(str(workdir), located)


TINY_MODELS = tiny_model_source()


def _train_tiny_user_model(tmp_path, project) -> tuple[ml_collections.ConfigDict, str]:
    """One epoch of TINY_MODELS' Tiny, its file in `project`, on 24 random 8x8 images: the
    run's config and workdir (tmp_path/run)."""
    project.mkdir(exist_ok=True)
    (project / "tiny_models.py").write_text(TINY_MODELS)
    config = _tiny_npz_config(tmp_path, f"{project}/tiny_models.py:Tiny")
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    return config, workdir


def _npz_config(path: str) -> ml_collections.ConfigDict:
    """A config of one epoch of a dense AE (d = 4) on the npz at `path`, in batches of 8."""
    config = config_lib.base_config()
    set_fields(config, {"data.name": "npz", "data.path": path, "model.latent_dim": 4,
                        "train.batch_size": 8, "train.num_epochs": 1, "eval.batch_size": 8,
                        "eval.num_images": 4})
    return config


def _tiny_npz_config(tmp_path, model_name: str) -> ml_collections.ConfigDict:
    """A config of one epoch of model `model_name` on 24 random 8x8 images, in batches of 8
    (the npz written into tmp_path)."""
    path = str(tmp_path / "images.npz")
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (24, 8, 8, 1), np.uint8),
             test_images=rng.integers(0, 256, (8, 8, 8, 1), np.uint8))
    config = _npz_config(path)
    config.model = ml_collections.ConfigDict({"name": model_name})
    return config


def test_a_run_whose_model_file_moved_with_its_project_evaluates_and_resumes_there(
        tmp_path, monkeypatch):
    """config.json records a user's model by its file's absolute path: a project moved
    elsewhere names the file's new place (evaluate.py's --config.model.name, or train.py's
    config), which only the same file name and class, with the old file gone, may do."""
    project = tmp_path / "project"
    config, workdir = _train_tiny_user_model(tmp_path, project)
    _draw_no_pictures(monkeypatch)
    os.rename(project, tmp_path / "moved")
    new = f"{tmp_path / 'moved'}/tiny_models.py:Tiny"
    with pytest.raises(config_lib.ConfigError) as caught:
        evaluate.evaluate_workdir(workdir)
    assert str(caught.value) == (
        f"the run's model file {str(project / 'tiny_models.py')!r} does not exist: if its "
        "project moved, give its new place, --config.model.name=NEW_PLACE/tiny_models.py:Tiny "
        "(a resume takes it from train.py's config)")
    for other, why in (("dense_ae", "only the same file name and class may be"),
                       (f"{tmp_path / 'moved'}/tiny_models.py:Other", "only the same"),
                       (f"{tmp_path / 'mvoed'}/tiny_models.py:Tiny",
                        f"{str(tmp_path / 'mvoed' / 'tiny_models.py')!r} does not exist")):
        with pytest.raises(config_lib.ConfigError) as caught:
            evaluate.evaluate_workdir(workdir, overrides={"model.name": other})
        assert str(caught.value).startswith(f"--config.model.name={other!r} cannot stand for "
                                            "the run's model")
        assert f": {why}" in str(caught.value) and "NEW_PLACE/tiny_models.py:Tiny" in str(
            caught.value)
    with pytest.raises(config_lib.ConfigError, match=r"--config.data.name='mnist': the run's "
                                                     r"data set is 'npz', not a file that "
                                                     r"moved.*\(to score the trained model on "
                                                     r"other images: evaluate.py --images="):
        evaluate.evaluate_workdir(workdir, overrides={"model.name": new, "data.name": "mnist"})
    with pytest.raises(config_lib.ConfigError, match="names where the run's file moved"):
        evaluate.apply_overrides(evaluate.load_run_config(workdir, {"model.name": new}),
                                 {"model.name": "dense_ae"})  # only load_run_config takes it
    monkeypatch.chdir(tmp_path)  # a relative path is from the current folder
    assert evaluate.evaluate_workdir(
        workdir, overrides={"model.name": "moved/tiny_models.py:Tiny"})["step"] == 3
    resumed = config.copy_and_resolve_references()
    resumed.model.name, resumed.train.num_epochs = new, 2
    assert int(train_and_evaluate(resumed, workdir).step) == 6
    with open(os.path.join(workdir, "resumes.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    assert record["config"]["model.name"] == [f"{project}/tiny_models.py:Tiny", new]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["name"] == new
    # the run's file is there now: another place is refused, the same one is no change
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "tiny_models.py").write_text(TINY_MODELS)
    with pytest.raises(config_lib.ConfigError, match=r"which is still there, and evaluation "
                                                     r"does not change it: drop --config"):
        evaluate.evaluate_workdir(
            workdir, overrides={"model.name": f"{tmp_path / 'copy'}/tiny_models.py:Tiny"})
    assert evaluate.evaluate_workdir(workdir, overrides={"model.name": new})["step"] == 6
    with pytest.raises(config_lib.ConfigError, match="not a file that moved, and evaluation "
                                                     "does not change it: drop --config.task"):
        evaluate.evaluate_workdir(workdir, overrides={"task.name": "denoise"})
    with pytest.raises(config_lib.ConfigError, match="holds a run with model.name="):
        copied = resumed.copy_and_resolve_references()
        copied.model.name = f"{tmp_path / 'copy'}/tiny_models.py:Tiny"
        train_and_evaluate(copied, workdir)


TINY_TASKS = '''
import dataclasses

from jaxae.tasks import Task


@dataclasses.dataclass(frozen=True, kw_only=True)
class Darken(Task):
    """The input is the target at half its brightness."""

    def corrupt(self, targets, key):
        return targets * 0.5


def l1(logits, targets):
    return abs(logits - targets).mean(axis=-1)
'''


def test_a_run_whose_task_file_moved_with_its_model_file_evaluates_and_resumes_there(
        tmp_path, capsys, monkeypatch):
    """A user's task file is recorded, and found again after a move, as a model file is; its
    loss, in the same file, moves with it (a run of one's own loss could not be evaluated
    once its project moved)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "tiny_tasks.py").write_text(TINY_TASKS)
    path = str(tmp_path / "images.npz")
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (24, 8, 8, 1), np.uint8),
             test_images=rng.integers(0, 256, (8, 8, 8, 1), np.uint8))
    (project / "tiny_models.py").write_text(TINY_MODELS)
    config = config_lib.base_config()
    set_fields(config, {"data.name": "npz", "data.path": path, "train.batch_size": 8,
                        "train.num_epochs": 1, "eval.batch_size": 8, "eval.num_images": 4})
    config.model = ml_collections.ConfigDict({"name": f"{project}/tiny_models.py:Tiny"})
    config.task = ml_collections.ConfigDict({"name": f"{project}/tiny_tasks.py:Darken"})
    config.objective.loss = f"{project}/tiny_tasks.py:l1"
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    _draw_no_pictures(monkeypatch)
    with open(os.path.join(workdir, "environment.json")) as f:
        hashes = json.load(f)["code_sha256"]
    assert set(hashes) == {"model", "task", "loss"}
    os.rename(project, tmp_path / "moved")
    model, task = (f"{tmp_path / 'moved'}/tiny_models.py:Tiny",
                   f"{tmp_path / 'moved'}/tiny_tasks.py:Darken")
    with pytest.raises(config_lib.ConfigError) as caught:
        evaluate.evaluate_workdir(workdir)
    assert str(caught.value) == (
        f"the run's model file {str(project / 'tiny_models.py')!r} does not exist: if its "
        "project moved, give its new place, --config.model.name=NEW_PLACE/tiny_models.py:Tiny "
        "(a resume takes it from train.py's config)")
    # one file's new place: the others of its old folder (the loss too) are found beside it
    for given in ({"model.name": model}, {"task.name": task}):
        assert evaluate.evaluate_workdir(workdir, overrides=given)["step"] == 3
    with pytest.raises(config_lib.ConfigError, match="only the same file name and class"):
        evaluate.evaluate_workdir(workdir, overrides={
            "model.name": model, "task.name": f"{tmp_path / 'moved'}/tiny_tasks.py:Other"})
    metrics = evaluate.evaluate_workdir(workdir, overrides={"model.name": model,
                                                            "task.name": task})
    assert metrics["step"] == 3
    resumed = config.copy_and_resolve_references()
    resumed.model.name, resumed.task.name, resumed.train.num_epochs = model, task, 2
    resumed.objective.loss = f"{tmp_path / 'moved'}/tiny_tasks.py:l1"
    assert int(train_and_evaluate(resumed, workdir).step) == 6
    with open(os.path.join(workdir, "resumes.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    assert record["config"]["task.name"] == [f"{project}/tiny_tasks.py:Darken", task]
    assert "code_sha256" not in record  # the same code in its new place: no change to keep
    (tmp_path / "moved" / "tiny_tasks.py").write_text(TINY_TASKS + "\n# edited\n")
    capsys.readouterr()
    evaluate.evaluate_workdir(workdir, overrides={"model.name": model})
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning.startswith(f"warning: the task and loss file "  # one file: one warning
                              f"{str(tmp_path / 'moved' / 'tiny_tasks.py')!r} is not the one "
                              "the run trained with (sha256 ")


def test_a_file_counts_as_moved_only_with_its_name_and_class_and_the_old_one_gone(tmp_path):
    old, new = tmp_path / "old" / "m.py", tmp_path / "new" / "m.py"
    new.parent.mkdir()
    new.write_text("")
    assert registry.moved(f"{old}:Tiny", f"{new}:Tiny")
    assert not registry.moved(f"{old}:Tiny", f"{new}:Other")  # another class
    assert not registry.moved(f"{old}:Tiny", f"{tmp_path / 'm2.py'}:Tiny")  # another name
    assert not registry.moved("pkg.models:Tiny", f"{new}:Tiny")  # a dotted name
    assert registry.missing_file(f"{old}:Tiny") == str(old)
    assert registry.missing_file(f"{new}:Tiny") is None and not registry.missing_file("vae")
    old.parent.mkdir()
    old.write_text("")
    assert not registry.moved(f"{old}:Tiny", f"{new}:Tiny")  # the recorded file is there


def _forget_module_of(file) -> None:
    """This process forgets the module it imported from `file`: the next use reads the file
    again, as a new process would."""
    registry._import_file.cache_clear()
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == str(file):
            del sys.modules[name]


def test_a_fresh_runs_config_json_is_on_disk_before_its_first_checkpoint(tmp_path,
                                                                         monkeypatch):
    """No checkpoint is ever on disk without the config that trained it: a run killed as it
    saves its first one is then resumed only by its own config (another seed is refused)."""
    saving = []
    real_save = checkpoints.save_state

    def save_state(manager, state, *args, **kwargs):
        files = os.listdir(tmp_path / "run")
        saving.append((int(state.step), "config.json" in files, "environment.json" in files))
        if len(saving) == 1:
            raise KeyboardInterrupt  # killed as it starts the first save
        return real_save(manager, state, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "save_state", save_state)
    with pytest.raises(KeyboardInterrupt):
        _train_tiny_user_model(tmp_path, tmp_path)
    assert saving == [(3, True, True)]
    config = config_lib.base_config()
    set_fields(config, {"data.name": "npz", "data.path": str(tmp_path / "images.npz"),
                        "train.batch_size": 8, "train.num_epochs": 1, "eval.batch_size": 8,
                        "eval.num_images": 4, "seed": 7})
    config.model = ml_collections.ConfigDict({"name": f"{tmp_path}/tiny_models.py:Tiny"})
    with pytest.raises(config_lib.ConfigError) as caught:
        train_and_evaluate(config, str(tmp_path / "run"))
    assert "seed" in str(caught.value) and "batch_size" not in str(caught.value)
    # a field a resume may change: the fresh run's own config.json replaces the killed
    # attempt's before its first checkpoint
    config.seed, config.optim.learning_rate = 0, 0.01
    train_and_evaluate(config, str(tmp_path / "run"))
    assert saving[1:] == [(3, True, True)]
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["optim"]["learning_rate"] == 0.01


def test_a_checkpoint_that_no_longer_fits_an_edited_model_file_names_the_file(
        tmp_path, monkeypatch):
    """The run's own config cannot be why its checkpoint does not fit: the model file that
    changed since is named, on evaluate and on resume, not the config."""
    config, workdir = _train_tiny_user_model(tmp_path, tmp_path)
    _draw_no_pictures(monkeypatch)
    file = tmp_path / "tiny_models.py"
    file.write_text(TINY_MODELS.replace('name="encoder"', 'name="encoder2"'))
    _forget_module_of(file)
    for attempt in (lambda: evaluate.evaluate_workdir(workdir),
                    lambda: train_and_evaluate(config, workdir)):
        with pytest.raises(checkpoints.CheckpointMismatch) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith("the checkpoint at step 3 in ")
        assert "does not fit: params/encoder/bias is float32[4] there, absent here: the " \
               f"model file {str(file)!r} changed since the run trained with it (sha256 " in message
        assert message.endswith("now): put back the version it trained with, or train a new "
                                "run in another --workdir")
        assert "config.json" not in message
    file.write_text(TINY_MODELS)
    _forget_module_of(file)
    assert evaluate.evaluate_workdir(workdir)["step"] == 3  # nothing was lost


@pytest.mark.parametrize("section, name, fields", [
    ("model", "os:system", {"command": "touch {marker}"}),
    ("data", "shutil:rmtree", {"path": "{marker}"})])
def test_a_run_folder_naming_pythons_own_functions_is_refused_before_they_run(
        section, name, fields, tiny_config, tmp_path, monkeypatch, capsys):
    """A colleague's run folder whose config.json names 'os:system' (called with the model's
    fields: a shell command ran) or 'shutil:rmtree' (with the data path): refused by name,
    nothing called. (Evaluated as it is, the run is said to be unfinished: a job evaluating
    after a time limit had no word of it.)"""
    workdir = tmp_path / "run"
    train_and_evaluate(tiny_config(**{"train.stop_after_steps": 1}), str(workdir))
    with monkeypatch.context() as patched:
        patched.setattr(evaluate, "evaluate_state", lambda *args, **kwargs: {})
        capsys.readouterr()
        evaluate.evaluate_workdir(str(workdir))
        assert capsys.readouterr().out == (f"evaluating the checkpoint at step 1 of {workdir} "
                                           "(its training is not finished: step 1 of 32)\n")
    marker = tmp_path / "marker"
    if section == "data":
        marker.mkdir()
    saved = json.loads((workdir / "config.json").read_text())
    saved[section] = {**saved[section], "name": name,
                      **{k: v.format(marker=marker) for k, v in fields.items()}}
    (workdir / "config.json").write_text(json.dumps(saved))
    with pytest.raises((config_lib.ConfigError, registry.RegistryError),
                       match=f"{name}' is part of Python's standard library, not a "):
        evaluate.evaluate_workdir(str(workdir))
    assert marker.exists() == (section == "data")  # not made; not deleted


def test_a_user_model_file_changed_since_training_is_named_on_evaluate_and_resume(
        tmp_path, capsys, monkeypatch):
    """environment.json records the sha256 of the user's model file: a file edited (or
    replaced) since is a warning, and a resume's record keeps both hashes."""
    config, workdir = _train_tiny_user_model(tmp_path, tmp_path)
    _draw_no_pictures(monkeypatch)
    with open(os.path.join(workdir, "environment.json")) as f:
        trained = json.load(f)["code_sha256"]["model"]
    capsys.readouterr()
    evaluate.evaluate_workdir(workdir)
    assert "warning" not in capsys.readouterr().err  # the same file
    (tmp_path / "tiny_models.py").write_text(TINY_MODELS + "\n# edited\n")
    evaluate.evaluate_workdir(workdir)
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning.startswith(f"warning: the model file {str(tmp_path / 'tiny_models.py')!r} "
                              f"is not the one the run trained with (sha256 {trained[:12]} "
                              "then, ")
    resumed = config.copy_and_resolve_references()
    resumed.train.num_epochs = 2
    train_and_evaluate(resumed, workdir)
    assert "is not the one the run trained with" in capsys.readouterr().err  # said on resume
    with open(os.path.join(workdir, "resumes.jsonl")) as f:
        record = json.loads(f.readlines()[-1])
    edited = record["code_sha256"]["model"][1]
    assert record["code_sha256"]["model"][0] == trained != edited
    with open(os.path.join(workdir, "environment.json")) as f:
        assert json.load(f)["code_sha256"]["model"] == edited  # the resumed part's code
    evaluate.evaluate_workdir(workdir)
    assert "warning" not in capsys.readouterr().err  # now the file it trained with


def test_stale_pictures_named_by_a_damaged_metrics_json_are_never_more_than_files(tmp_path):

    (tmp_path / "metrics.json").write_text(json.dumps({"pictures": "abc"}))
    assert evaluate._pictures_of(str(tmp_path)) == []  # not a dict: nothing to remove
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.png").write_text("new")
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.png").write_text("old")
    files_lib.move_files(str(tmp_path / "new"), str(tmp_path),
                           stale=["", ".", "..", "sub", "../x", "b.png"])
    assert sorted(os.listdir(tmp_path)) == ["a.png", "metrics.json", "new", "sub"]


def test_two_processes_moving_files_into_one_folder_take_turns(tmp_path):
    """A move waits while another process moves a set into the same folder (two
    evaluate.py runs on one workdir), and asks which files are stale only once it has its
    turn, so it sees the other's set: the folder ends with one whole set."""

    target, source = tmp_path / "eval", tmp_path / "new"
    target.mkdir()
    source.mkdir()
    (source / "a.png").write_text("new")
    held, released = tmp_path / "held", tmp_path / "released"
    script = ("import pathlib, time\n"
              "from jaxae.training import lock\n"
              f"with lock.files_moving_into({str(target)!r}):\n"
              f"    pathlib.Path({str(target / 'other.png')!r}).write_text('other')\n"
              f"    pathlib.Path({str(held)!r}).touch()\n"
              "    time.sleep(1)\n"
              f"    pathlib.Path({str(released)!r}).touch()\n")
    other = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not held.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held.exists()
    seen = []

    def stale() -> list[str]:
        seen.append(sorted(os.listdir(target)))
        return ["other.png"]

    files_lib.move_files(str(source), str(target), stale=stale)
    assert released.exists()  # it waited for the other process's turn to end
    assert seen == [["other.png"]]
    assert sorted(os.listdir(target)) == ["a.png"]
    assert other.wait(timeout=60) == 0


def test_files_move_where_a_folder_cannot_be_locked(tmp_path, monkeypatch):
    """NFS emulates flock with write locks, which a folder opened read-only cannot take
    (EBADF): the move goes ahead without a turn, as it would with no lock at all."""
    import errno

    from jaxae.training import lock as lock_lib

    def unlockable(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(lock_lib.fcntl, "flock", unlockable)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.png").write_text("new")
    (tmp_path / "eval").mkdir()
    files_lib.move_files(str(tmp_path / "new"), str(tmp_path / "eval"))
    assert (tmp_path / "eval" / "a.png").read_text() == "new"


def test_an_evaluation_whose_metrics_cannot_be_written_names_the_file_and_the_reason(
        tmp_path, monkeypatch):

    _, workdir = _train_tiny_user_model(tmp_path, tmp_path)

    def full_disk(path, tree):
        raise files_lib.write_error(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(evaluate, "write_json", full_disk)
    with pytest.raises(files_lib.WriteError) as caught:
        evaluate.evaluate_workdir(workdir)
    assert str(caught.value).startswith(
        f"could not write {os.path.join(workdir, 'eval', 'metrics.json')} (No space left on "
        "device): ")
    assert not os.path.exists(os.path.join(workdir, "eval"))  # made for it, left empty: gone


def test_a_config_json_that_is_no_object_is_left_to_its_own_damage_line(tmp_path):
    """check_same_data and recorded_data_path read config.json's data section; a JSON list
    there, or a data.path that is no string (a damaged file, which prepare_workdir names),
    is no AttributeError and no path."""
    from jaxae.training import workdir as workdir_lib

    (tmp_path / "config.json").write_text("[]")
    (tmp_path / "environment.json").write_text("[1]")
    data = ml_collections.ConfigDict({"name": "fashion_mnist", "path": None})
    assert workdir_lib.check_same_data(str(tmp_path), data, "fingerprint") is None
    assert workdir_lib.recorded_data_path(str(tmp_path)) is None
    (tmp_path / "config.json").write_text('{"data": {"path": ["a", "b"]}}')  # no path
    assert workdir_lib.recorded_data_path(str(tmp_path)) is None


def test_a_library_run_of_a_model_its_module_registers_evaluates_with_evaluate_py(
        tmp_path, monkeypatch):
    """train_and_evaluate records a name that a module of the user's registers as that
    module's file (as train.py does), so evaluate.py, another process, finds the model; the
    run resumes from the same short name."""
    import importlib.util

    from jaxae import models

    for registry_field in ("_entries", "_origins", "_files"):  # undone after the test
        if hasattr(models.MODELS, registry_field):
            monkeypatch.setattr(models.MODELS, registry_field,
                                dict(getattr(models.MODELS, registry_field)))
    project = tmp_path / "project"
    project.mkdir()
    (project / "registering_models.py").write_text(
        tiny_model_source(registered_as="tiny_registered"))
    spec = importlib.util.spec_from_file_location("registering_models",
                                                  project / "registering_models.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "registering_models", module)
    spec.loader.exec_module(module)
    config = _tiny_npz_config(tmp_path, "tiny_registered")
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["name"] == \
            f"{project / 'registering_models.py'}:tiny_registered"
    with open(os.path.join(workdir, "environment.json")) as f:  # its file's hash, to compare
        assert set(json.load(f)["code_sha256"]) == {"model"}
    evaluated = subprocess.run([sys.executable, "evaluate.py", f"--workdir={workdir}"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    set_fields(config, {"train.num_epochs": 2})
    state = train_and_evaluate(config, workdir)
    assert int(state.step) == 6  # 3 steps an epoch: resumed at 3, not refused


def test_a_refused_resume_names_a_field_the_run_left_at_its_default_as_unset(tmp_path):
    """conv_ae's features: None in config.json means the model's own stages, which the
    refusal says in words rather than as None."""
    config = config_lib.base_config()
    set_fields(config, {"model.name": "conv_ae"})
    workdir_lib.write_run_files(str(tmp_path), config)
    with config.model.unlocked():
        config.model.features = (8, 16)
    with pytest.raises(config_lib.ConfigError) as caught:
        workdir_lib.prepare_workdir(str(tmp_path), config)
    assert f"workdir {str(tmp_path)!r} holds a run with model.features unset (its default), " \
        "but the config says [8, 16]: use a new --workdir" in str(caught.value)
    set_fields(config, {"seed": 1, "data.train_size": 100})
    workdir_lib.write_run_files(str(tmp_path), config)  # a run with a train_size
    for seed, said in ((1, "data.train_size=100, but the config leaves it unset: use"),
                       (2, "seed=1, but the config says 2; and data.train_size=100, not unset:")):
        set_fields(config, {"seed": seed, "data.train_size": None})
        with pytest.raises(config_lib.ConfigError) as caught:
            workdir_lib.prepare_workdir(str(tmp_path), config)
        assert f"holds a run with {said}" in str(caught.value)


def test_a_read_only_manager_logs_no_read_only_warning(tmp_path, caplog):
    """Orbax warns "Given directory is read only" for every manager that only reads: the
    evaluation's and load_trained's ask for one. Other warnings still pass."""
    import logging

    checkpoints.save(checkpoints.make_manager(str(tmp_path / "run")), 1, {"w": np.ones(2)})
    with caplog.at_level(logging.WARNING, logger="absl"):
        checkpoints.make_manager(str(tmp_path / "run"), read_only=True)
        logging.getLogger("absl").warning("another warning")
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["another warning"]


def test_a_save_on_disk_whose_older_steps_cannot_be_removed_says_so_and_counts_as_saved(
        tmp_path, monkeypatch):
    """Orbax removes older steps to keep train.keep_checkpoints after writing the new one; a
    failure there (a read-only old step) is not a failed write of the new one, which the
    run's files then describe."""
    manager = checkpoints.make_manager(checkpoints.checkpoint_dir(str(tmp_path)))
    checkpoints.save(manager, 1, {"step": jnp.int32(1), "params": PARAMS})
    finished = manager.wait_until_finished

    def finished_then_refused():
        finished()
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manager, "wait_until_finished", finished_then_refused)
    with pytest.raises(checkpoints.CheckpointWriteError,
                       match=r"^the checkpoint at step 1 is written to .*, but older ones could "
                             r"not be removed \(Permission denied\) to keep "
                             r"train.keep_checkpoints: .*resumes from step 1\)$"):
        checkpoints.check_saved(manager)
    assert checkpoints.confirmed_step(manager) == 1
    monkeypatch.undo()
    checkpoints.close(manager)


def test_a_step_that_does_not_fit_after_a_library_changed_names_the_library(tmp_path):
    """Where no file of the user's changed, a library (or jaxae's source) changed since the
    run trained is named before an edited config.json is suspected."""
    config = config_lib.base_config()
    workdir_lib.write_run_files(str(tmp_path), config)
    error = checkpoints.CheckpointMismatch("the checkpoint at step 3 does not fit: x (hint)",
                                           "the checkpoint at step 3 does not fit: x")
    said = str(workdir_lib.mismatch_with_code(error, str(tmp_path), config))
    assert said.startswith("the checkpoint at step 3 does not fit: x: the run's config.json "
                           "and model code describe another model"), said
    path = tmp_path / "environment.json"
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, "optax": "0.0.1"}))
    said = str(workdir_lib.mismatch_with_code(error, str(tmp_path), config))
    assert said == (f"the checkpoint at step 3 does not fit: x: optax 0.0.1 -> "
                    f"{recorded['optax']} changed since the run trained, which may have "
                    "changed what a checkpoint holds: run it with the versions its "
                    "environment.json records, or train a new run in another --workdir")


def test_a_failed_write_is_advised_by_its_cause_and_a_failed_save_leaves_no_partial_folder(
        tmp_path):
    """Too many open files had been advised to make the folder writable; a checkpoint cut
    short by a full disk kept its part written (half a small disk) until the next run, which
    then blamed a kill for it."""
    import errno
    import resource

    from jaxae.training.files import write_error

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert str(write_error("m.jsonl", OSError(errno.EMFILE, "Too many open files"))) == (
        "could not write m.jsonl (Too many open files): raise the limit on open files "
        f"(`ulimit -n`, now {limit}), then rerun the same command")
    assert "(No space left on device): free space on its disk (or raise the quota), then" in \
        str(write_error("m.jsonl", OSError(errno.ENOSPC, "No space left on device")))
    assert "(File too large): raise the limit on a file's size (`ulimit -f`), then" in \
        str(write_error("m.jsonl", OSError(errno.EFBIG, "File too large")))
    folder = tmp_path / "checkpoints"
    manager = checkpoints.make_manager(str(folder))
    partial = folder / "5.orbax-checkpoint-tmp-1234"
    (partial / "default").mkdir(parents=True)
    (partial / "default" / "part").write_bytes(b"\0" * 1024)
    error = checkpoints._write_error(manager, 5, OSError(errno.ENOSPC, "No space left on device"))
    assert str(error) == (f"could not write the checkpoint at step 5 to {folder} (No space left "
                          "on device): no checkpoint is on disk yet; free space on its disk (or "
                          "raise the quota), then rerun the same command")
    assert not partial.exists()
    checkpoints.close(manager)
