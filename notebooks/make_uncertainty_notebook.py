"""Writes notebooks/uncertainty.ipynb (kept as code so the notebook's source is reviewable)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# Uncertainty and explanations

The seed package's notebooks 11 (MC dropout, uncertainty of LRP maps), 12 (evidential deep learning,
temperature scaling) and 13 (DeepLIFT under uncertainty), redone with `xai_jax.uncertainty`:

* **MC dropout** (Gal & Ghahramani 2016): all passes in one jitted, vmapped call; the predictive mean
  averages *probabilities* (the seed averaged logits) and is split into expected entropy + mutual
  information (BALD, Houlsby et al. 2011).
* **Explanations under uncertainty**: any registered method over dropout networks (mean and std
  maps), DeepLIFT deterministic vs MC, DeepLIFT over random-noise baselines.
* **Evidential deep learning** (Sensoy et al. 2018): Dirichlet uncertainty `u = K/S` in and out of
  distribution; LRP of the ordinary vs the evidential CNN.
* **Temperature scaling** (Guo et al. 2017), fitted on the validation split (never the test split),
  with ECE/MCE/NLL and reliability diagrams (empty bins masked).

Set `XAI_JAX_NOTEBOOK_QUICK=1` for the small settings the test suite uses."""),
    nbf.v4.new_code_cell("""import os
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import xai_jax as xj
import xai_jax.propagation  # registers "lrp" and "deeplift" in xj.METHODS (if not already imported)
import xai_jax.uncertainty as xu

# Any PRNG works; non-partitionable threefry makes XLA:CPU compile dropout masks ~5x faster.
jax.config.update("jax_threefry_partitionable", False)
QUICK = os.environ.get("XAI_JAX_NOTEBOOK_QUICK") == "1"
SAMPLES, COUNT, OOD = (4, 3, 16) if QUICK else (50, 6, 200)
KEY = jax.random.key(0)

model, variables = xj.models.load("mc_dropout_cnn")
images, labels = xj.data.mnist("sample")  # 300 digits of the standard MNIST test split
x, y = images[:COUNT], labels[:COUNT]"""),
    nbf.v4.new_markdown_cell("""## In- vs out-of-distribution: MC dropout and evidential uncertainty

`H[p̄] = E_t H[p_t] + MI`: the mutual information between the prediction and the dropout mask is the
*epistemic* part -- it should be small on test digits and large on inputs unlike the training data
(digits rotated by 90°, uniform noise). The evidential CNN's `u = K / S` should behave the same way.
One batch holds every input of this section (and a rotating digit, below), so each model compiles once."""),
    nbf.v4.new_code_cell("""ev_model, ev_variables = xj.models.load("evidential_cnn")
clean = images[:OOD]
sets = {"test digits": clean, "rotated 90°": xu.rotate(clean, 90.0), "uniform noise": xu.noise_images(jax.random.key(1), clean.shape)}
one = images[[int(np.flatnonzero(labels == 1)[0])]]
angles = np.arange(0, 181, 30 if QUICK else 10)
turned = xu.rotate(jnp.repeat(one, len(angles), 0), angles)
batch = jnp.concatenate([*sets.values(), turned])
mc = xu.mc_dropout(model, variables, batch, samples=SAMPLES, key=KEY)
ev_all = xu.evidential(ev_model, ev_variables, batch)
n = len(sets) * OOD
split = lambda a: dict(zip(sets, np.split(np.asarray(a)[:n], len(sets))))
mi, entropy, u = split(mc.mutual_information), split(mc.predictive_entropy), split(ev_all.uncertainty)
for name in sets:
    print(f"{name:14s} median MI {np.median(mi[name]):.4f}  median H {np.median(entropy[name]):.4f} nats  median u {np.median(u[name]):.3f}")
print("MC accuracy on the test digits:", float((np.asarray(mc.prediction[:OOD]) == labels[:OOD]).mean()),
      " evidential accuracy:", float((np.asarray(ev_all.prediction[:OOD]) == labels[:OOD]).mean()))
fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
xu.uncertainty_histogram(mi, ax=axes[0], xlabel="mutual information (nats)", title="MC dropout: epistemic (BALD)")
xu.uncertainty_histogram(entropy, ax=axes[1], xlabel="predictive entropy (nats)", title="MC dropout: total")
xu.uncertainty_histogram(u, ax=axes[2], xlabel="u = K / S", title="evidential CNN")
plt.show()"""),
    nbf.v4.new_markdown_cell("""## A rotating digit (the seed's experiment)

One digit rotated from 0° to 180°: MC-dropout mutual information and the evidential CNN's uncertainty
`u = K / S` both rise once the digit no longer looks like one the networks were trained on (a "1"
turned by 180° is a "1" again)."""),
    nbf.v4.new_code_cell("""fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(angles, np.asarray(ev_all.uncertainty[n:]), "o-", label="evidential u = K/S")
ax.plot(angles, np.asarray(mc.mutual_information[n:]) / np.log(10), "s-", label="MC-dropout MI / log 10")
ax.plot(angles, np.asarray(mc.mean[n:].max(-1)), "^--", label="MC max probability")
ax.set_xlabel("rotation (degrees)"); ax.legend(fontsize=8); ax.set_ylim(0, 1.05)
plt.show()
print("evidential predictions:", np.asarray(ev_all.prediction[n:]), " MC predictions:", np.asarray(mc.prediction[n:]))"""),
    nbf.v4.new_markdown_cell("""## Explanations under MC dropout

Each dropout network explains the MC prediction; the mean map is what the ensemble attends to, the
standard deviation where the explanation is uncertain (the seed's "uncertainty interpretability with
LRP", for any registered method)."""),
    nbf.v4.new_code_cell("""methods = ("gradient", "deeplift") if QUICK else ("gradient", "integrated_gradients", "deeplift", "lrp")
explained = {m: xu.explain_mc(m, model, variables, x, y, samples=SAMPLES, key=KEY, batch_size=5) for m in methods}
maps, signed = {}, {}
for m, r in explained.items():
    short = {"integrated_gradients": "IG"}.get(m, m)
    maps[f"{short} mean"], signed[f"{short} mean"] = r.mean, xj.METHODS[m].signed
    maps[f"{short} std"], signed[f"{short} std"] = r.std, False
titles = [f"label {int(l)} / MC p={float(p.max()):.3f}" for l, p in zip(y, mc.mean[:COUNT])]
fig = xj.viz.method_grid(x, maps, signed=signed, row_titles=titles)
plt.show()"""),
    nbf.v4.new_markdown_cell("""## DeepLIFT under uncertainty (the seed's notebook 13)

DeepLIFT of the deterministic network (dropout off), the mean/std over dropout networks, and the
mean/std over random-noise references `x₀ ~ U[0, 1)` instead of the black image. Each map still sums
to `f(x) − f(x₀)` of its own network and reference."""),
    nbf.v4.new_code_cell("""deterministic = xj.METHODS["deeplift"](model, variables, x, y)
noise_refs = xu.explain_random_baselines("deeplift", model, variables, x, y, samples=SAMPLES, key=KEY)
mc_deeplift = explained["deeplift"]
maps = {"deterministic": deterministic, "MC mean": mc_deeplift.mean, "MC std": mc_deeplift.std,
        "noise-baseline mean": noise_refs.mean, "noise-baseline std": noise_refs.std}
fig = xj.viz.method_grid(x, maps, signed={k: "std" not in k for k in maps}, row_titles=titles)
plt.show()
print("mean |MC std| / mean |deterministic|:", float(jnp.abs(mc_deeplift.std).mean() / jnp.abs(deterministic).mean()))
print("mean |noise-baseline std| / mean |deterministic|:", float(jnp.abs(noise_refs.std).mean() / jnp.abs(deterministic).mean()))"""),
    nbf.v4.new_markdown_cell("""## Evidential vs ordinary CNN under LRP

The same digits, explained by LRP (default composite `EpsilonPlusFlat`) on the cross-entropy CNN
and on the evidential CNN (logits = evidence before the ReLU)."""),
    nbf.v4.new_code_cell("""base_model, base_variables = xj.models.load("mnist_cnn")
ev = xu.evidential(ev_model, ev_variables, x)  # x are the first COUNT test digits of the batch above
lrp = {"mnist_cnn LRP": xj.METHODS["lrp"](base_model, base_variables, x, y),
       "evidential_cnn LRP": xj.METHODS["lrp"](ev_model, ev_variables, x, y)}
fig = xj.viz.method_grid(x, lrp, row_titles=[f"label {int(l)} / u={float(u):.2f}" for l, u in zip(y, ev.uncertainty)])
plt.show()"""),
    nbf.v4.new_markdown_cell("""## Temperature scaling and calibration

`T` is fitted on the **validation** split (5 000 images held out of training), then applied to the test
split. The shipped CNN is already close to calibrated, so `T ≈ 1` changes little (and the changes are
within the ECE's sampling noise); with its logits scaled by 4 -- an overconfident network -- the
fitted `T` undoes the scaling and the ECE drops."""),
    nbf.v4.new_code_cell("""try:
    val_images, val_labels = xj.data.mnist("validation")
    test_images, test_labels = xj.data.mnist("test")
except xj.DataError as err:
    print("full MNIST not available, using the bundled sample for both splits (for illustration only):", err)
    val_images, val_labels = images[:150], labels[:150]
    test_images, test_labels = images[150:], labels[150:]
if QUICK:
    val_images, val_labels, test_images, test_labels = val_images[:1000], val_labels[:1000], test_images[:1000], test_labels[:1000]
val_logits = xu.predict_logits(base_model, base_variables, val_images)
test_logits = xu.predict_logits(base_model, base_variables, test_images)
fig, axes = plt.subplots(2, 2, figsize=(8.4, 8))
for row, scale in enumerate((1.0, 4.0)):
    fit = xu.fit_temperature(scale * val_logits, val_labels)
    print(f"logits x {scale:g}: T = {fit.temperature:.3f} | validation NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}, "
          f"ECE {100 * fit.ece_before:.2f}% -> {100 * fit.ece_after:.2f}%")
    for col, t in enumerate((1.0, fit.temperature)):
        probs = jax.nn.softmax(xu.temperature_scale(scale * test_logits, t), axis=-1)
        bins = xu.reliability_bins(probs, test_labels)
        xu.reliability_diagram(bins, ax=axes[row, col], title=f"test split, logits x {scale:g}, T = {t:.2f}")
plt.show()"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
nbf.write(notebook, __file__.replace("make_uncertainty_notebook.py", "uncertainty.ipynb"))
