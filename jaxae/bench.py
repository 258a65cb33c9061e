"""Training throughput, optionally beside the PyTorch peer: python -m jaxae.bench [--peer-python P]

Times the steps training runs (batch gathered on the device + `train_step`) on real
Fashion-MNIST batches: WARMUP steps first (compilation included there only), then the
median images/s of --chunks chunks of --steps steps, each ended by a device sync. With
--peer-python, each model's peer (../shared/peers/torch_autoencoders.py --mode step-bench,
same batch size and thread count) runs right after it, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time

import jax
import ml_collections

from jaxae import config as config_lib
from jaxae import pipeline, steps
from jaxae.data import load_dataset
from jaxae.models import build_model

WARMUP = 20  # steps left out of every figure, as in the peer
PEER_MODELS = {"dense_ae": "dense", "dae": "dae", "conv_ae": "conv"}
DEFAULT_PEER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers",
                            "torch_autoencoders.py")


def bench_config(model: str, batch_size: int) -> ml_collections.ConfigDict:
    """The config of each benchmarked model, matching the peer's setting of it."""
    config = config_lib.base_config()
    config.batch_size = batch_size
    if model == "dae":  # the material's DAE: dropout-corrupted input, code of 940
        config.latent_dim, config.corruption, config.dropout_rescale = 940, "dropout", True
    elif model == "conv_ae":
        config.model, config.latent_dim, config.loss = "conv_ae", 128, "bce"
    else:
        config.model = model
    config_lib.validate(config)
    return config


def bench_model(model: str, batch_size: int, num_steps: int, chunks: int,
                train_images: jax.Array) -> dict:
    """Median images/s over `chunks` timed chunks of `num_steps` training steps."""
    config = ml_collections.FrozenConfigDict(bench_config(model, batch_size))
    keys = pipeline.derive_keys(0)
    state = steps.create_train_state(
        config, build_model(config.model, config.latent_dim), keys.init)
    train_step = steps.make_train_step(config)
    num_batches = pipeline.steps_per_epoch(len(train_images), batch_size)
    order = pipeline.epoch_permutation(keys.data, 0, len(train_images))

    def run(first: int, count: int):
        nonlocal state
        for i in range(first, first + count):
            batch = {"image": pipeline.take_batch(train_images, order, i % num_batches,
                                                  batch_size)}
            state, metrics = train_step(state, batch, keys.train)
        jax.block_until_ready((state, metrics))

    start = time.perf_counter()
    run(0, WARMUP)
    warmup_s = time.perf_counter() - start
    rates = []
    for c in range(chunks):
        start = time.perf_counter()
        run(WARMUP + c * num_steps, num_steps)
        rates.append(num_steps * batch_size / (time.perf_counter() - start))
    return {"model": model, "framework": "jaxae", "batch": batch_size,
            "img_per_s": statistics.median(rates), "chunk_img_per_s": [round(r) for r in rates],
            "warmup_s_incl_compile": round(warmup_s, 2)}


def bench_peer(python: str, script: str, model: str, batch_size: int, num_steps: int,
               chunks: int, threads: int) -> dict:
    """The peer's own step-bench of the same model, run as a subprocess; its JSON result."""
    command = [python, script, "--model", PEER_MODELS[model], "--mode", "step-bench",
               "--batch-size", str(batch_size), "--bench-steps", str(num_steps),
               "--bench-chunks", str(chunks), "--threads", str(threads), "--peak-n", "1024"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"model": model, "framework": f"torch {result['torch']}", "batch": batch_size,
            "img_per_s": result["img_per_s"], "chunk_img_per_s": result["chunk_img_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dense_ae,conv_ae",
                        help=f"comma-separated, from {', '.join(PEER_MODELS)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per chunk")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--peer-python", default=None,
                        help="a Python with torch installed: also run the PyTorch peer")
    parser.add_argument("--peer-script", default=DEFAULT_PEER)
    parser.add_argument("--tfds-dir", default=None)
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in PEER_MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(PEER_MODELS)}")
    threads = os.cpu_count() or 1
    print(f"# {platform.processor() or platform.machine()}, {threads} CPU threads, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch_size}",
          flush=True)
    images = jax.device_put(load_dataset("fashion_mnist", tfds_dir=args.tfds_dir).train_images)
    rows = []
    for model in models:
        ours = bench_model(model, args.batch_size, args.steps, args.chunks, images)
        print(json.dumps(ours), flush=True)
        peer = None
        if args.peer_python:
            peer = bench_peer(args.peer_python, args.peer_script, model, args.batch_size,
                              args.steps, args.chunks, threads)
            print(json.dumps(peer), flush=True)
        rows.append((model, ours, peer))
    print("\n| model | jaxae images/s | peer images/s | jaxae / peer |\n|---|---:|---:|---:|")
    for model, ours, peer in rows:
        theirs = f"{peer['img_per_s']:,.0f}" if peer else "-"
        ratio = f"{ours['img_per_s'] / peer['img_per_s']:.2f}x" if peer else "-"
        print(f"| {model} | {ours['img_per_s']:,.0f} | {theirs} | {ratio} |")


if __name__ == "__main__":
    main()
