"""XLA's deterministic GPU kernels for the commands' processes, so that a seeded run repeats
bit for bit on a GPU as it does on a CPU: some of XLA's default GPU reductions and scatters
add with atomics, in the order their threads happen to finish, and it picks cuDNN and cuBLAS
algorithms by timing them. The flag is process-wide (XLA_FLAGS), so it is the commands'
policy, not the library's: a loop of one's own sets it itself (docs/devices.md). It costs
step time on a GPU (`python -m benchmarks.bench --mode=determinism` measures how much);
XLA_FLAGS that name it already keep their value, `=false` included, and XLA_FLAGS that name a
file of flags (a value not starting with "-", which XLA reads the flags from) are left as
they are. CPU programs are not changed by it."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DETERMINISTIC_OPS = "--xla_gpu_deterministic_ops"
DETERMINISTIC_FLAG = f"{DETERMINISTIC_OPS}=true"  # as the commands add it


def use_deterministic_gpu_ops(environ: MutableMapping[str, str] = os.environ) -> None:
    """Adds `--xla_gpu_deterministic_ops=true` to XLA_FLAGS unless they name it or a file of
    flags; call it before JAX starts its backend (XLA reads the flags once)."""
    flags = environ.get("XLA_FLAGS", "")
    if flags.strip() and not flags.lstrip().startswith("-"):
        return  # a file's name: anything added would become part of the name
    if not any(flag.split("=")[0] == DETERMINISTIC_OPS for flag in flags.split()):
        environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()
