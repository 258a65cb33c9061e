"""Where a training chunk's batches come from: the training images resident on the device
(`ResidentSource`) or streamed from disk by Grain (`StreamedSource`), the same batches in
the same order, each saying what a checkpoint records of its position; a finished run
reads none (`FinishedSource`)."""

from __future__ import annotations

from concurrent import futures
from typing import Protocol

import jax
import ml_collections
import numpy as np

from jaxae.data import Splits, batches, streaming
from jaxae.training import checkpoints, parallel


class BatchSource(Protocol):
    """What the training loop asks of its batches."""

    def chunk(self, step: int, count: int) -> tuple[dict, jax.Array, int]:
        """(arrays, order, index of the first batch in `order`) for `count` steps from
        `step`, as the compiled chunk gathers them."""

    def position(self, step: int) -> dict:
        """What a checkpoint at `step` holds of the data."""

    def close(self) -> None:
        """Stops any reading threads."""


class ResidentSource:
    """The training images placed on the device whole; each epoch's order is sent once and
    a chunk of steps gathers its batches from them on the device. The next epoch's order is
    sorted by a thread of its own while this one trains (on a CPU its sort runs on the host:
    `batches.epoch_permutation`), so that the epoch's first chunk does not wait for it; its
    JAX part is dispatched from the calling thread, under that thread's JAX settings."""

    def __init__(self, data: Splits, data_key: jax.Array, mesh, batch_size: int,
                 steps_per_epoch: int, total_steps: int):
        self.arrays = parallel.put_replicated(
            {"image": data.train.images, "label": data.train.labels}, mesh)
        self.data_key, self.mesh, self.num_examples = data_key, mesh, len(data.train)
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.total_steps = total_steps
        self.order, self.epoch = None, None
        self._ahead = futures.ThreadPoolExecutor(1, thread_name_prefix="jaxae-next-order")
        self._next: tuple[int, futures.Future] | None = None  # (epoch, its order)

    def chunk(self, step: int, count: int) -> tuple[dict, jax.Array, int]:
        """(arrays, order, index of the first batch in `order`) for `count` steps."""
        epoch, first = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            if self._next is None or self._next[0] != epoch:  # the first, or a jump
                self._next = epoch, self._draw(epoch)
            order = self._next[1].result()
            self.order, self.epoch = parallel.put_replicated(order, self.mesh), epoch
            self._next = None
            if (epoch + 1) * self.steps_per_epoch < self.total_steps:
                self._next = epoch + 1, self._draw(epoch + 1)
        return self.arrays, self.order, first

    def _draw(self, epoch: int) -> futures.Future:
        started = batches.start_permutation(self.data_key, epoch, self.num_examples)
        return self._ahead.submit(batches.finish_permutation, started)

    def position(self, step: int) -> dict:
        """What a checkpoint at `step` holds of the data: the streamed path's position."""
        return streaming.position(step, self.num_examples, self.batch_size, self.total_steps)

    def close(self) -> None:
        self._ahead.shutdown(wait=True, cancel_futures=True)


class FinishedSource:
    """The batches of a run that has trained all its steps: none (its data stream, whose
    epochs end before the run's step, is never opened)."""

    def chunk(self, step: int, count: int) -> tuple[dict, jax.Array, int]:
        raise RuntimeError(f"a finished run reads no batches (asked for step {step})")

    def position(self, step: int) -> dict:
        raise RuntimeError(f"a finished run has no data position (asked at step {step})")

    def close(self) -> None:
        pass


class StreamedSource:
    """The training batches read by Grain's threads (`jaxae.data.streaming`) in the order
    of the in-memory path; a chunk of steps is sent to the device as one flat array per
    field, gathered in place by the same compiled chunk."""

    def __init__(self, data: Splits, data_key: jax.Array, mesh, config: ml_collections.ConfigDict,
                 step: int, saved: dict | None, max_steps: int):
        self.stream = streaming.StreamedBatches(data.train, data_key, config.train.batch_size,
                                                config.train.num_epochs)
        self.iterator = (self.stream.from_state(saved) if saved is not None
                         else self.stream.batches(first_step=step))
        if self.iterator.step != step:
            raise checkpoints.CheckpointMismatch(
                f"the checkpoint at step {step} holds a data stream at step "
                f"{self.iterator.step}: it was not written by this jaxae")
        self.mesh, self.max_steps = mesh, max_steps
        self.order = parallel.put_replicated(
            np.arange(max_steps * config.train.batch_size, dtype=np.int32), mesh)

    def chunk(self, step: int, count: int) -> tuple[dict, jax.Array, int]:
        """The next `count` steps' batches (from `step`: the iterator is there)."""
        arrays = self.iterator.next_chunk(count, pad_to=self.max_steps)
        return parallel.put_replicated(arrays, self.mesh), self.order, 0

    def position(self, step: int) -> dict:
        """The iterator's position (at `step`: it is there between chunks)."""
        return self.iterator.state()

    def close(self) -> None:
        self.stream.close()
