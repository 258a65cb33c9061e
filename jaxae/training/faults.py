"""A run's numerical faults as one-line errors: which quantity stopped being finite, at which
step, whether a checkpoint holds the last good state, and the config knob that can be at
fault."""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from jaxae import config as config_lib
from jaxae.objectives import Objective
from jaxae.training import checkpoints, steps


def first_non_finite_step(metrics: dict[str, np.ndarray], first_step: int
                           ) -> tuple[int, str, float] | None:
    """(step, quantity, value) of the first non-finite value in a chunk's stacked metrics
    (steps.CHUNK_END_METRICS only at the last step: the other rows do not hold them)."""
    last = len(metrics["loss"]) - 1
    for offset in range(last + 1):
        for name, values in metrics.items():
            if offset < last and name in steps.CHUNK_END_METRICS:
                continue
            if not math.isfinite(float(values[offset])):
                return first_step + offset, name, float(values[offset])
    return None


def flat_at_chunk_end(metrics: dict[str, np.ndarray]) -> bool:
    """Whether a chunk's last step has a gradient of exactly 0 (its norm, computed at that
    step only: steps.CHUNK_END_METRICS; False where the objective reports none)."""
    norms = metrics.get("grad_norm")
    return norms is not None and float(norms[-1]) == 0.0


class Faults:
    """Turns a non-finite quantity into one FloatingPointError line: what, where, whether a
    checkpoint holds the last good state, and the config knob that can be at fault."""

    def __init__(self, config: ml_collections.ConfigDict, objective: Objective, manager,
                 first_step: int):
        self.config, self.objective, self.manager = config, objective, manager
        self.first_step = first_step  # the first step this run computes

    def _knobs(self, changed_only: bool) -> list[str]:
        """The knobs of the run's objective that can make it overflow ('--config.objective.beta
        (now 1e+39)'): those its objective and likelihood have; changed_only: only those
        set away from their defaults."""
        section, defaults = self.config.objective, config_lib.base_config().objective
        likelihood = getattr(self.objective, "likelihood", None)
        knobs = []
        if hasattr(self.objective, "beta") and (not changed_only
                                                or section.beta > defaults.beta):
            knobs.append(f"lower --config.objective.beta (now {section.beta:g})")
        if hasattr(likelihood, "gaussian_scale") and (
                not changed_only or section.gaussian_scale < defaults.gaussian_scale):
            knobs.append("raise --config.objective.gaussian_scale (now "
                         f"{section.gaussian_scale:g})")
        return knobs

    def _newest_on_disk(self) -> int | None:
        try:
            checkpoints.check_saved(self.manager)  # a save in flight is complete, or failed
        except checkpoints.CheckpointWriteError:
            pass
        try:
            self.manager.reload()
            return self.manager.latest_step()
        except Exception:  # noqa: BLE001 (the folder may be gone)
            return None

    def error(self, what: str, step: int, training: bool = True) -> FloatingPointError:
        """`what` (e.g. 'train_loss became nan') at `step`, as the run's one error line.

        Training metrics of a run's first step come from the parameters it started from,
        before any update: the learning rate cannot be at fault there, the objective can.
        """
        kept = self._kept(self._newest_on_disk())
        if training and step == self.first_step:
            knobs = self._knobs(changed_only=True) or self._knobs(changed_only=False)
            fix = ("it is not finite at the parameters this run started from, before any "
                   "update, so the learning rate is not the cause: "
                   + (" or ".join(knobs) if knobs else "check the objective section and the "
                      "data"))
        else:
            fix = " or ".join([self._lower_learning_rate(), *self._knobs(changed_only=True)])
        return FloatingPointError(f"{what} at step {step}: training stopped without writing "
                                  f"a checkpoint for it ({kept}); {fix}")

    def _steps_on_disk(self) -> list[int]:
        """The checkpoints' steps, oldest first (none where they cannot be listed)."""
        try:
            return sorted(self.manager.all_steps())
        except Exception:  # noqa: BLE001 (the folder may be gone)
            return []

    @staticmethod
    def _kept(newest: int | None) -> str:
        return (f"the newest checkpoint, step {newest}, holds the last good state"
                if newest is not None else "no checkpoint was written yet")

    def _lower_learning_rate(self) -> str:
        return f"lower --config.optim.learning_rate (now {self.config.optim.learning_rate:g})"

    def flat_gradient(self, step: int, last_nonzero: int | None) -> FloatingPointError:
        """The gradient exactly 0 at `step` (`flat_at_chunk_end`), last seen nonzero at
        `last_nonzero` in this process (None: not seen): the steps no longer change the model,
        and no loss turns NaN to say so (sigmoid outputs saturated by too large a step keep
        every loss finite). Stopped as a NaN is: a run going on had ended as if trained, its
        checkpoints' rotation dropping the last good one. A checkpoint saved after the
        gradient was last seen nonzero may hold the flat state itself: said so, with a way
        out that does not start from it."""
        newest = self._newest_on_disk()
        flat = (f"the gradient is exactly 0 at step {step}: the steps no longer change the "
                "model (its outputs saturated or its units dead, as after too large a step); "
                "training stopped without writing a checkpoint for it")
        if newest is None or (last_nonzero is not None and newest < last_nonzero):
            kept = self._kept(newest)
            cause = ("it is 0 at the parameters this run started from: check the model and "
                     "the data" if step == self.first_step and last_nonzero is None else
                     self._lower_learning_rate())
            return FloatingPointError(f"{flat} ({kept}); {cause}")
        older = [saved for saved in self._steps_on_disk() if saved < newest]
        elsewhere = ("train again in a new --workdir" + (
            f", or move step {newest}'s folder out of the checkpoints to resume from step "
            f"{older[-1]}" if older else " (no older checkpoint is kept)"))
        if last_nonzero is None:  # resumed from it: the steps since, or it, went flat
            return FloatingPointError(
                f"{flat} (the newest checkpoint, step {newest}, is the state this run resumed "
                f"from, its gradient not checked there); {self._lower_learning_rate()} and "
                f"rerun; if the gradient is 0 again at once, that checkpoint is flat too: "
                f"{elsewhere}")
        return FloatingPointError(
            f"{flat} (the newest checkpoint, step {newest}, may hold a flat state too: the "
            f"gradient was last seen nonzero at step {last_nonzero}); "
            f"{self._lower_learning_rate()} and {elsewhere}")

    def check_evaluation(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            if not math.isfinite(value):
                raise self.error(f"{name} became {value}", step, training=False)
