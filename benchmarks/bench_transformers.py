"""AttnLRP speed: xai_jax vs one plain jitted ``jax.grad`` of the same model (the floor) and vs LXT 2.1
(PyTorch, the same weights, same batch, same run).

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_transformers.py
(``--quick`` for a smoke run; ``--tune-malloc`` calls ``xj.tune_cpu_malloc()`` first, which
changes the allocator for both sides.)  Prints a markdown table; docs/transformers.md records it.

Model: the LLaMA twin of ``tests/transformers/twins.py`` (RMSNorm, rotary embeddings, SiLU-gated MLP,
causal attention) built from a Hugging Face ``LlamaForCausalLM`` with random weights, explained at
the token embedding (as LXT does).  ``jax.grad``: the gradient of the summed target logits w.r.t.
the embedding, jitted.  LXT: its ``attnLRP`` patches, ``(embeds * embeds.grad)`` after one backward;
torch plain: the same without patches.  A check that both explanations agree is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

from common import REPO, table

sys.path.insert(0, str(REPO / "tests" / "transformers"))


def interleaved(fns, repeats):
    """Median wall time (ms) of each ``fns[name]()``, timed round-robin after one warm-up each."""
    import jax

    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--tune-malloc",
        action="store_true",
        help="call xj.tune_cpu_malloc() first (glibc keeps scratch memory above 32 MiB in the heap; both sides)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from lxt_reference import _stub_lxt_bert, patch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama import modeling_llama
    from twins import Llama, llama_variables

    import xai_jax as xj

    if args.tune_malloc:
        print(f"xj.tune_cpu_malloc(): {xj.tune_cpu_malloc()}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sizes = (
        [(2, 32, 2, 8, 8)] if args.quick else [(2, 32, 2, 8, 8), (4, 128, 4, 64, 8)]
    )  # layers, dim, heads, seq, batch
    repeats = 3 if args.quick else 10
    rows = []
    for layers, dim, heads, seq, batch in sizes:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=256,
            hidden_size=dim,
            intermediate_size=2 * dim,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max(seq, 16),
            initializer_range=0.2,
            attn_implementation="eager",
        )
        tmodel = LlamaForCausalLM(config).eval()
        ids = torch.randint(0, 256, (batch, seq))
        with torch.no_grad():
            targets = tmodel(ids, use_cache=False).logits[:, -1].argmax(-1)
        state = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
        model = Llama(vocab=256, dim=dim, layers=layers, heads=heads, intermediate=2 * dim, embedded=True)
        variables = llama_variables(state, layers)
        e = jnp.asarray(state["model.embed_tokens.weight"])[jnp.asarray(ids.numpy())]
        t = jnp.asarray(targets.numpy())

        grad = jax.jit(jax.grad(lambda v, x: model.apply(v, x)[jnp.arange(batch), t].sum(), argnums=1))
        composite = xj.composites.AttnLRP()

        def torch_relevance():
            embeds = tmodel.get_input_embeddings()(ids).detach().requires_grad_(True)
            logits = tmodel(inputs_embeds=embeds, use_cache=False).logits[:, -1]
            logits.gather(1, targets[:, None]).sum().backward()
            return (embeds * embeds.grad).detach().numpy()

        in_jit = jax.jit(lambda v, x, t=t, model=model: xj.lrp(model, v, x, t, composite=composite))
        fns = {
            "jax.grad": lambda: grad(variables, e),
            "xai_jax AttnLRP": lambda: xj.lrp(model, variables, e, t, composite=composite),
            "AttnLRP in jit": lambda: in_jit(variables, e),
            "torch plain grad": torch_relevance,
        }
        ms = interleaved(fns, repeats)
        saved = {
            (modeling_llama.LlamaMLP, "forward"): modeling_llama.LlamaMLP.forward,
            (modeling_llama.LlamaRMSNorm, "forward"): modeling_llama.LlamaRMSNorm.forward,
            (torch.nn.Dropout, "forward"): torch.nn.Dropout.forward,
            (modeling_llama, "eager_attention_forward"): modeling_llama.eager_attention_forward,
        }
        _stub_lxt_bert()
        from lxt.efficient.models import llama as lxt_llama

        patch(modeling_llama, lxt_llama.attnLRP, modeling_llama.ALL_ATTENTION_FUNCTIONS)
        ms["LXT AttnLRP"] = interleaved({"lxt": torch_relevance}, repeats)["lxt"]
        lxt_r = torch_relevance()
        for (owner, attr), value in saved.items():
            setattr(owner, attr, value)
        ours = np.asarray(xj.lrp(model, variables, e, t, composite=composite))
        agree = np.abs(ours - lxt_r).max() / np.abs(lxt_r).max()
        shape = f"{layers} layers, d={dim}, B={batch}, N={seq}"
        rows.append(
            (
                shape,
                f"{ms['jax.grad']:.2f}",
                f"{ms['xai_jax AttnLRP']:.2f}",
                f"{ms['xai_jax AttnLRP'] / ms['jax.grad']:.2f}",
                f"{ms['AttnLRP in jit']:.2f}",
                f"{ms['AttnLRP in jit'] / ms['jax.grad']:.2f}",
                f"{ms['LXT AttnLRP']:.2f}",
                f"{ms['torch plain grad']:.2f}",
                f"{ms['LXT AttnLRP'] / ms['xai_jax AttnLRP']:.2f}",
                f"{agree:.1e}",
            )
        )
    print(
        table(
            rows,
            (
                "LLaMA twin",
                "jax.grad ms",
                "AttnLRP ms",
                "AttnLRP / grad",
                "in caller's jit ms",
                "in jit / grad",
                "LXT ms",
                "torch grad ms",
                "LXT / ours",
                "max|diff|/max|LXT|",
            ),
        )
    )
    print(f"\njax {jax.__version__}, torch {torch.__version__}, CPU; median of {repeats} interleaved runs")
    print()
    print(vit_table(args.quick, repeats))


def vit_table(quick: bool, repeats: int) -> str:
    """The ViT: torchvision's ``VisionTransformer`` with random weights and its Flax twin
    (``xai_jax.models.transformers.ViT``).  LXT offers only CP-LRP for torchvision's ViT, so LXT is
    timed in that mode (its patches stay for the rest of the process: this runs last)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from lxt.efficient import monkey_patch, monkey_patch_zennit
    from lxt.efficient.models import vit_torch
    from lxt_reference import perturb
    from torchvision.models import vision_transformer
    from twins import vit_variables

    import xai_jax as xj
    from xai_jax.models.transformers import ViT

    sizes = [(2, 32, 2, 8)] if quick else [(4, 64, 4, 32), (4, 64, 4, 128)]  # layers, dim, heads, batch
    cases = []
    for layers, dim, heads, batch in sizes:
        torch.manual_seed(0)
        tmodel = vision_transformer.VisionTransformer(
            image_size=28,
            patch_size=7,
            num_layers=layers,
            num_heads=heads,
            hidden_dim=dim,
            mlp_dim=2 * dim,
            num_classes=10,
            dropout=0.0,
            attention_dropout=0.0,
        )
        tmodel.conv_proj = torch.nn.Conv2d(1, dim, kernel_size=7, stride=7)
        tmodel.eval()
        perturb(tmodel, 0.05)  # torchvision starts the head at zero: every relevance would be 0
        x = torch.rand(batch, 1, 28, 28)
        with torch.no_grad():
            targets = tmodel(x).argmax(-1)
        state = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
        model = ViT(image_size=28, patch=7, dim=dim, depth=layers, heads=heads, mlp_dim=2 * dim, num_classes=10)
        cases.append(
            (f"{layers} layers, d={dim}, B={batch}, 17 tokens", tmodel, x, targets, model, vit_variables(state, layers))
        )

    def torch_relevance(tmodel, x, targets):
        inp = x.clone().requires_grad_(True)
        tmodel(inp).gather(1, targets[:, None]).sum().backward()
        return (inp * inp.grad).detach().numpy()

    attn, cp = xj.composites.AttnLRP(), xj.composites.CPLRP()
    timings = []
    for _, tmodel, x, targets, model, variables in cases:  # everything unpatched first
        xj_x, t, batch = jnp.asarray(x.numpy().transpose(0, 2, 3, 1)), jnp.asarray(targets.numpy()), x.shape[0]
        grad = jax.jit(
            jax.grad(
                lambda v, z, model=model, t=t, batch=batch: model.apply(v, z)[jnp.arange(batch), t].sum(), argnums=1
            )
        )
        timings.append(
            interleaved(
                {
                    "grad": lambda grad=grad, v=variables, z=xj_x: grad(v, z),
                    "attn": lambda m=model, v=variables, z=xj_x, t=t: xj.lrp(m, v, z, t, composite=attn),
                    "cp": lambda m=model, v=variables, z=xj_x, t=t: xj.lrp(m, v, z, t, composite=cp),
                    "torch": lambda a=(tmodel, x, targets): torch_relevance(*a),
                },
                repeats,
            )
        )
    monkey_patch(vision_transformer, vit_torch.cp_LRP)  # LXT's patches stay: the torch side is done
    monkey_patch_zennit()
    rows = []
    for (shape, tmodel, x, targets, model, variables), ms in zip(cases, timings):
        ms["lxt"] = interleaved({"lxt": lambda a=(tmodel, x, targets): torch_relevance(*a)}, repeats)["lxt"]
        lxt_r = torch_relevance(tmodel, x, targets).transpose(0, 2, 3, 1)
        xj_x, t = jnp.asarray(x.numpy().transpose(0, 2, 3, 1)), jnp.asarray(targets.numpy())
        ours = np.asarray(xj.lrp(model, variables, xj_x, t, composite=cp))
        rows.append(
            (
                shape,
                f"{ms['grad']:.2f}",
                f"{ms['attn']:.2f}",
                f"{ms['attn'] / ms['grad']:.2f}",
                f"{ms['cp']:.2f}",
                f"{ms['cp'] / ms['grad']:.2f}",
                f"{ms['lxt']:.2f}",
                f"{ms['torch']:.2f}",
                f"{ms['lxt'] / ms['cp']:.2f}",
                f"{np.abs(ours - lxt_r).max() / np.abs(lxt_r).max():.1e}",
            )
        )
    return table(
        rows,
        (
            "ViT twin",
            "jax.grad ms",
            "AttnLRP ms",
            "AttnLRP / grad",
            "CP-LRP ms",
            "CP-LRP / grad",
            "LXT CP-LRP ms",
            "torch grad ms",
            "LXT / our CP-LRP",
            "CP-LRP max|diff|/max|LXT|",
        ),
    )


if __name__ == "__main__":
    main()
