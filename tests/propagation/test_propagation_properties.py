"""Properties of the propagation methods that need no reference library: conservation, closed forms
on tiny linear cases, equalities between methods, composition with jit/vmap, ReLU spellings,
differentiability, and the input checks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import xai_jax as xj
from tests import twins
from xai_jax import propagation as P
from xai_jax.propagation import rules as R
from xai_jax.propagation.engine import with_backward

TARGETS = np.array([0, 3, 6, 9, 2, 5, 8, 1])
LRP0 = P.MapComposite(types={"linear": P.Epsilon(1e-9)}, stabilizer=1e-9)


def logits_at(model, variables, x, targets):
    return np.asarray(model.apply(variables, x))[np.arange(x.shape[0]), targets]


def row_sums(a):
    a = np.asarray(a)
    return a.reshape(a.shape[0], -1).sum(1)


# ---------------------------------------------------------------------------------------------------
# Conservation
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bias_free_cnn():
    model, variables, _ = twins.make_tiny_cnn(seed=2, zero_bias=True)
    return model, variables, twins.random_input(model, 8, seed=3)


@pytest.mark.parametrize(
    "composite",
    [
        LRP0,
        P.MapComposite(types={"linear": P.ZPlus(1e-12)}, stabilizer=1e-12),
        P.EpsilonPlusFlat(1e-9, 1e-9),
        P.MapComposite(types={"linear": P.Gamma(0.5, 1e-12)}, first=P.WSquare(1e-12), stabilizer=1e-12),
    ],
    ids=["lrp0", "zplus", "epsilon_plus_flat", "gamma_wsquare"],
)
def test_conservation_bias_free(bias_free_cnn, composite):
    """Σ_i R_i = f_c(x) for conserving rules on a bias-free ReLU net (max pooling: winner-take-all).
    (αβ is not in the list: it conserves only where a unit has both positive and negative
    contributions; a ReLU unit fed only by positive terms gets α·R.)"""
    model, variables, x = bias_free_cnn
    relevance = P.lrp(model, variables, x, TARGETS, composite=composite)
    np.testing.assert_allclose(row_sums(relevance), logits_at(model, variables, x, TARGETS), rtol=1e-4, atol=1e-5)


def test_conservation_at_every_layer_and_average_max_pool(bias_free_cnn):
    model, variables, x = bias_free_cnn
    logits = logits_at(model, variables, x, TARGETS)
    for layer in ("conv1", "conv2", "fc1"):
        np.testing.assert_allclose(
            row_sums(P.lrp(model, variables, x, TARGETS, composite=LRP0, layer=layer)), logits, rtol=1e-4, atol=1e-5
        )
    composite = P.MapComposite(types={"linear": P.Epsilon(1e-9)}, stabilizer=1e-9)
    relevance = P.lrp(model, variables, x, TARGETS, composite=composite, max_pool="average")
    np.testing.assert_allclose(row_sums(relevance), logits, rtol=1e-4, atol=1e-5)
    assert not np.allclose(relevance, P.lrp(model, variables, x, TARGETS, composite=composite))


def test_conservation_residual_batchnorm_net():
    """Residual + BatchNorm net with every offset removed (conv/dense biases zero, BN shift and mean
    zero): BN is a pure per-channel scale merged into its conv, the residual sum splits relevance in
    proportion (Norm), the global mean is Norm -- Σ R = f_c(x)."""
    model, variables, _ = twins.make_res_bn_net(seed=4, zero_bias=True)
    variables = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.zeros_like(leaf) if path[-1].key in ("bias", "mean") else leaf, variables
    )
    x = twins.random_input(model, 8, seed=5)
    logits = logits_at(model, variables, x, TARGETS)
    for composite in (LRP0, P.EpsilonPlus(1e-9, 1e-9)):
        np.testing.assert_allclose(
            row_sums(P.lrp(model, variables, x, TARGETS, composite=composite)), logits, rtol=1e-4, atol=1e-5
        )
    relevance = P.lrp(model, variables, x, TARGETS, composite=LRP0, layer="block")
    np.testing.assert_allclose(row_sums(relevance), logits, rtol=1e-4, atol=1e-5)


def test_batchnorm_merge_equals_explicitly_folded_model():
    """LRP of a conv+BN model equals LRP of the same model with BN folded into the conv by hand (1e-5)."""

    class ConvBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(6, (3, 3), name="conv")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, name="bn")(x))
            return nn.Dense(4, name="fc")(x.reshape(x.shape[0], -1))

    class Folded(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(6, (3, 3), name="conv")(x))
            return nn.Dense(4, name="fc")(x.reshape(x.shape[0], -1))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    v = ConvBN().init(jax.random.key(0), x)
    v = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape) if a.ndim == 1 else a, jnp.float32), v
    )
    bn, st = v["params"]["bn"], v["batch_stats"]["bn"]
    scale = bn["scale"] / jnp.sqrt(st["var"] + 1e-5)
    folded = {
        "params": {
            "conv": {
                "kernel": v["params"]["conv"]["kernel"] * scale,
                "bias": (v["params"]["conv"]["bias"] - st["mean"]) * scale + bn["bias"],
            },
            "fc": v["params"]["fc"],
        }
    }
    targets = np.arange(8) % 4
    for composite in (P.EpsilonPlusFlat(), P.EpsilonGammaBox(-3.0, 3.0), P.MapComposite(types={"linear": P.WSquare()})):
        a = P.lrp(ConvBN(), v, x, targets, composite=composite)
        b = P.lrp(Folded(), folded, x, targets, composite=composite)
        np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()))


def test_per_element_scale_equals_explicit_dense_layer():
    """A conv followed by a constant *per-pixel* scale with mixed signs (not foldable into the kernel:
    rules apply (c·W)^± = c^±·W^± in output space) gives the same relevance as the equivalent dense
    layer whose matrix is that scaled convolution written out."""
    rng = np.random.default_rng(3)
    mask = jnp.asarray(rng.standard_normal((1, 4, 4, 3)), jnp.float32)
    shift = jnp.asarray(rng.standard_normal((1, 4, 4, 3)), jnp.float32) * 0.1

    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.Conv(3, (3, 3), name="conv")(x) * mask + shift
            return nn.Dense(2, name="head")(nn.relu(y).reshape(x.shape[0], -1))

    class Unrolled(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.Dense(48, name="conv")(x.reshape(x.shape[0], -1))
            return nn.Dense(2, name="head")(nn.relu(y))

    x = jnp.asarray(rng.standard_normal((4, 4, 4, 2)), jnp.float32)
    v = Scaled().init(jax.random.key(0), x)
    conv = lambda u: nn.Conv(3, (3, 3)).apply({"params": v["params"]["conv"]}, u)
    matrix = jax.jacobian(lambda u: (conv(u.reshape(1, 4, 4, 2)) * mask).reshape(-1))(jnp.zeros(32))  # (48, 32)
    bias = (conv(jnp.zeros((1, 4, 4, 2))) * mask + shift).reshape(-1)
    vu = {"params": {"conv": {"kernel": matrix.T, "bias": bias}, "head": v["params"]["head"]}}
    np.testing.assert_allclose(Unrolled().apply(vu, x), Scaled().apply(v, x), atol=1e-5)
    for rule in (P.AlphaBeta(2.0, 1.0), P.Gamma(0.5), P.WSquare(), P.ZBox(-3.0, 3.0)):
        composite = P.MapComposite(types={"linear": rule})
        a, b = P.lrp(Scaled(), v, x, 1, composite=composite), P.lrp(Unrolled(), vu, x, 1, composite=composite)
        np.testing.assert_allclose(a, b, atol=2e-5 * float(jnp.abs(b).max()), err_msg=repr(rule))


# ---------------------------------------------------------------------------------------------------
# Closed forms and equalities
# ---------------------------------------------------------------------------------------------------


class OneUnit(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1, use_bias=False, name="fc")(x)


def test_alpha_beta_one_unit_closed_form():
    """z = x·w with x = (1, 2), w = (1, −1): z = −1, z⁺ = 1, z⁻ = −2; α2β1 gives (−2, +1), summing to −1.
    With no positive contribution at all (x = (1,), w = (−1,)) the α part is empty: R = −β·R_out = +1,
    finite (iNNvestigate returned −1e7 there)."""
    v = {"params": {"fc": {"kernel": jnp.array([[1.0], [-1.0]])}}}
    r = P.lrp(
        OneUnit(), v, jnp.array([[1.0, 2.0]]), 0, composite=P.MapComposite(types={"dense": P.AlphaBeta(2.0, 1.0)})
    )
    np.testing.assert_allclose(r, [[-2.0, 1.0]], rtol=1e-5)
    v1 = {"params": {"fc": {"kernel": jnp.array([[-1.0]])}}}
    r1 = P.lrp(OneUnit(), v1, jnp.array([[1.0]]), 0, composite=P.MapComposite(types={"dense": P.AlphaBeta(2.0, 1.0)}))
    np.testing.assert_allclose(r1, [[1.0]], rtol=1e-5)


class Linear2(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), use_bias=False, name="conv")(x)
        return nn.Dense(5, use_bias=False, name="fc")(x.reshape(x.shape[0], -1))


def test_lrp0_on_linear_net_is_gradient_times_input():
    model = Linear2()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 5, 5, 2)), jnp.float32)
    v = model.init(jax.random.key(1), x)
    grad = jax.grad(lambda x: jnp.sum(model.apply(v, x)[:, 2]))(x)
    np.testing.assert_allclose(
        P.lrp(model, v, x, 2, composite=P.MapComposite(types={"linear": P.Epsilon(0.0)})), x * grad, atol=1e-5
    )
    np.testing.assert_allclose(P.simple_taylor(model, v, x, 2), x * grad, atol=1e-6)


def test_lrp_transpose_equals_engine():
    model, variables, _ = twins.make_tiny_cnn(seed=3)
    x = twins.random_input(model, 8, seed=4)
    eps = 1e-7
    ours = P.MapComposite(types={"linear": P.Epsilon(eps)}, stabilizer=eps)
    np.testing.assert_allclose(
        P.lrp_transpose(model, variables, x, TARGETS, epsilon=eps),
        P.lrp(model, variables, x, TARGETS, composite=ours),
        atol=1e-6 * 0.2,
    )
    with_box = P.MapComposite(types={"linear": P.Epsilon(eps)}, first=P.ZBox(-1.0, 1.0, eps), stabilizer=eps)
    a = P.lrp_transpose(model, variables, x, TARGETS, epsilon=eps, low=-1.0, high=1.0)
    np.testing.assert_allclose(
        a, P.lrp(model, variables, x, TARGETS, composite=with_box), atol=1e-6 * float(jnp.abs(a).max())
    )
    b = P.lrp_transpose(model, variables, x, TARGETS, epsilon=eps, layer="conv2")
    np.testing.assert_allclose(
        b, P.lrp(model, variables, x, TARGETS, composite=ours, layer="conv2"), atol=1e-6 * float(jnp.abs(b).max())
    )


def test_taylor_conservation():
    model, variables, _ = twins.make_vgg_like_avg_pool(seed=5, zero_bias=True)
    x = twins.random_input(model, 8, seed=6)
    logits = logits_at(model, variables, x, TARGETS)
    np.testing.assert_allclose(row_sums(P.simple_taylor(model, variables, x, TARGETS)), logits, rtol=1e-4, atol=1e-6)
    for kwargs in ({"low": -5.0, "high": 5.0}, {"low": None, "high": None}):
        relevance = P.deep_taylor(model, variables, x, TARGETS, stabilizer=1e-12, **kwargs)
        np.testing.assert_allclose(row_sums(relevance), logits, rtol=1e-4, atol=1e-6)
    # simple Taylor at an explicit root point: R = (x − x̃)·∇f(x̃)
    root = 0.5 * x
    grad = jax.grad(lambda v: jnp.sum(model.apply(variables, v)[np.arange(8), TARGETS]))(jnp.asarray(root))
    np.testing.assert_allclose(P.simple_taylor(model, variables, x, TARGETS, root=root), (x - root) * grad, atol=1e-6)


def test_reveal_cancel_closed_form():
    """f = relu(x₁ − x₂) at x = (1, 1), reference 0 (Shrikumar et al. 2017, Sec. 3.5.3): Δz = 0, so
    Rescale falls back to the gradient at 0 and gives (0, 0); RevealCancel sees Δz⁺ = 1, Δz⁻ = −1,
    Δy⁺ = ½, Δy⁻ = −½ and gives (½, −½)."""

    class Diff(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Dense(1, use_bias=False, name="fc")(x))

    v = {"params": {"fc": {"kernel": jnp.array([[1.0], [-1.0]])}}}
    x = jnp.array([[1.0, 1.0]])
    np.testing.assert_allclose(P.deeplift(Diff(), v, x, 0, rule="rescale"), [[0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(P.deeplift(Diff(), v, x, 0, rule="reveal_cancel"), [[0.5, -0.5]], atol=1e-6)


def test_deeplift_baseline_forms():
    model, variables, _ = twins.make_nchw_flatten_net(seed=1)
    x = twins.random_input(model, 4, seed=2)
    one = np.full(model.INPUT_SHAPE, 0.2, np.float32)
    a = P.deeplift(model, variables, x, 1, baseline=0.2)
    np.testing.assert_allclose(P.deeplift(model, variables, x, 1, baseline=one), a, atol=1e-6)
    np.testing.assert_allclose(
        P.deeplift(model, variables, x, 1, baseline=lambda v: jnp.full_like(v, 0.2)), a, atol=1e-6
    )
    # the reference equal to the input: zero attribution
    np.testing.assert_allclose(P.deeplift(model, variables, x, 1, baseline=lambda v: v), np.zeros_like(x), atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# Any model: ReLU spellings, wrappers, jit, vmap
# ---------------------------------------------------------------------------------------------------


class ReLUModule(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(x)


def make_spelled(relu):
    class Spelled(nn.Module):
        @nn.compact
        def __call__(self, x):
            act = ReLUModule(name="act") if relu == "shared module" else relu  # one instance, called twice
            x = act(nn.Conv(4, (3, 3), name="conv1")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            x = act(nn.Conv(4, (3, 3), name="conv2")(x))
            return nn.Dense(3, name="fc")(x.reshape(x.shape[0], -1))

    return Spelled()


SPELLINGS = {
    "nn.relu": nn.relu,
    "jax.nn.relu": jax.nn.relu,
    "jnp.maximum(x, 0)": lambda v: jnp.maximum(v, 0),
    "jnp.maximum(0., x)": lambda v: jnp.maximum(0.0, v),
    "jitted relu": jax.jit(lambda v: nn.relu(v)),
    "shared module": "shared module",
}


def test_relu_spellings_and_wrappers_agree():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 8, 8, 2)), jnp.float32)
    base = make_spelled(nn.relu)
    v = base.init(jax.random.key(3), x)
    targets = np.array([0, 1, 2, 1])
    expected_lrp = P.lrp(base, v, x, targets)
    expected_dl = P.deeplift(base, v, x, targets, baseline=0.1)
    for name, relu in SPELLINGS.items():
        model = make_spelled(relu)
        np.testing.assert_allclose(P.lrp(model, v, x, targets), expected_lrp, atol=1e-7, err_msg=name)
        if name in ("jnp.maximum(x, 0)", "jitted relu", "shared module"):
            np.testing.assert_allclose(
                P.deeplift(model, v, x, targets, baseline=0.1), expected_dl, atol=1e-7, err_msg=name
            )
    # an already-jitted apply, and the model under nn.remat
    jitted = jax.jit(base.apply)
    np.testing.assert_allclose(P.lrp(lambda variables, x: jitted(variables, x), v, x, targets), expected_lrp, atol=1e-7)

    class Remat(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.remat(type(base))(name="inner")(x)

    np.testing.assert_allclose(P.lrp(Remat(), {"params": {"inner": v["params"]}}, x, targets), expected_lrp, atol=1e-7)


def test_jit_and_vmap():
    model, variables, _ = twins.make_tiny_cnn(seed=1)
    x = twins.random_input(model, 4, seed=2)
    targets = TARGETS[:4]
    for fn in (
        lambda v: P.lrp(model, variables, v, targets),
        lambda v: P.deeplift(model, variables, v, targets, baseline=0.1),
    ):
        expected = fn(x)
        np.testing.assert_allclose(jax.jit(fn)(x), expected, atol=1e-6)
    one = jax.vmap(lambda xi, ti: P.lrp(model, variables, xi[None], ti[None])[0])(jnp.asarray(x), jnp.asarray(targets))
    np.testing.assert_allclose(one, P.lrp(model, variables, x, targets), atol=1e-6)


def test_other_activations_and_plan():
    class Acts(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = jnp.tanh(nn.Dense(6, name="a")(x))
            x = nn.silu(nn.Dense(6, name="b")(x))
            x = jax.nn.leaky_relu(nn.Dense(6, name="c")(x))
            x = nn.sigmoid(nn.Dense(6, name="d")(x))
            return nn.Dense(3, name="e")(x)

    x = jnp.asarray(np.random.default_rng(4).standard_normal((5, 4)), jnp.float32)
    v = Acts().init(jax.random.key(0), x)
    plan = P.propagation_plan(Acts(), v, x)
    assert [line.split()[0] for line in plan.splitlines()[1:]] == ["dense", "activation"] * 4 + ["dense"]
    # Pass through every activation: ε-LRP equals the hand-written chain
    r = P.lrp(Acts(), v, x, 0, composite=P.MapComposite(types={"linear": P.Epsilon(0.01)}))
    assert r.shape == x.shape and bool(jnp.all(jnp.isfinite(r)))
    out = Acts().apply(v, x)[:, 0]
    attr = P.deeplift(Acts(), v, x, 0, baseline=0.3)
    np.testing.assert_allclose(row_sums(attr), out - Acts().apply(v, jnp.full_like(x, 0.3))[:, 0], atol=1e-5)


def test_plan_of_reference_models():
    """Pins how the trace of the reference models is grouped (fails loudly if jax changes the trace)."""
    model, variables, _ = twins.make_res_bn_net()
    plan = P.propagation_plan(model, variables, twins.random_input(model, 2))
    rows = [line.split() for line in plan.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows if r[0] in ("conv", "dense")] == [
        ("conv", "conv1"),
        ("conv", "block/conv1"),
        ("conv", "block/conv2"),
        ("dense", "fc"),
    ]
    kinds = [r[0] for r in rows]
    assert kinds.count("sum") == 1 and kinds.count("avgpool") == 1 and kinds.count("activation") == 3
    assert "conv_general_dilated+sub+mul+add" in plan  # BatchNorm merged into block/conv1
    tiny, tv, _ = twins.make_tiny_cnn()
    kinds = [line.split()[0] for line in P.propagation_plan(tiny, tv, twins.random_input(tiny, 2)).splitlines()[1:]]
    assert kinds == [
        "conv",
        "activation",
        "maxpool",
        "conv",
        "activation",
        "maxpool",
        "structural",
        "dense",
        "activation",
        "dense",
    ]


# ---------------------------------------------------------------------------------------------------
# Differentiability
# ---------------------------------------------------------------------------------------------------


def test_with_backward_is_a_true_vjp_when_given_the_gradient():
    def fn(x, w):
        return with_backward(
            lambda a, b: jnp.sin(a) * b, lambda args, out, g: [jnp.cos(args[0]) * args[1] * g], [x, w], [True, False]
        )

    check_grads(lambda x: fn(x, jnp.float32(2.0)), (jnp.array([0.3, -1.2, 2.0]),), order=1, modes=["rev"])


def test_deeplift_linear_pieces_are_the_true_gradient():
    """On a model without non-linearities every DeepLIFT custom_vjp piece (conv/dense/pooling with the
    reference half skipped, BatchNorm merged) is the Linear rule, i.e. the true VJP: check_grads."""
    from xai_jax.core.problem import prepare
    from xai_jax.propagation.deeplift import deeplift_handle
    from xai_jax.propagation.engine import trace_model

    class LinearBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(3, (3, 3), name="conv")(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            return nn.Dense(4, name="fc")(x.reshape(x.shape[0], -1))

    x = jnp.asarray(np.random.default_rng(7).standard_normal((2, 6, 6, 2)), jnp.float32)
    v = LinearBN().init(jax.random.key(2), x)
    problem, inputs = prepare(LinearBN(), v, x, 1)
    traced = trace_model(problem, inputs, x)
    handle = deeplift_handle(traced.plan, "rescale", 1e-10)
    ref = jnp.full_like(x, 0.2)
    check_grads(
        lambda u: traced.call(handle, jnp.stack([u, ref]))[0], (x,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
    )


def test_gradient_through_lrp_map():
    """The LRP map is differentiable (piecewise smooth): d/dx of Σ w ⊙ R(x) by autodiff through the
    custom backward passes matches finite differences."""

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, name="b")(nn.relu(nn.Dense(5, name="a")(x)))

    x = jnp.asarray(
        np.random.default_rng(5).standard_normal((2, 4)), jnp.float64 if jax.config.x64_enabled else jnp.float32
    )
    v = MLP().init(jax.random.key(1), x)
    w = jnp.asarray(np.random.default_rng(6).standard_normal(x.shape), x.dtype)
    composite = P.MapComposite(types={"linear": P.Epsilon(0.1)})

    def scalar(x):
        return jnp.sum(w * P.lrp(MLP(), v, x, 1, composite=composite))

    check_grads(scalar, (x,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-3)


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: P.Epsilon(-1.0), r"Epsilon epsilon must be a finite number >= 0; got -1.0"),
        (lambda: P.AlphaBeta(2.0, 2.0), r"alpha - beta = 1 .*alpha=2.0, beta=2.0"),
        (lambda: P.AlphaBeta(-1.0, -2.0), r"AlphaBeta alpha must be a finite number >= 0; got -1.0"),
        (lambda: P.Gamma(-0.1), r"Gamma gamma must be a finite number >= 0; got -0.1"),
        (lambda: P.ZBox(1.0, 0.0), r"ZBox needs low <= high"),
        (lambda: P.ZPlus(stabilizer=float("nan")), r"ZPlus stabilizer must be a finite number >= 0; got nan"),
        (lambda: P.Epsilon(zero_params="weight"), r"zero_params \['weight'\] not understood"),
        (lambda: P.MapComposite(types={"conv": "epsilon"}), r"types\['conv'\] must be a rule"),
        (lambda: P.MapComposite(types={"conv1": P.Epsilon()}), r"'conv1' is neither a kind .* use names="),
        (lambda: P.PositionMix(bounds=(0.7, 0.2)), r"bounds must satisfy 0 <= lower <= upper <= 1"),
    ],
)
def test_rule_parameters_out_of_range(make, message):
    with pytest.raises(xj.InputError, match=message):
        make()


def test_bad_options():
    model, variables, _ = twins.make_tiny_cnn()
    x = twins.random_input(model, 2)
    with pytest.raises(xj.InputError, match="composite"):
        P.lrp(model, variables, x, composite="epsilon")
    with pytest.raises(xj.InputError, match="max_pool"):
        P.lrp(model, variables, x, max_pool="median")
    with pytest.raises(xj.LayerNotFoundError):
        P.lrp(model, variables, x, layer="conv9")
    with pytest.raises(xj.InputError, match="rule"):
        P.deeplift(model, variables, x, rule="linear")
    with pytest.raises(xj.InputError, match="baseline"):
        P.deeplift(model, variables, x, baseline=np.zeros((3, 3)))
    with pytest.raises(xj.InputError, match="eps"):
        P.deeplift(model, variables, x, eps=-1.0)
    with pytest.raises(xj.InputError, match="low and high"):
        P.lrp_transpose(model, variables, x, low=0.0)
    with pytest.raises(xj.InputError, match="batch axis"):
        P.lrp(model, variables, x[0])


class Softmaxed(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.softmax(nn.Dense(3)(x))


class Attention(nn.Module):
    @nn.compact
    def __call__(self, x):
        q = nn.Dense(4)(x)
        return nn.Dense(3)(q * x)


class Scanned(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(jax.lax.fori_loop(0, 2, lambda i, h: jnp.tanh(h), x))


def test_unsupported_operations_raise():
    x = jnp.ones((2, 4))
    v = Scanned().init(jax.random.key(0), x)
    for method in (P.lrp, P.deeplift):
        with pytest.raises(xj.UnsupportedError, match="'scan'.*Supported:"):
            method(Scanned(), v, x, 0)


@pytest.mark.parametrize("model_cls", [Softmaxed, Attention])
def test_a_composite_without_transformer_rules_names_the_step_and_the_composites_that_have_them(model_cls):
    # GELU and LayerNorm have rules now (identity, statistics held constant: tests/transformers checks
    # them against LXT); softmax and products of two input-dependent values need a transformer composite.
    x = jnp.ones((2, 4))
    v = model_cls().init(jax.random.key(0), x)
    with pytest.raises(xj.UnsupportedError, match=r"has no rule for the (softmax|product).*AttnLRP\(\).*CPLRP\(\)"):
        P.lrp(model_cls(), v, x, 0)
    assert P.lrp(model_cls(), v, x, 0, composite=xj.composites.CPLRP()).shape == x.shape


class TanhHidden(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(jnp.tanh(nn.Dense(4)(x)))


def test_deep_taylor_needs_a_relu_network():
    """LRP passes a tanh like Zennit does; Deep Taylor's z⁺ derivation does not hold there."""
    x = jnp.ones((2, 4))
    v = TanhHidden().init(jax.random.key(0), x)
    assert np.isfinite(np.asarray(P.lrp(TanhHidden(), v, x, 0))).all()
    with pytest.raises(
        xj.InputError, match=r"derived for networks with \['relu'\] activations; this model also has \['tanh'\]"
    ):
        P.deep_taylor(TanhHidden(), v, x, 0)
    relu_only = P.MapComposite(types={"linear": P.ZPlus()}, activations={"relu"})  # any composite can declare it
    with pytest.raises(xj.InputError, match=r"this model also has \['tanh'\]"):
        P.lrp(TanhHidden(), v, x, 0, composite=relu_only)


def _per_example_forms():
    """One dense net written three ways: batched ``x @ Wᵀ``, ``W @ xᵀ``, and per example under vmap
    (the Equinox idiom), which traces to dot_general -> transpose -> scale/bias."""
    keys = jax.random.split(jax.random.key(7), 5)
    v = {
        "W1": jax.random.normal(keys[0], (5, 4)),
        "W2": jax.random.normal(keys[1], (3, 5)),
        "b1": jax.random.normal(keys[2], (5,)),
        "s1": jax.random.uniform(keys[3], (5,)) + 0.5,
    }
    x = jax.random.normal(keys[4], (2, 4))

    def batched(v, x):
        return jax.nn.relu((x @ v["W1"].T) * v["s1"] + v["b1"]) @ v["W2"].T

    def weight_first(v, x):
        return (v["W2"] @ jax.nn.relu(v["s1"][:, None] * (v["W1"] @ x.T) + v["b1"][:, None])).T

    def per_example(v, x):
        return jax.vmap(lambda xi: v["W2"] @ jax.nn.relu((v["W1"] @ xi) * v["s1"] + v["b1"]))(x)

    return v, x, batched, (weight_first, per_example)


@pytest.mark.parametrize(
    "rule", [R.Epsilon(1e-6), R.ZPlus(), R.Gamma(0.25), R.AlphaBeta(2, 1), R.WSquare()], ids=lambda r: type(r).__name__
)
def test_a_dense_layer_written_weight_first_or_per_example_gets_the_same_relevance(rule):
    # Regression: under vmap the bias follows a transpose of the layer's output and was taken for a
    # separate step, so its share of relevance was lost (LRP-ε 2.1x max|R| off on this net).
    v, x, batched, others = _per_example_forms()
    composite = xj.composites.MapComposite(types={"dense": rule})
    expected = P.lrp(batched, v, x, 0, composite=composite)
    for form in others:
        np.testing.assert_allclose(
            P.lrp(form, v, x, 0, composite=composite),
            expected,
            rtol=1e-5,
            atol=1e-5 * float(jnp.abs(expected).max()),
            err_msg=form.__name__,
        )
    reference = P.deeplift(batched, v, x, 0)
    for form in others:
        np.testing.assert_allclose(P.deeplift(form, v, x, 0), reference, rtol=1e-5, atol=1e-6, err_msg=form.__name__)


def test_a_convolution_run_per_example_gets_the_relevance_of_the_batched_one():
    # Regression: a per-example conv under vmap traces to reshape -> conv -> reshape -> squeeze -> add bias;
    # the squeeze cut the bias off the layer (LRP-ε 15x max|R| off on this net).
    keys = jax.random.split(jax.random.key(8), 4)
    v = {
        "K": jax.random.normal(keys[0], (4, 1, 3, 3)),
        "b": jax.random.normal(keys[1], (4,)),
        "W": jax.random.normal(keys[2], (3, 4 * 6 * 6)),
    }
    x = jax.random.normal(keys[3], (2, 6, 6, 1))

    def per_example(v, x):
        def one(xi):
            h = jax.lax.conv_general_dilated(jnp.transpose(xi, (2, 0, 1))[None], v["K"], (1, 1), "SAME")[0]
            h = jax.nn.relu(h + v["b"][:, None, None])
            return v["W"] @ jnp.transpose(h, (1, 2, 0)).reshape(-1)

        return jax.vmap(one)(x)

    def batched(v, x):
        h = jax.lax.conv_general_dilated(jnp.transpose(x, (0, 3, 1, 2)), v["K"], (1, 1), "SAME")
        h = jax.nn.relu(h + v["b"][None, :, None, None])
        return jnp.transpose(h, (0, 2, 3, 1)).reshape(2, -1) @ v["W"].T

    for rule in (R.Epsilon(1e-6), R.ZPlus()):
        composite = xj.composites.MapComposite(types={"dense": rule, "conv": rule})
        expected = P.lrp(batched, v, x, 0, composite=composite)
        np.testing.assert_allclose(
            P.lrp(per_example, v, x, 0, composite=composite),
            expected,
            rtol=1e-5,
            atol=1e-5 * float(jnp.abs(expected).max()),
        )
