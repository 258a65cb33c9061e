"""Experiment `data_specificity`: autoencoders are data-specific. Train the conv AE and the VAE
on one data set, evaluate them on the test split of the other (MNIST <-> Fashion-MNIST)."""

from __future__ import annotations

import math

from jaxae.evaluation.metrics import evaluate_split
from jaxae.experiments import figures
from jaxae.experiments.common import Context, DataChoice, Result, Run, column
from jaxae.keys import derive_keys
from jaxae.training import steps

TITLE = "Autoencoders are data-specific: train on one data set, test on the other"
MODELS = {  # model -> (config, metric name, how to read it from evaluate_split)
    "conv_ae": ("conv_ae_fashion", "test MSE per pixel", lambda m: m["mse"]),
    "vae": ("vae_fashion_2d", "test negative ELBO (nats per image)", lambda m: -m["elbo"]),
}


def cross_error(run: Run, ctx: Context, target: DataChoice, read) -> float:
    """The run's test error on `target`'s test split, with the run's own evaluation key."""
    eval_step = steps.make_eval_step(run.model, run.task, run.objective)
    metrics = evaluate_split(eval_step, run.params, ctx.splits(target).test,
                             run.config.eval.batch_size, derive_keys(run.config.seed).eval)
    return read(metrics)


def equal_steps(ctx: Context, config: str, choices: list[DataChoice]) -> dict[str, dict]:
    """{data set key: overrides} that give every data set's run about as many training steps
    as the largest set's: a model trained on 4,000 MNIST digits for the config's Fashion-MNIST
    epochs would take 15x fewer steps, and its errors would measure that, not its data."""
    sizes = {c.key: len(ctx.splits(c).train.images) for c in choices}
    largest = max(sizes.values())
    epochs = ctx.config(config, choices[0]).train.num_epochs
    return {key: {} if size == largest else
            {"train.num_epochs": math.ceil(epochs * largest / size)}
            for key, size in sizes.items()}


def model_rows(ctx: Context, model: str, choices: list[DataChoice]) -> list[dict]:
    """The 2x2 block of one model: a row per training set, a column per test set."""
    config, metric, read = MODELS[model]
    overrides = equal_steps(ctx, config, choices)
    rows = []
    for source in choices:
        run = ctx.train(config, source, overrides[source.key])
        row = {"model": model, "metric": metric, "trained_on": source.title}
        for target in choices:
            row[f"on_{target.key}"] = cross_error(run, ctx, target, read)
        rows.append(row)
    return rows


def findings(rows: list[dict], choices: list[DataChoice]) -> list[str]:
    """For each model and test set: the model trained there against the one trained elsewhere."""
    out = []
    for model in MODELS:
        mine = {r["trained_on"]: r for r in rows if r["model"] == model}
        for target in choices:
            own = mine[target.title][f"on_{target.key}"]
            for source in choices:
                if source.key == target.key:
                    continue
                other = mine[source.title][f"on_{target.key}"]
                verdict = "worse" if other > own else "not worse"
                out.append(f"{model} on the {target.title} test split: trained on it "
                           f"{own:.4g}, trained on {source.title} {other:.4g} ({other / own:.2f}x,"
                           f" {verdict}).")
    return out


def notes(pixels: int) -> list[str]:
    """Why the numbers come out as they do, for images of `pixels` values."""
    return [
        "Each entry is the test error of a model trained on the row's data set, evaluated on the "
        "column's test split; the diagonal is the usual in-domain test error. The conv AE is "
        "configs/conv_ae_fashion.py (BCE training, MSE reported); the VAE is "
        f"configs/vae_fashion_2d.py (MLP {pixels}-512-2, Bernoulli likelihood), its error the "
        "negative ELBO in nats per image with z sampled by the run's evaluation key.",
        "An autoencoder learns the images it was trained on: its code spends its capacity on the "
        "variations of those images, and its decoder can only produce images like them. A digit "
        "fed to a garment model comes back garment-like, and the reverse, so the off-diagonal "
        "errors are higher. The VAE's 2-D latent is the extreme case: it has room for one data "
        "set's manifold only.",
        "The conv AE keeps a 4x4x8 spatial code made of local filters (edges, blobs) that suit "
        "both data sets, so its cross-data-set penalty can be small, notably from the richer "
        "Fashion-MNIST to the simpler MNIST; the numbers say how large it is.",
        "Errors across rows of one column are comparable (same test images); across columns they "
        "are not: MNIST images are mostly black, so their errors are smaller in absolute terms. "
        "Offline, the MNIST model saw 4,000 training digits against Fashion-MNIST's 60,000 images; "
        "each model trains for about the same number of steps on either (the smaller set for "
        "proportionally more epochs, as far as the scale's cap on epochs allows), so that the "
        "table compares data sets, not lengths of training.",
    ]


def plot(rows: list[dict], choices: list[DataChoice], scale: str, path: str) -> None:
    fig, axes = figures.panels(len(MODELS), "Cross-data-set test error, lower is better", scale)
    colors = dict(zip([c.title for c in choices], ("tab:blue", "tab:red"), strict=False))
    for ax, model in zip(axes[0], MODELS, strict=True):
        mine = [r for r in rows if r["model"] == model]
        series = {f"trained on {r['trained_on']}": [r[f"on_{c.key}"] for c in choices]
                  for r in mine}
        figures.grouped_bars(ax, [f"tested on {c.title}" for c in choices], series,
                             {f"trained on {k}": v for k, v in colors.items()}, annotate=".4g")
        ax.set_ylabel(MODELS[model][1])
        ax.set_title(model)
        ax.margins(y=0.15)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    figures.save(fig, path)


def run(ctx: Context) -> Result:
    choices = ctx.data()
    if len(choices) < 2:
        raise ValueError("data_specificity needs two data sets: --datasets fashion_mnist,mnist")
    rows = [row for model in MODELS for row in model_rows(ctx, model, choices)]
    pixels = math.prod(ctx.splits(choices[0]).image_shape)
    columns = [column("model", "model"), column("metric", "error"),
               column("trained_on", "trained on")]
    columns += [column(f"on_{c.key}", f"tested on {c.title}", ".4g") for c in choices]
    return Result(
        title=TITLE,
        question="Does an autoencoder trained on one data set work on another? Test errors of "
                 "the conv AE and the VAE, each trained on Fashion-MNIST and on MNIST, on both "
                 "test splits: a 2x2 table per model.",
        columns=columns, rows=rows, findings=findings(rows, choices), notes=notes(pixels),
        plot=lambda path: plot(rows, choices, ctx.scale.name, path),
        settings={"configs": "configs/conv_ae_fashion.py and configs/vae_fashion_2d.py, "
                             "with data.name set per row, and train.num_epochs raised for the "
                             "smaller training set to about the larger one's steps"})
