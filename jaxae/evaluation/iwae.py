"""The importance-weighted bound on log p(x) (Burda et al., 2016), in bounded memory.

log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)], z_i ~ q(z | x). k = 1 is the ELBO;
the bound tightens as k grows. Samples are drawn `chunk` at a time and decoded in turn inside
a `lax.map`, so memory is that of `chunk` samples' decodes and k x B log-weights: a larger
chunk takes more memory, not less time (`eval.iwae_chunk` also decides the draws).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxae import losses
from jaxae.models import declarations
from jaxae.models.base import ModelParams, sample_with_noise, variables_of
from jaxae.objectives import Likelihood
from jaxae.progress import LogLines, duration
from jaxae.tasks import Task
from jaxae.training import steps


def make_iwae_step(model: nn.Module, task: Task, likelihood: Likelihood, num_samples: int,
                   chunk: int) -> Callable[[dict, dict, jax.Array], jax.Array]:
    """Compiles f(params, batch, key) -> the sum over unmasked images of the k-sample bound
    of a variational model; `batch` as `jaxae.training.steps.make_eval_step` takes it (its
    "mask" optional: every image counts where it has none)."""
    chunk = min(chunk, num_samples)
    num_chunks = math.ceil(num_samples / chunk)

    @jax.jit
    def iwae_step(params: ModelParams, batch: dict, key: jax.Array) -> jax.Array:
        inputs, targets, sample_key = steps.eval_example(task, batch, key)
        labels, variables = batch.get("label"), variables_of(params)
        flat = losses.flat_images  # a likelihood takes [B, pixels], as in training
        flat_targets = flat(targets)
        with declarations.matching_params(model):
            mean, log_sigma = model.apply(variables, inputs, labels=labels, method="encode")

        def log_weights(args):  # [chunk, B]: log p(x, z) - log q(z | x) for `chunk` samples
            index, chunk_key = args
            keys = jax.random.split(chunk_key, chunk)
            z, eps = jax.vmap(lambda k: sample_with_noise(k, mean, log_sigma))(keys)  # [c, B, D]
            decode = lambda z_BxD: model.apply(variables, z_BxD, labels=labels,  # noqa: E731
                                               method="decode")
            with declarations.matching_params(model):
                logits = jax.lax.map(decode, z)
            log_px = jax.vmap(lambda lg: likelihood.log_prob(flat(lg), flat_targets))(logits)
            zeros = jnp.zeros_like(mean)  # log q from eps: exact at a collapsed sigma
            log_q = losses.log_normal(eps, zeros, zeros) - jnp.sum(log_sigma, axis=-1)
            log_w = log_px + losses.log_normal(z, zeros, zeros) - log_q
            sample_index = index * chunk + jnp.arange(chunk)[:, None]
            return jnp.where(sample_index < num_samples, log_w, -jnp.inf)

        chunk_keys = jax.random.split(sample_key, num_chunks)
        log_w = jax.lax.map(log_weights, (jnp.arange(num_chunks), chunk_keys))
        bound = jax.nn.logsumexp(log_w.reshape(-1, log_w.shape[-1]), axis=0)
        bound = bound - jnp.log(num_samples)
        return steps.masked_sum(bound, batch)

    return iwae_step


def _described(batches: object) -> str:
    """What was given for the batches, in words: "a dict", "an array", "a list of arrays"."""
    if hasattr(batches, "shape"):
        return "an array"
    what = f"a {type(batches).__name__}"
    if isinstance(batches, Sequence) and batches:
        return f"{what} of {type(batches[0]).__name__}"
    return what


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def iwae_bounds(model: nn.Module, task: Task, likelihood: Likelihood, params: ModelParams,
                batches: list[dict], key: jax.Array, sample_counts: Sequence[int],
                chunk: int = 50, progress: bool | None = None) -> dict[int, float]:
    """{k: mean bound in nats per image} for each k of `sample_counts`.

    progress: a progress bar over the batches (None: on a terminal, and off one a line on
    stderr now and then, `jaxae.progress`); the bounds of large k take minutes on a CPU.
    Neither changes a bit of the result.
    """
    if not model.variational:
        raise ValueError(f"IWAE bounds weigh samples of q(z | x): {type(model).__name__} is not "
                         "a variational model (its variational is False): bound a VAE's "
                         "likelihood, and a plain autoencoder's reconstructions by their loss")
    if not isinstance(batches, Sequence) or not all(isinstance(b, Mapping) and "image" in b
                                                    for b in batches):
        raise TypeError("iwae_bounds takes a list of batches, each a dict "
                        '{"image": uint8 [B, H, W, C], "label": int [B]}, not '
                        f"{_described(batches)}: e.g. [b for _, b in "
                        "jaxae.evaluation.metrics.padded_batches(split, 100)]")
    counts = tuple(np.asarray(sample_counts).ravel().tolist()) \
        if isinstance(sample_counts, (Sequence, np.ndarray)) and \
        not isinstance(sample_counts, str) else ()
    if not counts or not all(_positive_int(k) for k in counts):
        raise ValueError(f"iwae_bounds' sample_counts={sample_counts!r}: give positive "
                         "integers k, e.g. (1, 50, 1000)")
    if not _positive_int(chunk):
        raise ValueError(f"iwae_bounds' chunk={chunk!r}: give a positive integer, the samples "
                         "decoded at a time (e.g. 50)")
    count = float(sum(np.sum(b["mask"]) if "mask" in b else len(b["image"]) for b in batches))
    out = {}
    # the bar counts decoded samples per image, so that its estimate of the time left holds
    # across k (each batch of k = 1000 takes about 1000 times one of k = 1)
    planned = sum(counts) * len(batches)
    with tqdm(total=planned, desc="IWAE bounds", leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
              disable=None if progress is None else not progress) as bar:
        lines = LogLines() if progress is None and bar.disable else None  # off a terminal
        decoded = 0
        for k in counts:
            bar.set_postfix(k=k)
            step = make_iwae_step(model, task, likelihood, k, chunk)
            total = 0
            for i, b in enumerate(batches):
                total = total + step(params, b, jax.random.fold_in(key, i))
                decoded += k
                if not bar.disable or lines is not None:
                    jax.block_until_ready(total)
                    bar.update(k)
                if lines is not None and (seconds := lines.due()) is not None:
                    print(_progress_line(k, decoded / planned, seconds), file=sys.stderr,
                          flush=True)
            out[k] = float(total) / count
    return out


def _progress_line(k: int, done: float, seconds: float) -> str:
    """The bar's figures as one line, for a log file: `done`, the share of the samples
    decoded (k of them an image for each k); `seconds` since the bounds began."""
    return (f"IWAE bounds: k = {k:,}, {done:.0%} of the samples decoded, {duration(seconds)} "
            f"in, about {duration(seconds * (1 - done) / done)} left")
