"""Metrics over a whole split, in padded batches of one shape (one compiled program), and a
run's test and validation metrics (`evaluate_splits`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import jax
import numpy as np

from jaxae.data.splits import Split, Splits
from jaxae.keys import VALIDATION_EVAL_STREAM, check_key
from jaxae.models.base import ModelParams


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


def evaluate_split(eval_step: Callable, params: ModelParams, split: Split, batch_size: int,
                   key: jax.Array) -> dict[str, float]:
    """An eval step's means over every image of the split, at `params`."""
    check_key(key, "evaluate_split's key")
    return split_means(functools.partial(eval_step, params), split, batch_size, key)


def evaluate_splits(eval_step: Callable, params: ModelParams, data: Splits, batch_size: int,
                    eval_key: jax.Array, floor_step: Callable | None = None,
                    floors: dict[str, dict[str, float]] | None = None
                    ) -> dict[str, float]:
    """Test (and validation) metrics, prefixed 'test_' / 'val_'.

    With a `floor_step` (`jaxae.training.steps.make_floor_step`; `eval_step` then made
    without floors), the task's floors of each split are computed at the first call and kept
    in `floors` (a dict of the caller's, passed again; None: kept for this call only) for the
    next ones: they do not depend on the parameters, and a baseline such as the median
    filter can cost more than the model's own evaluation.
    """
    named = {"test": (data.test, eval_key),  # the validation split draws its own noise
             "val": (data.val, jax.random.fold_in(eval_key, VALIDATION_EVAL_STREAM))}
    floors = {} if floors is None else floors
    out = {}
    for prefix, (split, key) in named.items():
        if split is not None:
            metrics = evaluate_split(eval_step, params, split, batch_size, key)
            if floor_step is not None:
                if prefix not in floors:
                    floors[prefix] = split_means(floor_step, split, batch_size, key)
                metrics = dict(sorted((metrics | floors[prefix]).items()))
            out.update({f"{prefix}_{name}": value for name, value in metrics.items()})
    return out


ACTIVE_UNIT_VARIANCE = 0.01  # Burda et al. (2016): a unit whose posterior mean varies less is idle


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_VARIANCE) -> int:
    """How many latent units a VAE uses: those whose posterior mean E_q[z_u | x] varies over
    the images (`means` [N, D], z_mean of each) by more than `threshold` (Burda, Grosse and
    Salakhutdinov, 2016). Units at the prior for every image (posterior collapse) count as
    inactive: a KL near zero and a code that says nothing."""
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"active_units takes the z_mean of 2 images or more, [N, D], not "
                         f"{list(means.shape)}")
    return int(np.sum(means.var(axis=0) > threshold))
