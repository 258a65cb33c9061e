"""PCA at a trained run's code size: the linear baseline its test MSE and PSNR should beat.

    python scripts/pca_baseline.py --workdir=runs/crops_conv_ae     # k = the model's code size
    python scripts/pca_baseline.py --workdir=runs/crops_conv_ae --k=64 --k=512

Fits PCA (jaxae.evaluation.pca) on the run's training images, as its config loads them, and
reconstructs its test images from k components, clipped to [0, 1]; prints one JSON line per k
with the test MSE per pixel and the mean per-image PSNR (as evaluate.py computes them), beside
the run's own eval/metrics.json figures when they exist, and writes eval/pca_baseline.json.
"""

from __future__ import annotations

import json
import math
import os
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxae import build, losses
from jaxae.cli.arguments import OneLineErrors
from jaxae.config import ConfigError
from jaxae.data import DataError
from jaxae.data.splits import spread, spread_sample
from jaxae.evaluation import pca
from jaxae.keys import derive_keys
from jaxae.training.workdir import load_run_config

FIT_BYTES = 2**30  # the training pixels PCA is fitted on (float32), by default at most


def code_size(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
              num_classes: int) -> int:
    """The number of values in the run's code (the latent's size for a VAE)."""
    model = build.make_model(config, image_shape, num_classes)
    if model.latent_shape is None:
        raise SystemExit(f"error: model {config.model.name} has no code to compare with PCA")
    return math.prod(model.latent_shape)


def pca_errors(train_u8: np.ndarray, test_u8: np.ndarray, sizes: list[int]) -> dict[int, dict]:
    """{k: {"test_mse", "test_psnr"}} of PCA with k components fitted on the training images."""
    train = jnp.asarray(train_u8.reshape(len(train_u8), -1), jnp.float32) / 255.0
    test = jnp.asarray(test_u8.reshape(len(test_u8), -1), jnp.float32) / 255.0
    out = {}
    for k, recon in pca.clipped_reconstructions(train, test, sizes):
        per_image = jnp.mean(jnp.square(recon - test), axis=1)
        out[k] = {"test_mse": float(per_image.mean()),
                  "test_psnr": float(losses.psnr(recon, test).mean())}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = OneLineErrors(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--k", type=int, action="append",
                        help="components (default: the model's code size); may repeat")
    parser.add_argument("--train-images", type=int, default=None, metavar="N",
                        help="fit on N training images spread over the split (default: all "
                             "of a split in memory; of a streamed one, as many as fit 1 GiB "
                             "as float32)")
    args = parser.parse_args(argv)
    if args.k and min(args.k) < 1:
        parser.error(f"--k={min(args.k)}: give a number of components of 1 or more")
    if args.train_images is not None and args.train_images < 2:
        parser.error(f"--train-images={args.train_images}: give 2 or more")
    try:
        config = load_run_config(args.workdir)
        data = build.load_data(config, derive_keys(config.seed).data)
    except (ConfigError, DataError, OSError) as e:
        sys.exit(f"error: {e}")
    sizes = args.k or [code_size(config, data.image_shape, data.num_classes)]
    fitted = (spread(data.train, args.train_images) if args.train_images is not None
              else spread_sample(data.train, FIT_BYTES, bytes_per_pixel=4))
    if len(fitted) < len(data.train):
        print(f"# PCA fitted on {len(fitted):,} of the {len(data.train):,} training images, "
              "spread over them", flush=True)
    train = np.asarray(fitted.images)  # a streamed split is read at those images only
    most = min(len(train), train[0].size)  # PCA has at most this many components
    if max(sizes) > most:
        sys.exit(f"error: k={max(sizes)} is more than the {most} components that "
                 f"{len(train)} training images of {train[0].size} values allow: pass a "
                 f"--k of at most {most}")
    results = pca_errors(train, np.asarray(data.test.images), sizes)
    metrics_path = os.path.join(args.workdir, "eval", "metrics.json")
    model = {}
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            metrics = json.load(f)
        model = {k: metrics[k] for k in ("step", "test_mse", "test_psnr") if k in metrics}
    record = {"workdir": args.workdir, "images": data.title, "train_images": len(train),
              "test_images": len(data.test), "model": {config.model.name: model},
              "pca": {str(k): v for k, v in results.items()}}
    for k, value in results.items():
        print(json.dumps({"k": k, **value, **{f"model_{n}": v for n, v in model.items()}}))
    os.makedirs(os.path.join(args.workdir, "eval"), exist_ok=True)
    with open(os.path.join(args.workdir, "eval", "pca_baseline.json"), "w") as f:
        json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
