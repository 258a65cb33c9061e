"""Streaming with Grain against the in-memory path: throughput and host memory.

    python -m benchmarks.streaming throughput [--images 20000] [--width 4] [--steps 150]
    python -m benchmarks.streaming rss [--images 50000 200000]
    python -m benchmarks.streaming all

throughput: images/s of the conv AE at 32x32x3 (batch 128, `--width`) trained by the
    trainer's compiled chunk of steps (`steps.make_train_chunk`, 50 steps a chunk) on (a) the
    training images resident on the device, gathered there, and (b) batches streamed from
    the array_record files (`StreamedBatches`, Grain's reader threads, `next_chunk`); and
    the reader alone. Compilation and the first chunk are left out; one run each, so run it
    on a quiet machine.
rss: for each size, a fresh process loads the data set (streaming="memory" or "stream"),
    then trains nothing but reads two epochs of batches (in memory: gathered from the
    resident arrays); it prints the peak growth of its resident memory while loading and
    reading (anonymous and file-backed apart, sampled every millisecond) against the split's
    size. On a CPU the "device" arrays of the in-memory path are host memory too.

Data: random 32x32x3 uint8 images (incompressible) written once by a TFDS builder into
$BENCH_DATA (default /tmp/jaxae_bench_streaming; 200,000 images take about 615 MB).
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import tensorflow_datasets as tfds

SHAPE = (32, 32, 3)
BATCH = 128
CHUNK_STEPS = 50
DATA = os.environ.get("BENCH_DATA", "/tmp/jaxae_bench_streaming")


IMAGE_COUNTS = (20_000, 50_000, 100_000, 200_000)  # the data sets --images may name


class JaxaeBenchImages(tfds.core.GeneratorBasedBuilder):
    """Random 32x32x3 uint8 images (raw bytes, as jaxae's builders store them), labels i % 10;
    one config per number of training images."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"n{n}") for n in IMAGE_COUNTS]

    def _info(self) -> tfds.core.DatasetInfo:
        from jaxae.data.records import raw_image_info  # jaxae only where it is measured

        return raw_image_info(self, SHAPE, [str(i) for i in range(10)])

    def _split_generators(self, dl_manager):
        n = int(self.builder_config.name[1:])
        return {"train": self._generate_examples(n, 0), "test": self._generate_examples(1000, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for start in range(0, n, 4096):
            images = rng.integers(0, 256, (min(4096, n - start), *SHAPE), np.uint8)
            for j, image in enumerate(images):
                yield start + j, {"image": image, "label": (start + j) % 10}


def prepared(images: int) -> str:
    """The benchmark data set of `images` training images, prepared once; its name."""
    name = f"jaxae_bench_images/n{images}"
    builder = tfds.builder(name, data_dir=DATA)
    if not builder.is_prepared():
        print(f"writing {images} random images into {DATA} (once)", flush=True)
        tfds.disable_progress_bar()
        builder.download_and_prepare(file_format="array_record")
    return name


def load(name: str, streaming: str):
    from jaxae.data import load_tfds, make_splits
    from jaxae.keys import derive_keys

    data = load_tfds(name, tfds_dir=DATA, streaming=streaming)
    return make_splits(data, derive_keys(0).data)


def _model(width: int):
    from jaxae import objectives
    from jaxae.models import build_model
    from jaxae.tasks import TASKS

    model = build_model({"name": "conv_ae", "width": width, "conv": "patches"},
                        image_shape=SHAPE)
    return model, TASKS.get("reconstruct")(), objectives.objective_for(
        False, loss=objectives.LOSSES.get("mse"))


def throughput(images: int, width: int, num_steps: int) -> None:
    import jax
    import jax.numpy as jnp

    from jaxae import optimizers
    from jaxae.data import batches
    from jaxae.data.streaming import StreamedBatches
    from jaxae.keys import derive_keys
    from jaxae.training import steps

    name = prepared(images)
    keys = derive_keys(0)
    model, task, objective = _model(width)
    chunk_fn = steps.make_train_chunk(model, task, objective, batch_size=BATCH,
                                      max_steps=CHUNK_STEPS)
    fresh = lambda: steps.create_train_state(  # noqa: E731
        model, optimizers.make_optimizer("adam", 1e-3), SHAPE, keys.init)
    spe = images // BATCH
    chunks = max(2, min(num_steps, spe) // CHUNK_STEPS)  # within one epoch
    print(f"# conv_ae width {width} ({model.latent_shape} code), 32x32x3, batch {BATCH}, "
          f"{chunks - 1} timed chunks of {CHUNK_STEPS} steps after one warm-up chunk, "
          f"{images} training images, {jax.default_backend()}, {os.cpu_count()} CPUs")

    memory = load(name, "memory")
    arrays = {"image": jnp.asarray(memory.train.images), "label": jnp.asarray(memory.train.labels)}
    order = batches.epoch_permutation(keys.data, 0, len(memory.train))
    state = fresh()
    for chunk in range(chunks):
        if chunk == 1:
            jax.block_until_ready(state)
            start = time.perf_counter()
        state, _ = chunk_fn(state, arrays, order, chunk * CHUNK_STEPS, keys.train, CHUNK_STEPS)
    jax.block_until_ready(state)
    in_memory = (chunks - 1) * CHUNK_STEPS * BATCH / (time.perf_counter() - start)
    print(f"in memory (device-resident, gathered):  {in_memory:8.0f} images/s", flush=True)
    del arrays, memory
    gc.collect()

    streamed = load(name, "stream")
    flat_order = jnp.arange(CHUNK_STEPS * BATCH)
    state = fresh()
    with StreamedBatches(streamed.train, keys.data, BATCH, 2) as stream:
        it = stream.batches()
        for chunk in range(chunks):
            if chunk == 1:
                jax.block_until_ready(state)
                start = time.perf_counter()
            state, _ = chunk_fn(state, it.next_chunk(CHUNK_STEPS), flat_order, 0, keys.train,
                                CHUNK_STEPS)
        jax.block_until_ready(state)
        trained = (chunks - 1) * CHUNK_STEPS * BATCH / (time.perf_counter() - start)
        it = stream.batches()
        next(it)
        start = time.perf_counter()
        for _ in range((chunks - 1) * CHUNK_STEPS):
            next(it)
        reader = (chunks - 1) * CHUNK_STEPS * BATCH / (time.perf_counter() - start)
    print(f"streamed (Grain, array_record files):   {trained:8.0f} images/s "
          f"({trained / in_memory:.2f} of in memory)")
    print(f"the streaming reader alone:             {reader:8.0f} images/s", flush=True)


STATUS = "/proc/self/status"  # Linux's; the rss mode reads its RssAnon and RssFile


def _rss() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of this process."""
    values = {}
    with open(STATUS) as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values.get("RssAnon", 0), values.get("RssFile", 0)


def rss_one(mode: str, images: int) -> None:
    """One measurement, in its own process: resident memory while loading and reading."""
    import jax
    import jax.numpy as jnp

    from jaxae.data import batches
    from jaxae.data.streaming import StreamedBatches
    from jaxae.keys import derive_keys

    name = prepared(images)
    jnp.zeros(1).block_until_ready()  # the backend's and Grain's own memory: before the base
    import grain  # noqa: F401
    gc.collect()
    base = _rss()
    peak = list(base)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[:] = [max(p, now) for p, now in zip(peak, _rss(), strict=True)]
            done.wait(0.001)

    threading.Thread(target=sample, daemon=True).start()
    data = load(name, mode)
    key = derive_keys(0).data
    steps_per_epoch = len(data.train) // BATCH
    if mode == "stream":
        with StreamedBatches(data.train, key, BATCH, 2) as stream:
            for _ in stream.batches():
                pass
    else:
        arrays = {"image": jnp.asarray(data.train.images), "label": jnp.asarray(data.train.labels)}
        for epoch in range(2):
            order = batches.epoch_permutation(key, epoch, len(data.train))
            for i in range(steps_per_epoch):
                batches.take_batch(arrays, order, i, BATCH)["image"].block_until_ready()
    done.set()
    split_mb = images * int(np.prod(SHAPE)) / 2**20
    anon, files = ((p - b) / 2**20 for p, b in zip(peak, base, strict=True))
    print(f"{mode:6s} {images:7d} images ({split_mb:5.0f} MiB): peak growth of resident "
          f"memory while loading and reading 2 epochs: {anon:6.0f} MiB anonymous "
          f"({anon / split_mb:.2f}x the split), {files:5.0f} MiB of mapped files; before: "
          f"{base[0] / 2**20:.0f} + {base[1] / 2**20:.0f} MiB ({jax.default_backend()})",
          flush=True)


def rss(sizes: list[int]) -> None:
    for images in sizes:
        prepared(images)
        for mode in ("stream", "memory"):
            subprocess.run([sys.executable, "-m", "benchmarks.streaming", "rss-one", mode,
                            str(images)], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("throughput", "rss", "all", "rss-one"))
    parser.add_argument("args", nargs="*", help="rss-one: MODE IMAGES")
    parser.add_argument("--images", type=int, nargs="+", default=None, choices=IMAGE_COUNTS,
                        metavar="N", help="training images, each N one of "
                        f"{', '.join(map(str, IMAGE_COUNTS))}")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150, help="at most an epoch's")
    args = parser.parse_args(argv)
    if args.what in ("rss", "all") and not os.path.exists(STATUS):
        parser.error(f"{args.what} measures resident memory from {STATUS} (Linux), which "
                     "this system has not: run `throughput` here")
    if args.what == "rss-one":
        rss_one(args.args[0], int(args.args[1]))
        return
    if args.what in ("throughput", "all"):
        throughput((args.images or [20_000])[0], args.width, args.steps)
    if args.what in ("rss", "all"):
        rss(args.images or [50_000, 200_000])


if __name__ == "__main__":
    main()
