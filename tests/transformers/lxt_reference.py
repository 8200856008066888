"""LXT 2.1 reference relevances, computed in a subprocess (run: ``python lxt_reference.py OUT_DIR MODEL...``).

LXT explains by monkey-patching PyTorch classes (``LlamaMLP.forward``, ``torch.nn.LayerNorm.forward``,
Hugging Face's attention functions...) for the whole process, and refuses to patch a class twice; so
each reference runs in a fresh interpreter, the AttnLRP patches are undone before the CP-LRP ones
(the originals are restored by hand), and the test process never sees a patched class.

For each model (random weights from a fixed seed, then every parameter perturbed so that biases and
norm scales are not trivially 0 and 1) it writes the state dict, the inputs, the targets, the target
logits and, for every mode, the input relevance ``x ⊙ ∂̃f/∂x`` (for token models at the input
embedding, and summed per token).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

B, N = 2, 8
LAYERS = 2


def _stub_lxt_bert() -> None:
    """LXT 2.1's ``lxt.efficient.models`` imports its BERT patches, which import
    ``transformers.modeling_attn_mask_utils`` (removed in transformers 5): the package cannot be
    imported at all.  We use no BERT, so a stand-in module takes its place (LXT's own code is unchanged)."""
    import types

    try:
        import transformers.modeling_attn_mask_utils  # noqa: F401
    except ImportError:
        stub = types.ModuleType("lxt.efficient.models.bert")
        stub.modeling_bert = types.ModuleType("modeling_bert_unavailable")  # type: ignore[attr-defined]
        stub.attnLRP = {}  # type: ignore[attr-defined]
        sys.modules["lxt.efficient.models.bert"] = stub


def perturb(model: torch.nn.Module, scale: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


def token_relevance(
    model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, use_cache=False).logits[:, -1]
    chosen = logits.gather(1, targets[:, None]).sum()
    chosen.backward()
    rel = (embeds * embeds.grad).detach()
    return rel.numpy(), rel.sum(-1).numpy(), logits.gather(1, targets[:, None])[:, 0].detach().numpy()


def patch(module, patch_map: dict, interface) -> None:
    """LXT's ``monkey_patch``, kept working on transformers 5: LXT's ``patch_attention`` replaces the
    module's ``ALL_ATTENTION_FUNCTIONS`` (an ``AttentionInterface``) by a plain ``dict``, which has no
    ``get_interface``; with ``attn_implementation="eager"`` the model calls the module's (patched)
    ``eager_attention_forward`` anyway, so the original interface object is put back."""
    from lxt.efficient import monkey_patch

    monkey_patch(module, patch_map)
    module.ALL_ATTENTION_FUNCTIONS = interface
    assert module.eager_attention_forward.__module__ == "lxt.efficient.patches", "LXT's attention patch did not apply"


def restore(saved: dict) -> None:
    for (owner, attr), value in saved.items():
        setattr(owner, attr, value)


def captum_token_references(model, ids, targets, out: dict) -> None:
    """Captum's layer methods at the embedding layer of the unpatched model, from token ids, summed
    over the embedding: integrated gradients (8 Gauss-Legendre steps, the padding token 0 as baseline)
    and input x gradient (``LayerGradientXActivation``)."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    def last_logits(i):
        return model(i, use_cache=False).logits[:, -1]

    layer = model.get_input_embeddings()
    ig = LayerIntegratedGradients(last_logits, layer).attribute(
        ids, baselines=torch.zeros_like(ids), target=targets, n_steps=8, method="gausslegendre"
    )
    out["captum_ig_tokens"] = ig.sum(-1).detach().numpy()
    ixg = LayerGradientXActivation(last_logits, layer).attribute(ids, target=targets)
    out["captum_ixg_tokens"] = ixg.sum(-1).detach().numpy()


def llama(out: dict) -> None:
    from lxt.efficient.models import llama as lxt_llama
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama import modeling_llama

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
        rms_norm_eps=1e-6,
        initializer_range=0.2,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).eval()
    perturb(model, 0.05)
    ids = torch.randint(0, 64, (B, N))
    with torch.no_grad():
        plain = model(ids, use_cache=False).logits[:, -1]
        targets = plain.argmax(-1)
    out["plain_logits"] = plain.numpy()
    out.update(
        ids=ids.numpy(), targets=targets.numpy(), state={k: v.detach().numpy() for k, v in model.state_dict().items()}
    )
    captum_token_references(model, ids, targets, out)  # before LXT patches anything
    saved = {
        (c, "forward"): c.forward for c in (modeling_llama.LlamaMLP, modeling_llama.LlamaRMSNorm, torch.nn.Dropout)
    }
    saved[(modeling_llama, "eager_attention_forward")] = modeling_llama.eager_attention_forward
    saved[(modeling_llama, "ALL_ATTENTION_FUNCTIONS")] = modeling_llama.ALL_ATTENTION_FUNCTIONS
    for mode, patch_map in (("attnlrp", lxt_llama.attnLRP), ("cplrp", lxt_llama.cp_LRP)):
        patch(modeling_llama, patch_map, saved[(modeling_llama, "ALL_ATTENTION_FUNCTIONS")])
        emb, tok, logit = token_relevance(model, ids, targets)
        out[f"{mode}_embedding"], out[f"{mode}_tokens"], out["logits"] = emb, tok, logit
        restore(saved)


def gpt2(out: dict) -> None:
    from lxt.efficient.models import gpt2 as lxt_gpt2
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.models.gpt2 import modeling_gpt2

    torch.manual_seed(1)
    config = GPT2Config(
        vocab_size=64,
        n_positions=16,
        n_embd=32,
        n_layer=LAYERS,
        n_head=2,
        initializer_range=0.2,
        attn_implementation="eager",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config).eval()
    perturb(model, 0.05)
    ids = torch.randint(0, 64, (B, N))
    with torch.no_grad():
        plain = model(ids, use_cache=False).logits[:, -1]
        targets = plain.argmax(-1)
    out["plain_logits"] = plain.numpy()
    out.update(
        ids=ids.numpy(), targets=targets.numpy(), state={k: v.detach().numpy() for k, v in model.state_dict().items()}
    )
    saved = {(c, "forward"): c.forward for c in (modeling_gpt2.GPT2MLP, torch.nn.LayerNorm, torch.nn.Dropout)}
    saved[(modeling_gpt2, "eager_attention_forward")] = modeling_gpt2.eager_attention_forward
    saved[(modeling_gpt2, "ALL_ATTENTION_FUNCTIONS")] = modeling_gpt2.ALL_ATTENTION_FUNCTIONS
    for mode, patch_map in (("attnlrp", lxt_gpt2.attnLRP), ("cplrp", lxt_gpt2.cp_LRP)):
        patch(modeling_gpt2, patch_map, saved[(modeling_gpt2, "ALL_ATTENTION_FUNCTIONS")])
        emb, tok, logit = token_relevance(model, ids, targets)
        out[f"{mode}_embedding"], out[f"{mode}_tokens"], out["logits"] = emb, tok, logit
        restore(saved)


GAMMA = 0.5


def vit(out: dict) -> None:
    from lxt.efficient import monkey_patch, monkey_patch_zennit
    from lxt.efficient.models import vit_torch
    from torchvision.models import vision_transformer
    from zennit.composites import LayerMapComposite
    from zennit.rules import Gamma

    torch.manual_seed(2)
    model = vision_transformer.VisionTransformer(
        image_size=28,
        patch_size=7,
        num_layers=LAYERS,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
        dropout=0.0,
        attention_dropout=0.0,
    )
    model.conv_proj = torch.nn.Conv2d(1, 32, kernel_size=7, stride=7)
    model.eval()
    perturb(model, 0.05)
    x = torch.rand(B, 1, 28, 28)
    x[:, :, :4] = 0.0  # some exact zeros, as MNIST's background
    with torch.no_grad():
        targets = model(x).argmax(-1)
    out.update(
        x=x.numpy(), targets=targets.numpy(), state={k: v.detach().numpy() for k, v in model.state_dict().items()}
    )
    monkey_patch(vision_transformer, vit_torch.cp_LRP)
    monkey_patch_zennit()

    def relevance(composite: LayerMapComposite | None) -> tuple[np.ndarray, np.ndarray]:
        inp = x.clone().requires_grad_(True)
        if composite is not None:
            composite.register(model)
        logits = model(inp)
        chosen = logits.gather(1, targets[:, None])
        chosen.sum().backward()
        if composite is not None:
            composite.remove()
        return (inp * inp.grad).detach().numpy(), chosen[:, 0].detach().numpy()

    out["cplrp_input"], out["logits"] = relevance(None)
    out["cplrp_gamma_input"], _ = relevance(
        LayerMapComposite([(torch.nn.Conv2d, Gamma(GAMMA)), (torch.nn.Linear, Gamma(GAMMA))])
    )


def main() -> None:
    """``python lxt_reference.py OUT_DIR MODEL...``: one ``OUT_DIR/MODEL.npz`` per model, in this order
    (LLaMA and GPT-2 undo their patches; the ViT's stay, so it goes last)."""
    folder, names = sys.argv[1], sys.argv[2:]
    _stub_lxt_bert()
    for name in names:
        out: dict = {}
        {"llama": llama, "gpt2": gpt2, "vit": vit}[name](out)
        state = out.pop("state")
        np.savez(f"{folder}/{name}.npz", **out, **{f"state/{k}": v for k, v in state.items()})


if __name__ == "__main__":
    main()
