"""CAM on token layers, attention capture by name, attention rollout and Chefer et al.'s rule.

References are written out here, independently of the library's code paths: pytorch-grad-cam's own
Grad-CAM (with the ``reshape_transform`` its ViT tutorial uses) on a torchvision ViT with the same
weights; attention probabilities recomputed from the captured ``in_proj`` output; rollout and
Chefer's rule as explicit matrix products (NumPy, float64) on attentions captured and differentiated
one layer at a time with ``xj.capture`` / ``xj.layer_gradient``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from tests.transformers.twins import vit_variables
from xai_jax.attribution.cam import token_grid
from xai_jax.models.transformers import EncoderBlock, ViT

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

DEPTH, DIM, HEADS, MLP = 2, 16, 2, 32
SOFTMAXES = [f"encoder_layer_{i}/self_attention/softmax" for i in range(DEPTH)]


@pytest.fixture(scope="module")
def twin():
    """A torchvision ViT (28×28 RGB, 7×7 patches: 16 patch tokens + class token) with random
    weights (biases and class token included), and its Flax twin."""
    torch.manual_seed(0)
    tv = torchvision.models.VisionTransformer(
        image_size=28, patch_size=7, num_layers=DEPTH, num_heads=HEADS, hidden_dim=DIM, mlp_dim=MLP, num_classes=10
    ).eval()
    with torch.no_grad():
        for p in tv.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in tv.state_dict().items()}
    model = ViT(image_size=28, patch=7, dim=DIM, depth=DEPTH, heads=HEADS, mlp_dim=MLP, num_classes=10)
    x = np.asarray(jax.random.uniform(jax.random.key(3), (3, 28, 28, 3)), np.float32)
    return tv, model, vit_variables(state, DEPTH), x


def test_twin_outputs_agree(twin):
    tv, model, variables, x = twin
    with torch.no_grad():
        ref = tv(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(np.asarray(model.apply(variables, x)), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_grad_cam_on_tokens_matches_pytorch_grad_cam(twin):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tv, model, variables, x = twin

    def reshape_transform(t):  # pytorch-grad-cam's ViT tutorial: drop the class token, tokens -> (B, C, h, w)
        return t[:, 1:, :].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    nonzero = 0
    for target in range(4):
        cam = GradCAM(model=tv, target_layers=[tv.encoder.layers[-1].ln_1], reshape_transform=reshape_transform)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        cam(input_tensor=xt, targets=[ClassifierOutputTarget(target)] * len(x))
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        ref = np.maximum(cam.get_cam_image(xt, None, None, acts, grads), 0)  # before its min-max scaling
        cam.activations_and_grads.release()
        ours = np.asarray(xj.grad_cam(model, variables, x, target, layer="encoder_layer_1/ln_1"))
        assert ours.shape == (3, 4, 4)
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5 * max(np.abs(ref).max(), 1e-3))
        nonzero += int((ref > 0).sum())
    assert nonzero > 20  # the comparison is not between two blank maps
    given = xj.grad_cam(model, variables, x, 2, layer="encoder_layer_1/ln_1", prefix_tokens=1, grid=(4, 4))
    np.testing.assert_array_equal(
        np.asarray(given), np.asarray(xj.grad_cam(model, variables, x, 2, layer="encoder_layer_1/ln_1"))
    )


@pytest.mark.slow
def test_every_cam_weighting_runs_on_tokens(twin):
    _, model, variables, x = twin
    a, g = xj.layer_gradient(model, variables, x, 1, layer="encoder_layer_1/ln_1")
    a, g = np.asarray(a)[:, 1:].reshape(3, 4, 4, DIM), np.asarray(g)[:, 1:].reshape(3, 4, 4, DIM)
    for name, weighting in xj.attribution.WEIGHTINGS.items():
        ref = np.maximum((np.asarray(weighting(jnp.asarray(a), jnp.asarray(g))) * a).sum(-1), 0)
        np.testing.assert_allclose(
            np.asarray(getattr(xj, name)(model, variables, x, 1, layer="encoder_layer_1/ln_1")),
            ref,
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )
    assert xj.score_cam(model, variables, x, 1, layer="encoder_layer_1/ln_1").shape == (3, 4, 4)


def test_attention_probabilities_by_name(twin):
    _, model, variables, x = twin
    names = [info.name for info in xj.layers(model, variables, x) if info.type == "softmax"]
    assert names == SOFTMAXES
    for i, name in enumerate(SOFTMAXES):
        _, attn = xj.capture(model, variables, x, name)
        _, qkv = xj.capture(model, variables, x, f"encoder_layer_{i}/self_attention/in_proj")
        q, k, _ = np.split(np.asarray(qkv, np.float64), 3, axis=-1)
        q, k = (t.reshape(3, 17, HEADS, DIM // HEADS) for t in (q, k))
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(DIM // HEADS)
        ref = np.exp(s - s.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        np.testing.assert_allclose(np.asarray(attn), ref, rtol=1e-4, atol=1e-6)


def _captured(model, variables, x, target):
    attns, grads = [], []
    for name in SOFTMAXES:
        a, g = xj.layer_gradient(model, variables, x, target, layer=name)
        attns.append(np.asarray(a, np.float64))
        grads.append(np.asarray(g, np.float64))
    return attns, grads


def test_layer_gradient_of_attention_is_the_gradient(twin):
    """The gradient at a softmax layer against central differences along a random direction added
    to the attention probabilities."""
    _, model, variables, x = twin
    a, g = xj.layer_gradient(model, variables, x, 4, layer=SOFTMAXES[-1])
    direction = np.asarray(jax.random.normal(jax.random.key(7), a.shape), np.float32)
    f = lambda eps: float(
        xj.trace.probed_forward(xj.core.make_forward(model, None)[0], SOFTMAXES[-1])(
            variables, jnp.asarray(x), {}, eps * jnp.asarray(direction)
        )[0][:, 4].sum()
    )
    fd = (f(1e-2) - f(-1e-2)) / 2e-2
    np.testing.assert_allclose(float((np.asarray(g) * direction).sum()), fd, rtol=2e-3)


def test_rollout_is_the_product_of_averaged_attentions(twin):
    _, model, variables, x = twin
    attns, _ = _captured(model, variables, x, 0)
    r = np.eye(17)[None]
    for a in attns:
        m = 0.5 * a.mean(1) + 0.5 * np.eye(17)
        m = m / m.sum(-1, keepdims=True)
        r = np.einsum("bij,bjk->bik", m, r)
    ref = r[:, 0, 1:].reshape(3, 4, 4)
    np.testing.assert_allclose(np.asarray(xj.attention_rollout(model, variables, x)), ref, rtol=1e-5, atol=1e-7)
    one = xj.attention_rollout(model, variables, x, layers=SOFTMAXES[:1])
    m = 0.5 * attns[0].mean(1) + 0.5 * np.eye(17)
    np.testing.assert_allclose(
        np.asarray(one), (m / m.sum(-1, keepdims=True))[:, 0, 1:].reshape(3, 4, 4), rtol=1e-5, atol=1e-7
    )


def test_chefer_is_the_gradient_weighted_recursion(twin):
    _, model, variables, x = twin
    for target in (3, None):
        t = target if target is not None else np.asarray(model.apply(variables, x)).argmax(-1)
        attns, grads = _captured(model, variables, x, t)
        r = np.broadcast_to(np.eye(17), (3, 17, 17))
        for a, g in zip(attns, grads):
            cam = np.maximum(g * a, 0).mean(1)
            r = r + np.einsum("bij,bjk->bik", cam, r)
        ref = r[:, 0, 1:].reshape(3, 4, 4)
        ours = np.asarray(xj.chefer_attention(model, variables, x, target))
        assert np.abs(ref).max() > 1e-3
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


class _OverEmbeddings(nn.Module):
    """A class token and two encoder blocks over given embeddings ``(B, N, D)`` (float inputs)."""

    @nn.compact
    def __call__(self, e):
        cls = self.param("class_token", nn.initializers.normal(1.0), (1, 1, e.shape[-1]))
        h = jnp.concatenate([jnp.broadcast_to(cls, (e.shape[0], 1, e.shape[-1])), e], axis=1)
        for i in range(2):
            h = EncoderBlock(2, 16, name=f"block_{i}")(h)
        return nn.Dense(3, name="head")(h[:, 0])


def test_sequence_inputs_give_one_value_per_token():
    model = _OverEmbeddings()
    e = jax.random.normal(jax.random.key(1), (2, 6, 8))
    variables = model.init(jax.random.key(0), e)
    names = [info.name for info in xj.layers(model, variables, e) if info.type == "softmax"]
    assert names == ["block_0/self_attention/softmax", "block_1/self_attention/softmax"]
    attns = [np.asarray(xj.capture(model, variables, e, n)[1], np.float64) for n in names]
    r = np.eye(7)[None]
    for a in attns:
        m = 0.5 * a.mean(1) + 0.5 * np.eye(7)
        r = np.einsum("bij,bjk->bik", m / m.sum(-1, keepdims=True), r)
    np.testing.assert_allclose(np.asarray(xj.attention_rollout(model, variables, e)), r[:, 0, 1:], rtol=1e-5, atol=1e-7)
    assert xj.chefer_attention(model, variables, e).shape == (2, 6)
    with pytest.raises(xj.InputError, match="class token"):
        xj.attention_rollout(model, variables, e, prefix_tokens=0)


def test_token_grid_inference():
    assert token_grid(17, (1, 28, 28, 1)) == (1, 4, 4)
    assert token_grid(197, (1, 224, 224, 3)) == (1, 14, 14)
    assert token_grid(201, (1, 224, 224, 3)) == (5, 14, 14)  # class token + 4 registers
    assert token_grid(16, (1, 28, 28, 1)) == (0, 4, 4)
    assert token_grid(9, (1, 20, 30, 1), prefix_tokens=3) == (3, 2, 3)
    with pytest.raises(xj.InputError, match="ambiguous"):
        token_grid(9, (1, 28, 28, 1))  # 3×3 patches, or 5 leading tokens + 2×2
    with pytest.raises(xj.InputError, match=r"which is no .* grid"):
        token_grid(23, (1, 28, 28, 1))


def test_bad_input(twin):
    _, model, variables, x = twin
    layer = "encoder_layer_1/ln_1"
    with pytest.raises(xj.InputError, match="does not add up"):
        xj.grad_cam(model, variables, x, layer=layer, prefix_tokens=2, grid=(4, 4))
    with pytest.raises(xj.InputError, match="pair"):
        xj.grad_cam(model, variables, x, layer=layer, grid=(4,))
    with pytest.raises(xj.InputError, match="spatial"):
        xj.grad_cam(model, variables, x, layer="conv_proj", grid=(4, 4))
    with pytest.raises(xj.InputError, match="attention probabilities"):
        xj.grad_cam(model, variables, x, layer=SOFTMAXES[0])
    with pytest.raises(xj.InputError, match="not a softmax layer"):
        xj.attention_rollout(model, variables, x, layers=[layer])
    with pytest.raises(xj.InputError, match="does not add up"):
        xj.chefer_attention(model, variables, x, prefix_tokens=0, grid=(4, 4))
    with pytest.raises(xj.LayerNotFoundError):
        xj.capture(model, variables, x, "encoder_layer_1/self_attention/softmax#1")
    cnn, cnn_variables = xj.models.load("mnist_cnn")
    with pytest.raises(xj.InputError, match="no softmax"):
        xj.attention_rollout(cnn, cnn_variables, np.zeros((1, 28, 28, 1), np.float32))


def test_report_default_layer_of_a_vit_is_the_last_attention_input_norm(twin):
    from xai_jax.cli import _default_layer

    _, model, variables, x = twin
    assert _default_layer(model, variables, x) == "encoder_layer_1/ln_1"
    cnn, cnn_variables = xj.models.load("mnist_cnn")
    assert _default_layer(cnn, cnn_variables, np.zeros((1, 28, 28, 1), np.float32)) == "conv4+relu"
