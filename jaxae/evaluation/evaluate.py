"""Evaluation of a trained workdir: reload its config and a checkpoint, write metrics and
pictures into `<workdir>/eval/` (`eval_step_<N>/` for a chosen step, or another folder), with
evaluation fields changed at will; or of the trained model on other images (`images=`: a
folder or an .npz, all of it scored) into `<workdir>/eval_on_<name>/`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

import jaxae
from jaxae import build
from jaxae import config as config_lib
from jaxae.data import DataError
from jaxae.data.arrays import load_npz
from jaxae.data.batches import steps_per_epoch
from jaxae.data.dataset import ONE_CLASS
from jaxae.data.folder import load_folder
from jaxae.data.splits import Split, Splits, binarized, spread_sample
from jaxae.evaluation import generation, iwae
from jaxae.evaluation.metrics import (
    active_units,
    evaluate_splits,
    padded_batches,
)
from jaxae.evaluation.pictures import PictureOptions, write_pictures
from jaxae.evaluation.probe import train_probe
from jaxae.keys import IWAE_STREAM, RECOGNITION_STREAM, derive_keys
from jaxae.models.base import ModelParams, Variables
from jaxae.objectives import Objective
from jaxae.provenance import git_commit, source_sha256
from jaxae.registry import display_name
from jaxae.tasks import Task
from jaxae.training import checkpoints, memory, steps
from jaxae.training.checkpoints import checkpoint_dir
from jaxae.training.files import (
    WriteError,
    move_files,
    remove_staging_folder,
    staging_folder,
    write_error,
    write_json,
)
from jaxae.training.workdir import (
    code_changes,
    code_warnings,
    in_use,
    load_run_config,
    mismatch_with_code,
    probe_folder,
    recorded_environment,
)

RECOGNITION_PROBE_BYTES = 2**30  # a streamed split's pixels the probe reads (float64), at most


def class_sample_recognition(model: nn.Module, params: ModelParams, data: Splits, key: jax.Array,
                             per_class: int = 100,
                             max_bytes: int = RECOGNITION_PROBE_BYTES) -> dict[str, float]:
    """How often a pixel classifier, trained on the real training images, sees the requested
    class in a conditional model's samples; with its accuracy on the real test images. The
    classifier trains on every training image held in memory; of a streamed split (larger
    than memory, perhaps), on as many as fit `max_bytes`, spread over it
    (`splits.spread_sample`); counted in `cvae_probe_train_images`."""
    probe_key, sample_key = jax.random.split(key)
    pixels = int(np.prod(data.image_shape))

    def flat(images) -> np.ndarray:  # [..., H, W, C] -> [N, H*W*C]; a streamed split is read
        return np.asarray(images).reshape(-1, pixels)

    train = spread_sample(data.train, max_bytes, bytes_per_pixel=8)
    count = len(train)
    probe = train_probe(flat(train.images) / 255.0, train.labels, probe_key,
                        hidden=(512, 256), epochs=10, num_classes=data.num_classes)
    samples = generation.class_samples(model, params, sample_key, per_class, data.num_classes)
    requested = np.repeat(np.arange(data.num_classes), per_class)
    return {"cvae_samples_recognised": probe.accuracy(flat(samples), requested),
            "cvae_probe_test_accuracy": probe.accuracy(flat(data.test.images) / 255.0,
                                                       data.test.labels),
            "cvae_samples_per_class": per_class, "cvae_probe_train_images": count}


# The fields evaluate.py may change (`--config.eval.iwae_samples=...`): what is measured, and
# where the run's data and its files of code live (a file only moved: `load_run_config`).
# The rest is the trained run's own (its config.json).
RELOCATED = tuple(code.path for code in config_lib.CODE_FIELDS)  # to load_run_config
OVERRIDABLE = ("eval", "data.tfds_dir", "data.data_dir", "data.path", *RELOCATED)


def overridable_text() -> str:
    """The fields of OVERRIDABLE as error messages list them."""
    measured = ", ".join(f"config.{f}" for f in OVERRIDABLE if f not in RELOCATED)
    return (f"{measured}, and where a file of code moved, "
            + ", ".join(f"config.{f}" for f in RELOCATED))


def overridable_config() -> ml_collections.ConfigDict:
    """The fields of OVERRIDABLE, with the base config's defaults, as one config."""
    base = config_lib.base_config()
    return ml_collections.ConfigDict({
        "eval": base.eval,
        "data": {"tfds_dir": base.data.get_ref("tfds_dir"),
                 "data_dir": base.data.get_ref("data_dir"),
                 "path": base.data.get_ref("path"),
                 "name": ml_collections.config_dict.placeholder(str)},
        "model": {"name": ml_collections.config_dict.placeholder(str)},
        "task": {"name": ml_collections.config_dict.placeholder(str)},
        "objective": {"loss": ml_collections.config_dict.placeholder(str),
                      "likelihood": ml_collections.config_dict.placeholder(str)}})


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, object]) -> None:
    """Sets {'eval.iwae_samples': (1, 50), ...} on a run's config; a field outside
    OVERRIDABLE, a value that cannot work, or a moved file's name (RELOCATED, which
    `load_run_config` takes) is a ConfigError."""
    for path, value in overrides.items():
        if path in RELOCATED:  # checked against the run's own file by load_run_config
            raise config_lib.ConfigError(
                f"config.{path} names where the run's file moved: give it to "
                "evaluate_workdir's overrides (workdir.load_run_config checks it)")
        if not any(path == f or path.startswith(f"{f}.") for f in OVERRIDABLE):
            raise config_lib.ConfigError(
                f"evaluation cannot change config.{path}: it takes only "
                f"{overridable_text()}; the rest is the trained "
                "run's (its config.json), so train another run to change it")
        section, _, field = path.rpartition(".")
        node = config_lib.get(config, section)
        if field not in node:
            raise config_lib.ConfigError(f"unknown config field config.{path}")
        with node.unlocked():
            node[field] = value
    config_lib.expand_home(config)
    config_lib.validate(config)


def _writable_out_dir(out_dir: str) -> None:
    """Creates `out_dir` and checks entries can be made in it, before minutes of work."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe_folder(out_dir)
    except OSError as e:
        raise config_lib.ConfigError(
            f"{out_dir} cannot be written ({e.strerror}): pass --eval_dir=FOLDER, a folder you "
            "can write to, to write the evaluation there") from None


def _check_out_dir_is_of(out_dir: str, images: str) -> None:
    """A ConfigError where `out_dir` holds the evaluation of other images than `images` (two
    folders of one name, a/test and b/test), which this one would replace."""
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            recorded = json.load(f).get("images")
    except (OSError, ValueError, AttributeError):
        return
    if recorded is not None and os.path.realpath(recorded) != os.path.realpath(images):
        # (the same folder through a link is the same images)
        raise config_lib.ConfigError(
            f"{out_dir} holds the evaluation of the images at {recorded}, not {images}: give "
            "--eval_dir=FOLDER for this one")


def _check_out_dir_outside_checkpoints(workdir: str, out_dir: str) -> None:
    """A ConfigError for an evaluation folder in the run's checkpoints folder, where Orbax
    would take it for a checkpoint's, or delete it with an old step."""
    folder = os.path.realpath(checkpoint_dir(workdir))
    out = os.path.realpath(out_dir)
    if out == folder or out.startswith(os.path.join(folder, "")):
        raise config_lib.ConfigError(
            f"--eval_dir={out_dir} is in the run's checkpoints folder ({folder}), whose "
            "old steps training deletes with everything in them: give a folder outside it "
            f"(default: {eval_dir(workdir)})")


def eval_dir(workdir: str, step: int | None = None, images: str | None = None) -> str:
    """Where an evaluation writes by default: `<workdir>/eval` for the newest checkpoint,
    `<workdir>/eval_step_<step>` for a chosen one, so that it never overwrites the other;
    `eval_on_<name>` (and `_step_<step>`) for one on other `images` (named by their folder
    or file)."""
    folder = "eval"
    if images is not None:
        folder += "_on_" + os.path.basename(os.path.abspath(images))
    return os.path.join(workdir, folder if step is None else f"{folder}_step_{step}")


def other_images_kind(path: str) -> str:
    """The data set `images=` names: "folder" or "npz"; else a FileNotFoundError naming the
    fix (before the run is read)."""
    if os.path.isdir(path):
        return "folder"
    if os.path.isfile(path) and path.endswith(".npz"):
        return "npz"
    what = "is neither a folder nor an .npz file" if os.path.exists(path) else "does not exist"
    raise FileNotFoundError(f"--images={path!r} {what}: give a folder of images (as "
                            "data.name=folder reads them) or an .npz of uint8 train_images and "
                            "test_images (as data.name=npz reads it)")


def other_images(path: str, run: TrainedRun) -> Splits:
    """Every image of the folder or .npz at `path` (both of its splits) as the test split the
    run's model is scored on, brought to the run's images' size and channels (and binarised
    as its test split is); the run's own training split beside them, on which a picture's
    pixel PCA is fitted. A conditional model takes images of any of its classes, labelled by
    their class folders' names (a "/" in a class's name is "_" in its folder's)."""
    height, width, channels = run.data.image_shape
    options = {"image_size": height if height == width else None, "channels": channels}
    if other_images_kind(path) == "folder":
        dataset = load_folder(path, tfds_dir=run.config.data.get("tfds_dir"), **options)
    else:
        dataset = load_npz(path, **options)
    images = np.concatenate([np.asarray(dataset.train_images), np.asarray(dataset.test_images)])
    labels = np.concatenate([np.asarray(dataset.train_labels), np.asarray(dataset.test_labels)])
    if images.shape[1:] != run.data.image_shape:
        raise DataError(f"the images at {path} are {'x'.join(map(str, images.shape[1:]))}, "
                        f"and the run's {'x'.join(map(str, run.data.image_shape))}: give "
                        "images of the run's size")
    class_names = tuple(dataset.class_names)
    if run.model.conditional:  # labelled by their classes' names, as the run's classes
        folders = [name.replace("/", "_") for name in run.data.class_names]  # T-shirt/top
        index = {**{name: i for i, name in enumerate(folders)},
                 **{name: i for i, name in enumerate(run.data.class_names)}}
        its = ", ".join(folders)
        if class_names == (ONE_CLASS,):
            raise DataError(f"the images at {path} are in no class folders, and the run's "
                            f"conditional model takes a class: put them in folders named by "
                            f"its classes ({its})")
        if unknown := [name for name in class_names if name not in index]:
            raise DataError(f"the images at {path} hold classes the run's conditional model "
                            f"does not take ({', '.join(unknown)}; it takes {its}): give "
                            "images of its classes, in class folders of those names")
        labels = np.asarray([index[name] for name in class_names], np.int32)[labels]
        class_names = tuple(run.data.class_names)
    test = Split(images, labels)
    if run.config.data.binarize == "static":  # as make_splits draws the test split's
        test = binarized(test, derive_keys(run.config.seed).data, "test")
    return Splits(run.data.train, None, test, class_names, dataset.source, dataset.title,
                  dataset.fingerprint, dataset.content_sha256)


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A trained run, reloaded: its config (config.json, with evaluation's overrides), the
    objects built from it, the parameters (and the model's state, where it keeps one) of
    one checkpoint and the images it trained on."""

    config: ml_collections.ConfigDict
    model: nn.Module
    task: Task
    objective: Objective
    params: dict
    step: int
    data: Splits
    model_state: dict = dataclasses.field(default_factory=dict)

    @property
    def variables(self) -> Variables:
        """The parameters with the model's state: what evaluation takes."""
        return Variables(self.params, self.model_state)


def load_trained(workdir: str, step: int | None = None,
                 overrides: dict[str, object] | None = None) -> TrainedRun:
    """Reloads the train.py run in `workdir` as evaluate.py does: its config.json, its images
    (checked to be those it trained on), its model, task and objective, and the parameters
    of its newest intact checkpoint (or of `step`; the checkpoint's optimiser state is read
    as the run's config names it, any optim.name). `overrides` change evaluation fields
    (OVERRIDABLE), and name a model or task file that moved.

    Safe while the run trains in the workdir: the steps are listed when the checkpoint is
    picked, and a step deleted while it is read is not damage (the next newest is read).
    """
    config, manager = _run_config_and_checkpoints(workdir, step, overrides)
    try:
        return _restore_run(config, workdir, manager, step)
    finally:
        manager.close()


def evaluate_workdir(workdir: str, step: int | None = None,
                     overrides: dict[str, object] | None = None, out_dir: str | None = None,
                     images: str | None = None) -> dict:
    """Reloads a run's checkpoint (newest intact, or `step`: `load_trained`) and writes
    `metrics.json` and the pictures that apply to its model into `out_dir` (default
    `eval_dir(workdir, step, images)`); returns the metrics. `overrides` change evaluation
    fields (OVERRIDABLE) of the run's config. `images`: score the model on every image of
    this folder or .npz (`other_images`) instead of the run's test split."""
    if images is not None:
        other_images_kind(images)  # a wrong path, before the run is read
    out_dir = out_dir or eval_dir(workdir, step, images)
    if images is not None:
        _check_out_dir_is_of(out_dir, images)
    _check_out_dir_outside_checkpoints(workdir, out_dir)
    config, manager = _run_config_and_checkpoints(workdir, step, overrides)
    created = not os.path.exists(out_dir)
    try:
        if step is not None:  # a step the run lacks is refused before its folder is made
            _check_step(workdir, manager, config, step)
        _writable_out_dir(out_dir)
        run = _restore_run(config, workdir, manager, step)
        data = run.data if images is None else other_images(images, run)
        planned = steps_per_epoch(len(run.data.train), run.config.train.batch_size) \
            * run.config.train.num_epochs
        if note := _other_code_note(workdir):
            print(note, flush=True)
        print(f"evaluating the checkpoint at step {run.step} of {workdir}"
              + (f" on the {len(data.test):,} images at {images}" if images else "")
              + (f" (its training is not finished: step {run.step:,} of {planned:,})"
                 if run.step < planned else ""), flush=True)
        return evaluate_state(run.config, run.model, run.task, run.objective, run.variables,
                              data, run.step, out_dir, images=images)
    except BaseException:
        if created:  # a refused evaluation (a damaged step, say) leaves no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)  # only if empty
        raise
    finally:
        manager.close()


def _other_code_note(workdir: str) -> str | None:
    """A note where the run was trained by another jaxae source than the one evaluating it
    (environment.json's source hash): a figure whose computation changed between them
    differs from one its own code gave."""
    recorded = recorded_environment(workdir)
    if recorded.get("jaxae_sha256") in (None, source_sha256()):
        return None

    def short(commit: str) -> str:  # its first 12 digits, and whether it was edited
        return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")

    trained = short(recorded.get("git_commit") or "") or f"jaxae {recorded.get('jaxae', '?')}"
    now = short(git_commit()) or f"jaxae {jaxae.__version__}"
    return (f"note: the run was trained by another jaxae source ({trained}; this is {now}): "
            "a figure whose computation changed between them differs from one its own code "
            "gave (metrics.json's evaluated_by names the code that computed it)")


def _run_config_and_checkpoints(workdir: str, step: int | None,
                                overrides: dict[str, object] | None
                                ) -> tuple[ml_collections.ConfigDict, ocp.CheckpointManager]:
    """The run's config (with `overrides`) and a read-only manager of its checkpoints, after
    the checks that need no data."""
    overrides = dict(overrides or {})
    moved_names = {path: overrides.pop(path, None) for path in RELOCATED}
    config = load_run_config(workdir, moved_names)  # a None name: the recorded file's
    apply_overrides(config, overrides)
    folder = checkpoints.checkpoint_dir(workdir)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is a file, not the folder of the run's checkpoints: "
                                "move it away and put the run's checkpoints folder there")
    if step is not None and step < 1:
        raise FileNotFoundError(f"--step={step} names no checkpoint: give a step of 1 or more "
                                "(the run's steps are its checkpoints/ folder's names)")
    return config, checkpoints.make_manager(folder, read_only=True)


def _check_step(workdir: str, manager, config, step: int | None) -> None:
    """FileNotFoundError when the workdir holds no checkpoint, or none at `step`."""
    available = manager.all_steps()
    if not available:
        raise FileNotFoundError(f"{workdir!r} holds no checkpoint: its training run saved none "
                                "yet; rerun train.py (jaxae-train) with this --workdir to "
                                "finish it")
    if step is not None and step not in available:
        kept = (f" (a run keeps its newest train.keep_checkpoints="
                f"{config.train.keep_checkpoints})" if step < min(available) else "")
        raise FileNotFoundError(f"{workdir!r} has no checkpoint at step {step}: it has steps "
                                f"{', '.join(map(str, available))}{kept}")


def _restore_run(config, workdir: str, manager, step: int | None) -> TrainedRun:
    _check_step(workdir, manager, config, step)
    keys = derive_keys(config.seed)
    config_lib.check_data_paths(config)
    data = build.load_run_data(config, keys.data, workdir, evaluation=True)  # its own images
    task, model, _, objective = build.run_objects(config, data.image_shape, data.num_classes)
    state = jax.eval_shape(lambda: steps.create_train_state(  # shapes only: nothing computed
        model, build.make_optimizer(config), task.input_shape(data.image_shape), keys.init,
        build.init_scheme(config), check=False))  # checked by check_model above
    count, _ = memory.state_size(state)
    memory.check_fits(memory.tree_bytes(state), f"the {display_name(config.model.name)} model has "
                      f"{count:,} parameters", "evaluate on a machine with more memory")
    # a step that fails to read while a run trains there may be one it is deleting
    settle_s = checkpoints.VANISH_SETTLE_S if in_use(workdir) else 0.0
    try:
        if step is None:  # the newest checkpoint that restores; damaged ones named, skipped
            state = checkpoints.restore_newest_intact(manager, state, settle_s=settle_s)
        else:
            state = checkpoints.restore_step(manager, state, step, settle_s)
    except checkpoints.CheckpointMismatch as error:
        raise mismatch_with_code(error, workdir, config) from None
    for warning in code_warnings(code_changes(workdir, config), config):
        print(warning, file=sys.stderr, flush=True)
    return TrainedRun(config, model, task, objective, state.params, int(state.step), data,
                      state.model_state)


def _pictures_of(out_dir: str) -> list[str]:
    """The pictures the evaluation in `out_dir` wrote (its metrics.json's list; none where it
    has no readable one): those a new evaluation does not draw go as it moves in."""
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            pictures = json.load(f).get("pictures")
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in pictures if isinstance(name, str)] \
        if isinstance(pictures, dict) else []


def evaluate_state(config: ml_collections.ConfigDict, model: nn.Module, task: Task,
                   objective: Objective, params: ModelParams, data: Splits, step: int,
                   out_dir: str, images: str | None = None) -> dict:
    """A run's evaluation (evaluate.py's, as its config sets it): test metrics, the IWAE
    bounds of a variational model, the class recognition of a conditional variational one,
    and the pictures, written into `out_dir`. In a loop of one's own, `evaluate_split`,
    `iwae.iwae_bounds` and `write_pictures` are its parts.

    `counts` says over how many images each figure is: the test metrics and a variational
    model's `test_active_units` (the units of its code it uses, `metrics.active_units`) over
    the whole test split (`test_images`), the IWAE bounds over its first `iwae_images`. A
    variational model's `likelihood` (with its `likelihood_options`) and `binarize` say what
    its nats are of. `images`: the folder or .npz `data` is of (`other_images`), recorded
    with its kind as the data set, and its source as prepared (sizes, channels converted).
    """
    if model.variational and getattr(objective, "likelihood", None) is None:
        raise ValueError(f"evaluate_state scores a variational model's ELBO and IWAE bounds "
                         f"under its objective's likelihood, and {type(objective).__name__} "
                         "has none: pass objectives.NegativeELBO(likelihood), or score it "
                         "with evaluate_split alone")
    keys = derive_keys(config.seed)
    eval_config = config.eval
    means = None  # a variational model's test codes, for its active units and its pictures
    # the test split's figures, and the validation split's (data.val_size) as training
    # scores them: prefixed test_ and val_
    figures = evaluate_splits(steps.make_eval_step(model, task, objective), params, data,
                              eval_config.batch_size, keys.eval)
    sizes = {"test": len(data.test), **({"val": len(data.val)} if data.val is not None else {})}
    result = {"step": step, "model": config.model.name,
              **({"dataset": config.data.name} if images is None else
                 {"dataset": other_images_kind(images), "images": os.path.abspath(images),
                  "images_source": data.source}),  # sizes and channels converted: said
              **{f"{split}_images": size for split, size in sizes.items()}, **figures}
    counts = {name: sizes[name.split("_", 1)[0]] for name in figures}
    if "test_baseline_psnr" in figures:  # which classical method it scores
        result["baseline"] = task.baseline_name  # (named so in metrics.jsonl too)
    if "test_input_psnr" in figures and task.input_method:  # the input drawn as an image
        result["input_method"] = task.input_method  # is one (super-resolution's upsampling)
    if not model.variational:  # what test_loss is: a loss per pixel
        result["loss"] = config.objective.loss
    else:  # test_loss: -ELBO with the KL weighted by beta; the ELBO and bounds are nats per
        result |= {"loss": "negative_elbo", "beta": config.objective.beta}  # image under
        result["likelihood"] = config.objective.likelihood  # this p(x | z)
        likelihood = objective.likelihood
        if options := dataclasses.asdict(likelihood) if dataclasses.is_dataclass(likelihood) \
                else {}:
            result["likelihood_options"] = options  # a Gaussian's gaussian_scale
        result["binarize"] = config.data.binarize
        subset = Split(data.test.images[:eval_config.iwae_images],
                       data.test.labels[:eval_config.iwae_images])
        batches = [b for _, b in padded_batches(subset, min(100, len(subset)))]
        bounds = iwae.iwae_bounds(model, task, objective.likelihood, params, batches,
                                  jax.random.fold_in(keys.eval, IWAE_STREAM),
                                  eval_config.iwae_samples, eval_config.iwae_chunk)
        result["iwae_images"] = len(subset)
        result |= {f"test_iwae_k{k}": bound for k, bound in bounds.items()}
        counts |= {f"test_iwae_k{k}": len(subset) for k in bounds}
        means = generation.encode(model, params, data.test.images, data.test.labels,
                                  eval_config.batch_size, task, keys.eval)  # z_mean [N, D]
        if len(data.test) >= 2:  # a variance over the test images needs two of them
            result["test_active_units"] = active_units(means)  # of latent_shape's units
            counts["test_active_units"] = len(data.test)
    if model.variational and model.conditional:  # its probe's training takes a while
        print("training a pixel classifier on the training images, to recognise the classes "
              "of the model's samples (cvae_samples_recognised)", flush=True)
        recognition = class_sample_recognition(model, params, data,
                                               jax.random.fold_in(keys.sample,
                                                                  RECOGNITION_STREAM))
        result |= recognition
        counts |= {"cvae_samples_recognised": recognition["cvae_samples_per_class"]
                   * data.num_classes, "cvae_probe_test_accuracy": len(data.test)}
    result["counts"] = counts  # images (or samples) each figure above is computed over
    # the code that computed them (a figure's computation may change between versions)
    result["evaluated_by"] = {"jaxae": jaxae.__version__, "git_commit": git_commit(),
                              "jaxae_sha256": source_sha256()}
    # the settings its stochastic figures' draws depend on (config.py's eval section)
    result["draws"] = {"eval_batch_size": eval_config.batch_size,
                       "iwae_chunk": eval_config.iwae_chunk, "seed": config.seed}
    title = f"{display_name(config.model.name)} on {data.title}, step {step}"
    if eval_config.num_images > len(data.test):
        print(f"note: eval.num_images={eval_config.num_images} is more than the test split's "
              f"{len(data.test)} images: the pictures of test images show those "
              f"{len(data.test)}", flush=True)
    # written aside, then moved into place together: an evaluation stopped part-way leaves
    # the previous one's files whole, never a picture cut short or two steps' files mixed
    try:
        staging = staging_folder(out_dir)
    except OSError as e:
        raise write_error(out_dir, e) from None
    try:
        result["pictures"] = write_pictures(
            model, task, params, data, keys, title, staging,
            PictureOptions(eval_config.num_images, eval_config.manifold_size,
                           eval_config.batch_size), test_codes=means)
        write_json(os.path.join(staging, "metrics.json"), result)
        move_files(staging, out_dir, last="metrics.json",
                   stale=lambda: _pictures_of(out_dir))
    except WriteError as e:  # write_json's own line, named in its final place
        raise WriteError(str(e).replace(staging, out_dir)) from None
    except OSError as e:  # a picture's, named in its final place
        raise write_error(str(e.filename or out_dir).replace(staging, out_dir), e) from None
    finally:
        remove_staging_folder(staging)
    return result
