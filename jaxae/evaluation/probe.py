"""A classifier trained on fixed features: a linear (softmax) probe, or a small MLP.

Used to read what a representation holds (a probe on an encoder's codes, PCA codes or raw
pixels) and to recognise the class of generated images.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae.data.records import HostArray
from jaxae.keys import check_key
from jaxae.training.compiler import jit_per_model

# A feature is scaled as if it varied at least this fraction of the median varying feature's
# spread: one nearly constant in training (a border pixel) would otherwise turn a faint change
# at test time (a generated sample's background at 1e-3) into a value of thousands that
# outvotes every other feature. Scale-free, so it serves pixels and codes alike.
MIN_STD_FRACTION = 0.05


def feature_scale(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, std) per feature of [N, F] training features for standardising them, each std
    at least MIN_STD_FRACTION of the median std of the features that vary (of 1, the
    features' own unit, where none varies: identical training images would otherwise turn
    a test feature's faintest change into thousands)."""
    std = x.std(axis=0)
    varying = std[std > 0]  # constant features (most pixels of small objects on black) aside
    typical = jnp.median(varying) if varying.size else jnp.float32(1)
    return x.mean(axis=0), jnp.maximum(std, MIN_STD_FRACTION * typical) + 1e-6


class Classifier(nn.Module):
    """Dense ReLU layers (none: a linear softmax classifier), then class logits."""

    hidden: tuple[int, ...] = ()
    num_classes: int = 10

    @nn.compact
    def __call__(self, x_BxF: jax.Array) -> jax.Array:
        h = x_BxF
        for width in self.hidden:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(self.num_classes)(h)


class Probe(NamedTuple):
    model: Classifier
    params: dict
    mean: jax.Array  # feature standardisation, fitted on the training features
    std: jax.Array

    def predict(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Class ids [N] of [N, F] features, in batches (one compiled program per
        classifier and batch shape, whichever probe's parameters it runs)."""
        return np.concatenate([
            np.asarray(_predict(self.model, self.params, self.mean, self.std,
                                jnp.asarray(features[i:i + batch_size], jnp.float32)))
            for i in range(0, len(features), batch_size)])

    def accuracy(self, features: np.ndarray, labels: HostArray) -> float:
        return float(np.mean(self.predict(features) == np.asarray(labels)))


@jit_per_model()
def _predict(classifier: Classifier, params: dict, mean: jax.Array, std: jax.Array,
             x: jax.Array) -> jax.Array:
    return jnp.argmax(classifier.apply({"params": params}, (x - mean) / std), axis=-1)


@functools.partial(jax.jit, static_argnames=("hidden", "num_classes", "epochs", "batch_size",
                                             "learning_rate"))
def _fit(x: jax.Array, y: jax.Array, key: jax.Array, hidden: tuple[int, ...], num_classes: int,
         epochs: int, batch_size: int, learning_rate: float) -> dict:
    """Adam on the cross-entropy of standardised features; the data are arguments, not
    constants of the program, so one compilation serves every probe of the same shapes."""
    model = Classifier(hidden, num_classes)
    init_key, order_key = jax.random.split(key)
    params = model.init(init_key, x[:1])["params"]
    tx = optax.adam(learning_rate)
    steps_per_epoch = max(1, x.shape[0] // batch_size)

    def epoch(carry, epoch_index):
        order = jax.random.permutation(jax.random.fold_in(order_key, epoch_index), x.shape[0])

        def step(carry, i):
            params, opt_state = carry
            idx = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
            loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
                model.apply({"params": p}, x[idx]), y[idx]).mean()
            grads = jax.grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, carry, jnp.arange(steps_per_epoch))[0], None

    (params, _), _ = jax.lax.scan(epoch, (params, tx.init(params)), jnp.arange(epochs))
    return params


def train_probe(features: np.ndarray, labels: HostArray, key: jax.Array,
                hidden: tuple[int, ...] = (), epochs: int = 10, batch_size: int = 256,
                learning_rate: float = 1e-3, num_classes: int | None = None,
                min_steps: int = 0) -> Probe:
    """Fits a classifier to (features, labels) with Adam on the cross-entropy.

    Trains `epochs` epochs, or more when that is fewer than `min_steps` Adam steps: on a
    small training set a fixed number of epochs is too few steps to converge. `num_classes`:
    the classes it tells apart (default: the largest label + 1); a label outside them is
    refused, as one-hot encoding would silently make it no class at all.
    """
    check_key(key, "train_probe's key")
    labels = np.asarray(labels)
    if len(labels) != len(features):
        raise ValueError(f"train_probe was given {len(features)} feature rows and "
                         f"{len(labels)} labels: give one label per row")
    if not len(labels) or labels.min() < 0:
        found = f"include {labels.min()}" if len(labels) else "are none"
        raise ValueError(f"train_probe's labels {found}: give each feature row its class, "
                         "numbered from 0")
    if num_classes is not None and labels.max() >= num_classes:
        raise ValueError(f"train_probe's labels reach {labels.max()}, beyond num_classes="
                         f"{num_classes} (classes 0..{num_classes - 1}): pass num_classes="
                         f"{labels.max() + 1}, or leave it out (the largest label + 1)")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    x = jnp.asarray(features, jnp.float32)
    mean, std = feature_scale(x)
    batch_size = min(batch_size, len(x))
    steps_per_epoch = max(1, len(x) // batch_size)
    epochs = max(epochs, -(-min_steps // steps_per_epoch))
    params = _fit((x - mean) / std, jnp.asarray(labels, jnp.int32), key, tuple(hidden),
                  num_classes, epochs, batch_size, learning_rate)
    return Probe(Classifier(tuple(hidden), num_classes), params, mean, std)
