"""Optax optimisers and learning-rate schedules by the names a config's optim section gives."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import optax

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: `rate(learning_rate, total_steps)` gives Optax's rate (a
    float or a schedule), and `spans_run` says whether the rate depends on the run's total
    steps, which then make its length part of the run (a resume cannot lengthen it)."""
    rate: Callable[[float, int], optax.ScalarOrSchedule]
    spans_run: bool


SCHEDULES = {
    "constant": Schedule(lambda learning_rate, total_steps: learning_rate, spans_run=False),
    "cosine": Schedule(optax.cosine_decay_schedule, spans_run=True),  # decays to 0
}


def spans_run(schedule: str) -> bool:
    """Whether the schedule named `schedule` decays over the run's total steps."""
    return SCHEDULES[schedule].spans_run


def optimizer_options(name: str) -> tuple[str, ...]:
    """The keyword options the optimiser named `name` declares besides its learning rate
    (adamw's weight_decay, ...)."""
    return tuple(p for p in inspect.signature(OPTIMIZERS[name]).parameters
                 if p != "learning_rate")


def taking(option: str) -> list[str]:
    """The names of the optimisers that declare `option` (weight_decay: adamw)."""
    return [name for name in OPTIMIZERS if option in optimizer_options(name)]


def make_optimizer(name: str, learning_rate: float, schedule: str = "constant",
                   total_steps: int | None = None, weight_decay: float | None = None
                   ) -> optax.GradientTransformation:
    """An Optax optimiser by name, with a constant or cosine-decayed (to 0 over
    `total_steps`) learning rate. total_steps is None where the state only receives a
    checkpoint: the schedule's shape is then irrelevant, only the state's structure is.
    `weight_decay`: for an optimiser that declares it (adamw); None: Optax's default."""
    for what, value, known in (("optimizer", name, OPTIMIZERS), ("schedule", schedule, SCHEDULES)):
        if value not in known:
            raise ValueError(f"{what} {value!r} is unknown: choose one of {', '.join(known)}")
    options = {} if weight_decay is None else {"weight_decay": weight_decay}
    for option, value in options.items():
        if name not in taking(option):
            raise ValueError(f"optimizer {name!r} takes no {option}: leave it out, or choose "
                             f"one that does ({', '.join(taking(option))})")
        if not 0 <= value < float("inf"):
            raise ValueError(f"{option}={value!r} must be a number >= 0, e.g. 0.01")
    return OPTIMIZERS[name](SCHEDULES[schedule].rate(learning_rate, max(1, total_steps or 1)),
                            **options)
