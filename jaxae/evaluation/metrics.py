"""Metrics over a whole split, in padded batches of one shape (one compiled program)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import numpy as np

from jaxae.data.splits import Split


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([array, np.zeros((size - len(array), *array.shape[1:]), array.dtype)])


def padded_batches(split: Split, batch_size: int) -> Iterator[tuple[int, dict]]:
    """Yields (index, {"image", "label", "mask"}) batches of one shape; the last is padded."""
    for index, start in enumerate(range(0, len(split), batch_size)):
        images = split.images[start:start + batch_size]
        mask = np.zeros(batch_size, np.float32)
        mask[:len(images)] = 1.0
        yield index, {"image": _pad(images, batch_size),
                      "label": _pad(split.labels[start:start + batch_size], batch_size),
                      "mask": mask}


def split_means(step: Callable[[dict, jax.Array], dict], split: Split, batch_size: int,
                key: jax.Array) -> dict[str, float]:
    """Means over every image of the split of a step's per-batch sums (with their "count"
    of unmasked images); batch i's randomness uses fold_in(key, i)."""
    sums = None
    for index, batch in padded_batches(split, min(batch_size, len(split))):
        out = step(batch, jax.random.fold_in(key, index))
        sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    sums = jax.device_get(sums)
    count = float(sums.pop("count"))
    return {name: float(total) / count for name, total in sums.items()}


def evaluate_split(eval_step: Callable, params: dict, split: Split, batch_size: int,
                   key: jax.Array) -> dict[str, float]:
    """An eval step's means over every image of the split, at `params`."""
    return split_means(functools.partial(eval_step, params), split, batch_size, key)
