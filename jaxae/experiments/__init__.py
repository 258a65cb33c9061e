"""Experiments that answer the material's questions with measured tables and plots.

`python -m jaxae.experiments NAME [--scale full|small|tiny] [--out results]` trains what NAME
needs (reusing finished runs in the results folder), evaluates, and writes
`<out>/NAME/table.md`, `table.json` and `plot.png`; `python -m jaxae.experiments report`
gathers them into `<out>/RESULTS.md`.
"""

from __future__ import annotations

import importlib
import time

from jaxae.experiments.common import SCALES, Context, Result, write_result

EXPERIMENTS = ("ae_vs_pca", "encoder_probe", "dae_sweep", "data_specificity",
               "classical_baselines")

__all__ = ["EXPERIMENTS", "SCALES", "Context", "Result", "datasets_needed", "run_experiment"]


def datasets_needed(name: str) -> int:
    """How many data sets experiment `name` compares (its module's DATASETS_NEEDED; 1 where
    it declares none)."""
    return getattr(importlib.import_module(f"jaxae.experiments.{name}"), "DATASETS_NEEDED", 1)


def run_experiment(name: str, ctx: Context) -> dict:
    """Runs experiment `name` and writes its files; returns the JSON record it wrote."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    module = importlib.import_module(f"jaxae.experiments.{name}")
    started = time.perf_counter()
    ctx.used_data, ctx.used_runs = {}, {}  # what this experiment uses, for its record
    result = module.run(ctx)
    return write_result(name, ctx, result, started)
