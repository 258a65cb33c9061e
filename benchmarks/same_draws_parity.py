r"""Parity with the PyTorch peer from the same random draws: same initial weights, same batch
order, so any difference left is the implementations', not the seeds'.

    python -m benchmarks.same_draws_parity --peer-python /tmp/torch/bin/python \
        --peer-script PATH/torch_autoencoders.py [--model dense|conv] [--epochs 1] [--seeds 5]

For each seed, `benchmarks/peer_draws.py` (run by --peer-python) draws the peer's glorot
initial weights and --epochs batch orders, trains the peer on their full batches and
records its test figure (dense AE: MSE per pixel; conv AE: BCE); jaxae then trains the same
model (`configs/default.py`, `configs/conv_ae_fashion.py`) from the same weights in the
same orders with its own compiled `train_step`, and is evaluated on the same test images.
--peer-remainder lets the peer also train each epoch's last, smaller batch, as its own
training does: the gap then measures that difference alone. `python -m benchmarks.parity`
compares the two with each side's own draws instead. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks.bench_args import check_peer_args, check_peer_torch
from jaxae import build
from jaxae.cli.arguments import OneLineErrors
from jaxae.evaluation.metrics import evaluate_split
from jaxae.experiments.common import load_config
from jaxae.keys import derive_keys
from jaxae.provenance import usable_cpus
from jaxae.training import steps

PEER_DRAWS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_draws.py")


# jaxae's parameter paths in the peer's module order (its Linear and Conv2d layers).
LAYERS = {
    "dense": ("encoder/code", "decoder/pixels"),
    "conv": ("encoder/Conv_0", "encoder/Conv_1", "encoder/Conv_2", "decoder/Conv_0",
             "decoder/Conv_1", "decoder/Conv_2", "decoder/pixels"),
}
CONFIGS = {"dense": "default", "conv": "conv_ae_fashion"}
FIGURES = {"dense": "mse", "conv": "bce"}  # the test metric the peer records


def jaxae_from_draws(draws: dict, config: ml_collections.ConfigDict, model_name: str) -> float:
    """jaxae's test figure after training from the peer's weights in the peer's order."""
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    task, model, _, objective = build.run_objects(config, data.image_shape, data.num_classes)
    state = steps.create_train_state(model, build.make_optimizer(config),
                                     task.input_shape(data.image_shape), keys.init,
                                     build.init_scheme(config))
    params: dict = {}
    for i, path in enumerate(LAYERS[model_name]):
        part, layer = path.split("/")
        params.setdefault(part, {})[layer] = {"kernel": jnp.asarray(draws[f"layer{i}_kernel"]),
                                              "bias": jnp.asarray(draws[f"layer{i}_bias"])}
    if jax.tree.map(jnp.shape, params) != jax.tree.map(jnp.shape, state.params):
        raise SystemExit(f"error: the {model_name} AE's parameters are now "
                         f"{jax.tree.map(jnp.shape, state.params)!r}: update LAYERS")
    state = state.replace(params=params, opt_state=state.tx.init(params))
    train_step = steps.make_train_step(model, task, objective)
    batch = config.train.batch_size
    for order in draws["orders"]:
        for i in range(len(order) // batch):
            index = order[i * batch:(i + 1) * batch]
            state, _ = train_step(state, {"image": data.train.images[index],
                                          "label": data.train.labels[index]}, keys.train)
    eval_step = steps.make_eval_step(model, task, objective)
    return evaluate_split(eval_step, state.params, data.test, config.eval.batch_size,
                          keys.eval)[FIGURES[model_name]]


def main() -> None:
    parser = OneLineErrors(prog="python -m benchmarks.same_draws_parity",
                           description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default=None,
                        help="a Python with torch installed; required")
    parser.add_argument("--peer-script", default=None, metavar="PATH",
                        help="the PyTorch peer's script (torch_autoencoders.py); required")
    parser.add_argument("--model", choices=tuple(LAYERS), default="dense")
    parser.add_argument("--epochs", type=int, default=1, help="epochs both train")
    parser.add_argument("--peer-remainder", action="store_true",
                        help="the peer also trains each epoch's last, smaller batch (as its "
                             "own training does; jaxae drops it): that difference alone")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--tfds-dir", default=None)
    args = parser.parse_args()
    check_peer_args(parser, args, required=True)
    check_peer_torch(parser, args.peer_python)
    config = load_config(CONFIGS[args.model])
    if args.tfds_dir:
        config.data.tfds_dir = args.tfds_dir
    gaps = []
    figure = f"test {FIGURES[args.model].upper()}"
    print(f"| seed | peer {figure} | jaxae {figure} | jaxae - peer (relative) |")
    print("|---:|---:|---:|---:|")
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "draws.npz")
            subprocess.run([args.peer_python, PEER_DRAWS,
                            "--peer-script", args.peer_script, "--model", args.model,
                            "--seed", str(seed), "--epochs", str(args.epochs),
                            *(["--remainder"] if args.peer_remainder else []),
                            "--threads", str(usable_cpus()), "--out", path], check=True)
            draws = dict(np.load(path))
        peer = float(draws.pop("peer_test"))
        ours = jaxae_from_draws(draws, config, args.model)
        gaps.append((ours - peer) / peer)
        print(f"| {seed} | {peer:.6f} | {ours:.6f} | {gaps[-1]:+.4%} |", flush=True)
    print(f"\nmean relative gap {statistics.mean(gaps):+.4%}, largest "
          f"{max(gaps, key=abs):+.4%} over {len(gaps)} seeds")


if __name__ == "__main__":
    main()
