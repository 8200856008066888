"""Small transformers: a Vision Transformer for MNIST and a token classifier.

Both are plain Linen modules written the way people write transformers -- ``jax.nn.softmax``
attention, ``nn.LayerNorm``, ``jax.nn.gelu`` -- with no hook for explanation methods: the trace engine
finds the softmax, the normalisations, the GELU and the attention products by itself.

* :class:`ViT` ([dosovitskiy2021]_) follows torchvision's ``VisionTransformer`` layer for layer (a
  patchifying ``conv_proj``, a class token, learned position embeddings, pre-LayerNorm encoder
  blocks with a packed ``in_proj`` as in ``nn.MultiheadAttention``, exact GELU, ``ln``, ``head`` on the
  class token), so a torchvision model's weights port one to one (the tests compare with LXT on
  such a twin).  ``mnist_vit`` in the zoo is one trained on MNIST.
* :class:`TokenClassifier`: the same encoder over token embeddings (``nn.Embed``) with a class
  token; ``marker_transformer`` (shipped in ``checkpoints/``, loaded by
  :func:`xai_jax.models.synthetic.load_marker_transformer`) is one trained on the synthetic marker
  task of :mod:`xai_jax.models.synthetic`.

Attention probabilities are the ``softmax`` of each attention module: ``xj.layers`` lists them as
``"<block>/self_attention/softmax"`` (capture them with ``xj.capture``, or differentiate with
``xj.layer_gradient``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["EncoderBlock", "SelfAttention", "TokenClassifier", "ViT"]


class SelfAttention(nn.Module):
    """Multi-head self-attention as ``torch.nn.MultiheadAttention`` computes it: one packed
    ``in_proj`` (q, k, v), ``softmax(q kᵀ / √d)`` per head, ``out_proj``."""

    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = jnp.split(nn.Dense(3 * d, name="in_proj")(x), 3, axis=-1)
        q, k, v = (t.reshape(b, n, self.heads, hd) for t in (q, k, v))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(hd, x.dtype))
        weights = jax.nn.softmax(scores, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d)
        return nn.Dense(d, name="out_proj")(out)


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block (torchvision's ``EncoderBlock``): ``x + attn(ln_1(x))``, then
    ``x + mlp(ln_2(x))`` with an exact-GELU MLP."""

    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        x = x + SelfAttention(self.heads, name="self_attention")(nn.LayerNorm(epsilon=1e-6, name="ln_1")(x))
        h = nn.LayerNorm(epsilon=1e-6, name="ln_2")(x)
        h = nn.Dense(d, name="mlp_3")(jax.nn.gelu(nn.Dense(self.mlp_dim, name="mlp_0")(h), approximate=False))
        return x + h


class ViT(nn.Module):
    """Vision Transformer on NHWC images: ``patch`` × ``patch`` patches, a class token, ``depth``
    encoder blocks, a linear head on the class token.  Output: logits ``(B, num_classes)``.
    ``input_shape`` is one image's shape ``(image_size, image_size, 1)``."""

    image_size: int = 28
    patch: int = 7
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 128
    num_classes: int = 10
    stem: int = 0  # channels of a 3×3 convolution + ReLU before the patches (0: none, torchvision's ViT)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.stem:  # an early convolution makes a small ViT learn MNIST in a few epochs ([xiao2021]_)
            x = nn.relu(nn.Conv(self.stem, (3, 3), padding="SAME", name="stem")(x))
        p = nn.Conv(self.dim, (self.patch, self.patch), strides=self.patch, padding="VALID", name="conv_proj")(x)
        b, gh, gw, d = p.shape
        tokens = p.reshape(b, gh * gw, d)  # row-major over the patch grid, as torchvision's flatten
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d))
        tokens = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(tokens.dtype), tokens], axis=1)
        tokens = tokens + self.param("pos_embedding", nn.initializers.normal(0.02), (1, gh * gw + 1, d))
        for i in range(self.depth):
            tokens = EncoderBlock(self.heads, self.mlp_dim, name=f"encoder_layer_{i}")(tokens)
        tokens = nn.LayerNorm(epsilon=1e-6, name="ln")(tokens)
        return nn.Dense(self.num_classes, name="head")(tokens[:, 0])


class TokenClassifier(nn.Module):
    """A transformer encoder over token ids ``(B, N)``: embeddings plus learned positions, a class
    token, ``depth`` blocks, a head on the class token.  Output: logits ``(B, num_classes)``."""

    vocab: int = 16
    length: int = 12
    dim: int = 32
    depth: int = 2
    heads: int = 2
    mlp_dim: int = 64
    num_classes: int = 8

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        b, n = tokens.shape
        h = nn.Embed(self.vocab, self.dim, name="embed")(tokens)
        cls = self.param("class_token", nn.initializers.normal(0.02), (1, 1, self.dim))
        h = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.dim)).astype(h.dtype), h], axis=1)
        h = h + self.param("pos_embedding", nn.initializers.normal(0.02), (1, self.length + 1, self.dim))[:, : n + 1]
        for i in range(self.depth):
            h = EncoderBlock(self.heads, self.mlp_dim, name=f"encoder_layer_{i}")(h)
        h = nn.LayerNorm(epsilon=1e-6, name="ln")(h)
        return nn.Dense(self.num_classes, name="head")(h[:, 0])


def example_tokens(model: TokenClassifier, batch: int = 1) -> Any:
    """A dummy token batch for ``model.init``."""
    return jnp.zeros((batch, model.length), jnp.int32)
