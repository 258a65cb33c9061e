"""Where a result comes from: the jaxae commit it was measured at, and the machine's CPU.

Runs record the commit in environment.json; the experiments and the bench name the commit
and the CPU beside every figure they write.
"""

from __future__ import annotations

import os
import platform
import subprocess


def _git(*args: str) -> str:
    """A git command's output in the jaxae checkout (OSError/SubprocessError outside one)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                          timeout=5, check=True).stdout.rstrip()


def head_commit() -> str:
    """The commit the jaxae checkout is at; '' outside one."""
    try:
        return _git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str:
    """The commit of the jaxae checkout, with '+dirty' for uncommitted changes; '' if none."""
    commit = head_commit()
    return commit + ("+dirty" if commit and uncommitted_files() else "")


def uncommitted_files() -> list[str]:
    """The paths `git status` lists as changed or new in the jaxae checkout; [] if none."""
    try:
        lines = _git("status", "--porcelain", "--untracked-files=all").splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:].split(" -> ")[-1] for line in lines if len(line) > 3]


def host_cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The host CPU's model name as the OS reports it (e.g. "AMD EPYC"), else its
    architecture: CPUs of one architecture differ several-fold in speed."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()
