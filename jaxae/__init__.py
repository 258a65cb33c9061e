"""jaxae: autoencoders in pure JAX, Flax (Linen), Optax and Orbax."""

__version__ = "0.2.0"
