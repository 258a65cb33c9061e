"""A config's run trained in a loop of your own, from jaxae's parts, to train.py's bits.

    python examples/own_loop.py configs/test.py    # a config file, as train.py's --config

Each part is the one train.py uses: `derive_keys(seed)` gives the data, initialisation and
training streams; `build.load_data` the splits (the config's sizes, subset, validation);
`build.run_objects` the task, models and objective; `create_train_state` the parameters,
drawn under the config's initialisation scheme; `batches.epoch_permutation` each epoch's
order (a streamed split, larger than memory: `StreamedBatches` reads the same batches from
disk); `steps.make_train_step` one step, which folds the step number into its key. Change
any part and the loop is yours; keep them and its parameters equal train.py's bit for bit on
the same machine (`tests/test_library.py` checks it; on a GPU, with the deterministic
kernels train.py asks XLA for, which `main` asks for first: docs/devices.md). train.py adds
checkpoints, resume, evaluation and logs around the same steps, and compiles many steps as
one loop.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import ml_collections
import numpy as np

from jaxae import build
from jaxae import config as config_lib
from jaxae.cli.config_flag import locate_code_names
from jaxae.cli.determinism import use_deterministic_gpu_ops
from jaxae.data import DataError, StreamedBatches, batches
from jaxae.keys import derive_keys
from jaxae.training import steps


def train(config: ml_collections.ConfigDict) -> steps.TrainState:
    """The run `config` describes, trained for its epochs: the final train state."""
    config_lib.check_new_run(config)  # as train.py: fields the run would ignore are refused,
    variational = build.variational_before_data(config)  # before the data is read
    if variational is not None:
        build.check_unread_fields(config, variational, config_lib.make_task(config))
    keys = derive_keys(config.seed)
    data = build.load_data(config, keys.data)
    task, model, train_model, objective = build.run_objects(config, data.image_shape,
                                                            data.num_classes, train=True)
    if variational is None:  # a model that builds only at the data's size
        build.check_unread_fields(config, model.variational, task)
    batch_size, num_examples = config.train.batch_size, len(data.train)
    steps_per_epoch = batches.steps_per_epoch(num_examples, batch_size)
    tx = build.make_optimizer(config, steps_per_epoch * config.train.num_epochs)
    state = steps.create_train_state(model, tx, task.input_shape(data.image_shape),
                                     keys.init, build.init_scheme(config))  # float32 weights
    train_step = steps.make_train_step(train_model, task, objective)
    if data.streamed:  # read from disk batch by batch, in the same order as in memory
        with StreamedBatches(data.train, keys.data, batch_size, config.train.num_epochs) as s:
            for step, batch in enumerate(s.batches()):
                state, metrics = train_step(state, batch, keys.train)
                if (step + 1) % steps_per_epoch == 0:
                    report(step // steps_per_epoch, metrics)
        return state
    images, labels = np.asarray(data.train.images), np.asarray(data.train.labels)
    for epoch in range(config.train.num_epochs):
        order = np.asarray(batches.epoch_permutation(keys.data, epoch, num_examples))
        for i in range(steps_per_epoch):
            rows = order[i * batch_size:(i + 1) * batch_size]
            state, metrics = train_step(state, {"image": images[rows],
                                                "label": labels[rows]}, keys.train)
        report(epoch, metrics)
    return state


def report(epoch: int, metrics: dict) -> None:
    print(f"epoch {epoch + 1}: train loss {float(metrics['loss']):.4f} (last batch)")


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """get_config() of the config file at `path` (a shipped one also by its name: "test"),
    its model and task files found beside it or in the current folder, as train.py does."""
    if not path.endswith(".py") and "/" not in path:
        try:
            return importlib.import_module(f"jaxae.configs.{path}").get_config()
        except ModuleNotFoundError:
            raise SystemExit(f"error: {path!r} is no config file and no shipped config's name: "
                             "give a config file, e.g. configs/test.py") from None
    spec = importlib.util.spec_from_file_location("own_loop_config", path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise SystemExit(f"error: config file {path!r} does not exist: give one, e.g. "
                         "configs/test.py")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:  # `import my_models` in the config finds its neighbour
        sys.path.insert(1, folder)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise SystemExit(f"error: config file {path!r} defines no get_config() returning the "
                         "config: define one, as configs/test.py does")
    config = module.get_config()
    config_lib.fill_defaults(config)  # a section given whole: its other fields' defaults
    locate_code_names(config, path)  # a model file beside the config, as train.py finds it
    return config


def main(argv: list[str]) -> None:
    """The command line: one config file (or a shipped config's name); a wrong config or data
    is one line, as train.py says it."""
    use_deterministic_gpu_ops()  # as train.py, before JAX's backend starts
    usage = "usage: python examples/own_loop.py CONFIG.py (a config file; a shipped one by name)"
    if argv in (["-h"], ["--help"]):
        print(__doc__.split("\n\n")[0] + "\n" + usage)
        sys.exit(0)
    if len(argv) != 1:
        raise SystemExit(usage)
    try:
        run_config = load_config_file(argv[0])
        config_lib.validate(run_config)
        state = train(run_config)
    except (config_lib.ConfigError, DataError, OSError, ImportError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"trained {int(state.step)} steps")


if __name__ == "__main__":
    main(sys.argv[1:])
