"""Tasks (what is learned from what) and the classical baselines they are compared with."""

from jaxae.tasks.tasks import (
    TASKS,
    Denoise,
    Reconstruct,
    SuperResolve,
    Task,
    register_task,
)

__all__ = ["TASKS", "Denoise", "Reconstruct", "SuperResolve", "Task", "register_task"]
