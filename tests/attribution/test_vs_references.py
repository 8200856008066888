"""Gradient, path, noise, perturbation and CAM methods against Captum and pytorch-grad-cam on
PyTorch twins with identical weights.  Criterion everywhere: max |ours - reference| ≤ 1e-4 · max
|reference| on a batch of 8 with several targets."""

import numpy as np
import pytest

import xai_jax as xj
from tests import twins

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.torch

TWIN_LAYERS = {"TinyCNN": "conv2", "ResBNNet": "block", "NCHWFlattenNet": "conv2"}
TARGETS = np.array([0, 1, 2, 3, 4, 5, 6, 9])


def assert_matches(ours, reference, rel=1e-4):
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.abs(reference).max()
    assert scale > 0, "reference is all zero: the comparison would be vacuous"
    err = np.abs(ours - reference).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} x max |ref| {scale:.3g}"


@pytest.fixture(scope="module", params=list(TWIN_LAYERS))
def twin(request):
    torch.manual_seed(0)
    model, variables, tmodel = twins.make(request.param, seed=1)
    x = twins.random_input(model, batch=8, seed=2)
    return request.param, model, variables, tmodel, x


def nchw(t):
    return twins.to_numpy_nhwc(t)


def test_twins_agree_on_logits(twin):
    _, model, variables, tmodel, x = twin
    assert_matches(model.apply(variables, x), tmodel(twins.to_torch(x)).detach().numpy(), rel=1e-5)


@pytest.mark.parametrize("target", [TARGETS, 3])
def test_gradient_saliency_input_x_gradient(twin, target):
    _, model, variables, tmodel, x = twin
    t = torch.as_tensor(np.broadcast_to(target, (8,)).copy())
    inp = twins.to_torch(x, requires_grad=True)
    assert_matches(
        xj.gradient(model, variables, x, target), nchw(captum_attr.Saliency(tmodel).attribute(inp, target=t, abs=False))
    )
    assert_matches(
        xj.saliency(model, variables, x, target), nchw(captum_attr.Saliency(tmodel).attribute(inp, target=t))
    )
    assert_matches(
        xj.input_x_gradient(model, variables, x, target),
        nchw(captum_attr.InputXGradient(tmodel).attribute(inp, target=t)),
    )


def test_predicted_class_target(twin):
    _, model, variables, tmodel, x = twin
    inp = twins.to_torch(x, requires_grad=True)
    predicted = tmodel(inp).argmax(-1)
    assert_matches(
        xj.gradient(model, variables, x), nchw(captum_attr.Saliency(tmodel).attribute(inp, target=predicted, abs=False))
    )


@pytest.mark.parametrize(
    "method", ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
)
def test_integrated_gradients_every_quadrature(twin, method):
    _, model, variables, tmodel, x = twin
    steps, baseline = 16, 0.2
    ours = xj.integrated_gradients(model, variables, x, TARGETS, baseline=baseline, steps=steps, method=method)
    reference = nchw(
        captum_attr.IntegratedGradients(tmodel).attribute(
            twins.to_torch(x), baselines=baseline, target=torch.as_tensor(TARGETS), n_steps=steps, method=method
        )
    )
    if method == "riemann_trapezoid":
        reference = reference * steps / (steps - 1)  # Captum's trapezoid weights sum to (n-1)/n (DESIGN §7)
    assert_matches(ours, reference)


def test_guided_backprop_and_deconvolution(twin):
    _, model, variables, tmodel, x = twin
    t = torch.as_tensor(TARGETS)
    assert_matches(
        xj.guided_backprop(model, variables, x, TARGETS),
        nchw(captum_attr.GuidedBackprop(tmodel).attribute(twins.to_torch(x), target=t)),
    )
    assert_matches(
        xj.deconvnet(model, variables, x, TARGETS),
        nchw(captum_attr.Deconvolution(tmodel).attribute(twins.to_torch(x), target=t)),
    )


@pytest.mark.parametrize("window, strides, baseline", [((4, 4), (2, 2), 0.0), ((5, 3), (3, 2), -0.5)])
def test_occlusion(twin, window, strides, baseline):
    _, model, variables, tmodel, x = twin
    channels = x.shape[-1]
    ours = xj.occlusion(model, variables, x, TARGETS, window=window, strides=strides, baseline=baseline)
    reference = captum_attr.Occlusion(tmodel).attribute(
        twins.to_torch(x),
        sliding_window_shapes=(channels, *window),
        strides=(channels, *strides),
        baselines=baseline,
        target=torch.as_tensor(TARGETS),
        perturbations_per_eval=16,
    )
    assert_matches(ours, nchw(reference))


def test_layer_grad_cam_and_guided_grad_cam(twin):
    name, model, variables, tmodel, x = twin
    layer = TWIN_LAYERS[name]
    tlayer = twins.torch_layer(tmodel, layer)
    t = torch.as_tensor(TARGETS)
    reference = captum_attr.LayerGradCam(tmodel, tlayer).attribute(twins.to_torch(x), target=t, relu_attributions=True)
    assert_matches(xj.grad_cam(model, variables, x, TARGETS, layer=layer), reference.detach().numpy()[:, 0])
    guided = captum_attr.GuidedGradCam(tmodel, tlayer).attribute(twins.to_torch(x), target=t)
    assert_matches(xj.guided_grad_cam(model, variables, x, TARGETS, layer=layer), nchw(guided))


def test_noise_tunnel_at_zero_noise_equals_the_base_method(twin):
    _, model, variables, tmodel, x = twin
    import jax

    t = torch.as_tensor(TARGETS)
    for kind in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        reference = captum_attr.NoiseTunnel(captum_attr.Saliency(tmodel)).attribute(
            twins.to_torch(x), nt_type=kind, nt_samples=4, stdevs=0.0, target=t, abs=False
        )
        ours = xj.smoothgrad(model, variables, x, TARGETS, key=jax.random.key(0), kind=kind, samples=4, stdev=0.0)
        if kind == "vargrad":  # exactly zero on both sides: compare absolutely
            np.testing.assert_allclose(ours, nchw(reference), atol=1e-6)
        else:
            assert_matches(ours, nchw(reference))


@pytest.mark.parametrize("cam_name", ["grad_cam_plus_plus", "xgrad_cam", "layer_cam", "score_cam"])
def test_pytorch_grad_cam_family(twin, cam_name, monkeypatch):
    """pytorch-grad-cam before its min-max scaling and resizing (patched out to the identity)."""
    grad_cam_pkg = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import base_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    monkeypatch.setattr(base_cam, "scale_cam_image", lambda cam, target_size=None: cam)
    name, model, variables, tmodel, x = twin
    layer = TWIN_LAYERS[name]
    cls = {
        "grad_cam_plus_plus": grad_cam_pkg.GradCAMPlusPlus,
        "xgrad_cam": grad_cam_pkg.XGradCAM,
        "layer_cam": grad_cam_pkg.LayerCAM,
        "score_cam": grad_cam_pkg.ScoreCAM,
    }[cam_name]
    with cls(model=tmodel, target_layers=[twins.torch_layer(tmodel, layer)]) as reference_cam:
        if cam_name == "score_cam":
            reference_cam.batch_size = 64
        reference = reference_cam(
            input_tensor=twins.to_torch(x, requires_grad=True),
            targets=[ClassifierOutputTarget(int(c)) for c in TARGETS],
        )
    assert_matches(xj.METHODS[cam_name](model, variables, x, TARGETS, layer=layer), reference)


RECTIFIED_LAYERS = {"TinyCNN": "conv2+relu", "ResBNNet": "block/bn1+relu", "NCHWFlattenNet": "conv2+relu"}


def test_cam_family_on_rectified_maps(twin, monkeypatch):
    """``"<layer>+relu"`` names the inline ReLU after a layer: the same maps as Captum and
    pytorch-grad-cam hooked on the twin's ``nn.ReLU`` module (nested path in the residual block)."""
    from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, base_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name, model, variables, tmodel, x = twin
    layer = RECTIFIED_LAYERS[name]
    tlayer = twins.torch_layer(tmodel, layer)
    assert isinstance(tlayer, torch.nn.ReLU)
    t = torch.as_tensor(TARGETS)
    reference = captum_attr.LayerGradCam(tmodel, tlayer).attribute(twins.to_torch(x), target=t, relu_attributions=True)
    ours = xj.grad_cam(model, variables, x, TARGETS, layer=layer)
    assert_matches(ours, reference.detach().numpy()[:, 0])
    assert not np.allclose(ours, xj.grad_cam(model, variables, x, TARGETS, layer=layer.split("+")[0]))
    guided = captum_attr.GuidedGradCam(tmodel, tlayer).attribute(twins.to_torch(x), target=t)
    assert_matches(xj.guided_grad_cam(model, variables, x, TARGETS, layer=layer), nchw(guided))
    monkeypatch.setattr(base_cam, "scale_cam_image", lambda cam, target_size=None: cam)
    for cls, method in ((GradCAMPlusPlus, xj.grad_cam_plus_plus), (LayerCAM, xj.layer_cam)):
        with cls(model=tmodel, target_layers=[tlayer]) as reference_cam:
            expected = reference_cam(
                input_tensor=twins.to_torch(x, requires_grad=True),
                targets=[ClassifierOutputTarget(int(c)) for c in TARGETS],
            )
        assert_matches(method(model, variables, x, TARGETS, layer=layer), expected)


def test_occlusion_with_per_sample_baselines(twin):
    """Captum's per-example baselines (one reference image per sample, x's shape)."""
    _, model, variables, tmodel, x = twin
    channels = x.shape[-1]
    baselines = np.random.default_rng(5).uniform(-1, 1, size=x.shape).astype(np.float32)
    ours = xj.occlusion(model, variables, x, TARGETS, window=(3, 3), strides=(2, 2), baseline=baselines)
    reference = captum_attr.Occlusion(tmodel).attribute(
        twins.to_torch(x),
        sliding_window_shapes=(channels, 3, 3),
        strides=(channels, 2, 2),
        baselines=twins.to_torch(baselines),
        target=torch.as_tensor(TARGETS),
        perturbations_per_eval=16,
    )
    assert_matches(ours, nchw(reference))


@pytest.mark.parametrize("quadrature", ["riemann_left", "gausslegendre"])
def test_noise_tunnel_over_integrated_gradients_with_its_quadrature(twin, quadrature):
    """NoiseTunnel(IntegratedGradients) with the quadrature set: the wrapped method's options travel in
    the method value, so IG's ``method=`` and SmoothGrad's ``method=`` do not clash."""
    import functools

    import jax

    _, model, variables, tmodel, x = twin
    t = torch.as_tensor(TARGETS)
    reference = captum_attr.NoiseTunnel(captum_attr.IntegratedGradients(tmodel)).attribute(
        twins.to_torch(x), nt_type="smoothgrad", nt_samples=3, stdevs=0.0, target=t, n_steps=8, method=quadrature
    )
    ig = functools.partial(xj.integrated_gradients, steps=8, method=quadrature)
    ours = xj.smoothgrad(model, variables, x, TARGETS, key=jax.random.key(0), method=ig, samples=3, stdev=0.0)
    assert_matches(ours, nchw(reference))
