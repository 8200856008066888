"""FullGrad: input-gradients plus the bias-gradients of every layer.

Srinivas & Fleuret (2019) ([srinivas2019]_).  For a network whose layers are affine maps with
biases ``b_l`` between piecewise-linear activations (ReLU, max pooling), the *full-gradient
decomposition* is exact:

    f_c(x) = Σ_i x_i ∂f_c/∂x_i + Σ_l Σ_u b_l(u) ∂f_c/∂z_l(u)

(``z_l``: the output of layer ``l``; a convolution's bias enters at every position ``u``).  The
FullGrad saliency map aggregates both parts spatially,

    S(x) = ψ(|∇_x f_c ⊙ x|) + Σ_{conv layers l} Σ_channels ψ(|∂f_c/∂z_l ⊙ b_l|)

with ``ψ`` a min-max rescaling and a bilinear resize to the input.  Bias layers: ``Conv``,
``ConvTranspose``, ``Dense`` and ``BatchNorm`` in inference mode (effective bias
``β - γ μ / sqrt(σ² + ε)``); only layers with spatial (NHWC) outputs enter the map, all enter the
decomposition.  All gradients come from one backward pass, through zero probes added to the
outputs of the bias layers (the gradient with respect to a probe is ``∂f_c/∂z_l``).

``normalization`` chooses ``ψ`` as in the two common implementations:

* ``"paper"`` (the authors' code): per sample, ``|·|``, min-max over all channels and positions of
  the layer jointly (``/ (max + 1e-6)``), resize with ``align_corners=True``, then sum over channels.
* ``"grad_cam"`` (pytorch-grad-cam's ``FullGrad``): min-max of every channel separately
  (``/ (max + 1e-7)``), resize with ``align_corners=False``, sum, and a final per-image min-max;
  only ``Conv`` and ``BatchNorm`` layers (not ``Dense``), as there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from ..core import Choice, InputError, Inputs, OptionContext, Problem, UnsupportedError, method
from ..core.problem import as_struct, cached_trace
from ..core.resize import upsample
from ..trace.layers import intercept_outputs

NORMALIZATIONS = ("paper", "grad_cam")
BIAS_MODULES = (nn.Conv, nn.ConvTranspose, nn.Dense, nn.BatchNorm)


#: Flax NNX layers with a bias (an NNX model's submodules, as its intercepted calls show them)
NNX_BIAS_MODULES = (nnx.Conv, nnx.ConvTranspose, nnx.Linear, nnx.BatchNorm)


def _nnx_value(variable: Any) -> Any:
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


def _nnx_effective_bias(module: Any) -> jax.Array | None:
    """:func:`effective_bias` of an NNX layer: its ``bias`` (``Param`` or ``None``); for BatchNorm
    the shift of its affine map on running statistics."""
    if isinstance(module, nnx.BatchNorm):
        if module.use_running_average is not True:
            raise UnsupportedError(
                "FullGrad needs BatchNorm in inference mode (use_running_average=True); call model.eval() first: "
                "its bias depends on the batch otherwise."
            )
        scale = _nnx_value(module.scale) if module.scale is not None else 1.0
        shift = _nnx_value(module.bias) if module.bias is not None else 0.0
        return shift - scale * _nnx_value(module.mean) / jnp.sqrt(_nnx_value(module.var) + module.epsilon)
    bias = getattr(module, "bias", None)
    return None if bias is None else _nnx_value(bias)


def effective_bias(module: Any) -> jax.Array | None:
    """The bias a layer adds to its output (``None``: it has none)."""
    if isinstance(module, NNX_BIAS_MODULES):
        return _nnx_effective_bias(module)
    variables = module.variables
    params = variables.get("params", {})
    if isinstance(module, nn.BatchNorm):
        if module.use_running_average is not True:
            raise UnsupportedError(
                "FullGrad needs BatchNorm in inference mode (use_running_average=True); layer "
                f"{'/'.join(module.path)!r} "
                "is not: its bias depends on the batch."
            )
        stats = variables["batch_stats"]
        scale = params["scale"] if module.use_scale else 1.0
        shift = params["bias"] if module.use_bias else 0.0
        return shift - scale * stats["mean"] / jnp.sqrt(stats["var"] + module.epsilon)
    if "bias" in params:
        return params["bias"]
    return None


def bias_layers(problem: Problem, inputs: Inputs) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """``(name, output shape, module type)`` of every bias layer the model calls on this input."""
    forward = problem.forward.module("FullGrad")
    del forward

    def trace(variables: Any, x: Any, kwargs: Any) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        found: list[tuple[str, tuple[int, ...], str]] = []

        def record(name: str, module: Any, out: Any) -> Any:
            has_bias = isinstance(module, BIAS_MODULES + NNX_BIAS_MODULES) and isinstance(out, jax.Array)
            if has_bias and effective_bias(module) is not None:
                found.append((name, tuple(out.shape), type(module).__name__))
            return out

        def run(variables: Any, x: Any, kwargs: Any) -> None:
            found.clear()
            with intercept_outputs(record):
                problem.forward(variables, x, kwargs)

        jax.eval_shape(run, variables, x, kwargs)
        return tuple(found)

    structs = as_struct((inputs.variables, inputs.x, dict(inputs.kwargs)))
    return cached_trace("fullgrad-bias-layers", problem.forward, trace, *structs)


def full_gradients(problem: Problem, inputs: Inputs) -> tuple[jax.Array, dict[str, jax.Array], dict[str, jax.Array]]:
    """``(∇_x f_c, {layer: ∂f_c/∂z_l}, {layer: b_l})`` in one backward pass (classes fixed at ``x``)."""
    layers = bias_layers(problem, inputs)
    indices = problem.class_indices(inputs)
    probes = {name: jnp.zeros(shape, inputs.x.dtype) for name, shape, _ in layers}

    def total(x: jax.Array, probes: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        biases: dict[str, jax.Array] = {}

        def add_probe(name: str, module: Any, out: Any) -> Any:
            if name in probes and name not in biases:
                bias = effective_bias(module)
                assert bias is not None  # probes only name the layers bias_layers found with a bias
                biases[name] = bias
                return out + probes[name]
            return out

        with intercept_outputs(add_probe):
            outputs = problem.forward(inputs.variables, x, inputs.kwargs)
        return jnp.sum(problem.target.select(outputs, indices)), biases

    (grad_x, grad_layers), biases = jax.grad(total, argnums=(0, 1), has_aux=True)(inputs.x, probes)
    return grad_x, grad_layers, biases


def _rescale(values: jax.Array, axes: tuple[int, ...], eps: float) -> jax.Array:
    values = values - values.min(axis=axes, keepdims=True)
    return values / (values.max(axis=axes, keepdims=True) + eps)


def _validate(ctx: OptionContext) -> None:
    if ctx.inputs.x.ndim != 4:
        raise InputError(f"FullGrad aggregates spatial maps of NHWC images; x has shape {tuple(ctx.inputs.x.shape)}.")
    ctx.problem.forward.module("FullGrad")


@method("fullgrad", family="gradient", signed=False, validate=_validate)
def fullgrad(
    problem: Problem,
    inputs: Inputs,
    *,
    normalization: Choice(*NORMALIZATIONS) = "paper",  # type: ignore[valid-type]
) -> jax.Array:
    """FullGrad ([srinivas2019]_): rescaled input-gradient and bias-gradient maps, summed.

    ``S = ψ(|∇_x f_c ⊙ x|) + Σ_l Σ_channels ψ(|∂f_c/∂z_l ⊙ b_l|)`` over the convolution and BatchNorm
    layers with a bias, ``ψ`` = min-max rescaling + bilinear resize (``normalization``: the authors'
    ``"paper"`` or pytorch-grad-cam's ``"grad_cam"``, module docstring).  Needs a Linen module.

    Returns:
      ``x``-shaped non-negative map (the same value in every channel of a pixel).

    Example:
      >>> sal = xj.fullgrad(model, variables, x)
      >>> sal.shape == x.shape, bool((sal >= 0).all())
      (True, True)
    """
    x = inputs.x
    grad_x, grad_layers, biases = full_gradients(problem, inputs)
    kinds = {name: kind for name, _, kind in bias_layers(problem, inputs)}
    paper = normalization == "paper"
    eps = 1e-6 if paper else 1e-7
    input_term = jnp.abs(grad_x * x)
    total = _rescale(input_term, (1, 2, 3) if paper else (1, 2), eps).sum(axis=-1)
    for name, grad in grad_layers.items():
        if grad.ndim != 4 or (not paper and kinds[name] not in ("Conv", "BatchNorm")):
            continue
        term = _rescale(jnp.abs(grad * biases[name]), (1, 2, 3) if paper else (1, 2), eps)
        total = total + upsample(term, x.shape, mode="bilinear_aligned" if paper else "bilinear").sum(axis=-1)
    if not paper:
        total = _rescale(total, (1, 2), 1e-7)
    return jnp.broadcast_to(total[..., None], x.shape)


__all__ = ["NORMALIZATIONS", "bias_layers", "effective_bias", "full_gradients", "fullgrad"]
