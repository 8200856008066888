"""Writes notebooks/propagation.ipynb (kept as code so the notebook's source is reviewable)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# Relevance propagation on the shipped MNIST CNN

The seed package's notebooks 7 (Taylor), 8.1 (LRP), 8.2 (LRP transpose) and 9 (DeepLIFT) in one place:
LRP rules side by side, Zennit's composites, the seed's position-based mix, Taylor decompositions,
DeepLIFT's two rules, and relevance at intermediate layers. Every rule and composite is checked
number-for-number against Zennit, and DeepLIFT against Captum, in `tests/propagation/`.

Nothing here changes the model: the engine finds its layers in the traced jaxpr and gives each one a
`jax.custom_vjp` whose forward is the layer itself and whose backward is the rule.

Set `XAI_JAX_NOTEBOOK_QUICK=1` for the small settings the test suite uses."""),
    nbf.v4.new_code_cell("""import os
import jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import xai_jax as xj
import xai_jax.propagation as P

QUICK = os.environ.get("XAI_JAX_NOTEBOOK_QUICK") == "1"
COUNT = 3 if QUICK else 6
model, variables = xj.models.load("mnist_cnn")
images, labels = xj.data.mnist("sample")
x, y = images[::30][:COUNT], labels[::30][:COUNT]
logits = model.apply(variables, x)
target_logit = np.asarray(logits)[np.arange(COUNT), y]
titles = [f"label {int(l)} / logit {v:.1f}" for l, v in zip(y, target_logit)]
print(P.propagation_plan(model, variables, x))"""),
    nbf.v4.new_markdown_cell("""## LRP rules side by side

Each rule on every conv/dense layer (activations pass relevance, max pooling sends it to the
window's maximum). Relevance starts as the target logit, so the maps of conserving rules sum to it;
biases and stabilizers absorb the rest (last column of the table)."""),
    nbf.v4.new_code_cell("""rules = {
    "LRP-0": P.Epsilon(1e-9),
    "LRP-ε (0.25)": P.Epsilon(0.25),
    "z⁺": P.ZPlus(),
    "α2β1": P.AlphaBeta(2.0, 1.0),
    "γ (0.25)": P.Gamma(0.25),
    "w²": P.WSquare(),
    "flat": P.Flat(),
}
if QUICK:
    for name in ("LRP-ε (0.25)", "w²"):
        rules.pop(name)
maps = {name: P.lrp(model, variables, x, y, composite=P.MapComposite(types={"linear": rule})) for name, rule in rules.items()}
fig = xj.viz.method_grid(x, maps, row_titles=titles)
plt.show()
for name, r in maps.items():
    print(f"{name:14s} Σ R / logit = {np.round(np.asarray(r).reshape(COUNT, -1).sum(1) / target_logit, 3)}")"""),
    nbf.v4.new_markdown_cell("""## Composites

Zennit's recommended composites (first layer Flat or z^B, z⁺/αβ/γ for convolutions, ε for dense layers),
the seed's position-based mix (LRP-0 upper, ε middle, αβ lower, z^B at the input; Montavon et al. 2019),
and max pooling treated as average pooling (relevance shared in proportion to the window's inputs)."""),
    nbf.v4.new_code_cell("""composites = {
    "ε+": P.EpsilonPlus(),
    "ε+ flat": P.EpsilonPlusFlat(),
    "εα2β1 flat": P.EpsilonAlpha2Beta1Flat(),
    "εγ box": P.EpsilonGammaBox(0.0, 1.0),
    "seed mix": P.PositionMix(first=P.ZBox(0.0, 1.0)),
}
if QUICK:
    composites.pop("εα2β1 flat")
maps = {name: P.lrp(model, variables, x, y, composite=c) for name, c in composites.items()}
maps["ε+ flat, pool avg"] = P.lrp(model, variables, x, y, composite=P.EpsilonPlusFlat(), max_pool="average")
maps["by name"] = P.lrp(model, variables, x, y, composite=P.MapComposite(  # conv1: z^B, the rest: ε
    names={"conv1": P.ZBox(0.0, 1.0)}, types={"linear": P.Epsilon(0.1)}))
fig = xj.viz.method_grid(x, maps, row_titles=titles)
plt.show()"""),
    nbf.v4.new_markdown_cell("""## LRP through transposed layers

The seed's "LRP transpose": LRP-0 written out layer by layer with transposed convolutions, transposed
dense layers and max-unpooling, no autodiff of a modified model. It equals the engine's ε composite."""),
    nbf.v4.new_code_cell("""transposed = P.lrp_transpose(model, variables, x, y, epsilon=1e-7)
engine = P.lrp(model, variables, x, y, composite=P.MapComposite(types={"linear": P.Epsilon(1e-7)}, stabilizer=1e-7))
print("max |transposed − engine| / max |engine| =", float(jnp.abs(transposed - engine).max() / jnp.abs(engine).max()))"""),
    nbf.v4.new_markdown_cell("""## Taylor decompositions

Simple Taylor: gradient × input (the expansion at the root point εx, ε → 0). Deep Taylor: z⁺ in the
hidden layers and z^B for pixels in [0, 1] (Montavon et al. 2017)."""),
    nbf.v4.new_code_cell("""maps = {
    "simple Taylor (x ⊙ ∇f)": P.simple_taylor(model, variables, x, y),
    "simple Taylor, root ½x": P.simple_taylor(model, variables, x, y, root=lambda v: 0.5 * v),
    "deep Taylor, z^B [0,1]": P.deep_taylor(model, variables, x, y, low=0.0, high=1.0),
}
fig = xj.viz.method_grid(x, maps, row_titles=titles)
plt.show()"""),
    nbf.v4.new_markdown_cell("""## DeepLIFT

Rescale (= Captum's `DeepLift`) and RevealCancel against a black image and against the mean digit.
Both satisfy summation-to-delta: the attributions sum to f(x) − f(reference)."""),
    nbf.v4.new_code_cell("""mean_digit = images.mean(0)
maps, deltas = {}, {}
for base_name, base in (("black", 0.0), ("mean digit", mean_digit)):
    f0 = np.asarray(model.apply(variables, np.broadcast_to(base, x.shape).astype(np.float32)))[np.arange(COUNT), y]
    for rule in ("rescale", "reveal_cancel"):
        a = P.deeplift(model, variables, x, y, baseline=base, rule=rule)
        maps[f"{rule}, {base_name}"] = a
        deltas[f"{rule}, {base_name}"] = float(np.abs(np.asarray(a).reshape(COUNT, -1).sum(1) - (target_logit - f0)).max())
fig = xj.viz.method_grid(x, maps, row_titles=titles)
plt.show()
for name, err in deltas.items():
    print(f"{name:28s} max |Σ attribution − Δf| = {err:.1e}")"""),
    nbf.v4.new_markdown_cell("""## Relevance at intermediate layers

`layer=` returns the relevance arriving at a layer's output instead of the input's; summed over
channels it shows which locations of that layer carry the decision. For a conserving composite each
layer's relevance sums to (nearly) the same total."""),
    nbf.v4.new_code_cell("""composite = P.EpsilonPlusFlat()
at = {layer: P.lrp(model, variables, x, y, composite=composite, layer=layer) for layer in ("conv2", "conv4")}
at["input"] = P.lrp(model, variables, x, y, composite=composite)
maps = {f"{name} {tuple(r.shape[1:])}": r.sum(-1) for name, r in at.items()}
fig = xj.viz.method_grid(x, maps, row_titles=titles)
plt.show()
fc1 = P.lrp(model, variables, x, y, composite=composite, layer="fc1")
for name, r in [*at.items(), ("fc1", fc1)]:
    print(f"{name:6s} Σ R = {np.round(np.asarray(r).reshape(COUNT, -1).sum(1), 3)}   (logit {np.round(target_logit, 3)})")"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
nbf.write(notebook, __file__.replace("make_propagation_notebook.py", "propagation.ipynb"))
