"""jaxae: autoencoders in pure JAX, Flax (Linen), Optax and Orbax."""

__version__ = "0.2.0"


def _configs_of_a_clone() -> None:
    """An installed jaxae maps the repository's configs/ folder to `jaxae.configs`; a clone
    used without installing (PYTHONPATH=.) gets the same module from that folder."""
    import importlib.util  # noqa: PLC0415 (kept out of the package's namespace)
    import os  # noqa: PLC0415
    import sys  # noqa: PLC0415

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "configs")
    init = os.path.join(folder, "__init__.py")
    if "jaxae.configs" in sys.modules or not os.path.isfile(init):
        return
    if importlib.util.find_spec("jaxae.configs") is not None:  # installed: use its mapping
        return
    spec = importlib.util.spec_from_file_location("jaxae.configs", init,
                                                  submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules["jaxae.configs"] = module
    spec.loader.exec_module(module)
    globals()["configs"] = module  # as the import system binds a submodule it loads


_configs_of_a_clone()
