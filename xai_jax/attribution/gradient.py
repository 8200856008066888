"""Gradient-based maps: the gradient, its magnitude (saliency) and input × gradient.

References: [simonyan2014]_ (saliency, ``|∂f_c(x)/∂x|``), [shrikumar2016]_ (input × gradient,
``x ⊙ ∂f_c(x)/∂x``).  Keys refer to ``docs/references.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import Inputs, Problem, method
from ..trace.gradients import target_gradient
from ..trace.tokens import on_embedding


@method("gradient", family="gradient", signed=True, tokens=on_embedding)
def gradient(problem: Problem, inputs: Inputs) -> jax.Array:
    """Gradient of the target output with respect to the input, ``∂f_c(x)/∂x`` (Captum
    ``Saliency(abs=False)``).

    Returns:
      ``float32`` array with ``x``'s shape.

    Example:
      >>> attr = xj.gradient(model, variables, x, target=3)
      >>> attr.shape == x.shape
      True
    """
    return target_gradient(problem, inputs, inputs.x, inputs.indices)


@method("saliency", family="gradient", signed=False, tokens=on_embedding)
def saliency(problem: Problem, inputs: Inputs) -> jax.Array:
    """Saliency map ``|∂f_c(x)/∂x|`` ([simonyan2014]_; Captum ``Saliency(abs=True)``).

    Example:
      >>> bool((xj.saliency(model, variables, x) >= 0).all())
      True
    """
    return jnp.abs(target_gradient(problem, inputs, inputs.x, inputs.indices))


@method("input_x_gradient", family="gradient", signed=True, tokens=on_embedding)
def input_x_gradient(problem: Problem, inputs: Inputs) -> jax.Array:
    """Input × gradient, ``x ⊙ ∂f_c(x)/∂x`` ([shrikumar2016]_; Captum ``InputXGradient``).

    Example:
      >>> attr = xj.input_x_gradient(model, variables, x)
      >>> attr.shape == x.shape
      True
    """
    return inputs.x * target_gradient(problem, inputs, inputs.x, inputs.indices)
