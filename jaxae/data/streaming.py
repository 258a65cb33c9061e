"""Training batches streamed with Grain, in exactly the order of the in-memory path.

In memory, epoch e trains on `batches.epoch_permutation(data_key, e, N)` and step s is batch
s % spe of epoch s // spe (spe = N // B, the remainder dropped). Here the same permutation is
computed on the host CPU, a batch's examples are read from the training split's source (the
array_record files of a prepared data set, or host arrays), decoded and prefetched by Grain's
reader threads:

    grain.MapDataset.range(num_epochs * spe)     element s = the batch of global step s
      .map(read batch s)                         permutation slice -> record keys -> read
      .to_iter_dataset(grain.ReadOptions(...))   threads read `prefetch_batches` ahead

so the batch of step s is a function of (data key, s) alone: resuming at step s is
`batches(first_step=s)`, and the iterator's position, `BatchIterator.state()`, is a small
pytree of int32 arrays that can be saved beside the train state in an Orbax checkpoint and
given back to `StreamedBatches.from_state`.

Which path a run takes is decided when the data is loaded (`config.data.streaming`,
`config.data.memory_budget_mb`: `jaxae.data.dataset.should_stream`); `Splits.streamed` tells.

    stream = StreamedBatches(data.train, keys.data, batch_size, num_epochs)
    it = stream.batches(first_step=int(state.step))      # or stream.from_state(saved)
    batch = next(it)                       # {"image": uint8 [B, H, W, C], "label": int32 [B]}
    arrays = it.next_chunk(count, pad_to=max_steps)     # `count` steps, flat for gather_batch
    saved = it.state()                                    # {"next_step": int32, ...}
    stream.close()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import jax
import numpy as np

from jaxae.data import batches as batches_lib
from jaxae.data.dataset import should_stream
from jaxae.data.errors import DataError
from jaxae.data.records import InMemorySource, RecordArray, is_lazy
from jaxae.data.splits import Split
from jaxae.keys import check_key

DEFAULT_NUM_THREADS = 2  # reader threads: one covers a CPU conv AE step several times over
DEFAULT_PREFETCH_BATCHES = 8  # batches read ahead of the consumer (Grain counts elements)
STATE_KEYS = ("next_step", "num_examples", "batch_size", "num_steps")

__all__ = ["BatchIterator", "StreamedBatches", "position", "should_stream"]


def position(next_step: int, num_examples: int, batch_size: int, num_steps: int
             ) -> dict[str, np.ndarray]:
    """A stream's position as 0-d int32 arrays (what a checkpoint holds): the global step of
    the next batch, and the sizes that make the order of batches what it is."""
    values = (next_step, num_examples, batch_size, num_steps)
    return {k: np.asarray(v, np.int32) for k, v in zip(STATE_KEYS, values, strict=True)}


class _EpochOrders:
    """Each epoch's permutation, computed on the host CPU with the in-memory path's own jitted
    program, one epoch ahead in a background thread; at most three epochs are kept."""

    def __init__(self, data_key: jax.Array, num_examples: int, num_epochs: int):
        cpu = jax.devices("cpu")[0]
        self._key = jax.device_put(data_key, cpu)
        self._num_examples, self._num_epochs = num_examples, num_epochs
        self._lock = threading.Lock()
        self._futures: dict[int, futures.Future] = {}
        self._executor = futures.ThreadPoolExecutor(1, thread_name_prefix="jaxae-epoch-order")

    def _compute(self, epoch: int) -> np.ndarray:
        order = np.asarray(batches_lib.epoch_permutation(self._key, epoch, self._num_examples))
        order.setflags(write=False)
        return order

    def _submit(self, epoch: int) -> futures.Future:
        future = self._futures.get(epoch)
        if future is None:
            future = self._futures[epoch] = self._executor.submit(self._compute, epoch)
        return future

    def __call__(self, epoch: int) -> np.ndarray:
        with self._lock:
            future = self._submit(epoch)
            if epoch + 1 < self._num_epochs:
                self._submit(epoch + 1)
            for old in [e for e in self._futures if abs(e - epoch) > 1]:
                del self._futures[old]
        return future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _ReadBatch:
    """Global step -> its batch, read from the source (thread-safe)."""

    def __init__(self, images: RecordArray, orders: _EpochOrders, batch_size: int,
                 steps_per_epoch: int, rows: slice):
        self.images, self.orders = images, orders
        self.batch_size, self.steps_per_epoch, self.rows = batch_size, steps_per_epoch, rows

    def keys(self, step: int) -> np.ndarray:
        """The source's record keys of step `step`'s batch (its `rows`), in batch order."""
        epoch, index = divmod(int(step), self.steps_per_epoch)
        order = self.orders(epoch)
        positions = order[index * self.batch_size:(index + 1) * self.batch_size][self.rows]
        return self.images.record_keys(positions)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        images, labels = self.images.source.read(self.keys(step))
        return {"image": images, "label": labels}


class BatchIterator:
    """The batches of consecutive global steps, read ahead by Grain's threads."""

    def __init__(self, stream: StreamedBatches, first_step: int):
        self._stream = stream
        self._it = iter(stream.dataset().to_iter_dataset(stream.read_options))
        if first_step:
            self._it.set_state({"next_index": int(first_step)})
        self.step = int(first_step)  # the global step of the next batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
        self.step += 1
        return batch

    def next_chunk(self, count: int, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """The next `count` steps' batches as one flat array each, {"image": uint8
        [pad_to * B, H, W, C], "label": int32 [pad_to * B]} (B: `rows_per_batch`),
        zero-padded to `pad_to` steps (default: count): batch i of the chunk is rows
        i*B .. (i+1)*B - 1, which is what
        `batches.gather_batch(arrays, np.arange(len), i, B)` takes, so a compiled chunk of
        steps over device-resident arrays runs unchanged on streamed ones."""
        pad_to = count if pad_to is None else pad_to
        if not 0 < count <= pad_to:
            raise ValueError(f"count={count} must be in 1..pad_to={pad_to}")
        size = self._stream.rows_per_batch
        shape = self._stream.image_shape
        images = np.zeros((pad_to * size, *shape), np.uint8)
        labels = np.zeros(pad_to * size, np.int32)
        for i in range(count):
            batch = next(self)
            images[i * size:(i + 1) * size] = batch["image"]
            labels[i * size:(i + 1) * size] = batch["label"]
        return {"image": images, "label": labels}

    def state(self) -> dict[str, np.ndarray]:
        """The iterator's position (`position`), to save beside the train state:
        {"next_step", "num_examples", "batch_size", "num_steps"}."""
        stream = self._stream
        return position(self.step, stream.num_examples, stream.batch_size, stream.num_steps)

    def close(self) -> None:
        """Stop the reader threads (Grain's iterator) of this iterator."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class StreamedBatches:
    """The training batches of `split` for `num_epochs` epochs, read on demand in the order
    of the in-memory path (`batches.epoch_permutation` / `gather_batch`) for `data_key`.

    split: a Split whose images are a `RecordArray` (a streamed training split) or a numpy
      array (held in host memory, sent to the device batch by batch).
    batch_rows: read only these rows of every global batch, e.g. slice(p*B//P, (p+1)*B//P)
      for process p of P in a multi-process data-parallel run.
    num_threads, prefetch_batches: Grain's reader threads and how many batches they read
      ahead (host memory: about prefetch_batches batches).
    """

    def __init__(self, split: Split, data_key: jax.Array, batch_size: int, num_epochs: int, *,
                 num_threads: int = DEFAULT_NUM_THREADS,
                 prefetch_batches: int = DEFAULT_PREFETCH_BATCHES,
                 batch_rows: slice | None = None):
        import grain  # noqa: PLC0415 (takes seconds to import: only when streaming)

        if not isinstance(split, Split):
            raise TypeError(f"StreamedBatches takes a Split, not a {type(split).__name__}: "
                            "give make_splits(dataset, keys.data).train")
        check_key(data_key, "StreamedBatches' data_key")
        images = split.images
        if not is_lazy(images):
            images = RecordArray(InMemorySource(np.asarray(images), np.asarray(split.labels)))
        self.images = images
        self.num_examples = len(images)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = batches_lib.steps_per_epoch(self.num_examples, self.batch_size)
        if self.steps_per_epoch == 0:
            raise DataError(f"config.train.batch_size={batch_size} is larger than the "
                            f"{self.num_examples} training images: use a smaller batch")
        self.num_epochs = int(num_epochs)
        self.num_steps = self.num_epochs * self.steps_per_epoch
        self.image_shape = tuple(images.shape[1:])
        self.batch_rows = slice(None) if batch_rows is None else batch_rows
        self.rows_per_batch = len(range(self.batch_size)[self.batch_rows])  # B, or a share
        self.read_options = grain.ReadOptions(num_threads=num_threads,
                                              prefetch_buffer_size=prefetch_batches)
        self._grain = grain
        self._orders = _EpochOrders(data_key, self.num_examples, self.num_epochs)
        self._read = _ReadBatch(images, self._orders, self.batch_size, self.steps_per_epoch,
                                self.batch_rows)
        self._iterators: list[BatchIterator] = []

    def dataset(self) -> Any:
        """The Grain MapDataset whose element s is the batch of global step s."""
        return self._grain.MapDataset.range(self.num_steps).map(self._read)

    def batches(self, first_step: int = 0) -> BatchIterator:
        """An iterator over the batches from global step `first_step` on."""
        if not 0 <= first_step <= self.num_steps:
            raise DataError(f"step {first_step} is outside this run's 0..{self.num_steps} "
                            "steps: the checkpoint belongs to another run")
        iterator = BatchIterator(self, first_step)
        self._iterators.append(iterator)
        return iterator

    def from_state(self, state: dict[str, Any]) -> BatchIterator:
        """The iterator at a position saved by `BatchIterator.state()`, after checking that
        it was saved for the same number of examples and batch size (the number of steps
        may grow: a run resumed with more epochs continues the same order)."""
        saved = {k: int(np.asarray(state[k])) for k in STATE_KEYS}
        ours = {"num_examples": self.num_examples, "batch_size": self.batch_size}
        differ = [k for k, v in ours.items() if saved[k] != v]
        if differ:
            pairs = ", ".join(f"{k} {saved[k]} (now {ours[k]})" for k in differ)
            raise DataError(f"the saved data stream had {pairs}: resume with the batch "
                            "size and data it was saved with, or start afresh (with train.py: "
                            "a new --workdir)")
        return self.batches(saved["next_step"])

    def close(self) -> None:
        """Stop every iterator's reader threads and the permutation thread."""
        for iterator in self._iterators:
            iterator.close()
        self._iterators.clear()
        self._orders.close()

    def __enter__(self) -> StreamedBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
