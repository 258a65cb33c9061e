"""The XLA options jaxae's training programs compile with (`jax.jit(compiler_options=...)`),
and `jit_per_model`: functions of a model compiled per model object, for the last few only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax


def _host_has_avx512() -> bool:
    """Whether the host CPU declares AVX-512 (Linux's /proc/cpuinfo; False elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


# XLA options the training programs compile with on a CPU (other backends get none: an XLA
# build may not know another backend's options). Without region analysis, XLA:CPU's copy
# insertion copies every weight matrix that a backward matmul reads after the optimiser may
# have updated it in place (the dataflow leaves their order open), a full read and write of
# the matrix per step; with it, the order is proven and the copies go. On a CPU with
# AVX-512, XLA's own loops (the elementwise fusions, Adam's updates) use its 512-bit vectors
# rather than its default 256. Both keep every bit; BENCHMARKS.md's notes give the commands
# that timed them.
CPU_COMPILER_OPTIONS: dict[str, bool | int] = {
    "xla_cpu_copy_insertion_use_region_analysis": True,
    **({"xla_cpu_prefer_vector_width": 512} if _host_has_avx512() else {})}


def compiler_options(platform: str | None = None) -> dict[str, bool | int]:
    """The XLA options for training programs compiled for `platform` (default: the default
    backend's): CPU_COMPILER_OPTIONS on a CPU, none elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if (platform or jax.default_backend()) == "cpu" else {}


MODELS_KEPT = 4  # the model objects whose programs a `jit_per_model` function keeps


class _ByIdentity:
    """An object that cannot be hashed (a Flax module built with a list field) as a cache
    key: the object itself, not its value."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj


def _cache_key(obj: Any) -> Any:
    """`obj` as the programs' cache takes it: itself where it hashes, else `_ByIdentity`."""
    try:
        hash(obj)
    except TypeError:
        return _ByIdentity(obj)
    return obj


def jit_per_model(static: int = 1) -> Callable[[Callable], Callable]:
    """A decorator: `jax.jit` of the function with its first `static` arguments fixed (a
    model, a task: equal ones share programs, as Flax modules and frozen dataclasses hash by
    their fields; one that cannot be hashed, by the object), the programs kept for the
    MODELS_KEPT used last. A module-level `jax.jit` with the model a static argument kept the
    programs of every model object it was given for the life of the process: a loop of
    evaluations (a model built anew by each) grew by megabytes a call. `.programs` is the
    kept jitted functions' cache (`cache_info()`, `cache_clear()`)."""

    def decorate(fn: Callable) -> Callable:
        @functools.lru_cache(maxsize=MODELS_KEPT)
        def programs(*fixed) -> Callable:
            return jax.jit(functools.partial(
                fn, *(k.obj if isinstance(k, _ByIdentity) else k for k in fixed)))

        @functools.wraps(fn)
        def call(*args, **kwargs):
            return programs(*map(_cache_key, args[:static]))(*args[static:], **kwargs)

        call.programs = programs
        return call

    return decorate
