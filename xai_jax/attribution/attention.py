"""Attention-map explanations of transformers: attention rollout and Chefer et al.'s
gradient-weighted attention.

Both read the attention probabilities of every self-attention softmax of the model (the layers
``"<module>/softmax"`` of ``xj.layers``, found in the trace: no hook in the model), ``A_l`` of shape
``(B, heads, N, N)`` (rows: queries, columns: keys), in program order, and propagate an ``N × N``
token-to-token matrix through the layers:

* :func:`attention_rollout` ([abnar2020]_): ``Â_l = ½ (mean_h A_l) + ½ I`` (the residual
  connection), rows renormalised to sum to 1, ``R = Â_L ⋯ Â_2 Â_1``.  Independent of the target.
* :func:`chefer_attention` ([chefer2021generic]_, Eqs. 5–6; the gradient-only rule of the ICCV
  2021 "generic attention-model explainability" paper, not the LRP-based relevance of
  [chefer2021]_): ``Ā_l = mean_h (∇A_l ⊙ A_l)⁺`` with ``∇A_l = ∂f_c/∂A_l`` (``f_c`` the target
  score), ``R_0 = I``, ``R_l = R_{l-1} + Ā_l R_{l-1}``, ``R = R_L``.

The map is the row of the token the classifier reads, ``R[q, prefix_tokens:]`` (``q = 0``, the
class token), on the patch grid ``(B, h, w)`` for image inputs (the split of
:func:`xai_jax.attribution.cam.token_grid`: ``prefix_tokens`` and ``grid`` inferred or given), or
one value per input position ``(B, N_input)`` for sequence inputs ``(B, N_input, ...)`` such as
given embeddings (``prefix_tokens`` defaults to the number of tokens the model adds before the
input's), token ids ``(B, N)`` included (the attention does not need the input's gradient).  A model
without such a token
(``prefix_tokens=0``, e.g. average-pooled tokens) has no row to read; pass ``query=`` to choose one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import jax
import jax.numpy as jnp

from ..core import InputError, Inputs, Option, OptionContext, Problem, checks, method
from ..trace.layers import SOFTMAX, list_layers, probed_softmaxes
from .cam import Grid, PrefixTokens, token_grid


def _check_layers(ctx: OptionContext, name: str, value: Any) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise InputError(f"{name} must be a non-empty sequence of softmax layer names (see xj.layers); got {value!r}.")
    return tuple(value)


def _check_query(ctx: OptionContext, name: str, value: Any) -> int:
    return checks.check_int(name, value, minimum=0)


def _resolve(ctx: OptionContext) -> dict[str, Any]:
    """Attention layers (all softmaxes by default), the token split and the query row."""
    problem, inputs, options = ctx.problem, ctx.inputs, ctx.options
    listed = {info.name: info for info in list_layers(problem.forward, inputs.variables, inputs.x, inputs.kwargs)}
    names = options.get("layers")
    if names is None:
        names = tuple(n for n, info in listed.items() if info.type == SOFTMAX)
        if not names:
            raise InputError(
                f"{ctx.method} needs attention: the model has no softmax the trace engine recognises "
                "(jax.nn.softmax or exp(a - max) / sum); it is not a transformer, or its attention is a fused "
                "kernel (use the XLA implementation)."
            )
    shapes = []
    for n in names:
        info = listed.get(n)
        if info is None or info.type != SOFTMAX:
            softmaxes = [k for k, i in listed.items() if i.type == SOFTMAX]
            raise InputError(
                f"{ctx.method}: {n!r} is not a softmax layer of the model; its softmax layers: {softmaxes}."
            )
        shape = info.shape or ()
        if len(shape) not in (3, 4) or shape[-1] != shape[-2]:
            raise InputError(
                f"{ctx.method}: {n!r} has shape {shape}; self-attention probabilities are (B, heads, N, N) "
                "or (B, N, N) (queries and keys over the same tokens)."
            )
        shapes.append(shape)
    tokens = {s[-1] for s in shapes}
    if len(tokens) != 1:
        raise InputError(
            f"{ctx.method}: the attention layers {list(names)} attend over different numbers of tokens "
            f"{sorted(tokens)}; choose layers over one token sequence with layers=."
        )
    n = tokens.pop()
    prefix, grid = options.get("prefix_tokens"), options.get("grid")
    x = inputs.x
    if x.ndim == 4:
        prefix, h, w = token_grid(n, tuple(x.shape), prefix, grid, f"the attention over {n} tokens")
        grid = (h, w)
    else:
        if grid is not None:
            raise InputError(f"{ctx.method}: grid applies to image inputs (B, H, W, C); x has shape {tuple(x.shape)}.")
        if prefix is None:
            prefix = n - x.shape[1] if x.ndim >= 2 else None
            if prefix is None or prefix < 0:
                raise InputError(
                    f"{ctx.method}: cannot tell the patch/input tokens among the {n} attended tokens for x of "
                    f"shape {tuple(x.shape)}; pass prefix_tokens=."
                )
        if prefix > n:
            raise InputError(f"{ctx.method}: prefix_tokens={prefix} exceeds the {n} attended tokens.")
    query = options.get("query")
    if query is None:
        if prefix == 0:
            raise InputError(
                f"{ctx.method}: prefix_tokens=0, so there is no class token whose attention row to read; "
                "pass query= (the token the classifier reads)."
            )
        query = 0
    if query >= n:
        raise InputError(f"{ctx.method}: query={query} is out of range for {n} tokens.")
    return {"layers": tuple(names), "prefix_tokens": prefix, "grid": grid, "query": query}


AttentionLayers = Annotated[tuple[str, ...] | None, Option(_check_layers)]
Query = Annotated[int | None, Option(_check_query)]


def _heads(a: jax.Array) -> jax.Array:
    """``(B, heads, N, N)`` (or ``(B, N, N)``) -> ``(B, heads, N, N)``."""
    return a[:, None] if a.ndim == 3 else a


def _read(r: jax.Array, query: int, prefix: int, grid: tuple[int, int] | None) -> jax.Array:
    row = r[:, query, prefix:]
    return row if grid is None else row.reshape(row.shape[0], *grid)


def rollout_matrix(attentions: Sequence[jax.Array]) -> jax.Array:
    """``Â_L ⋯ Â_1`` with ``Â_l = ½ mean_h A_l + ½ I``, rows renormalised ([abnar2020]_): ``(B, N, N)``."""
    r = None
    for a in attentions:
        a = _heads(a).mean(axis=1)
        a = 0.5 * a + 0.5 * jnp.eye(a.shape[-1], dtype=a.dtype)
        a = a / a.sum(axis=-1, keepdims=True)
        r = a if r is None else a @ r
    return r  # type: ignore[return-value]


def chefer_matrix(attentions: Sequence[jax.Array], gradients: Sequence[jax.Array]) -> jax.Array:
    """``R_L`` of ``R_l = R_{l-1} + mean_h (∇A_l ⊙ A_l)⁺ R_{l-1}``, ``R_0 = I`` ([chefer2021generic]_):
    ``(B, N, N)``."""
    b, n = attentions[0].shape[0], attentions[0].shape[-1]
    r = jnp.broadcast_to(jnp.eye(n, dtype=attentions[0].dtype), (b, n, n))
    for a, g in zip(attentions, gradients):
        cam = jnp.maximum(_heads(g) * _heads(a), 0).mean(axis=1)
        r = r + cam @ r
    return r


@method("attention_rollout", family="attention", signed=False, resolution="layer", validate=_resolve, tokens=True)
def attention_rollout(
    problem: Problem,
    inputs: Inputs,
    *,
    layers: AttentionLayers = None,
    prefix_tokens: PrefixTokens = None,
    grid: Grid = None,
    query: Query = None,
) -> jax.Array:
    """Attention rollout ([abnar2020]_): ``R = Π_l (½ mean_h A_l + ½ I)`` (rows renormalised), read
    at the class token's row.  Class-agnostic: the target is ignored.

    Args:
      layers: the attention softmax layers, in the order the model applies them (default: every
        softmax of the model, ``xj.layers`` type ``"softmax"``).
      prefix_tokens: leading non-patch tokens (class, register tokens; default inferred, see
        :func:`xai_jax.attribution.cam.token_grid`; for sequence inputs, the tokens the model adds).
      grid: the patch grid ``(h, w)`` (image inputs; default inferred).
      query: the token whose row is read (default 0, the class token).

    Returns:
      ``(B, h, w)`` on the patch grid for images (``xj.upsample(maps, x.shape)`` resizes them),
      ``(B, N_input)`` per input position for sequence inputs.

    Example:
      >>> vit, vit_variables = xj.models.load("mnist_vit")
      >>> xj.attention_rollout(vit, vit_variables, x).shape
      (4, 4, 4)
    """
    layers, query, prefix_tokens = _resolved(layers, query, prefix_tokens)
    _, attentions = probed_softmaxes(problem.forward, layers)(
        inputs.variables, inputs.x, inputs.kwargs, _probes(problem, inputs, layers)
    )
    return _read(rollout_matrix(attentions), query, prefix_tokens, grid)


@method("chefer_attention", family="attention", signed=False, resolution="layer", validate=_resolve, tokens=True)
def chefer_attention(
    problem: Problem,
    inputs: Inputs,
    *,
    layers: AttentionLayers = None,
    prefix_tokens: PrefixTokens = None,
    grid: Grid = None,
    query: Query = None,
) -> jax.Array:
    """Gradient-weighted attention of Chefer et al. ([chefer2021generic]_, Eqs. 5–6):
    ``Ā_l = mean_h (∂f_c/∂A_l ⊙ A_l)⁺``, ``R_0 = I``, ``R_l = R_{l-1} + Ā_l R_{l-1}``, read at the
    class token's row of ``R_L``.  This is the gradient-only rule of their ICCV 2021 paper (the
    CVPR 2021 method [chefer2021]_ uses LRP relevances of the attention in place of ``A_l``).

    Args:
      layers: the attention softmax layers, in the order the model applies them (default: every
        softmax of the model, ``xj.layers`` type ``"softmax"``).
      prefix_tokens: leading non-patch tokens (class, register tokens; default inferred, see
        :func:`xai_jax.attribution.cam.token_grid`; for sequence inputs, the tokens the model adds).
      grid: the patch grid ``(h, w)`` (image inputs; default inferred).
      query: the token whose row is read (default 0, the class token).

    Returns:
      ``(B, h, w)`` on the patch grid for images, ``(B, N_input)`` per input position for sequence inputs.

    Example:
      >>> vit, vit_variables = xj.models.load("mnist_vit")
      >>> xj.chefer_attention(vit, vit_variables, x).shape
      (4, 4, 4)
    """
    layers, query, prefix_tokens = _resolved(layers, query, prefix_tokens)
    run = probed_softmaxes(problem.forward, layers)

    def total(probes: list[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
        outputs, attentions = run(inputs.variables, inputs.x, inputs.kwargs, probes)
        return jnp.sum(problem.target.select(outputs, problem.target.indices(outputs, inputs.indices))), attentions

    gradients, attentions = jax.grad(total, has_aux=True)(_probes(problem, inputs, layers))
    return _read(chefer_matrix(attentions, gradients), query, prefix_tokens, grid)


def _resolved(
    layers: tuple[str, ...] | None, query: int | None, prefix: int | None
) -> tuple[tuple[str, ...], int, int]:
    """The options ``_resolve`` filled in (a method's options are validated before it runs)."""
    if layers is None or query is None or prefix is None:
        raise AssertionError("attention options are resolved by validation before the method runs")
    return layers, query, prefix


def _probes(problem: Problem, inputs: Inputs, layers: Sequence[str]) -> list[jax.Array]:
    """Zeros of each attention layer's shape and dtype."""
    listed = {info.name: info for info in list_layers(problem.forward, inputs.variables, inputs.x, inputs.kwargs)}
    return [jnp.zeros(listed[n].shape, listed[n].dtype) for n in layers]  # type: ignore[arg-type]
