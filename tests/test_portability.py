"""Linux and macOS: what reads Linux's /proc or CPU affinity has another source or says
in one line what it needs; on Windows the package says at import where to run it."""

import os
import subprocess
import sys

import pytest

from benchmarks import bench_args, matmul_floor, streaming
from jaxae.training import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_without_fcntl_the_import_is_one_line_naming_the_systems_it_runs_on():
    """Windows has no fcntl: one ImportError saying where jaxae runs, not a traceback of
    whichever submodule failed first."""
    code = "import sys\nsys.modules['fcntl'] = None\nimport jaxae.training.steps\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: jaxae runs on Linux and macOS (it locks its files with fcntl and stops "
        "on POSIX signals): on Windows, run it under WSL2")


def test_without_proc_meminfo_the_memory_check_reads_the_physical_memory(monkeypatch):
    """macOS has no /proc: the check that refuses a run too large in one line read nothing
    there and let it through to the allocator."""
    monkeypatch.setattr(memory, "MEMINFO", "/nonexistent/meminfo")
    monkeypatch.setattr(memory, "_address_space_left", lambda: None)
    monkeypatch.setattr(memory, "_read_int", lambda path: None)  # no cgroup limit either
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory.host_available_bytes() == physical


def test_a_containers_memory_limit_bounds_the_memory_check(monkeypatch, tmp_path):
    """Under a cgroup limit (a container) a process may take what the limit leaves, however
    much the machine has free."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: {16 * 2**20} kB\nMemAvailable: {8 * 2**20} kB\n")  # 8 GiB
    monkeypatch.setattr(memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(memory, "_address_space_left", lambda: None)
    cgroup = {"/sys/fs/cgroup/memory.max": 2**30, "/sys/fs/cgroup/memory.current": 2**29}
    monkeypatch.setattr(memory, "_read_int", cgroup.get)
    assert memory.host_available_bytes() == 2**29  # 1 GiB limit, half of it used
    cgroup["/sys/fs/cgroup/memory.max"] = 64 * 2**30
    assert memory.host_available_bytes() == 8 * 2**30  # the machine's free memory binds


def test_the_benchs_cache_flush_and_options_without_cpu_affinity(monkeypatch, capsys):
    """macOS has no os.sched_getaffinity: the flush counts every CPU's caches; pinning the
    background load, which needs affinity, is refused in one line before anything runs."""
    every = matmul_floor.flush_bytes()
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.delattr(os, "sched_setaffinity")
    assert matmul_floor.flush_bytes() >= every
    with pytest.raises(SystemExit):
        bench_args.parse_args(["--background-load", "1", "--background-pin"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m benchmarks.bench: error: --background-pin needs CPU affinity "
        "(os.sched_setaffinity: Linux): leave it out here (--help lists every option)")


def test_the_streaming_benchs_memory_mode_needs_proc_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(streaming, "STATUS", "/nonexistent/status")
    with pytest.raises(SystemExit):
        streaming.main(["rss"])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: rss measures resident memory from /nonexistent/status (Linux), which this "
        "system has not: run `throughput` here")


def test_a_command_ended_by_a_signal_leaves_no_semaphore_under_spawn():
    """macOS starts processes by spawn: tqdm's default lock is a semaphore that a process
    ended by a signal never released, and Python's resource tracker warned of it after
    the stop's line."""
    code = ("import multiprocessing, signal\n"
            "multiprocessing.set_start_method('spawn')\n"
            "from tqdm import tqdm\n"
            "from jaxae.cli import exits, signals\n"
            "exits.run(lambda: tqdm(range(3), disable=False).close(), entry_point=True)\n"
            "signals.end_by_signal(signal.SIGTERM)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -15, result.stderr[-2000:]
    assert "leaked semaphore" not in result.stderr, result.stderr
