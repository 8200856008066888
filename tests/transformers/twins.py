"""Flax twins of the PyTorch transformers LXT explains, with their weights ported one to one.

* :class:`Llama`: Hugging Face ``LlamaForCausalLM`` (RMSNorm, rotary position embeddings, SiLU-gated
  MLP, causal attention, no biases); output: the last position's logits ``(B, vocab)``.
* :class:`GPT2`: Hugging Face ``GPT2LMHeadModel`` (LayerNorm, learned positions, tanh-GELU MLP,
  biases everywhere, ``lm_head`` tied to ``wte``); output: the last position's logits.
* the ViT twin is :class:`xai_jax.models.transformers.ViT` itself (torchvision's ``VisionTransformer``).

Each is written as a Flax user would (``jax.nn.softmax``, ``nn.RMSNorm``/``nn.LayerNorm``,
``jax.nn.silu``/``jax.nn.gelu``, ``jnp.where`` for the causal mask): nothing in it helps the engine.
The ``*_variables`` functions turn a PyTorch state dict (NumPy arrays) into Flax variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
State = Mapping[str, np.ndarray]


def causal_attention(q: Array, k: Array, v: Array, scale: float) -> Array:
    """``softmax(q kᵀ · scale + causal mask) v`` over ``(B, N, H, d)`` heads."""
    n = q.shape[1]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
    mask = jnp.tril(jnp.ones((n, n), bool))
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)


def rotate_half(x: Array) -> Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


class LlamaAttention(nn.Module):
    heads: int
    theta: float

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = (nn.Dense(d, use_bias=False, name=f"{p}_proj")(x).reshape(b, n, self.heads, hd) for p in "qkv")
        inv_freq = 1.0 / (self.theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
        freqs = np.arange(n, dtype=np.float32)[:, None] * inv_freq[None]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = jnp.asarray(np.cos(emb))[None, :, None], jnp.asarray(np.sin(emb))[None, :, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        out = causal_attention(q, k, v, hd**-0.5).reshape(b, n, d)
        return nn.Dense(d, use_bias=False, name="o_proj")(out)


class LlamaMLP(nn.Module):
    intermediate: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        gate = jax.nn.silu(nn.Dense(self.intermediate, use_bias=False, name="gate_proj")(x))
        return nn.Dense(x.shape[-1], use_bias=False, name="down_proj")(
            gate * nn.Dense(self.intermediate, use_bias=False, name="up_proj")(x)
        )


class Llama(nn.Module):
    vocab: int = 64
    dim: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 64
    eps: float = 1e-6
    theta: float = 10000.0
    embedded: bool = False  # True: the input is the token embedding (B, N, dim), as LXT explains it

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        embed = nn.Embed(self.vocab, self.dim, name="embed_tokens")
        h = tokens if self.embedded else embed(tokens)
        for i in range(self.layers):
            h = h + LlamaAttention(self.heads, self.theta, name=f"layers_{i}_self_attn")(
                nn.RMSNorm(epsilon=self.eps, name=f"layers_{i}_input_layernorm")(h)
            )
            h = h + LlamaMLP(self.intermediate, name=f"layers_{i}_mlp")(
                nn.RMSNorm(epsilon=self.eps, name=f"layers_{i}_post_attention_layernorm")(h)
            )
        h = nn.RMSNorm(epsilon=self.eps, name="norm")(h)
        return nn.Dense(self.vocab, use_bias=False, name="lm_head")(h[:, -1])


def llama_variables(state: State, layers: int) -> dict[str, Any]:
    """Flax variables of :class:`Llama` from a ``LlamaForCausalLM`` state dict."""
    t = lambda k: jnp.asarray(state[k].T)
    params: dict[str, Any] = {
        "embed_tokens": {"embedding": jnp.asarray(state["model.embed_tokens.weight"])},
        "norm": {"scale": jnp.asarray(state["model.norm.weight"])},
        "lm_head": {"kernel": t("lm_head.weight")},
    }
    for i in range(layers):
        pre = f"model.layers.{i}"
        params[f"layers_{i}_self_attn"] = {
            f"{p}_proj": {"kernel": t(f"{pre}.self_attn.{p}_proj.weight")} for p in "qkvo"
        }
        params[f"layers_{i}_mlp"] = {
            f"{p}_proj": {"kernel": t(f"{pre}.mlp.{p}_proj.weight")} for p in ("gate", "up", "down")
        }
        params[f"layers_{i}_input_layernorm"] = {"scale": jnp.asarray(state[f"{pre}.input_layernorm.weight"])}
        params[f"layers_{i}_post_attention_layernorm"] = {
            "scale": jnp.asarray(state[f"{pre}.post_attention_layernorm.weight"])
        }
    return {"params": params}


class GPT2Block(nn.Module):
    heads: int
    eps: float

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, n, d = x.shape
        hd = d // self.heads
        h = nn.LayerNorm(epsilon=self.eps, name="ln_1")(x)
        q, k, v = (t.reshape(b, n, self.heads, hd) for t in jnp.split(nn.Dense(3 * d, name="c_attn")(h), 3, axis=-1))
        x = x + nn.Dense(d, name="attn_c_proj")(causal_attention(q, k, v, hd**-0.5).reshape(b, n, d))
        h = nn.LayerNorm(epsilon=self.eps, name="ln_2")(x)
        return x + nn.Dense(d, name="mlp_c_proj")(jax.nn.gelu(nn.Dense(4 * d, name="c_fc")(h), approximate=True))


class GPT2(nn.Module):
    vocab: int = 64
    positions: int = 16
    dim: int = 32
    layers: int = 2
    heads: int = 2
    eps: float = 1e-5
    embedded: bool = False  # True: the input is the token embedding (B, N, dim), as LXT explains it

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        wte = nn.Embed(self.vocab, self.dim, name="wte")
        h = (tokens if self.embedded else wte(tokens)) + nn.Embed(self.positions, self.dim, name="wpe")(
            jnp.arange(tokens.shape[1])
        )[None]
        for i in range(self.layers):
            h = GPT2Block(self.heads, self.eps, name=f"h_{i}")(h)
        h = nn.LayerNorm(epsilon=self.eps, name="ln_f")(h)
        return wte.attend(h[:, -1])  # lm_head tied to the token embedding


def gpt2_variables(state: State, layers: int) -> dict[str, Any]:
    """Flax variables of :class:`GPT2` from a ``GPT2LMHeadModel`` state dict (``Conv1D`` weights are
    already ``(in, out)``)."""
    a = lambda k: jnp.asarray(state[k])
    ln = lambda k: {"scale": a(f"{k}.weight"), "bias": a(f"{k}.bias")}
    dense = lambda k: {"kernel": a(f"{k}.weight"), "bias": a(f"{k}.bias")}
    params: dict[str, Any] = {
        "wte": {"embedding": a("transformer.wte.weight")},
        "wpe": {"embedding": a("transformer.wpe.weight")},
        "ln_f": ln("transformer.ln_f"),
    }
    for i in range(layers):
        pre = f"transformer.h.{i}"
        params[f"h_{i}"] = {
            "ln_1": ln(f"{pre}.ln_1"),
            "ln_2": ln(f"{pre}.ln_2"),
            "c_attn": dense(f"{pre}.attn.c_attn"),
            "attn_c_proj": dense(f"{pre}.attn.c_proj"),
            "c_fc": dense(f"{pre}.mlp.c_fc"),
            "mlp_c_proj": dense(f"{pre}.mlp.c_proj"),
        }
    return {"params": params}


def vit_variables(state: State, layers: int) -> dict[str, Any]:
    """Flax variables of :class:`xai_jax.models.transformers.ViT` from torchvision's
    ``VisionTransformer`` state dict (conv kernels OIHW -> HWIO, Linear weights transposed)."""
    a = lambda k: jnp.asarray(state[k])
    t = lambda k: jnp.asarray(state[k].T)
    ln = lambda k: {"scale": a(f"{k}.weight"), "bias": a(f"{k}.bias")}
    dense = lambda k: {"kernel": t(f"{k}.weight"), "bias": a(f"{k}.bias")}
    params: dict[str, Any] = {
        "conv_proj": {
            "kernel": jnp.asarray(state["conv_proj.weight"].transpose(2, 3, 1, 0)),
            "bias": a("conv_proj.bias"),
        },
        "class_token": a("class_token"),
        "pos_embedding": a("encoder.pos_embedding"),
        "ln": ln("encoder.ln"),
        "head": dense("heads.head"),
    }
    for i in range(layers):
        pre = f"encoder.layers.encoder_layer_{i}"
        params[f"encoder_layer_{i}"] = {
            "ln_1": ln(f"{pre}.ln_1"),
            "ln_2": ln(f"{pre}.ln_2"),
            "self_attention": {
                "in_proj": {
                    "kernel": t(f"{pre}.self_attention.in_proj_weight"),
                    "bias": a(f"{pre}.self_attention.in_proj_bias"),
                },
                "out_proj": dense(f"{pre}.self_attention.out_proj"),
            },
            "mlp_0": dense(f"{pre}.mlp.0"),
            "mlp_3": dense(f"{pre}.mlp.3"),
        }
    return {"params": params}
