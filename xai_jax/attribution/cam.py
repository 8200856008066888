"""The CAM family: class activation maps at a layer's resolution, ``(B, h, w)``.

With ``A`` the chosen layer's output ``(B, h, w, K)`` and ``g = ∂f_c/∂A``, every gradient-weighted
CAM is ``ReLU(Σ_k (w ⊙ A)_k)`` for a *weighting* ``w = weighting(A, g)`` of shape ``(B, 1, 1, K)``
(one weight per channel) or ``(B, h, w, K)`` (per location):

=====================  ==========================================================================
weighting              ``w``
=====================  ==========================================================================
``grad_cam``           ``mean_ij g_k`` ([selvaraju2017]_; Captum ``LayerGradCam``)
``grad_cam_plus_plus`` ``Σ_ij ReLU(g) · g² / (2g² + Σ_ij A_k · g³ + ε)`` ([chattopadhyay2018]_)
``xgrad_cam``          ``Σ_ij g · A_k / (Σ_ij A_k + ε)`` ([fu2020]_)
``layer_cam``          ``ReLU(g)`` per location ([jiang2021]_)
=====================  ==========================================================================

The weightings are public functions in :data:`WEIGHTINGS` (``(A, g) -> w``); :func:`gradient_cam`
runs any of them, or a user's own, and :func:`cam_method` declares a new registered CAM from one.
HiResCAM, for example, is the gradient itself as a per-location weight::

    hires_cam = xj.cam_method("hires_cam", lambda a, g: g, "HiResCAM (Draelos & Carin 2020).")

Also: CAM ([zhou2016]_, ``Σ_k w_{k,c} A_k`` from the dense head after global average pooling;
equals Grad-CAM without ReLU × ``h·w``), Score-CAM ([wang2020]_, ``softmax_k f_c(x ⊙ s(A_k))``, ``s``
the bilinear upsampling with ``align_corners=True``, min-max normalised per channel) and Guided
Grad-CAM (guided backprop × Grad-CAM upsampled to the input, nearest, as Captum).

Grad-CAM++/XGrad/Layer/Score-CAM follow pytorch-grad-cam (its ε values; a final ReLU as its
``BaseCAM``), before its min-max scaling.  Constant or all-zero maps give finite output, never NaN.

**Token layers.**  On a transformer's ``(B, N, C)`` layer the patch tokens are put back on their
grid before the weighting, as pytorch-grad-cam's ``reshape_transform`` for ViTs does: the first
``prefix_tokens`` tokens (class, distillation, register tokens) are dropped and the remaining
``h·w`` tokens, row-major, become ``(B, h, w, C)``; activations and gradients alike.  By default
both are inferred: ``prefix_tokens`` in ``0..5`` and a grid of at least 2 × 2 with the aspect ratio
of the input images (square for non-image inputs) such that ``N = prefix_tokens + h·w``; when no
or more than one split fits, :class:`~xai_jax.core.errors.InputError` lists the candidates and asks
for ``prefix_tokens=`` / ``grid=(h, w)``.  For a ViT, choose a layer whose patch tokens still reach
the output: the last block's first LayerNorm (``"encoder_layer_3/ln_1"``, pytorch-grad-cam's
``blocks[-1].norm1``), not the last block's output, which reaches the head through the class token
only (its patch-token gradient is zero).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import jax
import jax.numpy as jnp

from ..core import ChunkSize, InputError, Inputs, Method, Option, OptionContext, Problem, checks, chunked_vmap, method
from ..core.errors import LayerNotFoundError, unknown_name_message
from ..core.resize import upsample
from ..trace import layer_info, probed_forward
from ..trace.gradients import layer_activation_and_gradient
from ..trace.layers import SOFTMAX
from .backprop import modified_relu_gradient

#: ``(A, g) -> w``: activations and gradients ``(B, h, w, K)`` to weights broadcastable to ``A``.
Weighting = Callable[[jax.Array, jax.Array], jax.Array]
SPATIAL = (1, 2)


def grad_cam_weights(a: jax.Array, g: jax.Array) -> jax.Array:
    """Grad-CAM: the spatial mean of the gradient, one weight per channel."""
    return g.mean(axis=SPATIAL, keepdims=True)


def grad_cam_plus_plus_weights(a: jax.Array, g: jax.Array) -> jax.Array:
    """Grad-CAM++ (pytorch-grad-cam's closed form with ε = 1e-6; zero where ``g = 0``)."""
    g2, g3 = g * g, g * g * g
    alpha = g2 / (2 * g2 + a.sum(axis=SPATIAL, keepdims=True) * g3 + 1e-6)
    alpha = jnp.where(g != 0, alpha, 0.0)
    return (jnp.maximum(g, 0) * alpha).sum(axis=SPATIAL, keepdims=True)


def xgrad_cam_weights(a: jax.Array, g: jax.Array) -> jax.Array:
    """XGrad-CAM: ``Σ_ij g · A_k / (Σ_ij A_k + 1e-7)``."""
    return (g * a / (a.sum(axis=SPATIAL, keepdims=True) + 1e-7)).sum(axis=SPATIAL, keepdims=True)


def layer_cam_weights(a: jax.Array, g: jax.Array) -> jax.Array:
    """Layer-CAM: the rectified gradient, per location."""
    return jnp.maximum(g, 0)


WEIGHTINGS: dict[str, Weighting] = {
    "grad_cam": grad_cam_weights,
    "grad_cam_plus_plus": grad_cam_plus_plus_weights,
    "xgrad_cam": xgrad_cam_weights,
    "layer_cam": layer_cam_weights,
}


def weighted_map(weighting: Weighting, a: jax.Array, g: jax.Array) -> jax.Array:
    """``ReLU(Σ_k (weighting(A, g) ⊙ A)_k)``: ``(B, h, w)``."""
    weights = weighting(a, g)
    try:
        product = jnp.broadcast_to(weights, a.shape) * a
    except ValueError:
        raise InputError(
            f"a CAM weighting must return weights broadcastable to the activations {tuple(a.shape)} (one per channel "
            f"(B, 1, 1, K) or per location); got {tuple(weights.shape)}."
        ) from None
    return jnp.maximum(product.sum(axis=-1), 0)


def _check_spatial_layer(ctx: OptionContext, name: str, layer: Any) -> str:
    info = layer_info(ctx.problem.forward, ctx.inputs.variables, ctx.inputs.x, ctx.inputs.kwargs, layer)
    if len(info.shape) != 4 or info.type == SOFTMAX:
        raise InputError(
            f"layer {layer!r} has output shape {info.shape}; CAM methods need a spatial (B, h, w, channels) layer."
        )
    return layer


def _check_cam_layer(ctx: OptionContext, name: str, layer: Any) -> str:
    info = layer_info(ctx.problem.forward, ctx.inputs.variables, ctx.inputs.x, ctx.inputs.kwargs, layer)
    if info.type == SOFTMAX:
        raise InputError(
            f"layer {layer!r} holds attention probabilities {info.shape}; CAM methods need a spatial "
            "(B, h, w, channels) or token (B, tokens, channels) layer (attention maps: "
            "xj.attention_rollout, xj.chefer_attention)."
        )
    if len(info.shape) not in (3, 4) or not info.dtype or "float" not in info.dtype:
        raise InputError(
            f"layer {layer!r} has output {info.dtype}{list(info.shape)}; CAM methods need a spatial "
            "(B, h, w, channels) or token (B, tokens, channels) floating layer."
        )
    return layer


#: A layer name whose output is spatial, ``(B, h, w, channels)``.
SpatialLayer = Annotated[str, Option(_check_spatial_layer, needs="layer")]
#: A spatial layer or a token layer ``(B, N, channels)`` (put back on its patch grid).
CamLayer = Annotated[str, Option(_check_cam_layer, needs="layer")]

#: The most leading non-patch tokens (class, distillation, register tokens) inferred by default.
MAX_PREFIX_TOKENS = 5


def _check_prefix(ctx: OptionContext, name: str, value: Any) -> int:
    return checks.check_int(name, value, minimum=0)


def _check_grid(ctx: OptionContext, name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(f"grid must be a pair (h, w) of positive integers, the patch grid; got {value!r}.")
    return (checks.check_positive_int(f"{name}[0]", value[0]), checks.check_positive_int(f"{name}[1]", value[1]))


def token_grid(
    tokens: int,
    x_shape: tuple[int, ...],
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
    layer: str = "the layer",
) -> tuple[int, int, int]:
    """``(prefix_tokens, h, w)`` with ``tokens = prefix_tokens + h·w``: the given values, else the one
    split with ``prefix_tokens <= MAX_PREFIX_TOKENS``, ``h, w >= 2`` and the input images' aspect
    ratio (``x_shape`` ``(B, H, W, C)``; square otherwise).  :class:`InputError` when none or several fit."""
    if grid is not None:
        h, w = grid
        prefix = tokens - h * w if prefix_tokens is None else prefix_tokens
        if prefix < 0 or prefix + h * w != tokens:
            given = f"prefix_tokens={prefix_tokens} + " if prefix_tokens is not None else ""
            raise InputError(
                f"{layer} has {tokens} tokens, but {given}grid={h}x{w} ({h * w} patches) does not add up to it."
            )
        return prefix, h, w
    height, width = (x_shape[1], x_shape[2]) if len(x_shape) == 4 else (1, 1)
    prefixes = range(MAX_PREFIX_TOKENS + 1) if prefix_tokens is None else [prefix_tokens]
    found = []
    for prefix in prefixes:
        m = tokens - prefix
        for h in range(2, m + 1):
            if m % h == 0 and m // h >= 2 and h * width == (m // h) * height:
                found.append((prefix, h, m // h))
    if len(found) == 1:
        return found[0]
    shape = "square" if len(x_shape) != 4 else f"{height}:{width} (the input's aspect ratio)"
    if not found:
        given = "" if prefix_tokens is None else f"{prefix_tokens} + "
        after = f" after 0..{MAX_PREFIX_TOKENS} leading tokens" if prefix_tokens is None else ""
        raise InputError(
            f"{layer} has {tokens} tokens, which is no {given}{shape} grid of patches{after}; "
            "pass prefix_tokens= (class/register tokens before the patches) and grid=(h, w)."
        )
    options = ", ".join(f"prefix_tokens={p}, grid=({h}, {w})" for p, h, w in found)
    raise InputError(
        f"{layer} has {tokens} tokens; the patch grid is ambiguous ({options}): pass prefix_tokens= and grid=."
    )


def _resolve_tokens(ctx: OptionContext) -> dict[str, Any]:
    """The token split of a ``(B, N, C)`` layer (``prefix_tokens``, ``grid``) as :func:`token_grid`
    decides it; a spatial layer takes neither option."""
    options, inputs = ctx.options, ctx.inputs
    info = layer_info(ctx.problem.forward, inputs.variables, inputs.x, inputs.kwargs, options["layer"])
    if len(info.shape) == 4:
        if options.get("prefix_tokens") is not None or options.get("grid") is not None:
            raise InputError(
                f"layer {options['layer']!r} is spatial {info.shape}: prefix_tokens and grid apply to "
                "token layers (B, tokens, channels) only."
            )
        return {}
    prefix, h, w = token_grid(
        info.shape[1],
        tuple(inputs.x.shape),
        options.get("prefix_tokens"),
        options.get("grid"),
        f"layer {options['layer']!r}",
    )
    return {"prefix_tokens": prefix, "grid": (h, w)}


#: Number of leading non-patch tokens of a token layer (default: inferred).
PrefixTokens = Annotated[int | None, Option(_check_prefix)]
#: The patch grid ``(h, w)`` of a token layer (default: inferred).
Grid = Annotated[tuple[int, int] | None, Option(_check_grid)]


def to_grid(a: jax.Array, prefix_tokens: int | None, grid: tuple[int, int] | None) -> jax.Array:
    """A token layer's ``(B, N, C)`` values as ``(B, h, w, C)`` (leading tokens dropped); a spatial
    layer's values unchanged."""
    if a.ndim == 4:
        return a
    h, w = grid  # type: ignore[misc]
    return a[:, prefix_tokens:].reshape(a.shape[0], h, w, a.shape[-1])


def grid_activation_and_gradient(
    problem: Problem, inputs: Inputs, layer: str, prefix_tokens: int | None, grid: tuple[int, int] | None
) -> tuple[jax.Array, jax.Array]:
    """The layer's activation and gradient, token layers put back on their patch grid."""
    activation, gradient = layer_activation_and_gradient(problem, inputs, layer)
    return to_grid(activation, prefix_tokens, grid), to_grid(gradient, prefix_tokens, grid)


def _check_weighting(ctx: OptionContext, name: str, value: Any) -> Weighting:
    if isinstance(value, str):
        if value not in WEIGHTINGS:
            raise InputError(unknown_name_message("CAM weighting", value, WEIGHTINGS))
        return WEIGHTINGS[value]
    if not callable(value):
        raise InputError(
            f"weighting must be a name in {sorted(WEIGHTINGS)} or a function (activations, gradients) -> weights."
        )
    return value


@method("gradient_cam", family="cam", signed=False, resolution="layer", register=False, validate=_resolve_tokens)
def gradient_cam(
    problem: Problem,
    inputs: Inputs,
    *,
    layer: CamLayer,
    weighting: Annotated[Any, Option(_check_weighting)] = "grad_cam",
    prefix_tokens: PrefixTokens = None,
    grid: Grid = None,
) -> jax.Array:
    """Any gradient-weighted CAM: ``ReLU(Σ_k (w ⊙ A)_k)`` with ``w = weighting(A, ∂f_c/∂A)``.

    Args:
      layer: a spatial layer (see ``xj.layers``), usually the last convolution (after its ReLU:
        ``"conv4+relu"``), or a transformer's token layer ``(B, N, C)``.
      prefix_tokens: token layers: the number of leading non-patch tokens (class,
        register tokens) to drop (default: inferred, see the module docstring).
      grid: token layers: the patch grid ``(h, w)`` (default: inferred).
      weighting: a name in ``xj.attribution.cam.WEIGHTINGS`` or a function ``(A, g) -> w`` with
        ``w`` of shape ``(B, 1, 1, K)`` (per channel) or ``(B, h, w, K)`` (per location).

    Returns:
      ``(B, h, w)`` maps at the layer's resolution; ``xj.upsample(maps, x.shape)`` resizes them.

    Example:
      >>> hires = xj.gradient_cam(model, variables, x, layer="conv4+relu", weighting=lambda a, g: g)
      >>> hires.shape
      (4, 14, 14)
    """
    activation, gradient = grid_activation_and_gradient(problem, inputs, layer, prefix_tokens, grid)
    return weighted_map(weighting, activation, gradient)


def cam_method(name: str, weighting: Weighting, summary: str, *, register: bool = True) -> Method:
    """Declare (and register) a gradient-weighted CAM method from a weighting ``(A, g) -> w``."""

    def impl(
        problem: Problem, inputs: Inputs, *, layer: CamLayer, prefix_tokens: PrefixTokens = None, grid: Grid = None
    ) -> jax.Array:
        activation, gradient = grid_activation_and_gradient(problem, inputs, layer, prefix_tokens, grid)
        return weighted_map(weighting, activation, gradient)

    impl.__doc__ = f"""{summary}

    Args:
      layer: a spatial layer (see ``xj.layers``), usually the last convolution (after its ReLU:
        ``"conv4+relu"``), or a transformer's token layer ``(B, N, C)``.
      prefix_tokens: token layers: the number of leading non-patch tokens (class,
        register tokens) to drop (default: inferred, see :mod:`xai_jax.attribution.cam`).
      grid: token layers: the patch grid ``(h, w)`` (default: inferred).

    Returns:
      ``(B, h, w)`` maps at the layer's resolution; ``xj.upsample(maps, x.shape)`` resizes them.

    Example:
      >>> maps = xj.{name}(model, variables, x, layer="conv4+relu")
      >>> maps.shape
      (4, 14, 14)
    """
    impl.__module__ = __name__
    declare = method(name, family="cam", signed=False, resolution="layer", register=register, validate=_resolve_tokens)
    return declare(impl)


grad_cam = cam_method("grad_cam", grad_cam_weights, "Grad-CAM ([selvaraju2017]_): ReLU(Σ_k mean_ij(∂f_c/∂A_k) · A_k).")
grad_cam_plus_plus = cam_method(
    "grad_cam_plus_plus", grad_cam_plus_plus_weights, "Grad-CAM++ ([chattopadhyay2018]_), pytorch-grad-cam semantics."
)
xgrad_cam = cam_method("xgrad_cam", xgrad_cam_weights, "XGrad-CAM ([fu2020]_): α_k = Σ_ij g·A_k / Σ_ij A_k.")
layer_cam = cam_method("layer_cam", layer_cam_weights, "Layer-CAM ([jiang2021]_): ReLU(Σ_k ReLU(∂f_c/∂A_k) ⊙ A_k).")


def _dense_head(problem: Problem, inputs: Inputs, head: str | None) -> jax.Array:
    """Kernel ``(K, classes)`` of the dense layer after global average pooling."""
    from ..trace.layers import list_layers

    listed = list_layers(problem.forward, inputs.variables, inputs.x, inputs.kwargs)
    if head is None:
        dense = [layer for layer in listed if layer.type in ("Dense", "Linear")]  # Linen's, NNX's
        if not dense:
            raise InputError(
                "cam needs a Dense head after global average pooling; the model has no Dense layer (pass head=)."
            )
        head = dense[-1].name
    elif head not in listed.names():
        raise LayerNotFoundError(unknown_name_message("layer", head, listed.names()))
    params = problem.forward.layer_parameters(inputs.variables, head)
    if "kernel" not in params or params["kernel"].ndim != 2:
        raise InputError(f"head {head!r} is not a Dense layer with a 2-D kernel.")
    return params["kernel"]


def _check_head(ctx: OptionContext) -> None:
    problem, inputs = ctx.problem, ctx.inputs
    if problem.target.kind == "callable":
        raise InputError("cam explains a class: pass None, an int or an index array as target.")
    kernel = _dense_head(problem, inputs, ctx.options["head"])
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, ctx.options["layer"])
    if kernel.shape[0] != info.shape[-1]:
        raise InputError(
            f"the head's kernel takes {kernel.shape[0]} features but layer {ctx.options['layer']!r} has "
            f"{info.shape[-1]} channels."
        )


@method("cam", family="cam", signed=True, resolution="layer", validate=_check_head)
def cam(problem: Problem, inputs: Inputs, *, layer: SpatialLayer, head: str | None = None) -> jax.Array:
    """Class activation map ([zhou2016]_): ``Σ_k w_{k,c} A_k`` for a GAP + dense classifier.

    Args:
      layer: the last convolutional layer (the maps that are globally average-pooled).
      head: the dense layer after pooling (default: the model's last Dense layer).

    Example:
      >>> gap_model, gap_variables = xj.models.load("cam_cnn")
      >>> xj.cam(gap_model, gap_variables, x, layer="conv5").shape
      (4, 7, 7)
    """
    kernel = _dense_head(problem, inputs, head)
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    outputs, activation = probed_forward(problem.forward, layer)(
        inputs.variables, inputs.x, inputs.kwargs, jnp.zeros(info.shape, info.dtype)
    )
    indices = problem.target.indices(outputs, inputs.indices)
    return jnp.einsum("bhwk,kb->bhw", activation, kernel[:, indices])


@method("score_cam", family="cam", signed=False, resolution="layer", validate=_resolve_tokens)
def score_cam(
    problem: Problem,
    inputs: Inputs,
    *,
    layer: CamLayer,
    batch_size: ChunkSize = "auto",
    prefix_tokens: PrefixTokens = None,
    grid: Grid = None,
) -> jax.Array:
    """Score-CAM ([wang2020]_), pytorch-grad-cam semantics (softmax over channel scores).

    Args:
      layer: a spatial layer, or a token layer ``(B, N, C)``.
      prefix_tokens: token layers: the number of leading non-patch tokens to drop (default: inferred).
      grid: token layers: the patch grid ``(h, w)`` (default: inferred).
      batch_size: channels (masked forward passes) evaluated at once (``"auto"``: memory budget).

    Example:
      >>> xj.score_cam(model, variables, x, layer="conv4+relu").shape
      (4, 14, 14)
    """
    info = layer_info(problem.forward, inputs.variables, inputs.x, inputs.kwargs, layer)
    x = inputs.x
    outputs, activation = probed_forward(problem.forward, layer)(
        inputs.variables, x, inputs.kwargs, jnp.zeros(info.shape, info.dtype)
    )
    activation = to_grid(activation, prefix_tokens, grid)
    indices = problem.target.indices(outputs, inputs.indices)
    f = problem.scalar_fn(inputs, indices)
    channels = jnp.moveaxis(activation, -1, 0)  # (K, B, h, w)
    masks = jax.vmap(lambda a: upsample(a, x.shape, mode="bilinear_aligned"))(channels)  # (K, B, H, W)
    low = masks.min(axis=(2, 3), keepdims=True)
    high = masks.max(axis=(2, 3), keepdims=True)
    masks = (masks - low) / (high - low + 1e-8)
    scores = chunked_vmap(
        lambda m: f(x * m.reshape(*m.shape, *[1] * (x.ndim - 3))), masks, chunk_size=batch_size
    )  # (K, B)
    weights = jax.nn.softmax(scores.T, axis=-1)  # (B, K)
    return jnp.maximum(jnp.einsum("bk,bhwk->bhw", weights, activation), 0)


@method("guided_grad_cam", family="cam", signed=True, resolution="input", validate=_resolve_tokens)
def guided_grad_cam(
    problem: Problem, inputs: Inputs, *, layer: CamLayer, prefix_tokens: PrefixTokens = None, grid: Grid = None
) -> jax.Array:
    """Guided Grad-CAM ([selvaraju2017]_): guided backprop ⊙ Grad-CAM upsampled (nearest).

    Returns an input-resolution map (Captum's ``GuidedGradCam``).

    Args:
      layer: a spatial layer, or a token layer ``(B, N, C)``.
      prefix_tokens: token layers: the number of leading non-patch tokens to drop (default: inferred).
      grid: token layers: the patch grid ``(h, w)`` (default: inferred).

    Example:
      >>> xj.guided_grad_cam(model, variables, x, layer="conv4+relu").shape == x.shape
      True
    """
    activation, gradient = grid_activation_and_gradient(problem, inputs, layer, prefix_tokens, grid)
    coarse = weighted_map(grad_cam_weights, activation, gradient)
    fine = modified_relu_gradient(problem, inputs, inputs.x, problem.class_indices(inputs), "guided_backprop")
    up = upsample(coarse, inputs.x.shape, mode="nearest")
    return fine * up.reshape(*up.shape, *[1] * (inputs.x.ndim - 3))
