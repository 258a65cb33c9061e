"""Working memory of the compiled IWAE evaluation step, by number of samples k and chunk size.

    python scripts/iwae_memory.py [--ks 50,1000,10000] [--chunks 50,0] [--batch 100]
        [--tfds-dir DIR]

Reads XLA's own memory analysis of the compiled step (temporary buffers, the part that
grows with the work; arguments and outputs are the parameters and one batch): with samples
decoded `chunk` at a time it stays flat as k grows, while decoding all k at once
(chunk 0 = k) grows linearly. Uses the 2-D MLP VAE of configs/vae_fashion_2d.py, on images
of its data set's shape (the data set is loaded for that).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxae import build
from jaxae import config as config_lib
from jaxae.cli.arguments import OneLineErrors
from jaxae.data import Splits
from jaxae.evaluation import iwae
from jaxae.experiments.common import load_config
from jaxae.keys import derive_keys
from jaxae.training import steps


def temp_bytes(config: ml_collections.ConfigDict, data: Splits, num_samples: int, chunk: int,
               batch_size: int) -> int:
    """Bytes of temporary buffers XLA allocates for one compiled IWAE step."""
    task, model, _, objective = build.run_objects(config, data.image_shape, data.num_classes)
    state = steps.create_train_state(model, build.make_optimizer(config),
                                     task.input_shape(data.image_shape), derive_keys(0).init,
                                     build.init_scheme(config))
    batch = {"image": jnp.zeros((batch_size, *data.image_shape), jnp.uint8),
             "label": jnp.zeros((batch_size,), jnp.int32),
             "mask": jnp.ones((batch_size,), jnp.float32)}
    step = iwae.make_iwae_step(model, task, objective.likelihood, num_samples, chunk)
    compiled = step.lower(state.params, batch, jax.random.key(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main() -> None:
    parser = OneLineErrors(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="50,1000,10000")
    parser.add_argument("--chunks", default="50,0", help="0: all k samples at once")
    parser.add_argument("--batch", type=int, default=100, help="images per step (evaluation's)")
    parser.add_argument("--tfds-dir", default=None, help="TFDS data dir of the config's data")
    args = parser.parse_args()
    config = load_config("vae_fashion_2d")
    if args.tfds_dir:
        config.data.tfds_dir = args.tfds_dir
    config_lib.validate(config)
    data = build.load_data(config, derive_keys(config.seed).data)
    print("| k | chunk | temporary memory (MiB) |\n|---:|---:|---:|")
    for k in (int(v) for v in args.ks.split(",")):
        chunks = dict.fromkeys(min(int(v) or k, k) for v in args.chunks.split(","))
        for chunk in chunks:
            size = temp_bytes(config, data, k, chunk, args.batch)
            print(f"| {k} | {chunk} | {size / 2**20:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
