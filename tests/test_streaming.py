"""Streaming with Grain: the same batches as the in-memory path for the same seed, resumed at
any step, and a training chunk fed streamed batches ends bitwise equal to one fed the
device-resident arrays. (Peak host memory and throughput: `benchmarks/streaming.py`.)"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxae import build, objectives, optimizers
from jaxae.data import DATASETS, DataError, batches, from_arrays, make_splits, streaming, tfds_sets
from jaxae.data.dataset import should_stream, training_bytes
from jaxae.data.records import raw_image_info
from jaxae.data.splits import Split
from jaxae.data.streaming import StreamedBatches
from jaxae.keys import derive_keys
from jaxae.models import build_model
from jaxae.tasks import TASKS
from jaxae.training import checkpoints, steps
from jaxae.training.trainer import train_and_evaluate

SHAPE = (8, 8, 3)
N_TRAIN, N_TEST, SHARDS = 300, 20, 3
BATCH, EPOCHS = 32, 3


class JaxaeTestStreamImages(tfds.core.GeneratorBasedBuilder):
    """Random 8x8x3 images stored as raw bytes, labels i % 10, no shuffling."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return raw_image_info(self, SHAPE, [str(i) for i in range(10)])

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(N_TRAIN, 0),
                "test": self._generate_examples(N_TEST, 1)}

    def _generate_examples(self, n, seed):
        images = np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), np.uint8)
        for i in range(n):
            yield i, {"image": images[i], "label": i % 10}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> str:
    """The data set prepared in three shards (record keys run across them)."""
    folder = str(tmp_path_factory.mktemp("tfds"))
    JaxaeTestStreamImages(data_dir=folder).download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(num_shards=3))
    tfds_sets.tfds_names.cache_clear()
    return folder


def load(tfds_dir: str, streaming: str):
    return DATASETS.get("jaxae_test_stream_images")(tfds_dir=tfds_dir, streaming=streaming)


def in_memory_batches(images, labels, key, batch_size, num_epochs):
    """Every batch the trainer's in-memory path gathers, in step order."""
    arrays = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
    for epoch in range(num_epochs):
        order = batches.epoch_permutation(key, epoch, len(images))
        for i in range(batches.steps_per_epoch(len(images), batch_size)):
            yield jax.tree.map(np.asarray, batches.take_batch(arrays, order, i, batch_size))


def assert_batch_equal(got: dict, want: dict) -> None:
    for name in ("image", "label"):
        np.testing.assert_array_equal(got[name], want[name], strict=True)


@pytest.fixture(scope="module")
def splits(tfds_dir):
    """(in-memory splits, streamed splits, data key) with a validation split carved."""
    key = derive_keys(5).data
    memory = make_splits(load(tfds_dir, "memory"), key, train_size=280, val_size=30)
    streamed = make_splits(load(tfds_dir, "stream"), key, train_size=280, val_size=30)
    assert streamed.streamed and not memory.streamed and len(streamed.train) == 250
    return memory, streamed, key


@pytest.fixture(scope="module")
def reference(splits) -> list[dict]:
    memory, _, key = splits
    return list(in_memory_batches(memory.train.images, memory.train.labels, key, BATCH, EPOCHS))


def test_streamed_batches_equal_the_in_memory_gather(splits, reference) -> None:
    _, streamed, key = splits
    with StreamedBatches(streamed.train, key, BATCH, EPOCHS) as stream:
        assert stream.num_steps == len(reference) == EPOCHS * (250 // BATCH)
        it = stream.batches()
        for step, batch in enumerate(it):
            assert_batch_equal(batch, reference[step])
            assert int(it.state()["next_step"]) == step + 1
        assert it.step == len(reference)


@pytest.mark.parametrize("stop", [3, 7, 10])  # mid-epoch, an epoch's end, mid-epoch 2
def test_resume_gives_the_remaining_batches(splits, reference, stop) -> None:
    memory, streamed, key = splits
    with StreamedBatches(streamed.train, key, BATCH, EPOCHS) as stream:
        it = stream.batches()
        for step in range(stop):
            assert_batch_equal(next(it), reference[step])
        saved = it.state()
    with StreamedBatches(streamed.train, key, BATCH, EPOCHS) as stream:
        tails = [list(stream.batches(first_step=stop)), list(stream.from_state(saved))]
    for tail in tails:
        assert len(tail) == len(reference) - stop
        for offset, batch in enumerate(tail):
            assert_batch_equal(batch, reference[stop + offset])
    with StreamedBatches(streamed.train, key, BATCH // 2, EPOCHS) as other:
        with pytest.raises(DataError) as refused:
            other.from_state(saved)
        assert str(refused.value) == (
            "the saved data stream had batch_size 32 (now 16): resume with the batch size and "
            "data it was saved with, or start afresh (with train.py: a new --workdir)")
    fewer = Split(memory.train.images[:200], memory.train.labels[:200])
    with StreamedBatches(fewer, key, BATCH, EPOCHS) as other:
        with pytest.raises(DataError, match=r"^the saved data stream had num_examples 250 "
                                            r"\(now 200\): resume"):
            other.from_state(saved)


def test_a_process_reads_only_its_rows_of_every_batch(splits, reference) -> None:
    """With several processes each reads its share of every global batch (`batch_rows`):
    the same images, in the same places, as the whole batch's rows."""
    _, streamed, key = splits
    with StreamedBatches(streamed.train, key, BATCH, EPOCHS,
                         batch_rows=slice(BATCH // 2, BATCH)) as stream:
        batches = stream.batches()
        for step in range(3):
            batch = next(batches)
            np.testing.assert_array_equal(batch["image"],
                                          reference[step]["image"][BATCH // 2:])
            np.testing.assert_array_equal(batch["label"],
                                          reference[step]["label"][BATCH // 2:])


def test_chunks_feed_gather_batch_and_host_arrays_stream_too(splits, reference) -> None:
    """next_chunk's flat arrays give the same batches through gather_batch; a split held in
    host memory (an npz) streams the same batches as one on disk."""
    memory, streamed, key = splits
    for split in (streamed.train, memory.train):
        with StreamedBatches(split, key, BATCH, EPOCHS) as stream:
            it = stream.batches(first_step=5)
            chunk = it.next_chunk(3, pad_to=4)
            assert chunk["image"].shape == (4 * BATCH, *SHAPE) and it.step == 8
            assert not chunk["image"][3 * BATCH:].any()
            order = jnp.arange(4 * BATCH)
            for i in range(3):
                got = jax.tree.map(np.asarray, batches.take_batch(chunk, order, i, BATCH))
                assert_batch_equal(got, reference[5 + i])


def test_training_on_streamed_chunks_ends_bitwise_equal(splits) -> None:
    """The trainer's compiled chunk of steps, fed streamed chunks (and resumed half-way
    through an epoch), ends with the very parameters of the in-memory run."""
    memory, streamed, key = splits
    keys = derive_keys(5)
    model = build_model({"name": "dense_ae", "latent_dim": 4}, image_shape=SHAPE)
    task = TASKS.get("reconstruct")()
    objective = objectives.objective_for(False, loss=objectives.LOSSES.get("mse"),
                                         likelihood=None, beta=1.0)
    max_steps, spe = 4, len(memory.train) // BATCH
    chunk_fn = steps.make_train_chunk(model, task, objective, batch_size=BATCH,
                                      max_steps=max_steps)
    initial = steps.create_train_state(model, optimizers.make_optimizer("adam", 1e-3), SHAPE,
                                       keys.init)  # copied for each path (a chunk donates it)
    state = jax.tree.map(jnp.copy, initial)
    arrays = {"image": jnp.asarray(memory.train.images), "label": jnp.asarray(memory.train.labels)}
    for epoch in range(2):
        order = batches.epoch_permutation(key, epoch, len(memory.train))
        for first in range(0, spe, max_steps):
            count = min(max_steps, spe - first)
            state, _ = chunk_fn(state, arrays, order, first, keys.train, count)
    in_memory = state.params

    order = jnp.arange(max_steps * BATCH)
    state = jax.tree.map(jnp.copy, initial)
    with StreamedBatches(streamed.train, key, BATCH, 2) as stream:
        for stop_at, first_step in ((spe + 3, 0), (2 * spe, spe + 3)):  # "killed" at spe + 3
            it = stream.batches(first_step=first_step)
            step = first_step
            while step < stop_at:
                epoch_end = (step // spe + 1) * spe
                count = min(max_steps, epoch_end - step, stop_at - step)
                chunk = it.next_chunk(count, pad_to=max_steps)
                state, _ = chunk_fn(state, chunk, order, 0, keys.train, count)
                step += count
            it.close()
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(in_memory), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), strict=True)


def test_a_streamed_split_indexes_as_numpy_does(splits) -> None:
    """Negative indexes count from the end, a boolean mask picks, and an index out of range
    is an IndexError naming the range (not a damaged data set)."""
    memory, streamed, _ = splits
    lazy, loaded = streamed.train.images, np.asarray(memory.train.images)
    np.testing.assert_array_equal(lazy[-1], loaded[-1])
    np.testing.assert_array_equal(lazy[[0, -2, 5]], loaded[[0, -2, 5]])
    mask = np.arange(len(loaded)) % 7 == 3
    np.testing.assert_array_equal(lazy[mask], loaded[mask])
    with pytest.raises(IndexError, match=r"index 250 is out of range for the 250 examples"):
        lazy[len(loaded)]
    with pytest.raises(IndexError, match="index -251 is out of range"):
        lazy[[0, -251]]
    with pytest.raises(IndexError, match=r"boolean mask of shape \(3,\) for 250 examples"):
        lazy[np.array([True, False, True])]


def test_a_streamed_split_is_sampled_spread_over_it_within_a_bound(splits) -> None:
    """A probe or PCA reads a streamed split (larger than memory, perhaps) at as many
    images as a byte bound holds, spread over it, so every part of it is in the sample; a
    split in memory is used whole."""
    from jaxae.data.splits import spread, spread_sample

    memory, streamed, _ = splits
    pixels = int(np.prod(streamed.train.images.shape[1:]))
    assert spread_sample(memory.train, pixels, 1) is memory.train
    sample = spread_sample(streamed.train, 25 * pixels, bytes_per_pixel=1)
    index = np.linspace(0, len(streamed.train) - 1, 25).round().astype(int)
    assert len(sample) == 25 and index[-1] == len(memory.train) - 1
    np.testing.assert_array_equal(sample.images, np.asarray(memory.train.images)[index])
    np.testing.assert_array_equal(sample.labels, np.asarray(memory.train.labels)[index])
    assert len(spread_sample(streamed.train, 25 * pixels * 8, bytes_per_pixel=8)) == 25
    assert spread_sample(streamed.train, 10**9, 1) is streamed.train  # it fits: all of it
    assert spread(memory.train, 3).images.shape[0] == 3


def test_decide_and_errors(splits) -> None:
    _, streamed, key = splits
    def decide(mode, num_images, shape, budget_mb):
        return should_stream(mode, training_bytes(num_images, shape), budget_mb)

    assert decide("auto", 1000, (32, 32, 3), 2.9) and not decide("auto", 1000, (32, 32, 3), 3)
    assert decide("stream", 1, (1, 1, 1), None) and not decide("memory", 10**9, (9, 9, 9), 1)
    assert not decide("auto", 900, (32, 32, 3), 2.9)
    with pytest.raises(DataError, match="larger than the 250 training images"):
        StreamedBatches(streamed.train, key, 251, 1)
    with StreamedBatches(streamed.train, key, BATCH, 1) as stream:
        with pytest.raises(DataError, match="checkpoint belongs to another run"):
            stream.batches(first_step=stream.num_steps + 1)
    data = from_arrays(np.zeros((4, 2, 2, 1), np.uint8), np.zeros((2, 2, 2, 1), np.uint8))
    assert not data.streamed and data.fingerprint.startswith("arrays-sha256:")


# --- the trainer on a streamed training split ----------------------------------------------

def _read_metrics(workdir) -> list[str]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return f.read().splitlines()


def _params(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


def test_a_streamed_run_trains_bitwise_like_the_in_memory_one_resumes_and_stays_finished(
        tiny_config, tmp_path, capsys) -> None:
    """A streamed run ends with the in-memory run's bits, also stopped and resumed or
    switched between the two paths; finished, and resumed with fewer epochs, it says so and
    trains nothing."""
    # 16 steps per epoch and chunks of 8: stopping at step 21 interrupts a chunk's reads
    config = tiny_config(**{"task.name": "denoise", "data.streaming": "memory"})
    memory_state = train_and_evaluate(config, str(tmp_path / "memory"))
    config.data.streaming = "stream"
    assert build.load_data(config, derive_keys(config.seed).data).streamed
    streamed_state = train_and_evaluate(config, str(tmp_path / "stream"))
    config.train.stop_after_steps = 21
    assert int(train_and_evaluate(config, str(tmp_path / "resumed")).step) == 21
    saved = checkpoints.make_manager(str(tmp_path / "resumed" / "checkpoints"), read_only=True)
    like = checkpoints._saved_data_like(checkpoints.saved_outline(saved, 21))
    assert like is not None and set(like) == set(streaming.STATE_KEYS)
    # the same stopped run, to be resumed in memory below
    shutil.copytree(tmp_path / "resumed", tmp_path / "stream_then_memory")
    config.train.stop_after_steps = None
    resumed_state = train_and_evaluate(config, str(tmp_path / "resumed"))
    for other in (streamed_state, resumed_state):
        assert int(other.step) == int(memory_state.step) == 32
        for a, b in zip(_params(memory_state), _params(other), strict=True):
            np.testing.assert_array_equal(a, b)
    assert _read_metrics(tmp_path / "memory") == _read_metrics(tmp_path / "stream") \
        == _read_metrics(tmp_path / "resumed")
    finished = tmp_path / "stream"  # streamed, 2 epochs, finished
    written = _read_metrics(finished)
    described = (finished / "config.json").read_bytes()
    config.train.num_epochs = 1  # a field a resume may change: its 16 steps are behind it
    capsys.readouterr()
    again = train_and_evaluate(config, str(finished))
    assert int(again.step) == int(streamed_state.step) == 32
    said = capsys.readouterr().out
    assert "has trained 32 steps and train.num_epochs=1 asks for 16: nothing to train" in said
    # not "resumed ... with" the change, as if it applied (a lowered keep_checkpoints pruned
    # nothing)
    assert "the run is finished at step 32: train.num_epochs 2 -> 1 change nothing (no step " \
        "is trained, saved or pruned)" in said and "resumed at step" not in said
    assert _read_metrics(finished) == written
    assert (finished / "config.json").read_bytes() == described  # still the run that trained
    assert not (finished / "resumes.jsonl").exists()
    config.train.num_epochs = 2
    # a run may change path on resume (a machine with less memory): the same bits
    for first, then in (("memory", "stream"), ("stream", "memory")):
        workdir = str(tmp_path / f"{first}_then_{then}")
        if first == "memory":  # (stream_then_memory: the streamed run stopped at 21 above)
            config.data.streaming, config.train.stop_after_steps = first, 21
            assert int(train_and_evaluate(config, workdir).step) == 21
        config.data.streaming, config.train.stop_after_steps = then, None
        switched = train_and_evaluate(config, workdir)
        for a, b in zip(_params(memory_state), _params(switched), strict=True):
            np.testing.assert_array_equal(a, b)
        assert _read_metrics(tmp_path / "memory") == _read_metrics(workdir)


def test_a_streamed_chunk_stays_within_the_memory_budget_with_the_same_bits(
        tiny_config, tmp_path, monkeypatch, capsys) -> None:
    """data.memory_budget_mb bounds what a streamed chunk sends to the device (it sent a
    chunk up to the next log point, whatever the budget): chunks of 3 batches here, and
    the run's bits as the in-memory one's."""
    from types import SimpleNamespace

    from jaxae.training import trainer

    config = tiny_config(**{"data.streaming": "memory", "train.num_epochs": 1})
    memory_state = train_and_evaluate(config, str(tmp_path / "memory"))
    config.data.streaming = "stream"
    sent = []
    real_next_chunk = streaming.BatchIterator.next_chunk

    def next_chunk(self, count, pad_to=None):
        sent.append(count)
        return real_next_chunk(self, count, pad_to=pad_to)

    monkeypatch.setattr(streaming.BatchIterator, "next_chunk", next_chunk)
    monkeypatch.setattr(trainer, "streamed_chunk_steps", lambda config, data: 3)
    monkeypatch.setattr(trainer, "_batch_bytes", lambda config, data: 2**21)  # past 2048 MiB?
    config.data.memory_budget_mb = 1  # no: past 1 MiB
    capsys.readouterr()
    streamed_state = train_and_evaluate(config, str(tmp_path / "stream"))
    assert sent == [3, 3, 2, 3, 3, 2]  # 16 steps, a log point every 8
    out = capsys.readouterr().out.splitlines()
    assert out[1] == ("note: one batch (2.0 MiB) is more than data.memory_budget_mb=1: it is "
                      "streamed a batch at a time"), out[:3]  # after the run's first line
    for a, b in zip(_params(memory_state), _params(streamed_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert _read_metrics(tmp_path / "memory") == _read_metrics(tmp_path / "stream")
    # the steps a budget holds: a batch of 256 images of 28x28x1 and labels is 201,728 bytes
    monkeypatch.undo()
    data = SimpleNamespace(train=range(60_000), image_shape=(28, 28, 1))
    config.train.batch_size, config.train.log_every_steps = 256, 8
    config.data.memory_budget_mb = 2048
    assert trainer.streamed_chunk_steps(config, data) == 8  # the log point binds
    config.data.memory_budget_mb = 1
    assert trainer.streamed_chunk_steps(config, data) == 5  # 1 MiB holds five
    config.train.batch_size = 2048  # more than 1 MiB: one at a time
    assert trainer.streamed_chunk_steps(config, data) == 1
