"""AttnLRP / CP-LRP against LXT 2.1 on PyTorch twins with identical random weights.

References: ``lxt_reference.py`` (LXT's own patches on Hugging Face ``LlamaForCausalLM`` /
``GPT2LMHeadModel`` and torchvision's ``VisionTransformer``, input × modified gradient), in a
subprocess.  Criterion: max |ours − LXT| ≤ 1e-4 · max |LXT|, for the input (embedding) relevance
and the per-token relevance (summed over the embedding).

Where we and LXT differ by construction (documented in docs/transformers.md):

* ViT with γ: LXT's zennit hooks fire only on modules whose ``forward`` runs; torchvision's
  ``nn.MultiheadAttention`` calls ``F.linear`` on its ``in_proj_weight`` / ``out_proj.weight``
  directly, so LXT's "γ on every Linear" leaves the attention projections with the plain gradient
  (ε → 0).  The matching composite names them: ``names={"*/in_proj": Epsilon(1e-9), "*/out_proj": ...}``;
  a γ on all dense layers (what the recipe intends) is a different map (tested to differ).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.propagation import CPLRP, AttnLRP, Epsilon, SoftmaxGradient

from .conftest import twin

GAMMA = 0.5  # lxt_reference.GAMMA


def assert_close(ours: jax.Array, ref: np.ndarray, what: str, rel: float = 1e-4) -> None:
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    err, scale = np.abs(ours - ref).max(), np.abs(ref).max()
    assert scale > 0, what
    assert err <= rel * scale, f"{what}: max |ours - LXT| = {err:.3g} > {rel} * {scale:.3g}"


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("llama", "attnlrp"),
        ("llama", "cplrp"),
        ("gpt2", "attnlrp"),
        pytest.param("gpt2", "cplrp", marks=pytest.mark.slow),
    ],
)
def test_token_models_match_lxt(lxt_refs, name: str, mode: str) -> None:
    ref = lxt_refs[name]
    model, variables, e = twin(name, ref)
    targets = jnp.asarray(ref["targets"])
    np.testing.assert_allclose(
        np.asarray(model.apply(variables, e))[np.arange(2), ref["targets"]], ref["logits"], rtol=1e-5, atol=1e-5
    )
    composite = AttnLRP() if mode == "attnlrp" else CPLRP()
    R = xj.lrp(model, variables, e, targets, composite=composite)
    assert_close(R, ref[f"{mode}_embedding"], f"{name} {mode} embedding")
    assert_close(R.sum(-1), ref[f"{mode}_tokens"], f"{name} {mode} tokens")


def test_vit_matches_lxt_cplrp(lxt_refs) -> None:
    ref = lxt_refs["vit"]
    model, variables, x = twin("vit", ref)
    targets = jnp.asarray(ref["targets"])
    R = xj.lrp(model, variables, x, targets, composite=CPLRP())
    assert_close(jnp.transpose(R, (0, 3, 1, 2)), ref["cplrp_input"], "vit cplrp")


@pytest.mark.slow
def test_vit_matches_lxt_cplrp_gamma(lxt_refs) -> None:
    ref = lxt_refs["vit"]
    model, variables, x = twin("vit", ref)
    targets = jnp.asarray(ref["targets"])
    as_lxt = CPLRP("gamma", gamma=GAMMA, names={"*/in_proj": Epsilon(1e-9), "*/out_proj": Epsilon(1e-9)})
    R = xj.lrp(model, variables, x, targets, composite=as_lxt)
    assert_close(jnp.transpose(R, (0, 3, 1, 2)), ref["cplrp_gamma_input"], "vit cplrp gamma")
    # γ on every dense layer (attention projections included) is not what LXT computes
    everywhere = xj.lrp(model, variables, x, targets, composite=CPLRP("gamma", gamma=GAMMA))
    ref_gamma = ref["cplrp_gamma_input"]
    assert np.abs(np.transpose(np.asarray(everywhere), (0, 3, 1, 2)) - ref_gamma).max() > 0.1 * np.abs(ref_gamma).max()


# ---- conservation -------------------------------------------------------------------------------


def _bias_free(variables):
    """Biases, position embeddings and the class token set to zero (what a bias absorbs)."""

    def zero(path, leaf):
        name = jax.tree_util.keystr(path)
        return (
            jnp.zeros_like(leaf) if any(k in name for k in ("'bias'", "wpe", "pos_embedding", "class_token")) else leaf
        )

    return jax.tree_util.tree_map_with_path(zero, variables)


@pytest.mark.parametrize(
    "name", ["llama", pytest.param("gpt2", marks=pytest.mark.slow), pytest.param("vit", marks=pytest.mark.slow)]
)
def test_cplrp_conserves_on_bias_free_twins(lxt_refs, name: str) -> None:
    ref = lxt_refs[name]
    model, variables, x = twin(name, ref)
    variables = _bias_free(variables)
    targets = jnp.asarray(ref["targets"])
    logit = np.asarray(model.apply(variables, x))[np.arange(2), ref["targets"]]
    R = np.asarray(xj.lrp(model, variables, x, targets, composite=CPLRP()))
    total = R.reshape(2, -1).sum(1, dtype=np.float64)
    np.testing.assert_allclose(total, logit, rtol=1e-5, atol=1e-6 * np.abs(R).max())


@pytest.mark.parametrize("name", ["llama", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_attnlrp_not_conservative_measured(lxt_refs, name: str) -> None:
    """AttnLRP drops the softmax's bias term: the sum is not the logit (LXT's neither: same sum)."""
    ref = lxt_refs[name]
    model, variables, x = twin(name, ref)
    variables = _bias_free(variables)
    targets = jnp.asarray(ref["targets"])
    logit = np.asarray(model.apply(variables, x))[np.arange(2), ref["targets"]]
    total = np.asarray(xj.lrp(model, variables, x, targets, composite=AttnLRP())).reshape(2, -1).sum(1)
    ratio = total / logit
    print(f"{name}: AttnLRP sum / logit on the bias-free twin = {ratio}")
    assert np.all(np.isfinite(ratio)) and np.abs(ratio - 1).max() > 1e-3


def test_softmax_rule_is_input_times_gradient() -> None:
    """``R_in = x ⊙ Jᵀ(R / s)`` (AttnLRP Prop. 3.1), against ``jax.vjp`` of ``jax.nn.softmax``,
    and a masked logit gets no relevance."""
    key1, key2 = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key1, (3, 5, 7))
    R = jax.random.normal(key2, (3, 5, 7))
    s, pullback = jax.vjp(lambda v: jax.nn.softmax(v, axis=-1), x)
    expected = x * pullback(R / s)[0]
    got = SoftmaxGradient().softmax(x, s, R, (2,))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    # the bias term: what the rule does not conserve is Σ_i x_i s_i Σ_j R_j
    np.testing.assert_allclose(
        np.asarray(got.sum(-1)), np.asarray(-(x * s).sum(-1) * R.sum(-1) + (x * R).sum(-1)), rtol=1e-4, atol=1e-4
    )
    masked = x.at[..., 0].set(jnp.finfo(jnp.float32).min)
    s_masked = jax.nn.softmax(masked, axis=-1)
    out = SoftmaxGradient().softmax(masked, s_masked, R, (2,))
    assert np.all(np.isfinite(np.asarray(out))) and np.all(np.asarray(out[..., 0]) == 0)


# ---- DeepLIFT ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["llama", pytest.param("gpt2", marks=pytest.mark.slow), pytest.param("vit", marks=pytest.mark.slow)]
)
def test_deeplift_sums_to_delta(lxt_refs, name: str) -> None:
    ref = lxt_refs[name]
    model, variables, x = twin(name, ref)
    targets = jnp.asarray(ref["targets"])
    baseline = 0.1 * x[::-1]  # a non-degenerate reference (see docs/transformers.md for the zero embedding)
    attr = np.asarray(xj.deeplift(model, variables, x, targets, baseline=baseline))
    f = np.asarray(model.apply(variables, x))[np.arange(2), ref["targets"]]
    f0 = np.asarray(model.apply(variables, baseline))[np.arange(2), ref["targets"]]
    np.testing.assert_allclose(attr.reshape(2, -1).sum(1), f - f0, rtol=1e-4, atol=1e-5)


# ---- integer token inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_lrp_on_token_ids_is_per_token(lxt_refs, name: str) -> None:
    """Token ids in: the relevance of the embedding lookup's output, summed per token -- LXT's token
    relevance."""
    ref = lxt_refs[name]
    model, variables, ids = twin(name, ref, embedded=False)
    R = xj.lrp(model, variables, ids, jnp.asarray(ref["targets"]), composite=AttnLRP())
    assert_close(R, ref["attnlrp_tokens"], f"{name} attnlrp from token ids")


def assert_same_map(ours: np.ndarray, expected: np.ndarray) -> None:
    """The token path and the embedding twin compute the same function through different programs
    (a rewritten trace against the module), so float32 rounding differs: max |difference| ≤ 1e-5 ·
    max |expected| (measured up to 1.7e-6 on jax 0.12; 10x stricter than the LXT criterion)."""
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("gradient", {}),
        ("saliency", {}),
        ("input_x_gradient", {}),
        ("integrated_gradients", {"steps": 8}),
        ("smoothgrad", {"key": jax.random.key(3), "samples": 4, "stdev": 0.05}),
    ],
)
def test_gradient_methods_on_token_ids_explain_the_embedding(lxt_refs, name: str, options: dict) -> None:
    """Token ids in: the same method on the embedding (the twin that takes it), summed per token."""
    ref = lxt_refs["llama"]
    model, variables, ids = twin("llama", ref, embedded=False)
    on_embedding, _, e = twin("llama", ref)
    targets = jnp.asarray(ref["targets"])
    method = xj.METHODS[name]
    per_token = np.asarray(method(model, variables, ids, targets, **options))
    expected = np.asarray(method(on_embedding, variables, e, targets, **options)).sum(-1)
    assert per_token.shape == ids.shape
    assert_same_map(per_token, expected)


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("integrated_gradients", {"steps": 8, "method": "gausslegendre", "baseline": "pad"}, "captum_ig_tokens"),
        ("input_x_gradient", {}, "captum_ixg_tokens"),
    ],
)
def test_token_ids_match_captums_layer_methods_at_the_embedding(lxt_refs, name, options, key) -> None:
    """Against Captum on the Hugging Face LLaMA with the same weights: ``LayerIntegratedGradients`` and
    ``LayerGradientXActivation`` on its embedding layer, from token ids, summed over the embedding."""
    ref = lxt_refs["llama"]
    model, variables, ids = twin("llama", ref, embedded=False)
    if options.get("baseline") == "pad":
        options = {**options, "baseline": jnp.zeros_like(ids)}
    ours = xj.METHODS[name](model, variables, ids, jnp.asarray(ref["targets"]), **options)
    assert_close(ours, ref[key], f"llama {name} from token ids vs Captum")


def test_integrated_gradients_on_token_ids_is_complete(lxt_refs) -> None:
    """Σ over tokens = f(x) − f(baseline), the baseline given as token ids (a padding token)."""
    ref = lxt_refs["llama"]
    model, variables, ids = twin("llama", ref, embedded=False)
    targets = jnp.asarray(ref["targets"])
    pad = jnp.zeros_like(ids)
    attr, error = xj.integrated_gradients(model, variables, ids, targets, baseline=pad, steps=64, return_error=True)
    f = np.asarray(model.apply(variables, ids))[np.arange(2), ref["targets"]]
    f0 = np.asarray(model.apply(variables, pad))[np.arange(2), ref["targets"]]
    assert attr.shape == ids.shape
    np.testing.assert_allclose(np.asarray(attr).sum(1) - (f - f0), np.asarray(error), atol=1e-5)
    assert np.abs(np.asarray(error)).max() <= 1e-2 * np.abs(f - f0).max()


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_deeplift_on_token_ids_is_the_embeddings(lxt_refs, name: str) -> None:
    """DeepLIFT from token ids equals DeepLIFT on the embedding twin (reference: the padding token's
    embedding), summed per token, and sums to f(x) − f(reference)."""
    ref = lxt_refs[name]
    model, variables, ids = twin(name, ref, embedded=False)
    on_embedding, _, e = twin(name, ref)
    targets = jnp.asarray(ref["targets"])
    pad = jnp.zeros_like(ids)
    e_pad = twin(name, {**ref, "ids": np.zeros_like(ref["ids"])})[2]
    per_token = np.asarray(xj.deeplift(model, variables, ids, targets, baseline=pad))
    expected = np.asarray(xj.deeplift(on_embedding, variables, e, targets, baseline=e_pad)).sum(-1)
    assert_same_map(per_token, expected)
    f = np.asarray(model.apply(variables, ids))[np.arange(2), ref["targets"]]
    f0 = np.asarray(model.apply(variables, pad))[np.arange(2), ref["targets"]]
    np.testing.assert_allclose(per_token.sum(1), f - f0, rtol=1e-4, atol=1e-5)


def test_methods_that_need_a_float_input_refuse_token_ids(lxt_refs) -> None:
    ref = lxt_refs["llama"]
    model, variables, ids = twin("llama", ref, embedded=False)
    with pytest.raises(xj.InputError, match="guided_backprop differentiates its input"):
        xj.guided_backprop(model, variables, ids, 0)


def test_layer_gradient_at_the_embedding_of_token_ids(lxt_refs) -> None:
    """``layer_gradient(layer=<the embedding>)`` on token ids: the embedding and the gradient there,
    equal to the gradient of the twin that takes the embedding as its input."""
    ref = lxt_refs["llama"]
    model, variables, ids = twin("llama", ref, embedded=False)
    on_embedding, _, e = twin("llama", ref)
    targets = jnp.asarray(ref["targets"])
    activation, gradient = xj.layer_gradient(model, variables, ids, targets, layer="embed_tokens")
    np.testing.assert_array_equal(np.asarray(activation), np.asarray(e))
    expected = np.asarray(xj.gradient(on_embedding, variables, e, targets))
    assert_same_map(np.asarray(gradient), expected)
    _, captured = xj.capture(model, variables, ids, "embed_tokens")
    np.testing.assert_array_equal(np.asarray(captured), np.asarray(e))
