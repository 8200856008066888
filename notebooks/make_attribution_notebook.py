"""Writes notebooks/attribution.ipynb (kept as code so the notebook's source is reviewable)."""

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# Attribution methods on the shipped MNIST models

The seed package's notebooks 3, 4, 5, 6, 10.1 and 10.2 in one place: saliency, DeconvNet, occlusion,
gradient-based backpropagation methods (vanilla, guided, integrated gradients, SmoothGrad) and the CAM
family, each one call on a batch of digits. Every method here is checked number-for-number against
Captum / pytorch-grad-cam in `tests/attribution/test_vs_references.py`.

Set `XAI_JAX_NOTEBOOK_QUICK=1` for the small settings the test suite uses."""),
    nbf.v4.new_code_cell("""import os
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
import xai_jax as xj

QUICK = os.environ.get("XAI_JAX_NOTEBOOK_QUICK") == "1"
STEPS, SAMPLES, COUNT = (8, 4, 4) if QUICK else (64, 50, 6)
model, variables = xj.models.load("mnist_cnn")
images, labels = xj.data.mnist("sample")
x, y = images[:COUNT], labels[:COUNT]
probabilities = jax.nn.softmax(model.apply(variables, x))
print("predicted:", np.asarray(probabilities.argmax(-1)), "labels:", y)
print(xj.layers(model, variables, x))"""),
    nbf.v4.new_markdown_cell("## Gradient family and integrated gradients"),
    nbf.v4.new_code_cell("""maps = {
    "gradient": xj.gradient(model, variables, x, y),
    "saliency": xj.saliency(model, variables, x, y),
    "input × gradient": xj.input_x_gradient(model, variables, x, y),
    "guided backprop": xj.guided_backprop(model, variables, x, y),
    "deconvnet": xj.deconvnet(model, variables, x, y),
    "integrated gradients": xj.integrated_gradients(model, variables, x, y, steps=STEPS),
    "smoothgrad": xj.smoothgrad(model, variables, x, y, key=jax.random.key(0), samples=SAMPLES),
    "guided backprop + smoothgrad": xj.smoothgrad(model, variables, x, y, key=jax.random.key(0), samples=SAMPLES, method="guided_backprop"),
    "occlusion 4×4": xj.occlusion(model, variables, x, y, window=(4, 4), strides=(2, 2)),
}
signed = {name: name != "saliency" for name in maps}
titles = [f"label {int(l)} / p={float(p.max()):.3f}" for l, p in zip(y, probabilities)]
fig = xj.viz.method_grid(x, maps, signed=signed, row_titles=titles)
plt.show()"""),
    nbf.v4.new_markdown_cell("""Integrated gradients satisfy completeness: the attributions of each digit sum to
f(x) − f(baseline). The error shrinks with the number of steps; Gauss–Legendre needs far fewer."""),
    nbf.v4.new_code_cell("""for method in ("riemann_right", "riemann_trapezoid", "gausslegendre"):
    for steps in ((4, 16) if QUICK else (8, 32, 128)):
        _, err = xj.integrated_gradients(model, variables, x, y, steps=steps, method=method, return_error=True)
        print(f"{method:18s} {steps:4d} steps: max |completeness error| = {float(jnp.abs(err).max()):.2e}")"""),
    nbf.v4.new_markdown_cell(
        "## CAM family\nOn the global-average-pooling classifier (`cam_cnn`) the CAM is the dense weights over the "
        "pooled maps. "
        'Those are the *rectified* `conv5` maps: `"conv5+relu"` names the inline ReLU after `conv5` (see `xj.layers`).'
    ),
    nbf.v4.new_code_cell("""cam_model, cam_variables = xj.models.load("cam_cnn")
layer = type(cam_model).last_conv + "+relu"
cams = {name: xj.upsample(xj.METHODS[name](cam_model, cam_variables, x, y, layer=layer), x.shape)
        for name in ("cam", "grad_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam", "score_cam")}
fig = xj.viz.method_grid(x, cams, signed={n: n == "cam" for n in cams}, row_titles=titles)
plt.show()"""),
    nbf.v4.new_markdown_cell(
        "## DeconvNet partial reconstructions\nEach filter of the first convolution projected back to the input alone."
    ),
    nbf.v4.new_code_cell("""recon = xj.deconvnet_per_filter(model, variables, x[:1], layer="conv1", filters=range(8))
fig, axes = plt.subplots(1, 8, figsize=(12, 2))
for k, ax in enumerate(axes):
    ax.imshow(np.asarray(recon[0, k, ..., 0]), cmap="gray"); ax.set_title(f"filter {k}"); ax.axis("off")
plt.show()"""),
]
notebook = nbf.v4.new_notebook(
    cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
)
nbf.write(notebook, __file__.replace("make_attribution_notebook.py", "attribution.ipynb"))
