"""Optax optimisers and learning-rate schedules by the names a config's optim section gives."""

from __future__ import annotations

import optax

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd}
SCHEDULES = ("constant", "cosine")


def make_optimizer(name: str, learning_rate: float, schedule: str = "constant",
                   total_steps: int | None = None) -> optax.GradientTransformation:
    """An Optax optimiser by name, with a constant or cosine-decayed (to 0 over
    `total_steps`) learning rate. total_steps is None where the state only receives a
    checkpoint: the schedule's shape is then irrelevant, only the state's structure is."""
    rate = optax.cosine_decay_schedule(learning_rate, max(1, total_steps or 1)) \
        if schedule == "cosine" else learning_rate
    return OPTIMIZERS[name](rate)
