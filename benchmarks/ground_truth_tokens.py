"""Ground truth for token explanations: the share of relevance on the token that decides the label.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/ground_truth_tokens.py
(``--sequences 200`` for a quicker run).  Prints a markdown table; the README records it.

The shipped ``marker_transformer`` (:mod:`xai_jax.models.synthetic`: the label is the token after a
marker) is explained on held-out sequences drawn from a key it never saw in training, for its
predicted class.  Per method: the mean share ``|R_p| / Σ_j |R_j|`` of the deciding token ``p`` (chance:
1 / 12), its standard error, and how often ``p`` holds the largest ``|R_j|``; also the share on the
marker, the other token the model must read.
"""

from __future__ import annotations

import argparse

from common import table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    import xai_jax as xj
    from xai_jax.models import synthetic
    from xai_jax.propagation import CPLRP, AttnLRP

    model, variables = synthetic.load_marker_transformer()
    batch = synthetic.marker_sequences(jax.random.key(args.seed), args.sequences)
    predicted = jnp.argmax(model.apply(variables, batch.tokens), axis=-1)
    accuracy = float(jnp.mean(predicted == batch.labels))
    pad = jnp.full_like(batch.tokens, synthetic.PAD)
    methods = {
        "AttnLRP (`lrp`, `AttnLRP()`)": lambda: xj.lrp(model, variables, batch.tokens, composite=AttnLRP()),
        "CP-LRP (`lrp`, `CPLRP()`)": lambda: xj.lrp(model, variables, batch.tokens, composite=CPLRP()),
        "integrated gradients (zero embedding)": lambda: xj.integrated_gradients(model, variables, batch.tokens),
        "integrated gradients (padding token)": lambda: xj.integrated_gradients(
            model, variables, batch.tokens, baseline=pad
        ),
        "input × gradient": lambda: xj.input_x_gradient(model, variables, batch.tokens),
        "gradient (summed per token)": lambda: xj.gradient(model, variables, batch.tokens),
        "attention rollout": lambda: xj.attention_rollout(model, variables, batch.tokens),
        "Chefer et al. 2021": lambda: xj.chefer_attention(model, variables, batch.tokens),
    }
    rows = []
    for name, run in methods.items():
        relevance = np.asarray(run())
        scores = synthetic.deciding_token_share(relevance, batch.position)
        marker = synthetic.deciding_token_share(relevance, batch.position - 1)["share"]
        share = scores["share"]
        rows.append(
            [
                name,
                f"{share.mean():.3f} ± {share.std(ddof=1) / np.sqrt(len(share)):.3f}",
                f"{100 * scores['top'].mean():.1f} %",
                f"{marker.mean():.3f}",
            ]
        )
    chance = 1 / batch.tokens.shape[1]
    rows.append(["uniform map (chance)", f"{chance:.3f}", f"{100 * chance:.1f} %", f"{chance:.3f}"])
    print(f"marker_transformer, {args.sequences} held-out sequences (key {args.seed}), accuracy {100 * accuracy:.1f} %")
    header = (
        "method",
        "share on the deciding token (mean ± s.e.)",
        "deciding token ranked first",
        "share on the marker",
    )
    print(table([tuple(r) for r in rows], header))


if __name__ == "__main__":
    main()
