"""jaxae: autoencoders in pure JAX, Flax (Linen), Optax and Orbax.

Import the sub-package you need (`import jaxae.models`): `models` (the registry,
`build_model`, the base classes), `losses` and `objectives` (pure functions), `tasks`
(corruption), `data` (`load_dataset`, `from_arrays`, `make_splits`, `StreamedBatches`),
`training.steps` (`create_train_state`, `make_train_step`, `make_eval_step`),
`training.checkpoints`, `evaluation` (`iwae`, `generation`, `probe`, `pictures`), `build`
(a config's parts, checked) and `config`. The README's library section uses them.
"""

__version__ = "0.2.0"


def _require_posix() -> None:
    """jaxae locks its files with fcntl and stops on POSIX signals: Linux and macOS. On
    Windows, one line that says so, before any submodule fails on its own."""
    try:
        import fcntl  # noqa: F401, PLC0415
    except ImportError:
        raise ImportError("jaxae runs on Linux and macOS (it locks its files with fcntl and "
                          "stops on POSIX signals): on Windows, run it under WSL2") from None


_require_posix()


def _configs_of_a_clone() -> None:
    """An installed jaxae maps the repository's configs/ folder to `jaxae.configs`; a clone
    used without installing (PYTHONPATH=.), or beside another checkout's editable install,
    gets the module from its own folder."""
    import importlib.util  # noqa: PLC0415 (kept out of the package's namespace)
    import os  # noqa: PLC0415
    import sys  # noqa: PLC0415

    package = os.path.dirname(os.path.realpath(__file__))
    folder = os.path.join(os.path.dirname(package), "configs")
    init = os.path.join(folder, "__init__.py")
    if "jaxae.configs" in sys.modules or not os.path.isfile(init):
        return
    installed = importlib.util.find_spec("jaxae.configs")  # origin None: a bare folder
    if installed is not None and installed.origin is not None and os.path.dirname(
            os.path.realpath(installed.origin)) in (folder, os.path.join(package, "configs")):
        return  # this jaxae's own, as installed (an editable install of another checkout
        # maps to its configs: not these)
    spec = importlib.util.spec_from_file_location("jaxae.configs", init,
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["jaxae.configs"] = module
    spec.loader.exec_module(module)
    globals()["configs"] = module  # as the import system binds a submodule it loads


_configs_of_a_clone()
