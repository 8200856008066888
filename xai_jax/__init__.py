"""xai_jax: interpretability for JAX/Flax.

Every method is a pure function ``xj.<method>(model, variables, x, target=None, **options)`` on a
batch, jit-compiled and composable with ``jax.jit``/``jax.vmap``.  See ``docs/design.md``.
"""

# Must run before anything creates a JAX array: it turns off the XLA:CPU fusion that returns wrong
# numbers in jaxlib 0.10 (see xai_jax/core/numerics.py and README "Numerics on CPU").
from .core import numerics as _numerics

_numerics.install()

from . import core, data, models, trace, viz  # noqa: E402
from .attribution import (  # noqa: E402
    cam, cam_method, deconvnet, deconvnet_per_filter, grad_cam, grad_cam_plus_plus, gradient, gradient_cam, guided_backprop,
    guided_grad_cam, input_x_gradient, integrated_gradients, layer_cam, occlusion, saliency, score_cam, smoothgrad,
    upsample, xgrad_cam,
)
from .core import METHODS, Method, method  # noqa: E402
from .core.errors import (  # noqa: E402
    CheckpointError, DataError, InputError, LayerNotFoundError, OutputError, ResourceExhaustedError, TargetError,
    UnknownNameError, UnsupportedError, XaiJaxError,
)
from .trace import capture, layer_gradient, layers  # noqa: E402
from . import propagation  # noqa: E402
from .propagation import (  # noqa: E402
    composites, deep_taylor, deeplift, lrp, lrp_transpose, rules, simple_taylor,
)
from . import featureviz  # noqa: E402
from .featureviz import (  # noqa: E402
    activation_maximization, activation_maximization_codespace, deep_dream, invert_features,
)
from . import uncertainty  # noqa: E402
from . import evaluation  # noqa: E402
from . import perturbation  # noqa: E402
from .perturbation import (  # noqa: E402
    extremal_perturbation, kernel_shap, lime, meaningful_perturbation, prediction_difference, rise,
    shapley_value_sampling, shapley_values,
)
from . import paths  # noqa: E402
from .paths import blur_ig, deeplift_shap, fullgrad, gradient_shap, guided_ig, xrai  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "METHODS", "CheckpointError", "DataError", "InputError", "LayerNotFoundError", "Method", "OutputError", "ResourceExhaustedError",
    "TargetError", "UnknownNameError", "UnsupportedError", "XaiJaxError", "activation_maximization",
    "activation_maximization_codespace", "cam", "cam_method", "capture", "composites", "core", "data",
    "deconvnet", "deconvnet_per_filter", "deep_dream", "deep_taylor", "deeplift", "featureviz", "grad_cam",
    "grad_cam_plus_plus", "gradient", "gradient_cam", "guided_backprop", "guided_grad_cam", "input_x_gradient",
    "integrated_gradients", "invert_features", "layer_cam", "layer_gradient", "layers", "lrp", "lrp_transpose", "method",
    "models", "occlusion", "propagation", "rules", "saliency", "score_cam", "simple_taylor",
    "smoothgrad", "trace", "uncertainty", "upsample", "viz", "xgrad_cam",
]
