"""Writes notebooks/feature_visualization.ipynb (kept as code so the notebook's source is reviewable).

``python notebooks/make_featureviz_notebook.py --execute`` also runs it with the full settings and
stores the outputs (the pictures), a few minutes on two CPU cores.
"""

import sys
from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# Feature visualization on the shipped MNIST models

The seed package's notebooks 1 and 2, rebuilt: activation maximisation (AM) in pixel space and in the
code space of the shipped GAN and DCGAN generators, DeepDream with octaves, and feature inversion
(Mahendran & Vedaldi 2015, beyond the seed). Every optimisation runs **all targets at once**: one
jitted `lax.scan` of optax updates, vmapped over the targets, with early stop masked per target.

What differs from the seed: generators run in inference mode and their images are in the classifier's
own range ([0, 1]), and every probability printed is re-computed on exactly the image shown.

Set `XAI_JAX_NOTEBOOK_QUICK=1` for the small settings the test suite uses."""),
    nbf.v4.new_code_cell("""import os, time
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import xai_jax as xj
from xai_jax import featureviz as fv

QUICK = os.environ.get("XAI_JAX_NOTEBOOK_QUICK") == "1"
STEPS = 25 if QUICK else 300
key = jax.random.key(0)
model, variables = xj.models.load("mnist_cnn")
images, labels = xj.data.mnist("sample")
CLASSES = list(range(10))


def grid(rows, titles=None, row_labels=None, size=1.1):
    \"\"\"rows: list of (N, H, W, 1) batches in [0, 1]; titles: per-row lists of strings.\"\"\"
    n = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(size * n, size * len(rows) + 0.2), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.set_axis_off()
            if j < len(row):
                ax.imshow(np.clip(np.asarray(row[j])[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
                if titles is not None:
                    ax.set_title(titles[i][j], fontsize=7)
        if row_labels is not None:
            axes[i, 0].text(-0.15, 0.5, row_labels[i], transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig"""),
    nbf.v4.new_markdown_cell("""## Activation maximisation in pixel space

Three settings, each one call for the ten classes:

* **plain**: maximise log p(c | x) with Adam, clipped to [0, 1], stop at p ≥ 0.99 — reached in a few
  steps by an adversarial-looking pattern;
* **regularised**: L2 decay, total variation, jitter and clipping (Mahendran & Vedaldi 2016;
  Olah et al. 2017) — smoother, more digit-like, at a lower probability;
* **the seed's setting**: start from the class-mean image, Adam with weight decay 5e-3 and the
  distance-to-class-mean term λ‖x − m_c‖."""),
    nbf.v4.new_code_cell("""train_images, train_labels = xj.data.mnist("train") if not QUICK else (images, labels)
means = fv.class_means(train_images, train_labels, 10)
settings = {
    "plain": dict(regularizers=[fv.Clip(0, 1)], threshold=0.99, key=key),
    "regularised": dict(regularizers=[fv.L2(5e-3), fv.TotalVariation(0.02), fv.Jitter(1), fv.Clip(0, 1)], key=key),
    "seed setting": dict(init=means, regularizers=[fv.L2(5e-3), fv.ClassMeanDistance(means, 0.5), fv.Clip(0, 1)]),
}
pixel = {}
for name, options in settings.items():
    start = time.perf_counter()
    pixel[name] = fv.activation_maximization(model, variables, CLASSES, steps=STEPS, **options)
    p = np.asarray(pixel[name].probabilities)
    print(f"{name:13s} p(class) min {p.min():.4f} mean {p.mean():.4f}  steps {np.asarray(pixel[name].steps).tolist()}  "
          f"TV {float(fv.total_variation(pixel[name].images).mean()):.1f}  ({time.perf_counter() - start:.1f} s)")
fig = grid([r.images for r in pixel.values()], [[f"{c}: {p:.3f}" for c, p in enumerate(np.asarray(r.probabilities))] for r in pixel.values()],
           list(pixel))
plt.show()"""),
    nbf.v4.new_markdown_cell("""## Activation maximisation in code space (GAN and DCGAN)

The latent code z of the shipped generators is optimised instead of the pixels (Nguyen et al. 2016;
Montavon et al. 2018), with an L2 prior on z. Both generators run in inference mode and output
images in [0, 1]; the probability is the classifier's on the image shown. Both are AC-GANs that
read the digit to draw from `argmax(z[:, :10])`; they declare `code_init_scale = 0.1`, so the codes
start near the prior's mode, where every class is still reachable by gradient steps (from a typical
prior sample the class code is saturated; docs/design.md §8). The MLP's images can satisfy the
classifier without looking like its digit (its 0 and 2 here); the DCGAN's stay digit-like."""),
    nbf.v4.new_code_cell("""codespace = {}
for name in ("mnist_gan_generator", "dcgan_generator"):
    generator, gen_variables = xj.models.load(name)
    start = time.perf_counter()
    codespace[name] = fv.activation_maximization_codespace(
        model, variables, generator, gen_variables, CLASSES, steps=STEPS if QUICK else 200, learning_rate=0.1,
        threshold=0.99, code_regularizers=[fv.L2(1e-2)], key=key)
    r = codespace[name]
    print(f"{name:20s} p(class) min {float(r.probabilities.min()):.4f}  image range [{float(r.images.min()):.2f}, "
          f"{float(r.images.max()):.2f}]  steps {np.asarray(r.steps).tolist()}  ({time.perf_counter() - start:.1f} s)")
fig = grid([r.images for r in codespace.values()],
           [[f"{c}: {p:.3f}" for c, p in enumerate(np.asarray(r.probabilities))] for r in codespace.values()], ["GAN", "DCGAN"])
plt.show()"""),
    nbf.v4.new_markdown_cell("""## Neurons of a layer

A layer name and a callable on its output: here image t maximises channel t of `conv4` at the centre
of the 14×14 map (one call for ten neurons; the callable sees the whole batch). Pixels outside the
neuron's receptive field get no gradient and stay grey. (`target=[0, 1, ...]` with `layer=` maximises
channel means instead; on this CNN most `conv4` channel means settle at a blank image, a local optimum
where every input to the channel is switched off.)"""),
    nbf.v4.new_code_cell("""grey = 0.5 + 0.1 * jax.random.normal(key, (10, 28, 28, 1))
centre_neurons = lambda a: a[jnp.arange(10), 7, 7, jnp.arange(10)]
neurons = fv.activation_maximization(model, variables, centre_neurons, layer="conv4", num_images=10, steps=STEPS,
                                     init=grey, regularizers=[fv.TotalVariation(0.002), fv.Clip(0, 1)])
print("activation before:", " ".join(f"{v:.2f}" for v in np.asarray(neurons.score_history[0])))
print("activation after: ", " ".join(f"{v:.2f}" for v in np.asarray(neurons.scores)))
fig = grid([neurons.images], [[f"ch {c}: {s:.1f}" for c, s in enumerate(np.asarray(neurons.scores))]], ["conv4"])
plt.show()"""),
    nbf.v4.new_markdown_cell("""## DeepDream with octaves

Gradient ascent on ½·mean(a²) of a layer, gradient divided by its standard deviation, a random roll
(un-rolled after) at every step, and octaves: the image is dreamed small first, and the detail carried
up to the next size (Mordvintsev, Olah & Tyka 2015). The model runs only up to the layer, so octaves
smaller than 28×28 work on this CNN's convolutional layers."""),
    nbf.v4.new_code_cell("""x = jnp.asarray(images[::30][:3])
octaves = 2 if QUICK else 4
dreamed, per_octave = fv.deep_dream(model, variables, x, layer="conv3", octaves=octaves, octave_scale=1.4,
                                    steps=5 if QUICK else 20, step_size=0.02, jitter=2, value_range=(0, 1),
                                    key=key, return_octaves=True)
sizes = fv.octave_sizes((28, 28), octaves, 1.4)
rows = [[x[i]] + [o[i] for o in per_octave] for i in range(len(x))]
fig = grid(rows, [["input"] + [f"octave {h}×{w}" for h, w in sizes]] * len(x))
plt.show()"""),
    nbf.v4.new_markdown_cell("""## Feature inversion (Mahendran & Vedaldi 2015)

Reconstruct the digits from a layer's output alone: minimise ‖Φ(x) − Φ₀‖²/‖Φ₀‖² plus a total-variation
(β = 2) and an α-norm (α = 6) prior. Early layers keep nearly everything; the dense layer keeps the class."""),
    nbf.v4.new_code_cell("""x = jnp.asarray(images[::30][:6])
layers = ["conv1", "conv4"] if QUICK else ["conv1", "conv2", "conv3", "conv4", "fc1"]


def correlation(a, b):
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


inversions = {layer: fv.invert_features(model, variables, x, layer=layer, steps=STEPS) for layer in layers}
for layer, inv in inversions.items():
    print(f"{layer:6s} correlation with the input: {' '.join(f'{c:.3f}' for c in correlation(inv.images, x))}  "
          f"feature error {float(inv.errors.mean()):.3f}")
fig = grid([x] + [inv.images for inv in inversions.values()], row_labels=["input"] + layers)
plt.show()"""),
    nbf.v4.new_markdown_cell("""## All targets at once

One call for ten classes against ten calls of one class (same steps, no early stop); see
`benchmarks/bench_featureviz.py` for the comparison with a PyTorch loop."""),
    nbf.v4.new_code_cell("""options = dict(steps=STEPS, regularizers=[fv.Clip(0, 1)], key=key)
jax.block_until_ready(fv.activation_maximization(model, variables, CLASSES, **options).images)  # compile
jax.block_until_ready(fv.activation_maximization(model, variables, [0], **options).images)
start = time.perf_counter()
jax.block_until_ready(fv.activation_maximization(model, variables, CLASSES, **options).images)
together = time.perf_counter() - start
start = time.perf_counter()
for c in CLASSES:
    jax.block_until_ready(fv.activation_maximization(model, variables, [c], **options).images)
one_by_one = time.perf_counter() - start
print(f"{STEPS} steps: 10 classes at once {together:.2f} s, one class at a time {one_by_one:.2f} s "
      f"({one_by_one / together:.1f}x)")"""),
]

notebook = nbf.v4.new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
path = Path(__file__).with_name("feature_visualization.ipynb")
if "--execute" in sys.argv:
    import nbclient

    nbclient.NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parents[1])}}
    ).execute()
nbf.write(notebook, path)
