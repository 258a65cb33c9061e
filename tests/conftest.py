"""Shared fixtures: real Fashion-MNIST prepared once per session, and tiny configs.

XLA compilation, not training, is most of a test's time on a CPU. So compiled programs are
cached on disk for the session (many tests build the same small models), and the tests, and
the processes they start, compile with TEST_XLA_FLAGS: XLA's backend optimisation level 0,
which halves it, and XLA's CPU loop emitters of before its MLIR fusion emitters, which
compile the tests' small programs faster again (and run large ones slower), and matmuls on
one thread per process (the tests run a process per core), and the deterministic GPU kernels
that train.py and evaluate.py ask for (`jaxae.cli.determinism`: no CPU program changes), so
that a command a test starts finds the programs the test compiled with the same flags in
the cache; and TEST_JAX_SETTINGS, which
keep Python's stack out of the programs' source locations. Nothing a test checks depends
on those settings: shapes, errors, values against references within tolerances, and
bitwise repeatability and resume within one setting. The programs users run are compiled
with XLA's and JAX's defaults; `tests/test_cli.py` trains and evaluates once with them, and
the lesson's figures come from them.
"""

import os
import time

import jax
import pytest

from jaxae.cli.determinism import DETERMINISTIC_FLAG
from jaxae.config import base_config, get
from jaxae.data import idx, load_dataset, sources
from jaxae.data.mnist5k import write_idx_file

# (the third flag: two processes of two threads each on two cores ran the suite a seventh
# slower, `pytest -p no:cacheprovider` with and without it)
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
                  f"--xla_cpu_multi_thread_eigen=false {DETERMINISTIC_FLAG}")

# Source locations of no Python frame in the programs JAX lowers (its default keeps 100 frames
# an operation): smaller programs to lower and compile, the same computation
TEST_JAX_SETTINGS = {"JAX_TRACEBACK_IN_LOCATIONS_LIMIT": "0"}


def with_test_flags(xla_flags: str = "") -> str:
    """XLA_FLAGS for a test process: the given flags and the tests' own (TEST_XLA_FLAGS)."""
    return f"{xla_flags} {TEST_XLA_FLAGS}".strip()


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """`--numprocesses=auto` (pyproject.toml): a worker more than the cores, as many tests
    wait on a train.py or evaluate.py process of their own, which takes their core meanwhile
    (on 2 cores, 3 workers: the suite a seventh shorter than with 2)."""
    return len(os.sched_getaffinity(0)) + 1


# The files that take longest, the longest first: with whole files per worker
# (--dist=loadfile), starting them first keeps a long one from running alone at the end.
LONGEST_FILES = ("test_experiments.py", "test_cli.py", "test_faults.py", "test_reliability.py",
                 "test_training.py", "test_parallel.py", "test_library.py", "test_bench.py",
                 "test_streaming.py", "test_shapes.py", "test_vae.py", "test_models.py")


def pytest_collection_modifyitems(items) -> None:
    """The longest files first (LONGEST_FILES), the others after them as collected; each
    file's tests keep their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):  # before JAX starts its backend
        os.environ["XLA_FLAGS"] = with_test_flags(os.environ.get("XLA_FLAGS", ""))
    os.environ.update(TEST_JAX_SETTINGS)  # the processes the tests start read them too
    for name, value in TEST_JAX_SETTINGS.items():
        jax.config.update(name.lower(), int(value))
    pytest_cache = getattr(config, "cache", None)  # None under `-p no:cacheprovider`
    worker = getattr(config, "workerinput", {}).get("workerid", "main")  # pytest-xdist
    cache = pytest_cache.mkdir(f"jax_compilation_cache_{worker}") if pytest_cache else None
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def fashion_prepared(tmp_path_factory):
    """(TFDS dir, data set, seconds): the whole of Fashion-MNIST prepared once from the IDX
    files that are found automatically (the Debian package's, which `make setup` installs)."""
    folder = tmp_path_factory.mktemp("tfds")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(sources.env_var("fashion_mnist"), raising=False)
        start = time.perf_counter()
        dataset = load_dataset("fashion_mnist", tfds_dir=str(folder))
        return folder, dataset, time.perf_counter() - start


@pytest.fixture(scope="session")
def fashion_full_tfds_dir(fashion_prepared) -> str:
    """A TFDS data dir holding the whole of Fashion-MNIST, prepared."""
    return str(fashion_prepared[0])


SLICE_SIZES = {"train": 2048, "test": 1024}  # more than any test's data.train_size, test_size


def write_fashion_slice(folder: str) -> None:
    """Fashion-MNIST's IDX files in `folder`, cut to the first SLICE_SIZES images of each
    split (the Debian package's)."""
    whole = sources.debian_idx_dir(sources.CONFIGS["fashion_mnist"])
    for split, stems in idx.SPLIT_FILES.items():
        for stem in stems:
            array = idx.read_idx(idx.find_idx_file(whole, stem))
            write_idx_file(os.path.join(folder, f"{stem}.gz"), array[:SLICE_SIZES[split]])


@pytest.fixture(scope="session")
def fashion_tfds_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding Fashion-MNIST's first SLICE_SIZES images of each split
    (the Debian package's real images), prepared as the whole set is: a run reads every
    image of its data set before it cuts data.train_size, and reading 70,000 took a third of
    a tiny run in process."""
    folder = tmp_path_factory.mktemp("fashion_slice")
    write_fashion_slice(str(folder))
    tfds_dir = tmp_path_factory.mktemp("tfds_slice")
    load_dataset("fashion_mnist", tfds_dir=str(tfds_dir), data_dir=str(folder))
    return str(tfds_dir)


class FailingOutput:
    """A stdout that takes `lines` lines, then fails every write with `error` (by default a
    reader gone, `| head`; OSError(28, ...) for a full disk); `written` holds what it took."""

    def __init__(self, lines: int = 0, error: OSError | None = None):
        self.left, self.written = lines, []
        self.error = error or BrokenPipeError(32, "Broken pipe")

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise self.error
        self.written.append(text)
        self.left -= text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def lines_of(text: str) -> list[str]:
    return text.strip().splitlines()


def one_line(text: str) -> str:
    """The line of an output that must be one line: a failure shows the whole output."""
    lines = lines_of(text)
    assert len(lines) == 1, f"not one line but {len(lines)}:\n{text}"
    return lines[0]


def set_fields(config, overrides: dict) -> None:
    """config["a.b"] = value for each dotted path; a whole section may be given as a dict."""
    for path, value in overrides.items():
        section, _, field = path.rpartition(".")
        node = get(config, section) if section else config
        with node.unlocked():
            node[field] = value


@pytest.fixture
def tiny_config(fashion_tfds_dir):
    """A function making a fast config on real images: 512 train, 256 test, batch 32.
    Overrides name fields by their dotted paths: tiny_config(**{"model.name": "vae"})."""

    def make(**overrides):
        config = base_config()
        set_fields(config, {
            "data.tfds_dir": fashion_tfds_dir, "data.train_size": 512, "data.test_size": 256,
            "train.batch_size": 32, "eval.batch_size": 128, "train.num_epochs": 2,
            "train.log_every_steps": 8, **overrides})
        return config

    return make


def tiny_model_source(side: int = 8, encoder_bias: float | None = None,
                      registered_as: str | None = None) -> str:
    """A model file of a user's own: `Tiny`, a dense AE of side x side x 1 images, code 4
    (its encoder's biases start at `encoder_bias` where given: an initialiser of its own;
    registered under the short name `registered_as` where given)."""
    bias = f"bias_init=nn.initializers.constant({encoder_bias}), " if encoder_bias else ""
    register = f"@models.register_model({registered_as!r})\n" if registered_as else ""
    return f'''
import flax.linen as nn

from jaxae import models


{register}class Tiny(models.Autoencoder):
    image_shape: tuple
    latent_dim: int = 4

    @property
    def latent_shape(self):
        return (self.latent_dim,)

    @nn.compact
    def encode(self, x, *, labels=None):
        return nn.Dense(self.latent_dim, {bias}name="encoder")(x.reshape(x.shape[0], -1))

    @nn.compact
    def decode(self, z, *, labels=None):
        return nn.Dense({side * side}, name="decoder")(z).reshape(z.shape[0], {side}, {side}, 1)
'''
