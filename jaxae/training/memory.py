"""A lower bound on a run's memory, checked before anything is placed on a device.

`jax.eval_shape` of the state's initialisation traces it without running it (nothing
computed or allocated, whatever the model's size), so a model that cannot fit is one line
instead of minutes spent allocating it.
"""

from __future__ import annotations

import os
import resource
from typing import Any

import jax
import numpy as np

from jaxae.config import ConfigError


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or ShapeDtypeStruct) in a tree."""
    return sum(int(np.prod(x.shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(tree))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _address_space_left() -> int | None:
    """What a limit on this process's address space (`ulimit -v`) leaves it: the limit less
    its size now (/proc/self/status's VmSize); None without such a limit."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return max(limit - size, 0)


MEMINFO = "/proc/meminfo"  # Linux's


def _physical_bytes() -> int | None:
    """The machine's physical memory (POSIX sysconf): what a process may take at most."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def host_available_bytes() -> int | None:
    """Memory this process may still take: MEMINFO's MemAvailable (where the system has no
    MEMINFO, macOS, its physical memory), or less under a cgroup (container) limit or a
    limit on its address space (`ulimit -v`); None where none can be read."""
    return _host_available(_address_space_left())


def _host_available(address_space_left: int | None) -> int | None:
    """`host_available_bytes` with the address space left read once by the caller (the
    process's size moves between two reads: a caller comparing them read them apart)."""
    available = address_space_left
    try:
        with open(MEMINFO) as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        free = _physical_bytes()
    if free is not None:
        available = free if available is None else min(free, available)
    limit = _read_int("/sys/fs/cgroup/memory.max")
    used = _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        available = min(limit - used, available) if available is not None else limit - used
    return available


def available_bytes(device: jax.Device) -> tuple[int | None, str]:
    """(bytes free for arrays on `device`, what they are): an accelerator's own limit
    (memory_stats), or the host's available memory for the CPU backend."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 (backends without memory statistics)
        stats = None
    if stats and "bytes_limit" in stats:
        return (stats["bytes_limit"] - stats.get("bytes_in_use", 0),
                f"{device.platform.upper()} memory of {device}")
    left = _address_space_left()
    available = _host_available(left)
    if left is not None and available == left:  # the binding bound: `ulimit -v`'s
        return available, "address space `ulimit -v` leaves this process (raise it)"
    return available, "available host memory"


def state_size(state_shapes: Any) -> tuple[int, int]:
    """(parameter count, bytes a training step holds at least): the parameters, their
    gradient and update, and the optimiser's state. Activations are not counted: the bound
    refuses only runs that cannot fit."""
    params = getattr(state_shapes, "params", state_shapes)
    opt_state = getattr(state_shapes, "opt_state", ())
    count = sum(int(np.prod(x.shape, dtype=np.int64)) for x in jax.tree.leaves(params))
    return count, 3 * tree_bytes(params) + tree_bytes(opt_state)


def size_text(count: int) -> str:
    """Bytes as a person reads them: "292.2 GiB", "46.9 MiB", "12.0 KiB"."""
    for unit, power in (("GiB", 30), ("MiB", 20)):
        if count >= 2**power:
            return f"{count / 2**power:,.1f} {unit}"
    return f"{count / 2**10:,.1f} KiB"


def check_fits(needed: int, what: str, fix: str, device: jax.Device | None = None) -> None:
    """Raises ConfigError (one line: `what`, the figures, `fix`) when `needed` bytes exceed
    the memory available on `device` (default: this process's first device)."""
    device = device or jax.local_devices()[0]
    free, where = available_bytes(device)
    if free is not None and needed > free:
        raise ConfigError(f"{what}: that needs at least {size_text(needed)}, more than the "
                          f"{size_text(max(free, 0))} of {where}: {fix}")
