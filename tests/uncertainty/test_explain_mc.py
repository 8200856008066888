"""Explanations under uncertainty: explain_mc (MC dropout) and random-noise baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
import xai_jax.propagation
import xai_jax.uncertainty as xu

SAMPLES = 4


def needs(method):
    if method not in xj.METHODS:
        pytest.skip(f"{method!r} is not registered in xj.METHODS (the propagation family is not importable)")


@pytest.fixture(scope="module")
def loop_logits(tiny_dropout, tiny_x):
    """Logits of each dropout network, one jitted ``model.apply`` per key in a Python loop."""
    model, variables = tiny_dropout
    apply = jax.jit(lambda v, x, k: model.apply(v, x, deterministic=False, rngs={"dropout": k}))

    def run(key, x=tiny_x):
        return np.stack([np.asarray(apply(variables, x, k)) for k in jax.random.split(key, SAMPLES)])

    return run


@pytest.fixture(scope="module")
def mc_gradient(tiny_dropout, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(5)
    return key, xu.explain_mc("gradient", model, variables, tiny_x, None, samples=SAMPLES, key=key, return_samples=True)


def test_gradient_under_mc_dropout_equals_python_loop(tiny_dropout, tiny_x, loop_logits, mc_gradient):
    model, variables = tiny_dropout
    key, result = mc_gradient
    # target=None explains the MC prediction: argmax of the mean probability over the same passes
    predicted = np.asarray(jax.nn.softmax(loop_logits(key), axis=-1)).mean(0).argmax(-1)
    loop = np.stack(
        [
            np.asarray(
                xj.gradient(
                    model, variables, tiny_x, predicted, model_kwargs={"deterministic": False, "rngs": {"dropout": k}}
                )
            )
            for k in jax.random.split(key, SAMPLES)
        ]
    )
    np.testing.assert_allclose(np.asarray(result.samples), loop, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.mean, loop.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.std, loop.std(0), rtol=1e-4, atol=1e-6)
    assert float(result.std.max()) > 1e-3  # the dropout networks really explain differently


def test_dropout_off_or_one_sample_equals_the_plain_method(tiny_dropout, tiny_plain, tiny_x):
    model, variables = tiny_dropout
    plain = xj.gradient(model, variables, tiny_x, 1)
    off = xu.explain_mc(
        "gradient",
        model,
        variables,
        tiny_x,
        1,
        samples=3,
        key=jax.random.key(0),
        stochastic_kwargs={"deterministic": True},
        require_stochastic=False,
    )
    np.testing.assert_array_equal(np.asarray(off.mean), np.asarray(plain))
    assert float(jnp.abs(off.std).max()) == 0.0
    # samples=1 on a model without dropout is the plain method (allowed without any flag)
    net, net_vars = tiny_plain
    for switch in ({}, None):  # None: the default {'deterministic': False}, which this model does not take
        one = xu.explain_mc(
            "gradient", net, net_vars, tiny_x, 2, samples=1, key=jax.random.key(0), stochastic_kwargs=switch
        )
        np.testing.assert_array_equal(np.asarray(one.mean), np.asarray(xj.gradient(net, net_vars, tiny_x, 2)))
        assert float(jnp.abs(one.std).max()) == 0.0


def test_product_dropout_is_bit_identical(tiny_dropout, tiny_x, loop_logits):
    model, variables = tiny_dropout
    rewritten = xu.product_dropout(model)
    assert type(rewritten).__name__ == type(model).__name__ and rewritten != model
    key = jax.random.key(9)
    apply = jax.jit(lambda v, x, k: rewritten.apply(v, x, deterministic=False, rngs={"dropout": k}))
    got = np.stack([np.asarray(apply(variables, tiny_x, k)) for k in jax.random.split(key, SAMPLES)])
    np.testing.assert_array_equal(got, loop_logits(key))
    # and the gradients with respect to the input, for one key
    k = jax.random.split(key, SAMPLES)[0]

    def input_grad(m):
        loss = lambda x: jnp.sum(m.apply(variables, x, deterministic=False, rngs={"dropout": k}) * jnp.arange(1.0, 6.0))
        return np.asarray(jax.jit(jax.grad(loss))(tiny_x))

    np.testing.assert_array_equal(input_grad(rewritten), input_grad(model))


def test_deeplift_under_mc_dropout_keeps_summation_to_delta(tiny_dropout, tiny_x, loop_logits):
    needs("deeplift")
    model, variables = tiny_dropout
    key = jax.random.key(6)
    target = np.array([0, 3, 4])
    result = xu.explain_mc("deeplift", model, variables, tiny_x, target, samples=SAMPLES, key=key, return_samples=True)
    # each sample explains f_t(x) - f_t(0) of *its* dropout network (input and reference share the mask)
    delta = loop_logits(key) - loop_logits(key, np.zeros_like(tiny_x))
    expected = np.take_along_axis(delta, np.broadcast_to(target[None, :, None], (SAMPLES, 3, 1)), -1)[..., 0]
    np.testing.assert_allclose(np.asarray(result.samples).sum(axis=(2, 3, 4)), expected, rtol=1e-4, atol=1e-5)
    assert float(result.std.max()) > 0


def test_deeplift_with_random_noise_baselines(tiny_plain, tiny_x):
    needs("deeplift")
    model, variables = tiny_plain
    key = jax.random.key(8)
    result = xu.explain_random_baselines(
        "deeplift", model, variables, tiny_x, 2, samples=3, key=key, return_samples=True
    )
    baselines = [xu.noise_baseline(k, jnp.asarray(tiny_x)) for k in jax.random.split(key, 3)]
    out_x = model.apply(variables, tiny_x)[:, 2]
    expected = np.stack([np.asarray(out_x - model.apply(variables, b)[:, 2]) for b in baselines])
    np.testing.assert_allclose(np.asarray(result.samples).sum(axis=(2, 3, 4)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.mean, np.asarray(result.samples).mean(0), atol=1e-6)
    assert all(float(b.min()) >= 0 and float(b.max()) < 1 for b in baselines)


def test_explain_mc_methods_for_the_cli(tiny_dropout, tiny_plain, tiny_x, mc_gradient):
    model, variables = tiny_dropout
    key, with_samples = mc_gradient
    # chunked running sums (batch_size=3 over 4 samples) give the statistics of the kept samples
    results, skipped = xu.explain_mc_methods(
        ["gradient", "cam", "grad_cam"],
        model,
        variables,
        tiny_x,
        samples=SAMPLES,
        key=key,
        batch_size=3,
        options={"cam": {"layer": "conv"}},
    )
    assert set(results) == {"gradient"} and set(skipped) == {"cam", "grad_cam"}  # no GAP / no layer given
    assert "layer" in skipped["grad_cam"]
    np.testing.assert_allclose(results["gradient"].mean, with_samples.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["gradient"].std, with_samples.std, rtol=1e-4, atol=1e-6)
    assert results["gradient"].samples is None
    net, net_vars = tiny_plain
    with pytest.raises(xj.InputError, match="dropout"):
        xu.explain_mc_methods(["gradient"], net, net_vars, tiny_x, samples=2, key=key, stochastic_kwargs={})


def test_bad_input(tiny_dropout, tiny_plain, tiny_x):
    model, variables = tiny_dropout
    key = jax.random.key(0)
    with pytest.raises(xj.InputError, match="samples"):
        xu.explain_mc("gradient", model, variables, tiny_x, samples=0, key=key)
    with pytest.raises(xj.InputError, match="key"):
        xu.explain_mc("gradient", model, variables, tiny_x, samples=2, key=None)
    with pytest.raises(xj.UnknownNameError, match="gradient"):
        xu.explain_mc("gradiant", model, variables, tiny_x, samples=2, key=key)
    with pytest.raises(xj.InputError, match="same map"):
        xu.explain_mc(
            "gradient", model, variables, tiny_x, samples=2, key=key, stochastic_kwargs={"deterministic": True}
        )
    net, net_vars = tiny_plain
    with pytest.raises(xj.InputError, match="would be the same map"):
        xu.explain_mc("gradient", net, net_vars, tiny_x, samples=2, key=key)
    with pytest.raises(xj.InputError, match="does not accept the keyword arguments.*stochastic_kwargs"):
        xu.explain_mc("gradient", net, net_vars, tiny_x, samples=2, key=key, stochastic_kwargs={"train": True})
    with pytest.raises(xj.InputError, match="baseline"):
        xu.explain_random_baselines("gradient", net, net_vars, tiny_x, samples=2, key=key)
    with pytest.raises(xj.InputError, match="noise"):
        xu.explain_random_baselines("integrated_gradients", net, net_vars, tiny_x, samples=2, key=key, noise="pink")
    with pytest.raises(xj.InputError, match="high > low"):
        xu.explain_random_baselines(
            "integrated_gradients", net, net_vars, tiny_x, samples=2, key=key, low=1.0, high=0.0
        )
