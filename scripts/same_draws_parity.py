"""Dense AE parity with the PyTorch peer from the same random draws: same initial weights,
same batch order, so any difference left is the implementations', not the seeds'.

    python scripts/same_draws_parity.py --peer-python /tmp/torch/bin/python [--seeds 5]

For each seed, `scripts/peer_draws.py` (run by --peer-python) draws the peer's glorot
initial weights and first-epoch order, trains the peer for one epoch of full batches and
records its test MSE; jaxae then trains `configs/default.py` from the same weights in the
same order with its own compiled `train_step`, and is evaluated on the same test images.
`python -m jaxae.parity` compares the two with each side's own draws instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxae import pipeline, steps  # noqa: E402
from jaxae.bench import DEFAULT_PEER  # noqa: E402
from jaxae.config import base_config  # noqa: E402
from jaxae.evaluation import evaluate_split  # noqa: E402
from jaxae.models import build_model  # noqa: E402
from jaxae.splits import load_splits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def jaxae_from_draws(draws: dict, config: ml_collections.FrozenConfigDict) -> float:
    """Test MSE per pixel of jaxae's dense AE trained from the peer's weights and order."""
    model = build_model(config.model, config.latent_dim)
    keys = pipeline.derive_keys(config.seed)
    state = steps.create_train_state(config, model, keys.init)
    params = {"encoder": {"code": {"kernel": draws["encoder_kernel"],
                                   "bias": draws["encoder_bias"]}},
              "decoder": {"pixels": {"kernel": draws["decoder_kernel"],
                                     "bias": draws["decoder_bias"]}}}
    params = jax.tree.map(jnp.asarray, params)
    if jax.tree.structure(params) != jax.tree.structure(state.params):
        raise SystemExit(f"error: the dense AE's parameters are now {state.params!r}: "
                         "update jaxae_from_draws")
    state = state.replace(params=params, opt_state=state.tx.init(params))
    data = load_splits(config, keys.data)
    train_step = steps.make_train_step(config)
    order, batch = draws["order"], config.batch_size
    for i in range(len(order) // batch):
        index = order[i * batch:(i + 1) * batch]
        state, _ = train_step(state, {"image": data.train.images[index],
                                      "label": data.train.labels[index]}, keys.train)
    eval_step = steps.make_eval_step(config, model)
    return evaluate_split(eval_step, state.params, data.test, config.eval_batch_size,
                          keys.eval)["mse"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", required=True, help="a Python with torch installed")
    parser.add_argument("--peer-script", default=DEFAULT_PEER)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--tfds-dir", default=None)
    args = parser.parse_args()
    config = base_config()
    if args.tfds_dir:
        config.tfds_dir = args.tfds_dir
    config = ml_collections.FrozenConfigDict(config)
    gaps = []
    print("| seed | peer test MSE | jaxae test MSE | jaxae - peer (relative) |")
    print("|---:|---:|---:|---:|")
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "draws.npz")
            subprocess.run([args.peer_python, os.path.join(HERE, "peer_draws.py"),
                            "--peer-script", args.peer_script, "--seed", str(seed),
                            "--threads", str(os.cpu_count() or 1), "--out", path], check=True)
            draws = dict(np.load(path))
        peer = float(draws.pop("peer_test_mse"))
        ours = jaxae_from_draws(draws, config)
        gaps.append((ours - peer) / peer)
        print(f"| {seed} | {peer:.6f} | {ours:.6f} | {gaps[-1]:+.4%} |", flush=True)
    print(f"\nmean relative gap {statistics.mean(gaps):+.4%}, largest "
          f"{max(gaps, key=abs):+.4%} over {len(gaps)} seeds")


if __name__ == "__main__":
    main()
