"""Experiment `classical_baselines`: super-resolution (x2, x4) and denoising (Gaussian noise,
dropout) autoencoders against classical image operations, in PSNR and SSIM; super-resolution
also by ESPCN, a learned model without a code."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import losses
from jaxae.data import Split
from jaxae.evaluation.metrics import padded_batches
from jaxae.experiments import figures, quality
from jaxae.experiments.common import (
    Context,
    DataChoice,
    Overrides,
    Result,
    Run,
    and_list,
    column,
    printed_sign,
    run_as_command,
    steps_note,
    steps_per_dataset,
)
from jaxae.experiments.render import format_cell, seed_range, seeds_overlap
from jaxae.keys import BLUR_FIT_STREAM, derive_keys
from jaxae.models.base import variables_of
from jaxae.tasks import baselines
from jaxae.training import steps

TITLE = "Super-resolution and denoising autoencoders against classical baselines"
BLUR = "Gaussian blur"
LEARNED = "learned"  # the family of a trained model's rows (their method: the model's label)
INPUT = "input"  # the family and method of the row of the input shown as an image
Shape = tuple[int, int, int]
Image = Callable[[jax.Array], jax.Array]  # model input -> restored image in [0, 1]


def _resize(method: str) -> Callable[[Shape, float | None], Image]:
    return lambda image_shape, _: lambda x: baselines.interpolated_upsampling(
        x, *image_shape[:2], method)


# The classical image operations, each made for (image shape, blur width) as a function of
# the model's input.
CLASSICAL: dict[str, Callable[[Shape, float | None], Image]] = {
    "bicubic": _resize("bicubic"),
    "bilinear": _resize("bilinear"),
    BLUR: lambda _, sigma: lambda x: quality.gaussian_blur(jnp.clip(x, 0, 1), sigma),
    "median 3x3": lambda _, __: lambda x: baselines.median_filter_3x3(jnp.clip(x, 0, 1)),
    # dropout's own: each dropped (zero) value from its kept neighbours
    "masked median 3x3": lambda _, __: lambda x: baselines.masked_median_3x3(jnp.clip(x, 0, 1)),
}


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    """One task compared: its name in the table, the configs (and their overrides) that train
    its learned models, the first an autoencoder, and the classical methods (of CLASSICAL)
    that do the same job."""

    label: str
    configs: tuple[str, ...]  # jaxae.configs.<config>, each trained with `overrides`
    overrides: Overrides
    classical: tuple[str, ...]


SUPERRES = ("superres_ae", "superres")  # the lesson's dense autoencoder, then ESPCN (no code)
TASKS = {
    "superres_x2": TaskEntry("super-resolution x2", SUPERRES, {"task.factor": 2},
                             ("bicubic", "bilinear")),
    "superres_x4": TaskEntry("super-resolution x4", SUPERRES, {"task.factor": 4},
                             ("bicubic", "bilinear")),
    "denoise_gaussian": TaskEntry("denoising, Gaussian noise std 0.3", ("dae_gaussian",), {},
                                  (BLUR, "median 3x3")),
    "denoise_dropout": TaskEntry("denoising, dropout 0.5", ("dae_dropout",), {},
                                 (BLUR, "median 3x3", "masked median 3x3")),
}
TINY_TASKS = ("superres_x4", "denoise_gaussian", "denoise_dropout")
BLUR_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)
BLUR_FIT_IMAGES = 1000
LEARNED_COLORS = ("tab:blue", "tab:cyan", "tab:brown")  # the learned models, in table order
METHOD_COLORS = {INPUT: "tab:gray", "bicubic": "tab:orange", "bilinear": "tab:olive",
                 BLUR: "tab:green", "median 3x3": "tab:purple", "masked median 3x3": "tab:pink"}

Methods = dict[str, Callable[[dict, jax.Array], jax.Array]]


def task_label(entry: TaskEntry, run: Run, image_shape: Shape) -> str:
    """The task's name in the table, with the input's size where it is not the image's, e.g.
    'super-resolution x2 (14x14 in)'."""
    input_shape = run.task.input_shape(image_shape)
    if tuple(input_shape) == tuple(image_shape):
        return entry.label
    return f"{entry.label} ({input_shape[0]}x{input_shape[1]} in)"


def learned_label(run: Run) -> str:
    """A trained model's name in the table, from what it declares: its registered name and
    its code's size ('dense_ae (code 940)'), or that it has none ('superres (no code)')."""
    shape = run.model.latent_shape
    return f"{run.config.model.name} " + (f"(code {math.prod(shape)})" if shape is not None
                                          else "(no code)")


def learned_method(run: Run) -> Callable[[dict, jax.Array], jax.Array]:
    """The trained model as a method: (its parameters, model input) -> restored image."""
    def restore(params: dict, x: jax.Array) -> jax.Array:
        return losses.sigmoid(run.model.apply(variables_of(params), x, sample=False)[0])
    return restore


def methods_for(run: Run, entry: TaskEntry, image_shape: Shape, blur_sigma: float | None
                ) -> Methods:
    """Each method as a function of (model parameters, model input) -> restored image of
    `image_shape` in [0, 1]: the run's model (LEARNED, the only one that uses the
    parameters), the input shown as an image, and the task's classical methods."""
    found: Methods = {LEARNED: learned_method(run),
                      INPUT: lambda _, x: run.task.input_as_image(x, image_shape)}
    for name in entry.classical:
        method = CLASSICAL[name](image_shape, blur_sigma)
        found[name] = lambda _, x, method=method: method(x)
    return found


def score(run: Run, methods: Methods, split: Split) -> dict[str, dict[str, float]]:
    """Mean PSNR and SSIM of each method over the split, on exactly the inputs the run's own
    evaluation used (the same batch size and the same per-batch corruption keys)."""
    config, task = run.config, run.task
    eval_key = derive_keys(config.seed).eval

    @jax.jit
    def sums(params: dict, batch: dict, key: jax.Array) -> dict[str, jax.Array]:
        example_key, _ = jax.random.split(key)
        inputs, targets = task.make_example(batch["image"], example_key)
        out = {}
        for name, method in methods.items():
            restored = method(params, inputs)
            out[f"{name}/psnr"] = steps.masked_sum(losses.psnr(restored, targets), batch)
            out[f"{name}/ssim"] = steps.masked_sum(quality.ssim(restored, targets), batch)
        return out

    totals: dict[str, float] = {}
    for index, batch in padded_batches(split, min(config.eval.batch_size, len(split))):
        key = jax.random.fold_in(eval_key, index)
        for name, value in jax.device_get(sums(run.params, batch, key)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    scores: dict[str, dict[str, float]] = {}
    for name, total in totals.items():
        method, metric = name.split("/")
        scores.setdefault(method, {})[metric] = total / len(split)
    return scores


def fit_blur_sigma(run: Run, split: Split) -> float:
    """The blur width with the best PSNR on corrupted *training* images (not the test split)."""
    images = jnp.asarray(split.images[:BLUR_FIT_IMAGES])
    key = jax.random.fold_in(derive_keys(run.config.seed).eval, BLUR_FIT_STREAM)
    inputs, targets = run.task.make_example(images, key)
    return BLUR_SIGMAS[int(np.argmax(blur_psnrs(inputs, targets, BLUR_SIGMAS)))]


@functools.partial(jax.jit, static_argnames="sigmas")
def blur_psnrs(inputs: jax.Array, targets: jax.Array, sigmas: tuple[float, ...]) -> jax.Array:
    """The mean PSNR of the inputs blurred at each width: one program for all the widths
    (each width's kernel has a size of its own, so one width at a time compiled its own)."""
    return jnp.stack([losses.psnr(quality.gaussian_blur(inputs, s), targets).mean()
                      for s in sigmas])


def task_rows(ctx: Context, choice: DataChoice, name: str) -> list[dict]:
    """The task's rows on one data set: each learned model's, then the input's and the
    classical methods', all scored on the same test inputs (the first run's). The input's
    row records the classical method its picture is, if the task declares one
    (`Task.input_method`), so the findings can be recomputed from the table alone."""
    entry = TASKS[name]
    first, *others = [ctx.train(config, choice, entry.overrides) for config in entry.configs]
    if any(run.task != first.task for run in others):  # their inputs would differ
        raise ValueError(f"{name}: configs {', '.join(entry.configs)} set different tasks: "
                         "give them the same task, so their models see the same inputs")
    splits = ctx.splits(choice)
    sigma = fit_blur_sigma(first, splits.train) if BLUR in entry.classical else None
    task = task_label(entry, first, splits.image_shape)
    scores = {learned_label(run): (score(run, {LEARNED: learned_method(run)}, splits.test)
                                   [LEARNED], run) for run in others}
    methods = score(first, methods_for(first, entry, splits.image_shape, sigma), splits.test)
    scores = {learned_label(first): (methods.pop(LEARNED), first), **scores}
    rows = [{"dataset": choice.title, "task": task, "method": label, "family": LEARNED,
             "psnr": values["psnr"], "ssim": values["ssim"], "logged_psnr": run.metrics["psnr"],
             "blur_sigma": None, "input_method": None}
            for label, (values, run) in scores.items()]
    # the blur's fitted width is a figure of its own, not part of its name: each seed fits it
    for method, values in methods.items():
        rows.append({"dataset": choice.title, "task": task, "method": method,
                     "family": method, "psnr": values["psnr"], "ssim": values["ssim"],
                     "logged_psnr": None, "blur_sigma": sigma if method == BLUR else None,
                     "input_method": first.task.input_method if method == INPUT else None})
    return rows


def input_method(row: dict) -> str | None:
    """The classical method an input row's picture is, as the row records it (its task's
    `Task.input_method`: super-resolution's input shown at full size is nearest-neighbour
    upsampling); None for a corrupted image and for every other row."""
    return row.get("input_method") if row.get("family") == INPUT else None


def named(row: dict) -> str:
    """A method as the findings name it: with the blur's fitted width, 'Gaussian blur (sigma
    0.75)', or the seeds' widths where they fitted several ('sigma 0.75-1'); the input's
    row, where it is a method, by that method and the row: nearest-neighbour upsampling
    (the 'input' row)."""
    if (method := input_method(row)) is not None:
        return f"{method} (the '{row['method']}' row)"
    if row.get("blur_sigma") is None:
        return row["method"]
    low, high = seed_range(row, "blur_sigma")
    return f"{row['method']} (sigma {low:g}{'' if low == high else f'-{high:g}'})"


PSNR_DIFF, SSIM_DIFF = "+.2f", "+.3f"  # how the findings print the learned models' margins


def cases(rows: list[dict]) -> list[dict]:
    """Per data set, task and learned model: the model's row, the 'input' row where it is
    no classical method (a corrupted image; else None), the classical rows of the best PSNR
    and of the best SSIM (by their means), and every classical row: the input's among them
    where it is a method (`input_method`: super-resolution's nearest-neighbour
    upsampling)."""
    out = []
    for dataset, task in dict.fromkeys((r["dataset"], r["task"]) for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset and r["task"] == task]
        classical = [r for r in mine if r["family"] not in (LEARNED, INPUT) or input_method(r)]
        inputs = [r for r in mine if r["family"] == INPUT and not input_method(r)]
        for model in (r for r in mine if r["family"] == LEARNED):
            out.append({"dataset": dataset, "task": task, "model": model,
                        "input": inputs[0] if inputs else None,
                        "psnr": max(classical, key=lambda r: r["psnr"]),
                        "ssim": max(classical, key=lambda r: r["ssim"]),
                        "classical": classical})
    return out


def findings(rows: list[dict]) -> list[str]:
    """Per data set, task and learned model: the model against the best classical method."""
    out = []
    for c in cases(rows):
        model, best_p, best_s = c["model"], c["psnr"], c["ssim"]
        out.append(f"{c['dataset']}, {c['task']}: {model['method']} {model['psnr']:.2f} dB / SSIM "
                   f"{model['ssim']:.3f}; best classical {named(best_p)} "
                   f"{best_p['psnr']:.2f} dB ({model['psnr'] - best_p['psnr']:{PSNR_DIFF}} dB), "
                   f"best SSIM {named(best_s)} {best_s['ssim']:.3f} "
                   f"({model['ssim'] - best_s['ssim']:{SSIM_DIFF}}).")
    return out


def beats_classical(c: dict) -> bool:
    """Whether the learned model beats every classical method in both PSNR and SSIM with
    every seed, by a margin that does not print as zero: the model's lowest over its seeds
    above the highest of any method's seeds (a mean margin can hide a seed that loses)."""
    def above(key: str, fmt: str) -> bool:
        best = max(seed_range(r, key)[1] for r in c["classical"])
        return printed_sign(seed_range(c["model"], key)[0] - best, fmt) > 0
    return above("psnr", PSNR_DIFF) and above("ssim", SSIM_DIFF)


def _ranged(row: dict, key: str, fmt: str) -> str:
    """A row's figure, with its [lowest, highest] over the seeds where they print apart."""
    return format_cell(row, {"key": key, "format": fmt})


def learned_detail_note(rows: list[dict]) -> str:
    """Why a learned model can beat a generic filter, and where it does here."""
    found = cases(rows)
    text = ("A classical filter knows nothing about the images: interpolation cannot invent the "
            "edges that pooling averaged away, and a blur or median filter removes noise by "
            "removing detail too. The learned models were trained on the training images, so they "
            "can put back plausible detail that a generic filter cannot")
    misses = [c for c in found if not beats_classical(c)]
    if not misses:
        return text + (f"; here they beat the best classical method in both PSNR and SSIM in "
                       f"all {len(found)} cases.")
    described = []
    for c in misses:
        model, inp = c["model"], c["input"]
        line = (f"{c['dataset']}, {c['task']}, {model['method']} ("
                f"{_ranged(model, 'psnr', '.2f')} dB / SSIM {_ranged(model, 'ssim', '.3f')}, "
                f"against {named(c['psnr'])}'s {_ranged(c['psnr'], 'psnr', '.2f')} dB and "
                f"{named(c['ssim'])}'s SSIM {_ranged(c['ssim'], 'ssim', '.3f')}")
        if inp is not None and (inp["psnr"] > model["psnr"] or inp["ssim"] > model["ssim"]):
            line += f"; the 'input' row has {inp['psnr']:.2f} dB / SSIM {inp['ssim']:.3f}"
        described.append(line + ")")
    return text + (f"; here they beat the best classical method in both PSNR and SSIM in "
                   f"{len(found) - len(misses)} of {len(found)} cases, not in "
                   f"{and_list(described)}.")


def superres_models_note(rows: list[dict]) -> str | None:
    """What the two super-resolution models are, and which scored the higher PSNR in each
    case that ran both (and, over several seeds, where their ranges overlap); None where
    none did."""
    pairs = [learned for key in dict.fromkeys((r["dataset"], r["task"]) for r in rows)
             if len(learned := [r for r in rows if (r["dataset"], r["task"]) == key
                                and r["family"] == LEARNED]) == 2]
    if not pairs:
        return None
    wins = []
    for first, second in pairs:
        best, other = (first, second) if first["psnr"] >= second["psnr"] else (second, first)
        wins.append(f"{best['dataset']}, {best['task']}: {best['method']}, by "
                    f"{best['psnr'] - other['psnr']:.2f} dB"
                    + (" (within the seeds' ranges)" if seeds_overlap(best, other, "psnr")
                       else ""))
    return ("Super-resolution is learned two ways: the lesson's autoencoder "
            "(configs/superres_ae.py: dense_ae maps the small image's pixels to a code and "
            "decodes the full image from it) and ESPCN (configs/superres.py: convolutions on "
            "the small image and a sub-pixel shuffle to the full size, no code). The higher "
            f"PSNR: {'; '.join(wins)}.")


def notes(rows: list[dict], fit_images: int = BLUR_FIT_IMAGES,
          run_steps: dict[str, list[int]] | None = None, cap: int | None = None
          ) -> list[str]:
    """Why the numbers come out as they do; what is said about the results is computed from
    `rows` (`fit_images`: the training images the blur width was fit on; `run_steps`: {data
    set: each run's steps}; `cap`: the scale's cap on epochs)."""
    return [
        "Super-resolution inputs are the test images average-pooled by 2 or 4; 'input' shows "
        "them enlarged by pixel repetition, which is nearest-neighbour upsampling, so the "
        "findings count it among the classical methods. Bicubic and bilinear upsampling are "
        "jax.image.resize, clipped to [0, 1]. Denoising inputs are corrupted with the run's "
        "evaluation key, the same draws the training run's own evaluation used; 'input' is the "
        "corrupted image, which is no method's answer.",
        f"The Gaussian blur's width is chosen among {', '.join(map(str, BLUR_SIGMAS))} pixels "
        f"by PSNR on {fit_images:,} corrupted training images, so the baseline is tuned "
        "without looking at the test split; the median filter is the 3x3 one of "
        "jaxae.tasks.baselines, and for dropout also its masked 3x3 median, which takes each "
        "dropped pixel's median over its kept neighbours (a plain median counts the dropped "
        "zeros as values, and scores below the corrupted input itself).",
        "SSIM (jaxae.experiments.quality) uses a 7x7 Gaussian window of sigma 1.5 and the "
        "standard constants K1 = 0.01, K2 = 0.03 on a data range of 1, averaged over the window "
        "positions inside the image; PSNR is per image, averaged over the test split.",
        *([models] if (models := superres_models_note(rows)) else []),
        learned_detail_note(rows),
        *([note] if (note := steps_note(run_steps or {}, cap)) else []),
    ]


def plot_record(record: dict, path: str) -> None:
    """The plot drawn again from the experiment's table.json record alone (no training)."""
    plot(record["rows"], record["scale"], path)


def plot(rows: list[dict], scale: str, path: str) -> None:
    """PSNR and SSIM per task, a bar per method, a column of panels per data set; with
    several seeds, error bars from the lowest to the highest seed."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    learned = dict.fromkeys(r["method"] for r in rows if r["family"] == LEARNED)
    colors = {**{m: LEARNED_COLORS[i % len(LEARNED_COLORS)] for i, m in enumerate(learned)},
              **METHOD_COLORS}
    fig, axes = figures.panels(len(datasets), "Learned models against classical baselines",
                               scale, rows=2, width=7.5, height=4.4,
                               seed_bars=figures.any_spread(rows, "psnr", "ssim"))
    for col, dataset in enumerate(datasets):
        for row_index, (metric, label) in enumerate((("psnr", "test PSNR (dB)"),
                                                     ("ssim", "test SSIM"))):
            found = {name: [next((r for r in rows if r["dataset"] == dataset
                                  and r["task"] == t and name in (r["family"], r["method"])),
                                 None) for t in tasks] for name in colors}
            found = {k: v for k, v in found.items() if any(r is not None for r in v)}
            series = {k: [None if r is None else r[metric] for r in v] for k, v in found.items()}
            spreads = {k: [None if r is None else figures.spread(r, metric) for r in v]
                       for k, v in found.items()}
            ax = axes[row_index, col]
            figures.grouped_bars(ax, [t.replace(", ", ",\n").replace(" (", "\n(")
                                      for t in tasks], series, colors, spreads=spreads,
                                 missing="n/a")
            ax.set_ylabel(label)
            ax.set_title(f"{dataset}: {label}")
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(alpha=0.3, axis="y")
            ax.margins(y=0.1)
    figures.figure_legend(fig, axes[0, 0], colors, names={
        INPUT: "input (upsampled by nearest neighbour; or corrupted)"})
    figures.save(fig, path)


def run(ctx: Context) -> Result:
    tasks = TINY_TASKS if ctx.scale.smoke_test else tuple(TASKS)
    rows = ctx.over_seeds(lambda c: [row for choice in c.data() for task in tasks
                                     for row in task_rows(c, choice, task)])
    labels = dict.fromkeys(r["task"] for r in rows)
    columns = [column("dataset", "data set"), column("task", "task"),
               column("method", "method"), column("psnr", "PSNR (dB)", ".2f"),
               column("ssim", "SSIM", ".4f"),
               column("blur_sigma", "blur width, fitted (pixels)", "g")]
    return Result(
        title=TITLE,
        question="Do the super-resolution and denoising autoencoders beat what a classical "
                 "image operation does with the same input? PSNR and SSIM against the clean "
                 "test image; super-resolution also by ESPCN, a learned model without a code.",
        columns=columns, rows=rows, findings=findings(rows),
        notes=notes(rows, min(BLUR_FIT_IMAGES, *ctx.train_sizes().values()),
                    steps_per_dataset(ctx.used_runs), ctx.scale.max_epochs),
        plot=lambda path: plot(rows, ctx.scale.name, path),
        settings={"tasks": "; ".join(labels), "configs": configs_setting(tasks)})


def configs_setting(tasks: tuple[str, ...]) -> str:
    """The configs the tasks run, each with the values its overrides take, e.g.
    'configs/superres.py (task.factor 2 and 4), configs/dae_gaussian.py, ...'."""
    overrides: dict[str, dict[str, list[str]]] = {}
    for task in tasks:
        for config in TASKS[task].configs:
            fields = overrides.setdefault(config, {})
            for field, value in TASKS[task].overrides.items():
                fields.setdefault(field, []).append(str(value))
    return ", ".join(
        f"configs/{config}.py" + (" (" + ", ".join(f"{field} {' and '.join(values)}"
                                                  for field, values in fields.items()) + ")"
                                  if fields else "")
        for config, fields in overrides.items())


if __name__ == "__main__":
    run_as_command("classical_baselines")
