"""Where a result comes from: the jaxae commit and source it was computed with, and the
machine's CPU and threads.

Runs record these in environment.json (a resume on other code, threads or CPU is warned of
and recorded); the experiments and the bench name the commit and CPU beside every figure.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess

PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _git(*args: str) -> str:
    """A git command's output in the jaxae checkout (OSError/SubprocessError outside one,
    also where jaxae is installed inside another repository: a virtual environment in a
    project of one's own, whose commit is not jaxae's)."""
    folder = os.path.dirname(PACKAGE)
    if not _is_checkout(folder):
        raise subprocess.SubprocessError(f"{folder} is not the top of a git checkout")
    return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                          timeout=5, check=True).stdout.rstrip()


@functools.cache
def _is_checkout(folder: str) -> bool:
    """Whether `folder` is the top of a git checkout (jaxae's clone), not a folder inside one."""
    try:
        top = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.realpath(top) == os.path.realpath(folder)


def head_commit() -> str:
    """The commit the jaxae checkout is at; '' outside one."""
    try:
        return _git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return ""


# the files a change of code is in (not .txt: runs write them, TFDS's label files, Orbax's
# commit_success.txt, into an output folder that may lie inside the checkout)
CODE_SUFFIXES = (".py", ".toml", ".sh", ".cfg")


def is_code(path: str) -> bool:
    """Whether a file of the checkout is code (a log, report or picture written there is
    not)."""
    return path.endswith(CODE_SUFFIXES) or os.path.basename(path) == "Makefile"


def git_commit() -> str:
    """The commit of the jaxae checkout, with '+dirty' for uncommitted changes to its code
    (`is_code`: a log of a run started there, `nohup.out`, is none); '' if none."""
    commit = head_commit()
    return commit + ("+dirty" if commit and any(map(is_code, uncommitted_files())) else "")


def uncommitted_files() -> list[str]:
    """The paths `git status` lists as changed or new in the jaxae checkout; [] if none."""
    try:
        lines = _git("status", "--porcelain", "--untracked-files=all").splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:].split(" -> ")[-1] for line in lines if len(line) > 3]


def _first_processor(cpuinfo: str) -> dict[str, str]:
    """The fields of the first processor's block of /proc/cpuinfo ({} where it cannot be
    read: another OS)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the first block ends
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), " ".join(value.split()))
    except OSError:
        pass
    return fields


# The vector instructions (x86's flags, Arm's features), widest first: XLA compiles for the
# widest the CPU has; and those of bfloat16 products
_VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
                 ("sve2", "SVE2"), ("sve", "SVE"), ("asimd", "NEON"))
_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def host_cpu_kind(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The host CPU's model name as the OS reports it (else its architecture: CPUs of one
    architecture differ several-fold in speed), with what tells apart CPUs of one name (a
    cloud's "AMD EPYC" is several generations): its family and model numbers (x86) or
    implementer and part (Arm), and its widest vector instructions, e.g. "AMD EPYC (family
    26, model 2; AVX-512, bfloat16)". XLA compiles for the CPU it runs on, so a seeded
    program's bits may differ between two of these."""
    fields = _first_processor(cpuinfo)
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    vector = [next((label for flag, label in _VECTOR_FLAGS if flag in flags), None),
              "bfloat16" if any(flag in flags for flag in _BFLOAT16_FLAGS) else None]
    if "cpu family" in fields and "model" in fields:
        numbers = f"family {fields['cpu family']}, model {fields['model']}"
    elif "CPU implementer" in fields and "CPU part" in fields:
        numbers = f"implementer {fields['CPU implementer']}, part {fields['CPU part']}"
    else:
        numbers = None
    details = "; ".join(part for part in (numbers, ", ".join(v for v in vector if v)) if part)
    return f"{name} ({details})" if details else name


def usable_cpus() -> int:
    """The CPUs this process may run on (under `taskset`, fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def cpu_threads() -> int:
    """The threads XLA's CPU backend splits its work over: $PJRT_NPROC where set, else the
    CPUs this process may run on. The split decides the order of some sums, so a seeded
    run on another count can differ in the last bits."""
    try:
        return max(1, int(os.environ["PJRT_NPROC"]))
    except (KeyError, ValueError):
        return usable_cpus()


def source_sha256() -> str:
    """The sha256 of jaxae's own source (every .py file of the package, by path): what a
    commit name cannot tell apart, uncommitted edits or an installed copy."""
    digest = hashlib.sha256()
    for folder, folders, files in os.walk(PACKAGE):
        folders[:] = sorted(f for f in folders if f != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, PACKAGE).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()
