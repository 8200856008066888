"""The regularizers do what they claim (closed forms), and the loop-friendly conv gradient is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_jax.featureviz import (
    L2,
    AlphaNorm,
    Blur,
    ClassMeanDistance,
    Clip,
    HighFrequencyPenalty,
    Jitter,
    TotalVariation,
    class_means,
    gaussian_blur,
    total_variation,
)
from xai_jax.trace import rewrite
from xai_jax.trace.xla_cpu import LOOP_GRADIENT_RULES


def test_total_variation_closed_form():
    x = np.random.default_rng(0).normal(size=(5, 6, 2)).astype(np.float32)
    dy, dx = x[1:, :-1] - x[:-1, :-1], x[:-1, 1:] - x[:-1, :-1]
    np.testing.assert_allclose(total_variation(jnp.asarray(x), 2.0), (dy**2 + dx**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(total_variation(jnp.asarray(x), 1.0, eps=0.0), np.sqrt(dy**2 + dx**2).sum(), rtol=1e-5)
    assert float(TotalVariation(0.5, beta=2.0).penalty(jnp.asarray(x), None)) == pytest.approx(
        0.5 * (dy**2 + dx**2).sum(), rel=1e-5
    )
    assert float(total_variation(jnp.ones((4, 4, 1)))) == pytest.approx(0.0, abs=1e-3)


def test_l2_is_torch_weight_decay_and_alpha_norm():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 1)), jnp.float32)
    np.testing.assert_allclose(jax.grad(lambda v: L2(0.2).penalty(v, None))(x), 0.2 * x, rtol=1e-6)
    np.testing.assert_allclose(AlphaNorm(2.0, alpha=6.0).penalty(x, None), 2.0 * jnp.sum(jnp.abs(x) ** 6), rtol=1e-5)


def test_class_mean_distance_uses_the_target_class():
    images = np.zeros((4, 2, 2, 1), np.float32)
    images[2:] = 1.0
    means = class_means(images, [0, 0, 1, 1], 2)
    np.testing.assert_allclose(means[:, 0, 0, 0], [0.0, 1.0])
    reg = ClassMeanDistance(means, 3.0)
    x = jnp.full((2, 2, 1), 0.5)
    assert float(reg.penalty(x, jnp.asarray(1))) == pytest.approx(3.0 * np.sqrt(4 * 0.25), rel=1e-5)


def test_transforms_and_projections():
    x = jnp.arange(30.0).reshape(5, 6, 1)
    rolled = jax.jit(Jitter(2).transform)(x, jax.random.key(0))
    assert any(
        np.array_equal(np.roll(np.asarray(x), (a, b), (0, 1)), np.asarray(rolled))
        for a in range(-2, 3)
        for b in range(-2, 3)
    )
    np.testing.assert_array_equal(Clip(3.0, 7.0).project(x, 0), jnp.clip(x, 3.0, 7.0))

    @jax.jit
    def blurs(flat, noise):
        blur = Blur(sigma=1.0, every=3)
        return (
            gaussian_blur(flat, 1.0),
            HighFrequencyPenalty(1.0, sigma=1.0).penalty(flat, None),
            total_variation(noise),
            gaussian_blur(noise, 1.0),
            total_variation(gaussian_blur(noise, 1.0)),
            blur.project(noise, 1),
            blur.project(noise, 3),
        )

    flat = jnp.full((8, 8, 1), 0.3)
    noise = jax.random.normal(jax.random.key(1), (8, 8, 1))
    blurred_flat, high, tv_noise, blurred, tv_blurred, step1, step3 = blurs(flat, noise)
    np.testing.assert_allclose(blurred_flat, flat, atol=1e-6)  # a blur keeps constants
    assert float(high) == pytest.approx(0.0, abs=1e-8)  # no high frequencies in a constant
    assert float(tv_blurred) < 0.5 * float(tv_noise)
    np.testing.assert_array_equal(step1, noise)  # Blur(every=3) acts only every third step
    np.testing.assert_allclose(step3, blurred)


CONV_CASES = [  # dimension numbers, strides, padding, lhs dilation, rhs dilation, window
    (("NHWC", "HWIO", "NHWC"), (1, 1), "SAME", (1, 1), (1, 1), (3, 3)),  # the MNIST CNN's convs
    (("NHWC", "HWIO", "NHWC"), (2, 2), "SAME", (1, 1), (1, 1), (4, 4)),  # strided (DCGAN discriminator)
    (("NHWC", "HWIO", "NHWC"), (1, 1), ((2, 2), (2, 2)), (2, 2), (1, 1), (4, 4)),  # transposed conv (DCGAN generator)
    (("NHWC", "HWIO", "NHWC"), (2, 1), ((1, 2), (0, 1)), (1, 1), (1, 2), (2, 4)),  # asymmetric everything
    (("NCHW", "OIHW", "NCHW"), (1, 1), "VALID", (1, 1), (1, 1), (3, 3)),  # PyTorch layout
    (("NCHW", "OIHW", "NCHW"), (2, 2), ((1, 0), (0, 1)), (2, 1), (2, 1), (3, 2)),
]


@pytest.mark.parametrize("dn, strides, padding, lhs_dilation, rhs_dilation, window", CONV_CASES)
def test_loop_conv_rule_matches_jax_gradients(dn, strides, padding, lhs_dilation, rhs_dilation, window):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 8, 3) if dn[0] == "NHWC" else (2, 3, 7, 8)).astype(np.float32)
    w = rng.normal(size=(*window, 3, 5) if dn[1] == "HWIO" else (5, 3, *window)).astype(np.float32)

    def f(x, w):
        y = jax.lax.conv_general_dilated(x, w, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers=dn)
        return jnp.sum(jnp.sin(y))

    expected = jax.jit(jax.grad(f, argnums=(0, 1)))(x, w)
    got = jax.jit(jax.grad(rewrite(f, LOOP_GRADIENT_RULES), argnums=(0, 1)))(x, w)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_loop_conv_rule_is_fast_inside_a_scan():
    """The reason for the rule: JAX's own input gradient of a conv is ~10x slower inside a loop on
    XLA:CPU (jaxlib 0.10).  Not a timing test (busy CI machines): check the compiled loop body has
    no backward convolution with swapped kernel dimensions (``01oi``) left."""
    x = jnp.ones((2, 8, 8, 4))
    w = jnp.ones((3, 3, 4, 4))
    conv = lambda x: jnp.sum(
        jnp.tanh(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    )

    def loop(grad_fn):
        return jax.jit(lambda x: jax.lax.fori_loop(0, 3, lambda i, x: grad_fn(x), x)).lower(x).compile().as_text()

    assert "01oi" in loop(jax.grad(conv))  # the slow form, as JAX emits it (if this fails, XLA/JAX changed)
    assert "01oi" not in loop(jax.grad(rewrite(conv, LOOP_GRADIENT_RULES)))


def test_loop_conv_rule_leaves_grouped_convolutions_to_jax():
    x = jnp.ones((1, 5, 5, 4))
    w = jnp.ones((3, 3, 2, 4))
    f = lambda x: jnp.sum(
        jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
        )
        ** 2
    )
    np.testing.assert_allclose(jax.grad(rewrite(f, LOOP_GRADIENT_RULES))(x), jax.grad(f)(x), rtol=1e-6)
