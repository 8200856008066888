"""One options record for the optimisation-based feature visualizations.

Activation maximisation in pixel space, in a generator's code space, and feature inversion solve the
same kind of problem -- a few optax updates of one variable per target -- and share one record of how
to run it, :class:`Optimization`::

    run = Optimization(steps=150, learning_rate=0.1, threshold=0.97)
    xj.activation_maximization(model, variables, range(10), optimization=run, key=key)
    xj.activation_maximization_codespace(model, variables, gen, gen_variables, range(10),
                                         optimization=run, code_regularizers=[L2(1e-2)], key=key)

The record is checked once, when it is made (finite floats, positive integers, known choices, real
regularizers), with the project's option checks (:mod:`xai_jax.core.checks`), so a NaN learning rate
or initial image is refused before anything runs.  As optax does, the optimiser can be any
``optax.GradientTransformation`` (``optimizer=``); ``learning_rate`` is the rate of the default Adam
(Kingma & Ba 2015) and is unused when ``optimizer`` is given.

A field left at ``None`` takes the entry point's default (so one record can serve every entry point:
pixel-space noise starts at scale 0.1, code-space noise at the generator's prior, scale 1).  The
entry points still take every field as a keyword argument (``steps=60``); keywords are applied on top
of ``optimization=`` and an unknown keyword is refused with the closest names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

import jax
import numpy as np
import optax

from ..core import checks
from ..core.errors import InputError, unknown_name_message
from .regularizers import Regularizer

__all__ = ["Optimization", "OptimizationSettings", "Run", "check_regularizers", "resolve"]

INITS = ("noise", "zeros")
CLASS_SCORES = ("log_softmax", "logit")


def check_regularizers(
    regularizers: Sequence[Regularizer] | Regularizer | None, name: str = "regularizers"
) -> tuple[Regularizer, ...]:
    """A tuple of feature-visualization regularizers (one is accepted alone), every numeric field
    finite: a NaN weight or bound would turn every image into NaN."""
    if regularizers is None:
        return ()
    if isinstance(regularizers, Regularizer):
        regularizers = (regularizers,)
    try:
        regs = tuple(regularizers)
    except TypeError:
        raise InputError(f"{name} must be a sequence of regularizers; got {type(regularizers).__name__}.") from None
    for reg in regs:
        if not isinstance(reg, Regularizer):
            raise InputError(
                f"{name} must hold xai_jax.featureviz regularizers (L2, TotalVariation, Jitter, Blur, Clip, ...); "
                f"got {type(reg).__name__}."
            )
        for path, leaf in jax.tree_util.tree_leaves_with_path(reg):
            checks.check_finite_array(f"{name}: {type(reg).__name__}{jax.tree_util.keystr(path)}", leaf)
    return regs


def _check_init(init: Any) -> Any:
    if isinstance(init, str):
        return checks.check_choice("init", init, INITS)
    if not (checks.is_array(init) or isinstance(init, (list, tuple))):
        raise InputError(f"init must be 'noise', 'zeros' or an array; got {type(init).__name__}.")
    if not checks.is_traced(init) and not np.issubdtype(np.asarray(init).dtype, np.number):
        raise InputError(f"init must be a numeric array; got dtype {np.asarray(init).dtype}.")
    checks.check_finite_array("init", init)
    return init


def _check_optimizer(optimizer: Any) -> optax.GradientTransformation:
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise InputError(
            "optimizer must be an optax.GradientTransformation (e.g. optax.adam(0.05)); "
            f"got {type(optimizer).__name__}."
        )
    return optimizer


def _check_progress(progress: Any) -> bool | str:
    if isinstance(progress, str):
        return progress
    return checks.check_bool("progress", progress)


@dataclasses.dataclass(frozen=True, eq=False)
class Optimization:
    """How a feature visualization is optimised (activation maximisation, code space, inversion).

    ``None`` means "the entry point's default", given with each field below.

    Attributes:
      steps: maximum number of updates, ``>= 1`` (default 200; inversion 300).
      learning_rate: learning rate of the default optimiser, ``optax.adam`` (default 0.05); finite,
        ``> 0``.  Unused when ``optimizer`` is given.
      optimizer: any ``optax.GradientTransformation``, applied to each target on its own.  Reuse the
        same object across calls to reuse the compilation.
      regularizers: penalties, transforms and projections on the image
        (:mod:`xai_jax.featureviz.regularizers`), e.g. ``(L2(5e-3), TotalVariation(0.05), Jitter(1),
        Clip(0, 1))`` (default none; inversion: Mahendran & Vedaldi's priors,
        :func:`~xai_jax.featureviz.default_priors`).  Every numeric field must be finite.
      init: ``"noise"`` (``init_scale · N(0, 1)``), ``"zeros"``, or the starting images (codes in
        code space), finite (default ``"noise"``; inversion ``"zeros"``).
      init_scale: standard deviation of the initial noise, finite, ``>= 0`` (default 0.1; code space
        1.0, the generator's prior).
      threshold: early stop of each class target once its softmax probability reaches this value,
        in ``(0, 1]`` (default: no early stop).  Class targets only; not in inversion.
      class_score: ``"log_softmax"`` (maximise log p_c; default) or ``"logit"`` (the raw logit,
        Simonyan et al. 2014).  Not in inversion.
      num_images: independent starts per callable target (default 1).  Not in inversion.
      chunk: steps per jitted scan (default: all at once, or 1/20 of them with a progress bar).
      progress: show a tqdm bar (a string sets its description; default ``False``).

    Raises:
      InputError: a value that is not finite, out of range or of the wrong kind.
    """

    steps: int | None = None
    learning_rate: float | None = None
    optimizer: optax.GradientTransformation | None = None
    regularizers: Sequence[Regularizer] | Regularizer | None = None
    init: str | jax.Array | np.ndarray | None = None
    init_scale: float | None = None
    threshold: float | None = None
    class_score: str | None = None
    num_images: int | None = None
    chunk: int | None = None
    progress: bool | str | None = None

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {
            "steps": checks.check_positive_int("steps", self.steps, allow_none=True),
            "learning_rate": checks.check_float(
                "learning_rate", self.learning_rate, minimum=0.0, exclusive_minimum=True, allow_none=True
            ),
            "init_scale": checks.check_float("init_scale", self.init_scale, minimum=0.0, allow_none=True),
            "threshold": checks.check_float(
                "threshold (a probability)",
                self.threshold,
                minimum=0.0,
                exclusive_minimum=True,
                maximum=1.0,
                allow_none=True,
            ),
            "num_images": checks.check_positive_int("num_images", self.num_images, allow_none=True),
            "chunk": checks.check_positive_int("chunk", self.chunk, allow_none=True),
        }
        if self.optimizer is not None:
            checked["optimizer"] = _check_optimizer(self.optimizer)
        if self.regularizers is not None:
            checked["regularizers"] = check_regularizers(self.regularizers)
        if self.init is not None:
            checked["init"] = _check_init(self.init)
        if self.class_score is not None:
            checked["class_score"] = checks.check_choice("class_score", self.class_score, CLASS_SCORES)
        if self.progress is not None:
            checked["progress"] = _check_progress(self.progress)
        for name, value in checked.items():  # the normalised values (a tuple of regularizers, Python numbers)
            object.__setattr__(self, name, value)


class OptimizationSettings(TypedDict, total=False):
    """The fields of :class:`Optimization`, as keyword arguments of the entry points."""

    steps: int | None
    learning_rate: float | None
    optimizer: optax.GradientTransformation | None
    regularizers: Sequence[Regularizer] | Regularizer | None
    init: str | jax.Array | np.ndarray | None
    init_scale: float | None
    threshold: float | None
    class_score: str | None
    num_images: int | None
    chunk: int | None
    progress: bool | str | None


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Optimization))


class Run(NamedTuple):
    """The settings one call runs with: an :class:`Optimization` with every default filled in
    (what :func:`resolve` returns and the problem builders read)."""

    steps: int
    optimizer: optax.GradientTransformation
    regularizers: tuple[Regularizer, ...]
    init: str | jax.Array | np.ndarray
    init_scale: float
    threshold: float | None
    class_score: str
    num_images: int
    chunk: int | None
    progress: bool | str


def resolve(
    optimization: Optimization | None,
    settings: Mapping[str, Any],
    defaults: Optimization,
    entry_point: str,
    *,
    not_applicable: Sequence[str] = (),
) -> Run:
    """The settings of one call: ``optimization`` (or an empty record), the keyword ``settings`` on
    top, then ``defaults`` for every field still ``None``.

    ``entry_point`` names the function in messages; ``not_applicable`` lists fields that must stay
    ``None`` there (a threshold in feature inversion would otherwise be silently ignored).  The
    optimiser is ``optimizer`` if given, else ``optax.adam(learning_rate)`` (one object per rate, so
    repeated calls reuse the compilation).
    """
    if optimization is None:
        optimization = Optimization()
    elif not isinstance(optimization, Optimization):
        raise InputError(
            f"optimization must be an xai_jax.featureviz.Optimization record; got {type(optimization).__name__}."
        )
    for name in settings:
        if name not in FIELDS:
            raise InputError(unknown_name_message(f"{entry_point} option", name, FIELDS))
    if settings:
        optimization = dataclasses.replace(optimization, **settings)
    for name in not_applicable:
        if getattr(optimization, name) is not None:
            raise InputError(f"{name} does not apply to {entry_point}; leave it unset (None).")
    value = {
        f: getattr(optimization, f) if getattr(optimization, f) is not None else getattr(defaults, f) for f in FIELDS
    }
    if value["optimizer"] is None:
        from .engine import default_optimizer

        value["optimizer"] = default_optimizer(value["learning_rate"])
    del value["learning_rate"]  # carried by the optimiser
    return Run(**value)
