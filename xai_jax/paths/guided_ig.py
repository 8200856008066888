"""Guided integrated gradients: an adaptive path that moves the least important features first.

Kapishnikov et al. (2021) ([kapishnikov2021]_).  Integrated gradients along a path ``γ`` from the
baseline ``x'`` to ``x``, ``φ_i = ∫ ∂f_c(γ(t))/∂x_i dγ_i(t)``, where the path is built step by step:
at step ``k`` (of ``K``) the point must reach L1 distance ``(1 - k/K) ‖x - x'‖₁`` from ``x``; it
gets there by moving the fraction ``fraction`` of features with the smallest ``|∂f_c/∂x_i|`` all the
way to their bound (repeatedly, until the distance is met; the last group partly, by ``γ ≤ 1``),
never letting a feature leave the band ``[α - max_dist, α + max_dist]`` of the straight path
(``α = k/K``).  Every movement is credited with the gradient at the start of the step:
``φ += (x_new - x_old) ⊙ ∇f_c(x_step)``.  ``max_dist = 0`` is integrated gradients (right Riemann
sum); ``max_dist = 1`` is unbounded Guided IG.

The algorithm is PAIR's ``saliency.core.GuidedIG`` (same steps, same selection rule with the lower
quantile, same band), run per sample in float32 inside one jitted ``fori_loop`` over steps with a
vmapped ``while_loop`` of selections; two float32 adjustments (documented in ``docs/perturbation.md``):
the distance test "target reached" uses a relative tolerance of 1e-6 (PAIR: 1e-9 in float64), and a
step stops when no feature is left to move (where PAIR would loop forever).
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp

from ..core import Baseline, InputError, Inputs, Option, OptionContext, PositiveInt, Problem, fix_target, method
from ..core.checks import check_float
from .gradients import loop_gradient

#: Relative tolerance of the "distance reached" test in float32 (PAIR uses 1e-9 in float64).
RELATIVE_TOLERANCE = 1e-6
#: Most selection rounds in one step: each round moves at least one more quantile of the features.
MAX_ROUNDS = 1000


def _unit_interval(ctx: OptionContext, name: str, value: Any) -> float:
    number = check_float(name, value)
    if not 0.0 <= number <= 1.0:
        raise InputError(f"{name} must lie in [0, 1]; got {number}.")
    return number


UnitFloat = Annotated[float, Option(_unit_interval)]


def guided_step(
    x: jax.Array,
    attr: jax.Array,
    grad_actual: jax.Array,
    x_input: jax.Array,
    x_baseline: jax.Array,
    step: jax.Array,
    steps: int,
    fraction: float,
    max_dist: float,
) -> tuple[jax.Array, jax.Array]:
    """One Guided IG step for one flattened sample: move ``x`` to its next L1 distance, credit the gradient."""
    dtype = x.dtype
    alpha = (step + 1.0) / steps
    alpha_min, alpha_max = jnp.maximum(alpha - max_dist, 0.0), jnp.minimum(alpha + max_dist, 1.0)
    span = x_input - x_baseline
    x_min, x_max = x_baseline + span * alpha_min, x_baseline + span * alpha_max
    l1_total = jnp.abs(span).sum()
    l1_target = l1_total * (1.0 - (step + 1.0) / steps)
    tolerance = RELATIVE_TOLERANCE * jnp.maximum(l1_total, jnp.finfo(dtype).tiny)
    moving = span != 0

    def go_on(state: tuple[Any, ...]) -> jax.Array:
        _, _, _, gamma, done, rounds = state
        return (gamma > 1.0) & ~done & (rounds < MAX_ROUNDS)

    def select(state: tuple[Any, ...]) -> tuple[Any, ...]:
        x, attr, grad, _, _, rounds = state
        x_old = x
        # features that fell behind the band are pulled up to its lower edge
        x_alpha = jnp.where(moving, (x - x_baseline) / jnp.where(moving, span, 1.0), alpha_max)
        x = jnp.where(x_alpha < alpha_min, x_min, x)
        l1_current = jnp.abs(x - x_input).sum()
        reached = jnp.abs(l1_current - l1_target) <= tolerance
        grad = jnp.where(x == x_max, jnp.inf, grad)
        threshold = jnp.quantile(jnp.abs(grad), fraction, method="lower")
        chosen = (jnp.abs(grad) <= threshold) & (grad != jnp.inf)
        l1_chosen = (jnp.abs(x - x_max) * chosen).sum()
        gamma = jnp.where(l1_chosen > 0, (l1_current - l1_target) / jnp.where(l1_chosen > 0, l1_chosen, 1.0), jnp.inf)
        moved = jnp.where(gamma > 1.0, x_max, x + (x_max - x) * gamma)
        x = jnp.where(chosen & ~reached, moved, x)
        attr = attr + (x - x_old) * grad_actual
        stuck = l1_chosen <= 0  # nothing left to move (float32 rounding): the step is done
        return x, attr, grad, jnp.where(reached, 0.0, gamma).astype(dtype), reached | stuck, rounds + 1

    state = (x, attr, grad_actual, jnp.asarray(jnp.inf, dtype), jnp.asarray(False), jnp.asarray(0))
    x, attr, *_ = jax.lax.while_loop(go_on, select, state)
    return x, attr


@method("guided_ig", family="path", signed=True, report_options={"steps": 32})
def guided_ig(
    problem: Problem,
    inputs: Inputs,
    *,
    baseline: Baseline = 0.0,
    steps: PositiveInt = 200,
    fraction: UnitFloat = 0.25,
    max_dist: UnitFloat = 0.02,
) -> jax.Array:
    """Guided integrated gradients ([kapishnikov2021]_; PAIR ``saliency`` ``GuidedIG``).

    ``φ = Σ_k (x^{(k+1)} - x^{(k)}) ⊙ ∇f_c(x^{(k)})`` along the adaptive path of the module docstring:
    at step ``k`` the features with the smallest gradients move first, within ``max_dist`` of the
    straight line, until ``‖x^{(k+1)} - x‖₁ = (1 - (k+1)/K) ‖x - x'‖₁``.  ``Σ φ ≈ f_c(x) - f_c(x')``.

    Args:
      baseline: the path's start ``x'`` (scalar, one sample's shape, one per sample, or a callable).
      steps: number of steps ``K`` (PAIR's ``x_steps``).
      fraction: fraction of the features (by gradient magnitude) moved per selection round.
      max_dist: largest deviation from the straight path, as a fraction of it (0: IG; 1: unbounded).

    Example:
      >>> attr = xj.guided_ig(model, variables, x, steps=8)
      >>> attr.shape == x.shape
      True
    """
    problem, inputs = fix_target(problem, inputs)
    x_input = inputs.x
    batch = x_input.shape[0]
    flat_input, flat_baseline = x_input.reshape(batch, -1), baseline.reshape(batch, -1)
    step_all = jax.vmap(guided_step, in_axes=(0, 0, 0, 0, 0, None, None, None, None))

    def body(step: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x, attr = state
        grad = loop_gradient(problem, inputs, x.reshape(x_input.shape), inputs.indices).reshape(batch, -1)
        return step_all(x, attr, grad, flat_input, flat_baseline, step, steps, fraction, max_dist)

    _, attr = jax.lax.fori_loop(0, steps, body, (flat_baseline, jnp.zeros_like(flat_input)))
    return attr.reshape(x_input.shape)


__all__ = ["guided_ig"]
