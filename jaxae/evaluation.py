"""Evaluation of a trained run: metrics over whole splits, and pictures of what it does."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxae import baselines, checkpoints, generation, iwae, pca, pipeline, plots, steps
from jaxae.models import model_from_config
from jaxae.objectives import is_variational
from jaxae.probe import train_probe
from jaxae.splits import Split, Splits, load_splits
from jaxae.workdir import load_run_config


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([array, np.zeros((size - len(array), *array.shape[1:]), array.dtype)])


def padded_batches(split: Split, batch_size: int):
    """Yields (index, {"image", "label", "mask"}) batches of one shape; the last is padded."""
    for index, start in enumerate(range(0, len(split), batch_size)):
        images = split.images[start:start + batch_size]
        mask = np.zeros(batch_size, np.float32)
        mask[:len(images)] = 1.0
        yield index, {"image": _pad(images, batch_size),
                      "label": _pad(split.labels[start:start + batch_size], batch_size),
                      "mask": mask}


def evaluate_split(eval_step: Callable, params: dict, split: Split, batch_size: int,
                   key: jax.Array) -> dict[str, float]:
    """Means over every image of the split; batch i's randomness uses fold_in(key, i)."""
    sums = None
    for index, batch in padded_batches(split, min(batch_size, len(split))):
        out = eval_step(params, batch, jax.random.fold_in(key, index))
        sums = out if sums is None else jax.tree.map(lambda a, b: a + b, sums, out)
    sums = jax.device_get(sums)
    count = float(sums.pop("count"))
    return {name: float(total) / count for name, total in sums.items()}


DATASET_TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
PRIOR_SAMPLE_ROWS = 4
PERTURBED_SAMPLE_ROWS = 3


def _squeeze(images_BxHxWx1: jax.Array) -> np.ndarray:
    return np.asarray(images_BxHxWx1)[..., 0]


def picture_rows(config: ml_collections.ConfigDict, model, params: dict, split: Split,
                 key: jax.Array) -> list[tuple[str, np.ndarray]]:
    """Rows of the reconstruction picture: [input, classical baseline,] output, original."""
    images, labels = split.images[:config.num_images], split.labels[:config.num_images]
    example_key, _ = jax.random.split(jax.random.fold_in(key, 0))  # as batch 0 of evaluation
    inputs, targets = pipeline.make_example(config, images, example_key)
    args = (inputs, None, labels) if is_variational(config) else (inputs,)
    logits = model.apply({"params": params}, *args)
    logits = logits[0] if is_variational(config) else logits
    rows = []
    if config.model == "superres" or config.corruption != "none":
        side = 28 // config.superres_factor
        what = f"{side}x{side}" if config.model == "superres" else f"({config.corruption})"
        rows += [(f"input\n{what}", _squeeze(baselines.input_as_image(config, inputs))),
                 (baselines.baseline_name(config),
                  _squeeze(baselines.classical_baseline(config, inputs)))]
    return rows + [("output", _squeeze(jax.nn.sigmoid(logits))), ("original", _squeeze(targets))]


def _sample_rows(config, model, params, data: Splits, key: jax.Array
                 ) -> list[tuple[str, np.ndarray]] | None:
    """Rows of the generation picture, or None for models that generate nothing."""
    n = config.num_images
    if config.model == "cvae":
        grid = generation.class_samples(config, model, params, key, n, len(data.class_names))
        return list(zip(data.class_names, grid, strict=True))
    if is_variational(config):
        grid = generation.prior_samples(config, model, params, key, PRIOR_SAMPLE_ROWS * n)
        return [("z ~ N(0, I)", row) for row in grid.reshape(PRIOR_SAMPLE_ROWS, n, 28, 28)]
    if config.model == "superres":
        return None
    images = data.test.images[:n]
    rows = [("original", images / 255.0)]
    for i in range(PERTURBED_SAMPLE_ROWS):
        perturbed = generation.perturbed_code_samples(config, model, params, images,
                                                      jax.random.fold_in(key, i))
        rows.append((f"code x (1+N(0,1))\ndraw {i + 1}", perturbed))
    return rows


def class_sample_recognition(config, model, params: dict, data: Splits, key: jax.Array,
                             per_class: int = 100) -> dict[str, float]:
    """How often a pixel classifier, trained on the real training images, sees the requested
    class in CVAE samples; with its accuracy on the real test images for reference."""
    probe_key, sample_key = jax.random.split(key)
    flat = lambda images: images.reshape(-1, 28 * 28)  # noqa: E731
    probe = train_probe(flat(data.train.images) / 255.0, data.train.labels, probe_key,
                        hidden=(512, 256), epochs=10)
    num_classes = len(data.class_names)
    samples = generation.class_samples(config, model, params, sample_key, per_class, num_classes)
    requested = np.repeat(np.arange(num_classes), per_class)
    return {"cvae_samples_recognised": probe.accuracy(flat(samples), requested),
            "cvae_probe_test_accuracy": probe.accuracy(flat(data.test.images) / 255.0,
                                                       data.test.labels),
            "cvae_samples_per_class": per_class}


def write_pictures(config, model, params: dict, data: Splits, keys: pipeline.Keys, step: int,
                   out_dir: str) -> list[str]:
    """Writes every picture that applies to the model; returns the file names."""
    name = f"{config.model} on {DATASET_TITLES[config.dataset]}, step {step}"
    written = []

    def save(file: str) -> str:
        written.append(file)
        return os.path.join(out_dir, file)

    plots.image_rows(picture_rows(config, model, params, data.test, keys.eval),
                     f"{name}: test images", save("reconstructions.png"))
    samples = _sample_rows(config, model, params, data, keys.sample)
    if samples:
        what = {"cvae": "samples per requested class", "vae": "samples from the prior",
                "conv_vae": "samples from the prior"}.get(config.model, "perturbed codes")
        plots.image_rows(samples, f"{name}: {what}", save("samples.png"))
    if config.model == "superres":
        return written
    codes = generation.encode(config, model, params, data.test.images, data.test.labels)
    if codes.shape[1] == 2:
        points, axes = codes, ("z[0]", "z[1]") if is_variational(config) else ("code[0]",
                                                                                 "code[1]")
        if config.model != "cvae":
            coords = generation.manifold_coordinates(config, config.manifold_size, codes)
            grid = generation.manifold(config, model, params, coords)
            xs, ys = (coords, coords) if coords.ndim == 1 else (coords[0], coords[1])
            plots.manifold(grid, xs, ys, f"{name}: decoded latent grid", save("manifold.png"),
                           axes)
    else:
        points = np.asarray(pca.project(pca.fit(codes, 2), codes))
        axes = ("principal component 1 of the codes", "principal component 2 of the codes")
    what = "z_mean" if is_variational(config) else "codes"
    plots.latent_scatter(points, data.test.labels, data.class_names,
                         f"{name}: test {what} ({codes.shape[1]}-D)", save("latent_scatter.png"),
                         axes)
    return written


def evaluate_workdir(workdir: str, step: int | None = None) -> dict:
    """Reloads a run's checkpoint (newest, or `step`) and writes `eval/metrics.json` and the
    pictures that apply to its model into `<workdir>/eval`; returns the metrics."""
    config = load_run_config(workdir)
    manager = checkpoints.make_manager(workdir, read_only=True)
    available = manager.all_steps()
    if not available:
        raise FileNotFoundError(f"{workdir!r} holds no checkpoint: its training run saved none "
                                "yet; rerun python train.py with this --workdir to finish it")
    if step is not None and step not in available:
        raise FileNotFoundError(f"{workdir!r} has no checkpoint at step {step}: it has steps "
                                f"{', '.join(map(str, available))}")
    frozen = ml_collections.FrozenConfigDict(config)
    keys = pipeline.derive_keys(config.seed)
    model = model_from_config(config)
    state = steps.create_train_state(frozen, model, keys.init)
    if step is None:  # the newest checkpoint that restores; damaged ones are named and skipped
        state = checkpoints.restore_newest_intact(manager, state)
    else:
        state = checkpoints.restore(manager, state, step)
    step = int(state.step)
    print(f"evaluating the checkpoint at step {step} of {workdir}", flush=True)
    data = load_splits(config, keys.data)

    metrics = evaluate_split(steps.make_eval_step(frozen, model), state.params, data.test,
                             config.eval_batch_size, keys.eval)
    result = {"step": step, "model": config.model, "dataset": config.dataset,
              "test_images": len(data.test),
              **{f"test_{name}": value for name, value in metrics.items()}}
    if is_variational(config):
        subset = Split(data.test.images[:config.iwae_images], data.test.labels[:config.iwae_images])
        batches = [b for _, b in padded_batches(subset, min(100, len(subset)))]
        bounds = iwae.iwae_bounds(frozen, model, state.params, batches,
                                  jax.random.fold_in(keys.eval, 1))
        result["iwae_images"] = len(subset)
        result |= {f"test_iwae_k{k}": bound for k, bound in bounds.items()}
    if config.model == "cvae":
        result |= class_sample_recognition(frozen, model, state.params, data,
                                           jax.random.fold_in(keys.sample, 1))
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    result["pictures"] = write_pictures(frozen, model, state.params, data, keys, step, out_dir)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
