"""Exact properties of the attribution methods (no reference library needed)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.attribution import QUADRATURES, quadrature


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(6, (3, 3), name="conv1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(8, (3, 3), name="conv2")(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(5, name="fc")(x)


@pytest.fixture(scope="module")
def cnn():
    model = SmallCNN()
    x = jax.random.uniform(jax.random.key(0), (6, 10, 10, 1))
    return model, model.init(jax.random.key(1), x), x


@pytest.mark.parametrize("method", QUADRATURES)
def test_quadrature_weights_sum_to_one_and_integrate_polynomials(method):
    alphas, weights = quadrature(method, 16)
    assert np.isclose(weights.sum(), 1.0)
    assert np.all((alphas >= 0) & (alphas <= 1))
    exact = {"gausslegendre": 1e-12, "riemann_middle": 1e-3, "riemann_trapezoid": 1e-3}.get(method, 0.1)
    np.testing.assert_allclose((weights * alphas**2).sum(), 1 / 3, atol=exact)


def test_ig_is_exact_for_a_quadratic_model():
    """f(x) = Σ a·x²: the path integrand is linear in α, so Gauss-Legendre is exact."""
    a = jnp.arange(1.0, 13.0).reshape(1, 3, 4)
    fn = lambda v, x: jnp.stack([(v * x**2).sum(axis=(1, 2)), x.sum(axis=(1, 2))], axis=1)
    x = jax.random.normal(jax.random.key(0), (5, 3, 4))
    baseline = 0.5
    attr, err = xj.integrated_gradients(fn, a, x, 0, baseline=baseline, steps=3, return_error=True)
    np.testing.assert_allclose(attr, a * (x**2 - baseline**2), rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(err, 0.0, atol=1e-3)


@pytest.mark.parametrize("method, order", [("riemann_right", 1), ("riemann_trapezoid", 2), ("riemann_middle", 2)])
def test_ig_completeness_error_shrinks_with_steps(method, order):
    """On a curved model the error falls like steps^-order (Gauss-Legendre is exact much sooner)."""
    fn = lambda v, x: jnp.stack([jnp.sin(v * x).sum(axis=1), x.sum(axis=1)], axis=1)
    x = jax.random.uniform(jax.random.key(0), (4, 6), minval=0.5, maxval=1.0)
    errors = [
        float(jnp.abs(xj.integrated_gradients(fn, 3.0, x, 0, steps=s, method=method, return_error=True)[1]).max())
        for s in (4, 16, 64)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] / errors[2] > 0.6 * 4**order
    assert float(jnp.abs(xj.integrated_gradients(fn, 3.0, x, 0, steps=16, return_error=True)[1]).max()) < 1e-5


@pytest.mark.parametrize("baseline", [0.0, 0.3, "array", "callable"])
def test_ig_baselines_and_chunks(cnn, baseline):
    model, variables, x = cnn
    if baseline == "array":
        baseline = jax.random.uniform(jax.random.key(5), x.shape[1:])
    elif baseline == "callable":
        baseline = lambda z: z * 0.25
    full, err = xj.integrated_gradients(model, variables, x, 1, baseline=baseline, steps=20, return_error=True)
    chunked = xj.integrated_gradients(model, variables, x, 1, baseline=baseline, steps=20, batch_size=3)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-7)
    base = np.broadcast_to(baseline(x) if callable(baseline) else baseline, x.shape)
    logits = lambda z: model.apply(variables, z)[:, 1]
    np.testing.assert_allclose(
        full.reshape(6, -1).sum(1) - (logits(x) - logits(jnp.asarray(base))), err, rtol=1e-4, atol=1e-5
    )


def test_ig_argmax_target_is_fixed_at_the_input(cnn):
    model, variables, x = cnn
    predicted = jnp.argmax(model.apply(variables, x), -1)
    np.testing.assert_allclose(
        xj.integrated_gradients(model, variables, x, steps=8),
        xj.integrated_gradients(model, variables, x, predicted, steps=8),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps"),
        ({"method": "simpson"}, "quadrature"),
        ({"batch_size": 0}, "batch_size"),
        ({"baseline": np.zeros((3, 3))}, "broadcast"),
    ],
)
def test_ig_bad_options(cnn, kwargs, message):
    model, variables, x = cnn
    with pytest.raises(xj.InputError, match=message):
        xj.integrated_gradients(model, variables, x, **kwargs)


def test_smoothgrad_statistics_converge_to_closed_form():
    """f(x) = Σ w·x²: grad = 2w·x, so E[grad(x+ε)] = 2w·x, Var = 4w²σ², E[grad²] = 4w²(x²+σ²)."""
    w = jnp.linspace(0.5, 2.0, 8).reshape(1, 8)
    fn = lambda v, x: (v * x**2).sum(axis=1, keepdims=True)
    x = jax.random.normal(jax.random.key(0), (3, 8))
    stdev = 0.3
    run = lambda kind: xj.smoothgrad(
        fn, w, x, 0, key=jax.random.key(1), kind=kind, samples=20000, stdev=stdev, batch_size=2500
    )
    np.testing.assert_allclose(run("smoothgrad"), 2 * w * x, atol=0.03)
    np.testing.assert_allclose(run("vargrad"), 4 * w**2 * stdev**2 * jnp.ones_like(x), rtol=0.06)
    np.testing.assert_allclose(run("smoothgrad_sq"), 4 * w**2 * (x**2 + stdev**2), rtol=0.06, atol=0.02)


def test_smoothgrad_without_noise_equals_the_wrapped_method(cnn):
    model, variables, x = cnn
    for method, options in [("gradient", {}), ("guided_backprop", {}), ("integrated_gradients", {"steps": 8})]:
        wrapped = functools.partial(xj.METHODS[method], **options)  # a method value: the method with its options
        got = xj.smoothgrad(model, variables, x, 3, key=jax.random.key(0), samples=3, stdev=0.0, method=wrapped)
        np.testing.assert_allclose(got, xj.METHODS[method](model, variables, x, 3, **options), rtol=1e-5, atol=1e-7)


def test_smoothgrad_determinism_and_keys(cnn):
    model, variables, x = cnn
    a = xj.smoothgrad(model, variables, x, key=jax.random.key(0), samples=6)
    np.testing.assert_array_equal(a, xj.smoothgrad(model, variables, x, key=jax.random.key(0), samples=6))
    np.testing.assert_allclose(
        a, xj.smoothgrad(model, variables, x, key=jax.random.key(0), samples=6, batch_size=4), rtol=1e-5, atol=1e-7
    )
    assert not np.allclose(a, xj.smoothgrad(model, variables, x, key=jax.random.key(1), samples=6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 0}, "samples"),
        ({"kind": "meangrad"}, "kind"),
        ({"method": "grad_cam"}, "input-resolution"),
        ({"sigma": -1.0}, "sigma"),
    ],
)
def test_smoothgrad_bad_options(cnn, kwargs, message):
    model, variables, x = cnn
    with pytest.raises(xj.InputError, match=message):
        xj.smoothgrad(model, variables, x, key=jax.random.key(0), **kwargs)


def test_occlusion_of_a_linear_model_is_exact():
    """For f(x) = Σ w·x and 1×1 windows, occlusion with baseline 0 is exactly w·x."""
    w = jax.random.normal(jax.random.key(0), (1, 5, 6, 2))
    fn = lambda v, x: jnp.stack([(v * x).sum(axis=(1, 2, 3)), -(v * x).sum(axis=(1, 2, 3))], axis=1)
    x = jax.random.normal(jax.random.key(1), (3, 5, 6, 2))
    np.testing.assert_allclose(xj.occlusion(fn, w, x, 0, window=(1, 1, 1)), w * x, rtol=1e-5, atol=1e-6)
    # 2x2 windows with stride 1: each element's value is the mean of the drops of its windows.
    got = xj.occlusion(fn, w, x, 0, window=(2, 2), strides=1, batch_size=7)
    assert got.shape == x.shape and np.isfinite(np.asarray(got)).all()


def test_occlusion_bad_windows(cnn):
    model, variables, x = cnn
    with pytest.raises(xj.InputError, match="larger than a sample"):
        xj.occlusion(model, variables, x, window=(11, 11))
    with pytest.raises(xj.InputError, match="one size per non-batch axis"):
        xj.occlusion(model, variables, x, window=(2, 2, 1, 1))
    with pytest.raises(xj.InputError, match="positive"):
        xj.occlusion(model, variables, x, window=(0, 2))


def test_cam_equals_hand_computation_and_grad_cam_up_to_constant():
    class GapNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(6, (3, 3), name="conv1")(x))
            x = nn.Conv(8, (3, 3), name="conv2")(x)  # the pooled maps are this layer's output
            return nn.Dense(5, name="fc")(x.mean(axis=(1, 2)))

    model = GapNet()
    x = jax.random.uniform(jax.random.key(0), (4, 9, 9, 1))
    variables = model.init(jax.random.key(1), x)
    target = np.array([0, 3, 4, 1])
    _, maps = xj.capture(model, variables, x, "conv2")
    kernel = variables["params"]["fc"]["kernel"]
    expected = jnp.einsum("bhwk,kb->bhw", maps, kernel[:, target])
    got = xj.cam(model, variables, x, target, layer="conv2")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Grad-CAM's weights are w[:, c] / (h·w) here, so Grad-CAM = ReLU(CAM) / (h·w).
    np.testing.assert_allclose(
        xj.grad_cam(model, variables, x, target, layer="conv2"), jnp.maximum(got, 0) / 81, rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam", "score_cam"])
def test_cam_family_is_finite_on_dead_layers(cnn, method):
    """All-zero activations and gradients (a dead layer) give zeros, never NaN."""
    model, variables, x = cnn
    dead = jax.tree_util.tree_map(jnp.zeros_like, variables)
    maps = xj.METHODS[method](model, dead, x, 0, layer="conv2")
    assert maps.shape == (6, 5, 5) and np.isfinite(np.asarray(maps)).all()


def test_cam_family_bad_layers(cnn):
    model, variables, x = cnn
    with pytest.raises(xj.LayerNotFoundError, match="conv2"):
        xj.grad_cam(model, variables, x, layer="conv3")
    with pytest.raises(xj.InputError, match="spatial"):
        xj.grad_cam(model, variables, x, layer="fc")


def test_guided_backprop_needs_a_relu():
    fn = lambda v, x: jnp.tanh(x.reshape(x.shape[0], -1) @ v)
    with pytest.raises(xj.UnsupportedError, match="no ReLU"):
        xj.guided_backprop(fn, jnp.ones((4, 3)), jnp.ones((2, 4)), 0)


def test_relu_forms_get_the_same_rule():
    """A shared nn.relu, an inline jax.nn.relu and jnp.maximum(x, 0) are all guided."""

    def make(relu):
        class Net(nn.Module):
            @nn.compact
            def __call__(self, x):
                x = relu(nn.Dense(6, name="a")(x))
                return nn.Dense(3, name="b")(relu(nn.Dense(6, name="h")(x)))

        return Net()

    x = jax.random.normal(jax.random.key(0), (5, 4))
    variables = make(nn.relu).init(jax.random.key(1), x)
    results = [
        xj.guided_backprop(make(r), variables, x, 1)
        for r in (nn.relu, jax.nn.relu, lambda z: jnp.maximum(z, 0), lambda z: jnp.maximum(0.0, z))
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)
    assert not np.allclose(results[0], xj.gradient(make(nn.relu), variables, x, 1))


def test_upsample_shapes_and_modes():
    maps = jax.random.normal(jax.random.key(0), (2, 4, 5))
    for mode in ("nearest", "bilinear", "bilinear_aligned"):
        assert xj.upsample(maps, (2, 16, 20, 1), mode=mode).shape == (2, 16, 20)
    np.testing.assert_allclose(xj.upsample(maps, (2, 8, 10), mode="nearest")[:, ::2, ::2], maps)
    with pytest.raises(xj.InputError, match="mode"):
        xj.upsample(maps, (2, 8, 10), mode="cubic")


def test_deconvnet_per_filter_sums_to_the_full_projection(cnn):
    """Projection is linear in the signal: the per-filter reconstructions add up to the projection
    of the whole rectified layer, and each equals a DeconvNet pass from a masked cotangent."""
    model, variables, x = cnn
    per_filter = xj.deconvnet_per_filter(model, variables, x, layer="conv1")
    assert per_filter.shape == (6, 6, 10, 10, 1)
    from xai_jax.attribution.backprop import _deconvnet
    from xai_jax.trace import FAST_GRADIENT_RULES, rewrite
    from xai_jax.trace.activations import relu_rules

    to_layer = lambda z: xj.capture(model, variables, z, "conv1")[1]
    act, pullback = jax.vjp(rewrite(to_layer, {**FAST_GRADIENT_RULES, **relu_rules(_deconvnet)}), x)
    np.testing.assert_allclose(per_filter.sum(axis=1), pullback(jnp.maximum(act, 0))[0], rtol=1e-5, atol=1e-6)
    only_two = xj.deconvnet_per_filter(model, variables, x, layer="conv1", filters=[2, 4])
    np.testing.assert_allclose(only_two, per_filter[:, [2, 4]], rtol=1e-6)
    with pytest.raises(xj.InputError, match="out of range"):
        xj.deconvnet_per_filter(model, variables, x, layer="conv1", filters=[6])
