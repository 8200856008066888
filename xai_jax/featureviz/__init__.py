"""Feature visualization: what a network responds to, found by optimisation.

* :func:`activation_maximization` -- the input that maximises a class, a layer's channel or any
  function of the outputs, in pixel space (Erhan et al. 2009; Simonyan et al. 2014);
* :func:`activation_maximization_codespace` -- the same through a generator's latent code
  (Nguyen et al. 2016; Montavon et al. 2018);
* :func:`deep_dream` -- amplify a layer's patterns in an image, octave by octave (Mordvintsev et al. 2015);
* :func:`invert_features` -- reconstruct an input from a layer's representation (Mahendran & Vedaldi 2015);
* composable regularizers (:mod:`.regularizers`): ``L2``, ``TotalVariation``, ``AlphaNorm``,
  ``HighFrequencyPenalty``, ``ClassMeanDistance``, ``Jitter``, ``Blur``, ``Clip``.

The three optimisation-based entry points (pixel AM, code-space AM, inversion) take one options
record, :class:`Optimization` (steps, learning rate or optax optimizer, regularizers, init, threshold,
...), checked once when it is made; each field is also accepted as a keyword argument.

Every optimisation runs all targets at once: one jitted ``lax.scan`` of optax updates, vmapped over
the targets, early stop masked per target, progress bar fed by chunks of steps.  Randomness only
through an explicit ``key``.
"""

from .activation_maximization import Visualization, activation_maximization
from .codespace import activation_maximization_codespace
from .deep_dream import deep_dream, octave_sizes
from .inversion import Inversion, default_priors, invert_features
from .options import Optimization
from .regularizers import (
    L2,
    AlphaNorm,
    Blur,
    ClassMeanDistance,
    Clip,
    HighFrequencyPenalty,
    Jitter,
    Regularizer,
    TotalVariation,
    class_means,
    gaussian_blur,
    total_variation,
)

__all__ = [
    "L2",
    "AlphaNorm",
    "Blur",
    "ClassMeanDistance",
    "Clip",
    "HighFrequencyPenalty",
    "Inversion",
    "Jitter",
    "Optimization",
    "Regularizer",
    "TotalVariation",
    "Visualization",
    "activation_maximization",
    "activation_maximization_codespace",
    "class_means",
    "deep_dream",
    "default_priors",
    "gaussian_blur",
    "invert_features",
    "octave_sizes",
    "total_variation",
]
