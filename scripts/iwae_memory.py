"""Working memory of the compiled IWAE evaluation step, by number of samples k and chunk size.

    python scripts/iwae_memory.py [--ks 50,1000,10000] [--chunks 50,0] [--batch 100]

Reads XLA's own memory analysis of the compiled step (temporary buffers, the part that
grows with the work; arguments and outputs are the parameters and one batch): with samples
decoded `chunk` at a time it stays flat as k grows, while decoding all k at once
(chunk 0 = k) grows linearly. Uses the 2-D MLP VAE of configs/vae_fashion_2d.py.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxae import iwae, pipeline, steps  # noqa: E402
from jaxae.experiments.common import load_config  # noqa: E402
from jaxae.models import build_model  # noqa: E402


def temp_bytes(config: ml_collections.FrozenConfigDict, num_samples: int, chunk: int,
               batch_size: int) -> int:
    """Bytes of temporary buffers XLA allocates for one compiled IWAE step."""
    model = build_model(config.model, config.latent_dim)
    state = steps.create_train_state(config, model, pipeline.derive_keys(0).init)
    batch = {"image": jnp.zeros((batch_size, 28, 28), jnp.uint8),
             "label": jnp.zeros((batch_size,), jnp.int32),
             "mask": jnp.ones((batch_size,), jnp.float32)}
    step = iwae.make_iwae_step(config, model, num_samples, chunk)
    compiled = step.lower(state.params, batch, jax.random.key(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="50,1000,10000")
    parser.add_argument("--chunks", default="50,0", help="0: all k samples at once")
    parser.add_argument("--batch", type=int, default=100, help="images per step (evaluation's)")
    args = parser.parse_args()
    config = ml_collections.FrozenConfigDict(load_config("vae_fashion_2d"))
    print("| k | chunk | temporary memory (MiB) |\n|---:|---:|---:|")
    for k in (int(v) for v in args.ks.split(",")):
        chunks = dict.fromkeys(min(int(v) or k, k) for v in args.chunks.split(","))
        for chunk in chunks:
            size = temp_bytes(config, k, chunk, args.batch)
            print(f"| {k} | {chunk} | {size / 2**20:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
