"""The benchmarks' workloads and the data they train on: the five models in the settings the
PyTorch peer uses (`WORKLOADS`, `bench_config`), Fashion-MNIST or random pixels at other
shapes (`BenchData`), the bench dtypes (float32, bfloat16, TF32) and what a timed training
loop starts from (`first_epoch`). Kept apart from the measuring (`benchmarks.bench`) and the
command line (`benchmarks.bench_args`), which both read them, as do the other modes
(quality, precision, determinism, matmuls) and `benchmarks.profile_epoch`."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from jaxae import build, registry
from jaxae import config as config_lib
from jaxae.data import batches, load_dataset
from jaxae.kernels import conv as conv_lib
from jaxae.keys import Keys, derive_keys
from jaxae.models import MODELS
from jaxae.objectives import Objective
from jaxae.tasks import Task
from jaxae.training import steps

EPOCH_IMAGES = 60_000  # an epoch in every row: Fashion-MNIST's training set
TRAIN_BATCH = 128  # the batch the quality and precision modes train at (the peer's)
FASHION_SHAPE = (28, 28, 1)
RANDOM_POOL_BYTES = 256 * 2**20  # random pixels at other sizes: at most this many bytes
# Bench dtypes: the config's compute dtype, and the precision float32 matmuls run at.
# "float32" asks for full float32 matmuls (XLA's GPU default is TF32); "tf32" (GPUs only)
# leaves them at TensorFloat-32; "bfloat16" is `jaxae.kernels.precision`.
DTYPES = ("float32", "bfloat16", "tf32")


class BenchRefused(ValueError):
    """A setting found wrong only once a workload's data is known: the whole run stops with
    one line, and nothing is written."""


def dense_ae() -> ml_collections.ConfigDict:
    """The material's dense autoencoder (d = 10, MSE): the base config."""
    return config_lib.base_config()


def dae() -> ml_collections.ConfigDict:
    """The material's DAE: dropout-corrupted input, code of 940, kept pixels rescaled as
    nn.Dropout does (as the peer)."""
    config = config_lib.base_config()
    config.model.latent_dim = 940
    config.task.name, config.task.corruption = "denoise", "dropout"
    config.task.dropout_rescale = True
    return config


def conv_ae() -> ml_collections.ConfigDict:
    """The material's convolutional autoencoder (4x4x8 code), BCE."""
    config = config_lib.base_config()
    config.model = {"name": "conv_ae", "init": "glorot", "conv": "patches"}
    config.objective.loss = "bce"
    return config


def vae() -> ml_collections.ConfigDict:
    """The MLP VAE with a 2-D latent."""
    config = config_lib.base_config()
    config.model = {"name": "vae", "latent_dim": 2, "init": "glorot"}
    return config


def conv_vae() -> ml_collections.ConfigDict:
    """The convolutional VAE with a 16-D latent."""
    config = config_lib.base_config()
    config.model = {"name": "conv_vae", "latent_dim": 16, "init": "glorot", "conv": "patches"}
    return config


@dataclasses.dataclass(frozen=True)
class Workload:
    """A benchmarked model in the setting the PyTorch peer uses for it."""

    config: Callable[[], ml_collections.ConfigDict]
    peer: str | None  # the peer's --model for the same model; None: the peer has none

    @property
    def uses_conv(self) -> bool:
        """Whether its model declares a convolution implementation (config.model.conv),
        and so a width (config.model.width)."""
        return "conv" in registry.parameters(MODELS.get(self.config().model.name))


WORKLOADS = {
    "dense_ae": Workload(dense_ae, "dense"),
    "dae": Workload(dae, "dae"),
    "conv_ae": Workload(conv_ae, "conv"),
    "vae": Workload(vae, "vae"),
    "conv_vae": Workload(conv_vae, None),
}


def config_dtype(dtype: str) -> str:
    """The config's compute dtype for a bench dtype (TF32 is float32 at another precision)."""
    return "bfloat16" if dtype == "bfloat16" else "float32"


def dtypes_here(dtypes: list[str]) -> tuple[list[str], str]:
    """(the compute dtypes this device runs, the report's line on any left out): a CPU has
    no TensorFloat-32, so "tf32" is left out there, said once on stdout and in the report."""
    if jax.devices()[0].platform != "cpu" or "tf32" not in dtypes:
        return list(dtypes), ""
    print("# tf32: no TensorFloat-32 on a CPU; left out", flush=True)
    return [d for d in dtypes if d != "tf32"], "tf32 left out: a CPU has no TensorFloat-32. "


def matmul_precision(dtype: str) -> contextlib.AbstractContextManager:
    """The scope a bench dtype's programs are traced in: full float32 matmuls for
    "float32", TensorFloat-32 for "tf32" (on a CPU both are float32)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "bfloat16":
        return contextlib.nullcontext()
    return jax.default_matmul_precision("tensorfloat32" if dtype == "tf32" else "float32")


def bench_config(workload: str, batch_size: int, conv: str = conv_lib.DEFAULT_IMPLEMENTATION,
                 compute_dtype: str = "float32", width: int = 1) -> ml_collections.ConfigDict:
    """The workload's config at this batch size, convolution implementation and width (for
    models that have convolutions) and compute dtype, validated."""
    config = WORKLOADS[workload].config()
    config.train.batch_size = batch_size
    config.train.compute_dtype = config_dtype(compute_dtype)
    if WORKLOADS[workload].uses_conv:
        config.model.conv = conv
        if width != 1:
            config.model.width = width
    elif width != 1:
        raise ValueError(f"{workload} has no convolutions to widen (--widths applies to "
                         "conv_ae and conv_vae)")
    config_lib.validate(config)
    return config


def random_arrays(image_shape: tuple[int, int, int], count: int, seed: int = 0) -> dict:
    """`count` images of uniform random uint8 pixels and labels 0-9, on the device."""
    rng = np.random.default_rng(seed)
    return jax.device_put({"image": rng.integers(0, 256, (count, *image_shape), np.uint8),
                           "label": rng.integers(0, 10, count).astype(np.int32)})


def pool_size(image_shape: tuple[int, int, int], batch_size: int) -> int:
    """Random images kept for a workload: an epoch's worth where they fit in
    RANDOM_POOL_BYTES, else as many as fit (at least two batches); batches then reuse them."""
    fit = RANDOM_POOL_BYTES // int(np.prod(image_shape))
    return min(EPOCH_IMAGES, max(2 * batch_size, fit))


class BenchData:
    """The images each workload trains on: Fashion-MNIST at 28x28x1 (unless `source` is
    "random"), random pixels at other shapes; loaded once, cached per shape."""

    def __init__(self, source: str = "fashion_mnist", tfds_dir: str | None = None):
        if source not in ("fashion_mnist", "random", "auto"):
            raise ValueError(f"data {source!r}: fashion_mnist, random or auto")
        self.source, self.tfds_dir, self._cache = source, tfds_dir, {}

    def arrays(self, image_shape: tuple[int, int, int], batch_size: int) -> tuple[dict, str]:
        """(arrays, what they are) for this shape and batch size."""
        image_shape = tuple(image_shape)
        if image_shape == FASHION_SHAPE and self.source != "random":
            if "fashion" not in self._cache:
                try:
                    data = load_dataset("fashion_mnist", tfds_dir=self.tfds_dir)
                    self._cache["fashion"] = jax.device_put(
                        {"image": data.train_images, "label": data.train_labels})
                    print(f"# Fashion-MNIST: {data.source}", flush=True)  # where it was read
                except Exception as error:  # noqa: BLE001 - "auto" falls back to random pixels
                    if self.source != "auto":
                        said = str(error).splitlines()[0] if str(error) else type(error).__name__
                        raise BenchRefused(
                            "Fashion-MNIST does not load ("
                            + said.replace("--config.data.tfds_dir", "--tfds-dir")
                            + "): give --tfds-dir, or $JAXAE_FASHION_MNIST_DIR (its IDX "
                            "files), or --data random") from error
                    self._cache["fashion"] = None
            if self._cache["fashion"] is not None:
                return self._cache["fashion"], "Fashion-MNIST"
        count = pool_size(image_shape, batch_size)
        key = (image_shape, count)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k == "fashion"}
            self._cache[key] = random_arrays(image_shape, count)
        return self._cache[key], f"random pixels ({count:,} images)"


class FirstEpoch(NamedTuple):
    """What a timed training loop needs: the objects built from the config, seed 0's fresh
    train state, keys and epoch-0 batch order."""

    train_model: nn.Module  # built with the config's compute dtype
    task: Task
    objective: Objective
    tx: optax.GradientTransformation
    state: steps.TrainState
    keys: Keys
    order: jax.Array  # epoch 0's order: indices into the training arrays
    num_batches: int  # steps in an epoch
    batch_size: int

    def train_step(self):
        """The compiled single training step (not yet lowered)."""
        return steps.make_train_step(self.train_model, self.task, self.objective)

    def train_chunk(self, max_steps: int, mesh: Mesh | None = None):
        """The compiled loop of up to `max_steps` steps that the trainer runs (with `mesh`,
        each batch split over its devices, as the trainer splits it)."""
        return steps.make_train_chunk(self.train_model, self.task, self.objective,
                                      batch_size=self.batch_size, max_steps=max_steps,
                                      mesh=mesh)


def first_epoch(config: ml_collections.ConfigDict, arrays: dict,
                epoch_images: int | None = None) -> FirstEpoch:
    """The config's model, task and objective for images like `arrays["image"]` (uint8
    [N, H, W, C]), and seed 0's fresh train state, keys and epoch-0 batch order. An epoch
    is `epoch_images` images (default: N); where that is more than N, its order draws the
    N images repeatedly."""
    keys = derive_keys(0)
    image_shape = tuple(arrays["image"].shape[1:])
    num_classes = int(np.max(jax.device_get(arrays["label"]))) + 1
    task, model, train_model, objective = build.run_objects(config, image_shape, num_classes,
                                                            train=True)
    tx = build.make_optimizer(config)
    state = steps.create_train_state(model, tx, task.input_shape(image_shape), keys.init,
                                     build.init_scheme(config), check=False)
    num_examples = len(arrays["image"])
    epoch_images = epoch_images or num_examples
    # placed on the device once, as the trainer places it, not again with every timed call
    order = jax.device_put(batches.epoch_permutation(keys.data, 0, epoch_images))
    if epoch_images != num_examples:
        order = order % num_examples
    batch_size = config.train.batch_size
    return FirstEpoch(train_model, task, objective, tx, state, keys, order,
                      batches.steps_per_epoch(epoch_images, batch_size), batch_size)
