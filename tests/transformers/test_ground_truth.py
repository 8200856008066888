"""The marker task (xai_jax.models.synthetic): a ground truth for token explanations.

The shipped ``marker_transformer`` decides its label from one known token (the one after the marker).
``benchmarks/ground_truth_tokens.py`` scores every token method on 1,000 held-out sequences (README
table); here the same scores on 200, asserting what the table shows with wide margins.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.models import synthetic
from xai_jax.propagation import CPLRP, AttnLRP


def test_marker_sequences_have_one_marker_and_the_label_after_it() -> None:
    batch = synthetic.marker_sequences(jax.random.key(0), 500)
    tokens, labels, position = (np.asarray(a) for a in batch)
    assert tokens.shape == (500, synthetic.LENGTH) and tokens.dtype == np.int32
    assert np.all((tokens == synthetic.MARKER).sum(1) == 1)
    assert np.all(tokens[np.arange(500), position - 1] == synthetic.MARKER)
    assert np.all(labels == tokens[np.arange(500), position] - 2)
    assert set(np.unique(labels)) == set(range(synthetic.VOCAB - 2))
    assert position.min() == 1 and position.max() == synthetic.LENGTH - 1  # every place the token can be
    assert not np.any(tokens == synthetic.PAD)
    again = synthetic.marker_sequences(jax.random.key(0), 500)
    np.testing.assert_array_equal(np.asarray(again.tokens), tokens)  # the key decides everything


def test_deciding_token_share_known_answers() -> None:
    position = np.array([2, 0])
    one_hot = np.zeros((2, 5))
    one_hot[[0, 1], position] = [3.0, -1.0]
    scores = synthetic.deciding_token_share(one_hot, position)
    np.testing.assert_array_equal(scores["share"], [1.0, 1.0])
    assert scores["top"].all()
    uniform = synthetic.deciding_token_share(np.ones((2, 5)), position)
    np.testing.assert_allclose(uniform["share"], [0.2, 0.2])
    np.testing.assert_array_equal(synthetic.deciding_token_share(np.zeros((2, 5)), position)["share"], [0.0, 0.0])
    with pytest.raises(xj.InputError, match=r"\(B, length\)"):
        synthetic.deciding_token_share(np.ones((2, 5, 1)), position)
    with_nan = np.ones((2, 5))
    with_nan[1, 3] = np.nan
    with pytest.raises(xj.InputError, match="1 NaN or infinite"):
        synthetic.deciding_token_share(with_nan, position)
    with pytest.raises(xj.InputError, match=r"token indices in 0\.\.4"):
        synthetic.deciding_token_share(np.ones((2, 5)), np.array([2, 5]))


def test_retraining_never_writes_over_the_shipped_checkpoint(tmp_path, monkeypatch) -> None:
    """The marker model's writer follows ``xai-jax train``'s folder rules, checked before training."""
    monkeypatch.setattr(synthetic, "train_marker_transformer", _must_not_train)
    shipped = xj.models.checkpoint.checkpoints_dir()
    with pytest.raises(xj.OutputError, match="checkpoints folder"):
        synthetic.write_marker_checkpoint(shipped)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(xj.OutputError, match="not a readable xai_jax checkpoint manifest"):
        synthetic.write_marker_checkpoint(tmp_path)
    assert synthetic.main(["--out", str(shipped)]) == 2


def _must_not_train(*args, **kwargs):
    raise AssertionError("the output folder must be refused before training")


@pytest.fixture(scope="module")
def shipped():
    model, variables = synthetic.load_marker_transformer()
    batch = synthetic.marker_sequences(jax.random.key(2027), 200)  # held out: training used key(0)
    return model, variables, batch


def test_shipped_model_solves_the_task(shipped) -> None:
    model, variables, batch = shipped
    predicted = np.asarray(jnp.argmax(model.apply(variables, batch.tokens), -1))
    assert (predicted == np.asarray(batch.labels)).mean() >= 0.99
    listed = xj.models.checkpoint.read_manifest(xj.models.checkpoint.checkpoints_dir())["models"]
    assert listed["marker_transformer"]["test_accuracy"] >= 0.99


def test_relevance_propagation_finds_the_deciding_token(shipped) -> None:
    """AttnLRP and CP-LRP put most relevance on the deciding token and rank it first; both beat the
    gradient methods and the attention maps by a wide margin (README table: 0.66 and 0.83 against at
    most 0.32)."""
    model, variables, batch = shipped
    share = {}
    for name, relevance in {
        "attnlrp": xj.lrp(model, variables, batch.tokens, composite=AttnLRP()),
        "cplrp": xj.lrp(model, variables, batch.tokens, composite=CPLRP()),
        "input_x_gradient": xj.input_x_gradient(model, variables, batch.tokens),
        "integrated_gradients": xj.integrated_gradients(model, variables, batch.tokens, steps=16),
        "attention_rollout": xj.attention_rollout(model, variables, batch.tokens),
        "chefer_attention": xj.chefer_attention(model, variables, batch.tokens),
    }.items():
        assert relevance.shape == batch.tokens.shape, name
        scores = synthetic.deciding_token_share(relevance, batch.position)
        share[name] = (scores["share"].mean(), scores["top"].mean())
    print("share on the deciding token, ranked first:", share)
    for name in ("attnlrp", "cplrp"):
        assert share[name][0] >= 0.5 and share[name][1] >= 0.9, (name, share[name])
        others = [v[0] for k, v in share.items() if k not in ("attnlrp", "cplrp")]
        assert share[name][0] >= max(others) + 0.2, (name, share)


def test_token_ids_under_a_callers_jit(shipped) -> None:
    """Token ids traced by a caller's ``jax.jit`` take the same path as concrete ones (the lookup is
    found in the trace, not read from the per-shape cache that concrete calls use)."""
    model, variables, batch = shipped
    tokens = batch.tokens[:8]
    for method in (xj.input_x_gradient, xj.integrated_gradients):
        eager = np.asarray(method(model, variables, tokens))
        jitted = np.asarray(jax.jit(lambda ids, method=method: method(model, variables, ids))(tokens))
        assert jitted.shape == tokens.shape
        assert np.abs(jitted - eager).max() <= 1e-5 * np.abs(eager).max()
