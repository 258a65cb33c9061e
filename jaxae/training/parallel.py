"""Data parallelism with `jax.sharding`: one mesh over every device, of every process.

The batch is split along the mesh's "data" axis; parameters and optimiser state are
replicated, and XLA inserts the gradient all-reduce. The same code runs on 1 device, on N
devices of one host, and on several hosts started with `jax.distributed`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


def initialize_distributed() -> bool:
    """Joins a multi-process run when JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
    JAX_PROCESS_ID are set (the usual variables); a no-op otherwise. CPU processes use gloo
    collectives. Returns whether this is a multi-process run."""
    if COORDINATOR_ENV not in os.environ:
        return False
    if os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ[COORDINATOR_ENV],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]))
    return True


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh along the "data" axis over `devices` (default: all devices of all
    processes)."""
    return Mesh(np.array(jax.devices() if devices is None else list(devices)), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split across devices."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Host arrays (the same on every process) as global arrays replicated on every device."""
    sharding = replicated(mesh)

    def put(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def is_main_process() -> bool:
    """Only process 0 writes files (metrics, config, pictures); Orbax coordinates its own."""
    return jax.process_index() == 0
