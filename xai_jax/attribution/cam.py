"""The CAM family: class activation maps at a layer's resolution, ``(B, h, w)``.

With ``A`` the chosen layer's output ``(B, h, w, K)`` and ``g = ∂f_c/∂A``:

* CAM (Zhou et al. 2016): ``Σ_k w_{k,c} A_k`` with ``w`` the kernel of the dense layer that follows
  global average pooling.  Equals Grad-CAM without ReLU × ``h·w`` for a GAP+dense head.
* Grad-CAM (Selvaraju et al. 2017): ``ReLU(Σ_k α_k A_k)``, ``α_k = mean_{ij} g_{ijk}``
  (Captum ``LayerGradCam``, ``relu_attributions=True``).
* Grad-CAM++ (Chattopadhyay et al. 2018): ``α_k = Σ_ij ReLU(g) · g² / (2g² + Σ_ij A_k · g³ + ε)``.
* XGrad-CAM (Fu et al. 2020): ``α_k = Σ_ij g · A_k / (Σ_ij A_k + ε)``.
* Layer-CAM (Jiang et al. 2021): ``ReLU(Σ_k ReLU(g_k) ⊙ A_k)``.
* Score-CAM (Wang et al. 2020): ``α = softmax_k f_c(x ⊙ s(A_k))`` with ``s`` the bilinear upsampling
  (align_corners=True) of ``A_k`` to the input size, min-max normalised per channel.
* Guided Grad-CAM: guided backprop × Grad-CAM upsampled to the input (nearest, as Captum).

Grad-CAM++/XGrad/Layer/Score-CAM follow pytorch-grad-cam (its ε values; a final ReLU as its
``BaseCAM``), before its min-max scaling.  Constant or all-zero maps give finite output, never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Problem, Target, chunked_vmap, compiled, prepare, register
from ..core.model import Model
from ..core.resize import upsample
from ..trace import layer_info, probed_forward
from .backprop import modified_relu_gradient

CAM_WEIGHTINGS = ("grad_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam")


def _spatial_layer(problem: Problem, inputs: Inputs, layer: str) -> Any:
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    if len(info.shape) != 4:
        raise InputError(f"layer {layer!r} has output shape {info.shape}; CAM methods need a spatial (B, h, w, channels) layer.")
    return info


def activation_and_gradient(problem: Problem, inputs: Inputs, layer: str) -> tuple[jax.Array, jax.Array]:
    """The layer's activation ``A`` and ``∂f_c/∂A`` (classes fixed at ``x``)."""
    info = _spatial_layer(problem, inputs, layer)
    run = probed_forward(problem.forward, layer)

    def total(probe: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs, activation = run(inputs.variables, inputs.x, inputs.kwargs, probe)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, inputs.indices))), activation

    gradient, activation = jax.grad(total, has_aux=True)(jnp.zeros(info.shape, info.dtype))
    return activation, gradient


def _weighted_map(kind: str, a: jax.Array, g: jax.Array) -> jax.Array:
    spatial = (1, 2)
    if kind == "grad_cam":
        weights = g.mean(axis=spatial, keepdims=True)
    elif kind == "grad_cam_plus_plus":
        g2, g3 = g * g, g * g * g
        alpha = g2 / (2 * g2 + a.sum(axis=spatial, keepdims=True) * g3 + 1e-6)
        alpha = jnp.where(g != 0, alpha, 0.0)
        weights = (jnp.maximum(g, 0) * alpha).sum(axis=spatial, keepdims=True)
    elif kind == "xgrad_cam":
        weights = (g * a / (a.sum(axis=spatial, keepdims=True) + 1e-7)).sum(axis=spatial, keepdims=True)
    elif kind == "layer_cam":
        return jnp.maximum((jnp.maximum(g, 0) * a).sum(axis=-1), 0)
    else:  # pragma: no cover - guarded by the public functions
        raise InputError(f"unknown CAM weighting {kind!r}")
    return jnp.maximum((weights * a).sum(axis=-1), 0)


@compiled(static=("layer", "kind"))
def _gradient_cam(problem: Problem, inputs: Inputs, *, layer: str, kind: str) -> jax.Array:
    activation, gradient = activation_and_gradient(problem, inputs, layer)
    return _weighted_map(kind, activation, gradient)


def _make_gradient_cam(kind: str, summary: str) -> Any:
    def method(
        model: Model, variables: Any, x: Any, target: Target = None, *, layer: str, model_kwargs: Mapping[str, Any] | None = None
    ) -> jax.Array:
        problem, inputs = prepare(model, variables, x, target, model_kwargs)
        _spatial_layer(problem, inputs, layer)
        return _gradient_cam(problem, inputs, layer=layer, kind=kind)

    method.__name__ = method.__qualname__ = kind
    method.__doc__ = f"""{summary}

    Args:
      layer: name of a spatial layer (see ``xj.layers``), usually the last convolution.

    Returns:
      ``(B, h, w)`` maps at the layer's resolution; ``xj.upsample(maps, x.shape)`` resizes them.
    """
    return register(kind, family="cam", signed=False, resolution="layer", needs=("layer",))(method)


grad_cam = _make_gradient_cam("grad_cam", "Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_k mean_ij(∂f_c/∂A_k) · A_k).")
grad_cam_plus_plus = _make_gradient_cam("grad_cam_plus_plus", "Grad-CAM++ (Chattopadhyay et al. 2018), pytorch-grad-cam semantics.")
xgrad_cam = _make_gradient_cam("xgrad_cam", "XGrad-CAM (Fu et al. 2020): α_k = Σ_ij g·A_k / Σ_ij A_k.")
layer_cam = _make_gradient_cam("layer_cam", "Layer-CAM (Jiang et al. 2021): ReLU(Σ_k ReLU(∂f_c/∂A_k) ⊙ A_k).")


def _dense_head(problem: Problem, inputs: Inputs, head: str | None) -> jax.Array:
    """Kernel ``(K, classes)`` of the dense layer after global average pooling."""
    from ..trace.layers import list_layers

    listed = list_layers(problem.forward, inputs.variables, inputs.x, inputs.kwargs)
    if head is None:
        dense = [layer for layer in listed if layer.type == "Dense"]
        if not dense:
            raise InputError("cam needs a Dense head after global average pooling; the model has no Dense layer (pass head=).")
        head = dense[-1].name
    elif head not in listed.names():
        from ..core.errors import LayerNotFoundError, unknown_name_message

        raise LayerNotFoundError(unknown_name_message("layer", head, listed.names()))
    params = inputs.variables["params"]
    for part in head.split("#")[0].split("/"):
        params = params.get(part, {}) if hasattr(params, "get") else {}
    if "kernel" not in params or params["kernel"].ndim != 2:
        raise InputError(f"head {head!r} is not a Dense layer with a 2-D kernel.")
    return params["kernel"]


@compiled(static=("layer", "head"))
def _cam(problem: Problem, inputs: Inputs, *, layer: str, head: str | None) -> jax.Array:
    info = _spatial_layer(problem, inputs, layer)
    kernel = _dense_head(problem, inputs, head)
    if kernel.shape[0] != info.shape[-1]:
        raise InputError(f"the head's kernel takes {kernel.shape[0]} features but layer {layer!r} has {info.shape[-1]} channels.")
    outputs, activation = probed_forward(problem.forward, layer)(inputs.variables, inputs.x, inputs.kwargs, jnp.zeros(info.shape, info.dtype))
    indices = problem.target.indices(outputs, inputs.indices)
    if indices is None:
        raise InputError("cam explains a class: pass None, an int or an index array as target.")
    return jnp.einsum("bhwk,kb->bhw", activation, kernel[:, indices])


@register("cam", family="cam", signed=True, resolution="layer", needs=("layer",))
def cam(
    model: Model, variables: Any, x: Any, target: Target = None, *, layer: str, head: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Class activation map (Zhou et al. 2016): ``Σ_k w_{k,c} A_k`` for a GAP + dense classifier.

    Args:
      layer: the last convolutional layer (the maps that are globally average-pooled).
      head: the dense layer after pooling (default: the model's last Dense layer).
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    _spatial_layer(problem, inputs, layer)
    return _cam(problem, inputs, layer=layer, head=head)


@compiled(static=("layer", "batch_size"))
def _score_cam(problem: Problem, inputs: Inputs, *, layer: str, batch_size: int | None) -> jax.Array:
    info = _spatial_layer(problem, inputs, layer)
    x = inputs.x
    outputs, activation = probed_forward(problem.forward, layer)(inputs.variables, x, inputs.kwargs, jnp.zeros(info.shape, info.dtype))
    indices = problem.target.indices(outputs, inputs.indices)
    f = problem.scalar_fn(inputs, indices)
    channels = jnp.moveaxis(activation, -1, 0)  # (K, B, h, w)
    masks = jax.vmap(lambda a: upsample(a, x.shape, mode="bilinear_aligned"))(channels)  # (K, B, H, W)
    low = masks.min(axis=(2, 3), keepdims=True)
    high = masks.max(axis=(2, 3), keepdims=True)
    masks = (masks - low) / (high - low + 1e-8)
    scores = chunked_vmap(lambda m: f(x * m.reshape(*m.shape, *[1] * (x.ndim - 3))), masks, chunk_size=batch_size)  # (K, B)
    weights = jax.nn.softmax(scores.T, axis=-1)  # (B, K)
    return jnp.maximum(jnp.einsum("bk,bhwk->bhw", weights, activation), 0)


@register("score_cam", family="cam", signed=False, resolution="layer", needs=("layer",))
def score_cam(
    model: Model, variables: Any, x: Any, target: Target = None, *, layer: str, batch_size: int | None = 16,
    model_kwargs: Mapping[str, Any] | None = None,
) -> jax.Array:
    """Score-CAM (Wang et al. 2020), pytorch-grad-cam semantics (softmax over channel scores).

    Args:
      batch_size: channels (masked forward passes) evaluated at once.
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    _spatial_layer(problem, inputs, layer)
    return _score_cam(problem, inputs, layer=layer, batch_size=batch_size)


@compiled(static=("layer",))
def _guided_grad_cam(problem: Problem, inputs: Inputs, *, layer: str) -> jax.Array:
    activation, gradient = activation_and_gradient(problem, inputs, layer)
    coarse = _weighted_map("grad_cam", activation, gradient)
    fine = modified_relu_gradient(problem, inputs, inputs.x, problem.class_indices(inputs), "guided_backprop")
    up = upsample(coarse, inputs.x.shape, mode="nearest")
    return fine * up.reshape(*up.shape, *[1] * (inputs.x.ndim - 3))


@register("guided_grad_cam", family="cam", signed=True, resolution="input", needs=("layer",))
def guided_grad_cam(
    model: Model, variables: Any, x: Any, target: Target = None, *, layer: str, model_kwargs: Mapping[str, Any] | None = None
) -> jax.Array:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop ⊙ Grad-CAM upsampled (nearest).

    Returns an input-resolution map (Captum's ``GuidedGradCam``).
    """
    problem, inputs = prepare(model, variables, x, target, model_kwargs)
    _spatial_layer(problem, inputs, layer)
    return _guided_grad_cam(problem, inputs, layer=layer)
