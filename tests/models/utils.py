"""Shared helpers of the model tests."""

import jax
import jax.numpy as jnp
import numpy as np


def np_init(model, x, seed=0, **kwargs):
    """Variables of ``model`` filled from NumPy (LeCun-normal kernels, zero biases, unit BN scale and
    variance): the structure of ``model.init`` without compiling JAX's random-number kernels, which
    costs ~1 s per layer on XLA:CPU."""
    shapes = jax.eval_shape(lambda a: model.init(jax.random.key(0), a, **kwargs), x)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        leaf = path[-1].key
        if leaf == "kernel":
            return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])), s.dtype)
        return jnp.full(s.shape, 1.0 if leaf in ("scale", "var") else 0.0, s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)
