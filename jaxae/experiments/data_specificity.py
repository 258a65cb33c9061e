"""Experiment `data_specificity`: autoencoders are data-specific. Train the conv AE and the VAE
on one data set, evaluate them on the test split of the other (MNIST <-> Fashion-MNIST)."""

from __future__ import annotations

import math

from jaxae.evaluation.metrics import evaluate_split
from jaxae.experiments import figures
from jaxae.experiments.common import (
    Context,
    DataChoice,
    Result,
    Run,
    and_list,
    column,
    fewer_images,
    run_as_command,
    steps_note,
    steps_per_dataset,
)
from jaxae.keys import derive_keys
from jaxae.training import steps

TITLE = "Autoencoders are data-specific: train on one data set, test on the other"
MSE = "test MSE per pixel"
NEGATIVE_ELBO = "test negative ELBO (nats per image)"
MODELS = {  # model -> (config, {metric: how to read it from evaluate_split})
    "conv_ae": ("conv_ae_fashion", {MSE: lambda m: m["mse"]}),
    # the VAE's negative ELBO and its reconstructions (z = z_mean) apart: the ELBO can
    # favour images simpler than its own (fewer grey pixels to explain), an error cannot
    "vae": ("vae_fashion_2d", {NEGATIVE_ELBO: lambda m: -m["elbo"], MSE: lambda m: m["mse"]}),
}
DATASETS_NEEDED = 2  # a model trained on one data set, tested on the other


def test_metrics(run: Run, ctx: Context, target: DataChoice) -> dict[str, float]:
    """The run's test metrics on `target`'s test split, with the run's own evaluation key."""
    eval_step = steps.make_eval_step(run.model, run.task, run.objective)
    return evaluate_split(eval_step, run.params, ctx.splits(target).test,
                          run.config.eval.batch_size, derive_keys(run.config.seed).eval)


def model_rows(ctx: Context, model: str, choices: list[DataChoice]) -> list[dict]:
    """The 2x2 blocks of one model, one per metric: a row per training set, a column per
    test set."""
    config, metrics = MODELS[model]
    measured = {}
    for source in choices:
        run = ctx.train(config, source)  # the smaller set for about the larger's steps
        measured[source.key] = {t.key: test_metrics(run, ctx, t) for t in choices}
    return [{"model": model, "metric": metric, "trained_on": source.title,
             **{f"on_{t.key}": read(measured[source.key][t.key]) for t in choices}}
            for metric, read in metrics.items() for source in choices]


def blocks(rows: list[dict]) -> list[tuple[str, str]]:
    """(model, metric) of each 2x2 block, in the rows' order (a record's rows, of this
    version or an earlier one, say which they hold)."""
    return list(dict.fromkeys((r["model"], r["metric"]) for r in rows))


def block_name(model: str, metric: str, rows: list[dict]) -> str:
    """The model, and the metric where the rows give the model more than one."""
    if sum(m == model for m, _ in blocks(rows)) < 2:
        return model
    return f"{model} ({metric.removeprefix('test ').split(' (')[0]})"


def findings(rows: list[dict], choices: list[DataChoice]) -> list[str]:
    """For each model and test set: the model trained there against the one trained elsewhere."""
    out = []
    for model, metric in blocks(rows):
        mine = {r["trained_on"]: r for r in rows if (r["model"], r["metric"]) == (model, metric)}
        name = block_name(model, metric, rows)
        for target in choices:
            own = mine[target.title][f"on_{target.key}"]
            for source in choices:
                if source.key == target.key:
                    continue
                other = mine[source.title][f"on_{target.key}"]
                verdict = "worse" if other > own else "not worse"
                out.append(f"{name} on the {target.title} test split: trained on it "
                           f"{own:.4g}, trained on {source.title} {other:.4g} ({other / own:.2f}x,"
                           f" {verdict}).")
    return out


def cross_cases(rows: list[dict], choices: list[DataChoice]) -> list[dict]:
    """Every off-diagonal entry: model, trained on, tested on, its error, the in-domain one."""
    out = []
    for model, metric in blocks(rows):
        mine = {r["trained_on"]: r for r in rows if (r["model"], r["metric"]) == (model, metric)}
        for target in choices:
            for source in choices:
                if source.key != target.key and source.title in mine and target.title in mine:
                    out.append({"model": block_name(model, metric, rows),
                                "source": source.title, "target": target.title,
                                "error": mine[source.title][f"on_{target.key}"],
                                "own": mine[target.title][f"on_{target.key}"]})
    return out


def higher_note(cases: list[dict]) -> str:
    """How many off-diagonal errors are higher than the in-domain ones (as the findings count
    them: `other > own` is worse), naming those that are not."""
    if not cases:
        return ""
    lower = [c for c in cases if not c["error"] > c["own"]]
    if not lower:
        return (" Here every off-diagonal error is higher than the in-domain one of its column "
                f"({len(cases)} of {len(cases)}).")
    names = [f"{c['model']} trained on {c['source']}, tested on {c['target']}" for c in lower]
    return (f" Here the off-diagonal error is higher in {len(cases) - len(lower)} of "
            f"{len(cases)} cases; not for {and_list(names)}.")


def penalty_note(cases: list[dict]) -> str:
    """Each model's cross-data-set error in each direction, as a multiple of the in-domain
    one (no model is said to transfer better than the numbers show)."""
    models = list(dict.fromkeys(c["model"] for c in cases))
    parts = [f"{model} " + and_list([f"{c['error'] / c['own']:.2f}x trained on {c['source']} "
                                     f"and tested on {c['target']}"
                                     for c in cases if c["model"] == model])
             for model in models]
    if not parts:
        return ""
    return ("The cross-data-set error as a multiple of the in-domain one: " + "; ".join(parts)
            + ".")


def notes(pixels: int, rows: list[dict], choices: list[DataChoice],
          train_sizes: dict[str, int], run_steps: dict[str, list[int]],
          cap: int | None = None) -> list[str]:
    """Why the numbers come out as they do, for images of `pixels` values; what is said about
    the results is computed from `rows`, `train_sizes` ({data set: training images}) and
    `run_steps` ({data set: the steps each of its runs took}; `cap`: the scale's cap on
    epochs)."""
    cases = cross_cases(rows, choices)
    steps = steps_note(run_steps, cap) or ""
    if (fewer := fewer_images(train_sizes)) is not None:
        small, n, large, m = fewer
        steps = (f"The models trained on {small} saw {n:,} training images against {large}'s "
                 f"{m:,}. " + steps)
    return [
        "Each entry is the test error of a model trained on the row's data set, evaluated on the "
        "column's test split; the diagonal is the usual in-domain test error. The conv AE is "
        "configs/conv_ae_fashion.py (BCE training, MSE reported); the VAE is "
        f"configs/vae_fashion_2d.py (MLP {pixels}-512-2, Bernoulli likelihood), its errors the "
        "negative ELBO in nats per image with z sampled by the run's evaluation key, and the "
        "MSE per pixel of its reconstructions at z = z_mean: on grey pixels the Bernoulli "
        "reconstruction term of the negative ELBO is a cross-entropy surrogate, which at a "
        "perfect reconstruction is the pixels' own binary entropy, not 0, so it also scores "
        "how simple the images are (pixels near black or white cost fewer nats), the MSE only "
        "how well they come back.",
        "An autoencoder learns the images it was trained on: its code spends its capacity on the "
        "variations of those images, and its decoder can only produce images like them, so a "
        "digit fed to a garment model comes back garment-like, and the reverse." +
        higher_note(cases),
        *([note] if (note := penalty_note(cases)) else []),
        "Errors across rows of one column are comparable (same test images); across columns they "
        "are not, as the test images differ. " + steps,
    ]


def tested_on(record: dict) -> dict[str, str]:
    """{data set key: title} of the test splits whose columns (`on_<key>`) a table.json record
    holds, in their order: what the plot names its groups and colours by."""
    titles = {d["key"]: d["dataset"] for d in record["data"]}
    return {key: titles[key] for c in record["columns"]
            if (key := c["key"].removeprefix("on_")) != c["key"]}


def plot_record(record: dict, path: str) -> None:
    """The plot drawn again from the experiment's table.json record alone (no training)."""
    plot(record["rows"], tested_on(record), record["scale"], path)


def plot(rows: list[dict], datasets: dict[str, str], scale: str, path: str) -> None:
    """A panel per model and metric (`blocks`), a group of bars per test set and a bar per
    training set (`datasets`: {key: title}, in the table's order); with several seeds, error
    bars from the lowest to the highest seed."""
    keys = [f"on_{key}" for key in datasets]
    panels = blocks(rows)
    fig, axes = figures.panels(len(panels), "Cross-data-set test error, lower is better", scale,
                               seed_bars=figures.any_spread(rows, *keys))
    colors = dict(zip(datasets.values(), ("tab:blue", "tab:red"), strict=False))
    for ax, (model, metric) in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if (r["model"], r["metric"]) == (model, metric)]
        series = {f"trained on {r['trained_on']}": [r[k] for k in keys] for r in mine}
        spreads = {f"trained on {r['trained_on']}": [figures.spread(r, k) for k in keys]
                   for r in mine}
        figures.grouped_bars(ax, [f"tested on {title}" for title in datasets.values()], series,
                             {f"trained on {k}": v for k, v in colors.items()}, annotate=".4g",
                             spreads=spreads)
        ax.set_ylabel(metric)
        ax.set_title(block_name(model, metric, rows))
        ax.margins(y=0.15)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="best")
    figures.save(fig, path)


def run(ctx: Context) -> Result:
    choices = ctx.data()
    if len(choices) < DATASETS_NEEDED:
        raise ValueError("data_specificity needs two data sets: --datasets fashion_mnist,mnist")
    rows = ctx.over_seeds(
        lambda c: [row for model in MODELS for row in model_rows(c, model, choices)])
    pixels = math.prod(ctx.splits(choices[0]).image_shape)
    sizes = ctx.train_sizes()
    columns = [column("model", "model"), column("metric", "error"),
               column("trained_on", "trained on")]
    columns += [column(f"on_{c.key}", f"tested on {c.title}", ".4g") for c in choices]
    return Result(
        title=TITLE,
        question="Does an autoencoder trained on one data set work on another? Test errors of "
                 "the conv AE and the VAE, each trained on Fashion-MNIST and on MNIST, on both "
                 "test splits: a 2x2 table per model and error.",
        columns=columns, rows=rows, findings=findings(rows, choices),
        notes=notes(pixels, rows, choices, sizes, steps_per_dataset(ctx.used_runs),
                    ctx.scale.max_epochs),
        plot=lambda path: plot(rows, {c.key: c.title for c in choices}, ctx.scale.name, path),
        settings={"configs": "configs/conv_ae_fashion.py and configs/vae_fashion_2d.py, "
                             "with data.name set per row, and train.num_epochs raised for the "
                             "smaller training set to about the larger one's steps, up to the "
                             "scale's cap on epochs"})


if __name__ == "__main__":
    run_as_command("data_specificity")
