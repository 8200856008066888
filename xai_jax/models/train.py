"""Training of the zoo models: how every shipped checkpoint was made, and how to remake it.

``train("mnist_cnn")`` (CLI: ``xai-jax train mnist_cnn``) trains one zoo model on MNIST, writes
``<out_dir>/<name>.msgpack`` and its entry in ``<out_dir>/manifest.json``, and returns that entry.
``out_dir`` defaults to ``./xai_jax_checkpoints``, never the shipped checkpoints: replacing one of
those takes ``replace_shipped=True`` (``--replace-shipped``).  The output folder is checked before the
first step; a checkpoint that is replaced (anywhere) is first copied, with its manifest entry, into
``<out_dir>/backups/<UTC time>/``; file and manifest are each replaced in one atomic rename.

Protocol (the same for every classifier):

* data: the standard MNIST split.  The 60,000 training images are split into 55,000 for training
  and 5,000 for validation; the validation split picks the epoch kept (model selection); the
  10,000 test images are used once, at the end, for the test accuracy written in the manifest.
* optimiser: Adam (optax) with a cosine-decayed learning rate, mini-batches drawn by a seeded
  permutation each epoch; every random number comes from ``jax.random`` keys split from ``seed``,
  so a run is reproducible on the same machine and library versions.
* augmentation: none, except ``mnist_vit``, whose training images are each translated by a random
  whole-pixel offset of up to 2 pixels per axis (zero fill; :func:`random_translation`): without
  it the ViT overfits the 55,000 images (97.96 % test accuracy after 4 epochs, training loss
  0.03; with it 98.95 % after 10 epochs).
* losses: softmax cross-entropy; ``evidential_cnn`` uses the evidential MSE loss of Sensoy et al.
  2018 (Eq. 5) with the KL weight ``min(1, epoch / 10)``
  (:func:`xai_jax.models.losses.evidential_mse_loss`); ``mc_dropout_cnn`` trains with dropout on.
* GANs (``mnist_gan_*``, ``dcgan_*``): the non-saturating GAN loss (Goodfellow et al. 2014),
  alternating one discriminator and one generator step, Adam(2e-4, b1=0.5) as in Radford et al.
  2016, with a :class:`GanRecipe`: the shipped DCGAN uses :data:`AC_GAN` (one-sided label
  smoothing, the AC-GAN class loss on a class code read from ``z``, so every digit is drawn equally
  often, an exponential moving average of the generator's weights, and BatchNorm statistics
  refreshed for those averaged weights); the shipped MLP GAN the same with class weight 6
  (``GanRecipe(class_weight=6.0)``, 20 epochs).  Training either half of a pair trains both and
  writes both checkpoints.  The manifest records how ``mnist_cnn`` classifies 10,000 samples of the
  generator (fraction scored >= 0.9, class counts), and each epoch's score on 1,000 samples.

Speed on CPU: the jitted steps differentiate through :func:`xai_jax.trace.interpreter.rewrite`
with two gradient-only substitutions that leave every value and gradient the same (to float32
rounding): the library's gather-free max-pool gradient, and a transposed convolution whose kernel
gradient is computed on the explicitly dilated input (XLA:CPU's own kernel gradient of an
``lhs_dilation`` convolution is ~5x slower).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ..core.errors import InputError, OutputError
from ..data import DEFAULT_NPZ, ENV_VAR
from ..data import mnist as mnist_data
from ..trace.interpreter import rewrite
from ..trace.xla_cpu import FAST_GRADIENT_RULES
from ..trace.xla_cpu import conv_transpose_kernel_rule as _conv_transpose_rule
from . import zoo
from .checkpoint import (
    backup_entry,
    check_checkpoint_dir,
    checkpoints_dir,
    file_sha256,
    load_checkpoint,
    new_backup_dir,
    save_checkpoint,
    update_manifest,
)
from .losses import annealing_weight, evidential_mse_loss
from .mnist import LATENT_DIM, NUM_CLASSES, example_input

__all__ = [
    "DEFAULT_OUT_DIR",
    "SETTINGS",
    "TrainSettings",
    "evaluate_accuracy",
    "make_classifier_step",
    "make_gan_step",
    "output_dir",
    "random_translation",
    "train",
]

#: Where :func:`train` writes unless told otherwise: relative to the working directory.
DEFAULT_OUT_DIR = Path("xai_jax_checkpoints")


@dataclass(frozen=True)
class TrainSettings:
    """How a zoo model is trained (defaults of :func:`train`)."""

    kind: str  # "classifier" | "evidential" | "gan"
    epochs: int
    batch_size: int
    learning_rate: float
    b1: float = 0.9
    b2: float = 0.999
    schedule: str = "cosine"  # "cosine" (decay to 1% over the run) | "constant"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to model.apply while training
    pair: tuple[str, str] | None = None  # GANs: (generator name, discriminator name)
    gan: GanRecipe | None = None  # GANs: the recipe beyond the optimiser (default GanRecipe())
    max_shift: int = 0  # classifiers: each training image translated by up to this many pixels (zero fill)


@dataclass(frozen=True)
class GanRecipe:
    """How a GAN pair is trained, beyond the epochs, batch size and Adam settings of :class:`TrainSettings`.

    What made the first shipped generators weak (54 % / 45 % of samples scored >= 0.9, one class at
    28 % and others near 2 %), and what each field changes:

    * ``real_label``: the discriminator's target on real images.  One-sided label smoothing
      ([salimans2016]_ §3.4): with target 1 the discriminator grows over-confident and the
      generator's gradient fades.
    * ``class_weight``: the auxiliary-classifier loss of AC-GAN [odena2017]_.  An
      unconditional GAN trained here collapsed onto easy digits (75 % "1"s after 10 epochs of the
      MLP GAN, with averaged weights).  The generators now read a class from their code
      (:func:`xai_jax.models.mnist.class_code`: ``argmax(z[:, :10])``, uniform under the prior); the
      discriminator's class head learns the real digits (cross-entropy on the training labels) and
      the generator is trained so that the head reads its image as the class its code chose.
    * ``ema_decay``: the shipped generator is the exponential moving average of the trained
      generator's weights ([yazici2019]_): the last iterate of a GAN oscillates around a better average.
    * ``d_learning_rate``: a faster discriminator than generator (the two time-scale update rule,
      [heusel2017]_), for a pair whose discriminator otherwise falls to chance and stops
      teaching the generator.
    * ``bn_batches``, ``bn_batch_size``: averaged weights need their own BatchNorm statistics
      ([izmailov2018]_, SWA's BN update): after training, the running statistics of a
      BatchNorm generator are refreshed with ``bn_batches`` training-mode passes of that many codes
      through the averaged weights (momentum 0.9: the old statistics weigh ``0.9 ** bn_batches``).
      The DCGAN then runs in inference mode on statistics of the very weights it ships with.
    """

    real_label: float = 0.9
    class_weight: float = 1.0
    ema_decay: float = 0.999
    bn_batches: int = 100
    bn_batch_size: int = 256
    d_learning_rate: float | None = None  # the discriminator's Adam rate (None: TrainSettings.learning_rate)

    def ema_weight(self, step: int) -> float:
        """The averaging decay after ``step`` updates: ``min(ema_decay, (1 + step) / (10 + step))``, the
        warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=step)``, so that the average
        soon forgets the random initial weights (at decay 0.999 they would still weigh 42 % after
        one epoch)."""
        return min(self.ema_decay, (1.0 + step) / (10.0 + step))

    def record(self) -> dict[str, Any]:
        """The recipe as written into the manifest."""
        return {
            "real_label": self.real_label,
            "class_weight": self.class_weight,
            "discriminator_learning_rate": self.d_learning_rate,
            "generator_weights": (
                f"exponential moving average of the trained weights, decay "
                f"min({self.ema_decay}, (1 + step) / (10 + step))"
                if self.ema_decay > 0
                else "the last iterate"
            ),
            "class_code": (
                "argmax(z[:, :10]) picks the digit (uniform under z ~ N(0, I)); AC-GAN class loss"
                if self.class_weight > 0
                else "none (unconditional)"
            ),
            "batch_norm_statistics": (
                f"refreshed for the averaged weights: {self.bn_batches} training-mode passes of "
                f"{self.bn_batch_size} codes"
                if self.bn_batches > 0
                else "running averages"
            ),
        }


_GAN = ("mnist_gan_generator", "mnist_gan_discriminator")
_DCGAN = ("dcgan_generator", "dcgan_discriminator")
#: The plain non-saturating GAN (last iterate, no label smoothing, no class code): the first
#: shipped MLP GAN (60 epochs; 54 % of samples scored >= 0.9) and the first shipped DCGAN (45 %).
PLAIN_GAN = GanRecipe(real_label=1.0, class_weight=0.0, ema_decay=0.0, bn_batches=0)
#: AC-GAN with label smoothing, averaged weights and refreshed BatchNorm statistics: the shipped
#: DCGAN (6 epochs; 93.1 % of 10,000 samples scored >= 0.9).  The shipped MLP GAN uses it with
#: ``class_weight=6.0`` (20 epochs; 93.4 %); docs/design.md §8 has what else was tried.
AC_GAN = GanRecipe(class_weight=3.0)
_GAN_RECIPE = GanRecipe(class_weight=6.0)
_DCGAN_RECIPE = AC_GAN

SETTINGS: dict[str, TrainSettings] = {
    "mnist_cnn": TrainSettings("classifier", epochs=2, batch_size=128, learning_rate=2e-3),
    "cam_cnn": TrainSettings("classifier", epochs=6, batch_size=128, learning_rate=2e-3),
    "mc_dropout_cnn": TrainSettings(
        "classifier", epochs=2, batch_size=128, learning_rate=2e-3, model_kwargs={"deterministic": False}
    ),
    "evidential_cnn": TrainSettings("evidential", epochs=3, batch_size=128, learning_rate=1e-3),
    "mnist_vit": TrainSettings("classifier", epochs=10, batch_size=128, learning_rate=1e-3, max_shift=2),
    "mnist_gan_generator": TrainSettings(
        "gan", epochs=20, batch_size=64, learning_rate=2e-4, b1=0.5, schedule="constant", pair=_GAN, gan=_GAN_RECIPE
    ),
    "mnist_gan_discriminator": TrainSettings(
        "gan", epochs=20, batch_size=64, learning_rate=2e-4, b1=0.5, schedule="constant", pair=_GAN, gan=_GAN_RECIPE
    ),
    "dcgan_generator": TrainSettings(
        "gan",
        epochs=6,
        batch_size=64,
        learning_rate=2e-4,
        b1=0.5,
        schedule="constant",
        model_kwargs={"train": True},
        pair=_DCGAN,
        gan=_DCGAN_RECIPE,
    ),
    "dcgan_discriminator": TrainSettings(
        "gan",
        epochs=6,
        batch_size=64,
        learning_rate=2e-4,
        b1=0.5,
        schedule="constant",
        model_kwargs={"train": True},
        pair=_DCGAN,
        gan=_DCGAN_RECIPE,
    ),
}


# ------------------------------------------------------------------------------------------ data


def _data_source(data_path: str | os.PathLike | None) -> Path | None:
    """The file ``xai_jax.data.mnist`` reads for ``data_path`` (recorded in the manifest)."""
    if data_path is not None:
        return Path(data_path)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(DEFAULT_NPZ)


def load_mnist_splits(
    data_path: str | os.PathLike | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """``{"train", "validation", "test"}`` -> ``(images (N, 28, 28, 1) float32 in [0, 1], labels int32)``,
    and a description for the manifest.  Reads through :func:`xai_jax.data.mnist` (validation = the
    last 5,000 of the 60,000 training images)."""
    splits = {s: mnist_data(split=s, path=data_path) for s in ("train", "validation", "test")}
    splits = {s: (np.asarray(x, np.float32), np.asarray(y, np.int32)) for s, (x, y) in splits.items()}
    desc: dict[str, Any] = {"dataset": "MNIST", "loader": "xai_jax.data.mnist"}
    source = _data_source(data_path)
    if source is not None and source.is_file():
        desc.update({"file": source.name, "sha256": file_sha256(source)})
    desc["validation_split"] = f"last {len(splits['validation'][1])} of the training images"
    desc.update({f"{s}_examples": len(v[1]) for s, v in splits.items()})
    return splits, desc


# ------------------------------------------------------------------------- fast training gradients


_TRAINING_RULES = {**FAST_GRADIENT_RULES, "conv_general_dilated": _conv_transpose_rule}


def _fast(fn: Callable[..., Any]) -> Callable[..., Any]:
    return rewrite(fn, _TRAINING_RULES)


# ------------------------------------------------------------------------------------ optimisers


def _optimizer(s: TrainSettings, total_steps: int) -> optax.GradientTransformation:
    lr: Any = s.learning_rate
    if s.schedule == "cosine":
        lr = optax.cosine_decay_schedule(s.learning_rate, max(total_steps, 1), alpha=0.01)
    return optax.adam(lr, b1=s.b1, b2=s.b2)


def _optimizer_record(s: TrainSettings) -> dict[str, Any]:
    return {
        "name": "adam",
        "learning_rate": s.learning_rate,
        "b1": s.b1,
        "b2": s.b2,
        "schedule": "cosine decay to 1% over the run" if s.schedule == "cosine" else "constant",
    }


# ------------------------------------------------------------------------------ classifier steps


def make_classifier_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    *,
    loss: str = "cross_entropy",
    model_kwargs: Mapping[str, Any] | None = None,
    fast: bool = True,
    max_shift: int = 0,
) -> Callable[..., tuple[Any, Any, jax.Array]]:
    """Jitted ``step(params, opt_state, x, y, key, kl_weight) -> (params, opt_state, loss)``.

    ``loss`` is ``"cross_entropy"`` or ``"evidential_mse"`` (Sensoy et al. 2018, Eq. 5, with KL
    weight ``kl_weight``).  ``key`` feeds the ``"dropout"`` rng stream and, with ``max_shift > 0``,
    the :func:`random_translation` of the batch.  Pure: the same arguments give the same result.
    ``fast`` differentiates through the gradient-only substitutions described in the module
    docstring (same values and gradients).
    """
    kwargs = dict(model_kwargs or {})
    if loss not in ("cross_entropy", "evidential_mse"):
        raise ValueError(f"unknown loss {loss!r}; use 'cross_entropy' or 'evidential_mse'")

    def loss_fn(params: Any, x: jax.Array, y: jax.Array, key: jax.Array, kl_weight: jax.Array) -> jax.Array:
        logits: jax.Array = model.apply({"params": params}, x, rngs={"dropout": key}, **kwargs)  # type: ignore[assignment]
        if loss == "cross_entropy":
            value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        else:
            value = evidential_mse_loss(logits, jax.nn.one_hot(y, logits.shape[-1]), kl_weight)
        return value

    grad_fn = jax.value_and_grad(_fast(loss_fn) if fast else loss_fn)

    @jax.jit
    def step(
        params: Any, opt_state: Any, x: jax.Array, y: jax.Array, key: jax.Array, kl_weight: Any = 0.0
    ) -> tuple[Any, Any, jax.Array]:
        if max_shift:
            key, shift_key = jax.random.split(key)
            x = random_translation(shift_key, x, max_shift)
        value, grads = grad_fn(params, x, y, key, jnp.asarray(kl_weight, jnp.float32))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def random_translation(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Each image of ``images`` (B, H, W, C) moved by its own whole-pixel offset, drawn uniformly
    from ``[-max_shift, max_shift]`` per axis; pixels moved in from outside are 0 (the MNIST
    background)."""
    b, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    corners = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)

    def crop(image: jax.Array, corner: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (corner[0], corner[1], 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(padded, corners)


def _predict_fn(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    def predict(variables: Any, x: jax.Array) -> jax.Array:
        logits: jax.Array = model.apply(variables, x)  # type: ignore[assignment]  # no mutable collections: one output
        return jnp.argmax(logits, axis=-1)

    return jax.jit(predict)


def evaluate_accuracy(
    model: nn.Module, variables: Any, images: np.ndarray, labels: np.ndarray, *, batch_size: int = 1000
) -> float:
    """Top-1 accuracy of ``model.apply(variables, x)`` (argmax of the outputs), in batches."""
    predict = _predict_fn(model)
    n, correct = len(images), 0
    for i in range(0, n, batch_size):
        xb = np.asarray(images[i : i + batch_size])
        m = len(xb)
        if m < batch_size and n > batch_size:  # pad the last batch: one compiled shape
            xb = np.concatenate([xb, np.zeros((batch_size - m, *xb.shape[1:]), xb.dtype)])
        pred = np.asarray(predict(variables, jnp.asarray(xb)))[:m]
        correct += int(np.sum(pred == np.asarray(labels[i : i + batch_size])))
    return correct / len(images)


def _constructor_kwargs(model: nn.Module) -> dict[str, Any]:
    """The module's dataclass fields (its configuration), as recorded in the manifest."""
    return {
        f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init and f.name not in ("parent", "name")
    }


def _num_params(tree: Any) -> int:
    return int(sum(np.size(a) for a in jax.tree.leaves(tree)))


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("jax", "jaxlib", "flax", "optax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def _batches(key: jax.Array, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of the epoch's mini-batches (a seeded permutation, remainder dropped): (steps, batch_size)."""
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


def _train_classifier(
    name: str, s: TrainSettings, splits: Mapping[str, Any], epochs: int, key: jax.Array, progress: bool
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    model = zoo.build(name)
    (x_tr, y_tr), (x_va, y_va) = splits["train"], splits["validation"]
    init_key, shuffle_key, dropout_key = jax.random.split(key, 3)
    params = model.init({"params": init_key}, example_input(model))["params"]
    steps_per_epoch = len(x_tr) // s.batch_size
    optimizer = _optimizer(s, steps_per_epoch * epochs)
    opt_state = optimizer.init(params)
    loss_name = "evidential_mse" if s.kind == "evidential" else "cross_entropy"
    step = make_classifier_step(model, optimizer, loss=loss_name, model_kwargs=s.model_kwargs, max_shift=s.max_shift)
    best = (-1.0, -1, params)
    history = []
    global_step = 0
    for epoch in range(epochs):
        kl_weight = float(annealing_weight(epoch)) if s.kind == "evidential" else 0.0
        bar = tqdm(
            _batches(shuffle_key, epoch, len(x_tr), s.batch_size),
            desc=f"{name} {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
        )
        losses = []
        for idx in bar:
            params, opt_state, loss = step(
                params, opt_state, x_tr[idx], y_tr[idx], jax.random.fold_in(dropout_key, global_step), kl_weight
            )
            global_step += 1
            losses.append(loss)
            if global_step % 50 == 0:
                bar.set_postfix(loss=f"{float(loss):.4f}")
        val_acc = evaluate_accuracy(model, {"params": params}, x_va, y_va)
        mean_loss = float(np.mean(jax.device_get(losses)))
        history.append({"epoch": epoch, "train_loss": round(mean_loss, 5), "validation_accuracy": val_acc})
        if progress:
            tqdm.write(f"{name}: epoch {epoch + 1}/{epochs} loss {mean_loss:.4f} validation accuracy {val_acc:.4f}")
        if val_acc > best[0]:
            best = (val_acc, epoch, params)
    val_acc, best_epoch, params = best
    record = {
        "loss": (
            "evidential MSE (Sensoy et al. 2018, Eq. 5), KL weight min(1, epoch/10)"
            if s.kind == "evidential"
            else "softmax cross-entropy"
        ),
        "augmentation": (
            f"random translation of each training image by up to {s.max_shift} px per axis, zero fill"
            if s.max_shift
            else "none"
        ),
        "validation_accuracy": val_acc,
        "best_epoch": best_epoch,
        "history": history,
    }
    return model, {"params": params}, record


# ------------------------------------------------------------------------------------------ GANs


def _bce(logits: jax.Array, label: float) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def make_gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: optax.GradientTransformation,
    d_optimizer: optax.GradientTransformation,
    *,
    latent_dim: int = LATENT_DIM,
    real_label: float = 1.0,
    class_weight: float = 0.0,
    classes: int = NUM_CLASSES,
    fast: bool = True,
) -> Callable[..., tuple[Any, Any, Any, Any, jax.Array, jax.Array]]:
    """Jitted non-saturating GAN step (Goodfellow et al. 2014), one discriminator then one generator update.

    ``step(g_vars, d_params, g_state, d_state, real, key, labels=None) -> (g_vars, d_params, g_state,
    d_state, d_loss, g_loss)``; ``g_vars`` holds ``params`` and, for a BatchNorm generator,
    ``batch_stats`` (trained with batch statistics, running averages updated once per step).

    The discriminator minimises ``BCE(D(x), real_label) + BCE(D(G(z)), 0)``, the generator
    ``BCE(D(G(z)), 1)``.  With ``class_weight > 0`` and ``labels`` (the real digits' classes), AC-GAN
    [odena2017]_ adds ``CE(C(x), labels)`` to the discriminator's loss and
    ``class_weight · CE(C(G(z)), argmax(z[:, :classes]))`` to the generator's, ``C`` the
    discriminator's class head (``with_classes=True``).  The generator runs forward once per step:
    its output feeds the discriminator's update, and the pull-back of that forward pass (the
    generator is unchanged in between) gives the generator's gradient through the updated
    discriminator.
    """
    use_classes = class_weight > 0

    def gen(g_params: Any, stats: Any, z: jax.Array) -> tuple[Any, Any]:
        if stats is None:
            return generator.apply({"params": g_params}, z), None
        out, upd = generator.apply({"params": g_params, "batch_stats": stats}, z, train=True, mutable=["batch_stats"])
        return out, upd["batch_stats"]

    def discriminate(d_params: Any, x: jax.Array) -> tuple[Any, Any]:
        if use_classes:
            return cast(tuple[Any, Any], discriminator.apply({"params": d_params}, x, with_classes=True))
        return discriminator.apply({"params": d_params}, x), None

    def d_loss(d_params: Any, real: jax.Array, labels: jax.Array | None, fake: jax.Array) -> jax.Array:
        real_logit, class_logits = discriminate(d_params, real)
        loss = _bce(real_logit, real_label) + _bce(discriminate(d_params, fake)[0], 0.0)
        if use_classes:
            loss = loss + optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()
        return loss

    def g_loss(d_params: Any, fake: jax.Array, code_labels: jax.Array) -> jax.Array:
        logit, class_logits = discriminate(d_params, fake)
        loss = _bce(logit, 1.0)
        if use_classes:
            loss = (
                loss + class_weight * optax.softmax_cross_entropy_with_integer_labels(class_logits, code_labels).mean()
            )
        return loss

    maybe_fast = _fast if fast else (lambda f: f)
    d_grad = jax.value_and_grad(maybe_fast(d_loss))
    g_grad = jax.value_and_grad(maybe_fast(g_loss), argnums=1)  # w.r.t. the generated images
    forward = maybe_fast(gen)

    @jax.jit
    def step(
        g_vars: Any,
        d_params: Any,
        g_state: Any,
        d_state: Any,
        real: jax.Array,
        key: jax.Array,
        labels: jax.Array | None = None,
    ) -> tuple[Any, Any, Any, Any, jax.Array, jax.Array]:
        if use_classes and labels is None:
            raise ValueError("class_weight > 0 needs the real images' labels")
        stats = g_vars.get("batch_stats")
        z = jax.random.normal(key, (real.shape[0], latent_dim), real.dtype)
        fake, pull_back, new_stats = jax.vjp(lambda p: forward(p, stats, z), g_vars["params"], has_aux=True)
        dl, dg = d_grad(d_params, real, labels, fake)
        upd, d_state = d_optimizer.update(dg, d_state, d_params)
        d_params = optax.apply_updates(d_params, upd)
        gl, g_fake = g_grad(d_params, fake, jnp.argmax(z[:, :classes], axis=-1))
        (gg,) = pull_back(g_fake)
        upd, g_state = g_optimizer.update(gg, g_state, g_vars["params"])
        g_vars = {"params": optax.apply_updates(g_vars["params"], upd)}
        if stats is not None:
            g_vars["batch_stats"] = new_stats
        return g_vars, d_params, g_state, d_state, dl, gl

    return step


@jax.jit
def _ema(average: Any, params: Any, decay: jax.Array) -> Any:
    return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, average, params)


def refresh_batch_stats(generator: nn.Module, g_vars: Any, key: jax.Array, *, batches: int, batch_size: int) -> Any:
    """``g_vars`` with the BatchNorm running statistics recomputed for its own ``params``:
    ``batches`` training-mode passes of ``batch_size`` codes ``z ~ N(0, I)`` ([izmailov2018]_'s
    BN update for averaged weights).  A generator without BatchNorm is returned as is."""
    if "batch_stats" not in g_vars:
        return g_vars

    @jax.jit
    def update(stats: Any, z: jax.Array) -> Any:
        _, upd = generator.apply(
            {"params": g_vars["params"], "batch_stats": stats}, z, train=True, mutable=["batch_stats"]
        )
        return upd["batch_stats"]

    stats = g_vars["batch_stats"]
    for i in range(batches):
        stats = update(stats, jax.random.normal(jax.random.fold_in(key, i), (batch_size, LATENT_DIM)))
    return {**g_vars, "batch_stats": stats}


def _generator_quality(
    generator: nn.Module, g_vars: Any, key: jax.Array, classifier_dir: Path, n: int = 10_000
) -> dict[str, Any]:
    """How ``mnist_cnn`` sees ``n`` samples ``z ~ N(0, I)`` of the generator (inference mode): mean
    top probability, the fraction classified with probability >= 0.9, the predicted-class counts and
    fractions, and, for a class-coded generator, how often the predicted class is the code's
    (``argmax(z[:, :10])``) and the per-class fraction scored >= 0.9 as that class."""
    clf_path = classifier_dir / "mnist_cnn.msgpack"
    try:
        clf = zoo.build("mnist_cnn")
        clf_vars = load_checkpoint(clf_path, clf) if clf_path.is_file() else zoo.load("mnist_cnn")[1]
    except Exception as e:  # no classifier yet: skip the score, say why
        return {"skipped": f"no mnist_cnn checkpoint to score samples with ({type(e).__name__})"}
    z = jax.random.normal(key, (n, LATENT_DIM))
    generate, classify = jax.jit(lambda v, z: generator.apply(v, z)), jax.jit(clf.apply)
    probs = np.concatenate(
        [np.asarray(jax.nn.softmax(classify(clf_vars, generate(g_vars, z[i : i + 1000])))) for i in range(0, n, 1000)]
    )
    top, predicted = probs.max(axis=1), probs.argmax(axis=1)
    counts = np.bincount(predicted, minlength=NUM_CLASSES)
    quality = {
        "scored_by": "mnist_cnn",
        "samples": n,
        "key": "jax.random.fold_in(jax.random.key(seed), 10000)",
        "mean_top_probability": round(float(top.mean()), 4),
        "fraction_top_probability_ge_0.9": round(float((top >= 0.9).mean()), 4),
        "predicted_class_counts": [int(c) for c in counts],
        "min_class_fraction": round(float(counts.min() / n), 4),
    }
    if getattr(generator, "classes", 0):
        code = np.asarray(jnp.argmax(z[:, :NUM_CLASSES], axis=-1))
        confident = (top >= 0.9) & (predicted == code)
        quality["code_class_agreement"] = round(float((predicted == code).mean()), 4)
        quality["per_code_class_fraction_ge_0.9"] = [
            round(float(confident[code == c].mean()), 4) for c in range(NUM_CLASSES)
        ]
    return quality


def _train_gan(
    s: TrainSettings,
    splits: Mapping[str, Any],
    epochs: int,
    key: jax.Array,
    progress: bool,
    monitor: Callable[[nn.Module, Any], dict[str, Any]] | None = None,
) -> tuple[dict[str, tuple[nn.Module, Any]], dict[str, Any]]:
    """Train a GAN pair; ``monitor(generator, g_vars)``, if given, scores the averaged generator after
    every epoch (its BatchNorm statistics refreshed with 20 batches) into the epoch's history entry."""
    g_name, d_name = s.pair  # type: ignore[misc]
    recipe = s.gan if s.gan is not None else GanRecipe()
    generator, discriminator = zoo.build(g_name), zoo.build(d_name)
    x_tr, y_tr = splits["train"]
    g_key, d_key, shuffle_key, noise_key, bn_key = jax.random.split(key, 5)
    g_vars = dict(generator.init({"params": g_key}, example_input(generator)))
    d_params = discriminator.init({"params": d_key}, example_input(discriminator))["params"]
    steps_per_epoch = len(x_tr) // s.batch_size
    d_settings = s if recipe.d_learning_rate is None else dataclasses.replace(s, learning_rate=recipe.d_learning_rate)
    g_opt, d_opt = _optimizer(s, steps_per_epoch * epochs), _optimizer(d_settings, steps_per_epoch * epochs)
    g_state, d_state = g_opt.init(g_vars["params"]), d_opt.init(d_params)
    step = make_gan_step(
        generator, discriminator, g_opt, d_opt, real_label=recipe.real_label, class_weight=recipe.class_weight
    )
    average = g_vars["params"]
    history = []
    global_step = 0
    for epoch in range(epochs):
        bar = tqdm(
            _batches(shuffle_key, epoch, len(x_tr), s.batch_size),
            desc=f"{g_name} {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
        )
        d_losses, g_losses = [], []
        for idx in bar:
            g_vars, d_params, g_state, d_state, dl, gl = step(
                g_vars, d_params, g_state, d_state, x_tr[idx], jax.random.fold_in(noise_key, global_step), y_tr[idx]
            )
            average = _ema(average, g_vars["params"], jnp.float32(recipe.ema_weight(global_step)))
            global_step += 1
            d_losses.append(dl)
            g_losses.append(gl)
            if global_step % 50 == 0:
                bar.set_postfix(d=f"{float(dl):.3f}", g=f"{float(gl):.3f}")
        entry: dict[str, Any] = {
            "epoch": epoch,
            "d_loss": round(float(np.mean(jax.device_get(d_losses))), 4),
            "g_loss": round(float(np.mean(jax.device_get(g_losses))), 4),
        }
        if monitor is not None:
            snapshot = refresh_batch_stats(
                generator,
                {**g_vars, "params": average},
                jax.random.fold_in(bn_key, epoch),
                batches=20,
                batch_size=recipe.bn_batch_size,
            )
            entry["averaged_generator"] = monitor(generator, snapshot)
        history.append(entry)
        if progress:
            tqdm.write(
                f"{g_name}: epoch {epoch + 1}/{epochs} d_loss {entry['d_loss']:.4f} g_loss {entry['g_loss']:.4f}"
                + (f" {entry['averaged_generator']}" if monitor is not None else "")
            )
    shipped = refresh_batch_stats(
        generator, {**g_vars, "params": average}, bn_key, batches=recipe.bn_batches, batch_size=recipe.bn_batch_size
    )
    if recipe.class_weight > 0:
        loss = (
            "non-saturating GAN (Goodfellow et al. 2014) with one-sided label smoothing and the AC-GAN class "
            "loss (Odena et al. 2017): D: BCE(D(x), real_label) + BCE(D(G(z)), 0) + CE(C(x), y); "
            "G: BCE(D(G(z)), 1) + class_weight * CE(C(G(z)), argmax(z[:, :10]))"
        )
    else:
        loss = (
            "non-saturating GAN (Goodfellow et al. 2014): D: BCE(D(x), real_label) + BCE(D(G(z)), 0); "
            "G: BCE(D(G(z)), 1)"
        )
    record = {
        "loss": loss,
        "latent": f"z ~ N(0, I), {LATENT_DIM}-d",
        "gan": recipe.record(),
        "history": history,
        "steps": global_step,
    }
    return {g_name: (generator, shipped), d_name: (discriminator, {"params": d_params})}, record


# ------------------------------------------------------------------------------------ entry point


def output_dir(out_dir: str | os.PathLike | None = None, *, replace_shipped: bool = False) -> Path:
    """The folder :func:`train` writes to: ``out_dir``, else :data:`DEFAULT_OUT_DIR`; the checkpoints
    folder that :func:`xai_jax.models.load` reads only with ``replace_shipped=True``."""
    shipped = checkpoints_dir()
    if out_dir is None:
        return shipped if replace_shipped else DEFAULT_OUT_DIR
    out = Path(out_dir)
    is_shipped = os.path.realpath(out) == os.path.realpath(shipped)
    if is_shipped and not replace_shipped:
        raise OutputError(
            f"{out} is the checkpoints folder xj.models.load reads ({shipped}): training into it replaces a shipped "
            "checkpoint and its manifest entry. Pass replace_shipped=True (CLI: --replace-shipped; the old file and "
            f"entry are backed up), or leave the output folder out (default ./{DEFAULT_OUT_DIR})."
        )
    if replace_shipped and not is_shipped:
        raise InputError(
            f"replace_shipped=True writes into the checkpoints folder {shipped}, but the output folder "
            f"is {out}: give one or the other."
        )
    return out


def train(
    name: str,
    *,
    data_path: str | os.PathLike | None = None,
    epochs: int | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    replace_shipped: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train zoo model ``name`` on MNIST and write its checkpoint and manifest entry.

    Args:
        name: a zoo model name (``xai_jax.models.zoo.names()``).  Either half of a GAN trains the
            pair and writes both checkpoints.
        data_path: MNIST ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``); default
            ``../shared/data/mnist.npz`` beside the repo.
        epochs: default from :data:`SETTINGS`.
        seed: seeds every random number (init, shuffling, dropout, GAN noise) via ``jax.random``.
        out_dir: where to write ``<name>.msgpack`` and ``manifest.json`` (other entries are kept);
            default :data:`DEFAULT_OUT_DIR` (``./xai_jax_checkpoints``).  The checkpoints folder
            that :func:`xai_jax.models.load` reads is refused unless ``replace_shipped``.
        replace_shipped: write into that checkpoints folder, replacing the shipped checkpoint; the
            old file and manifest entry are kept in its ``backups/<UTC time>/``.
        progress: show tqdm progress bars and one line per epoch.

    Returns:
        The manifest entry written for ``name``.

    Raises:
        OutputError: the output folder cannot take the checkpoint (a file, not writable, a foreign
            ``manifest.json``, the shipped folder without ``replace_shipped``): raised before training.
    """
    zoo._entry(name)  # UnknownNameError listing the names
    s = SETTINGS[name]
    epochs = s.epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InputError(f"epochs must be a positive integer; got {epochs!r}.")
    epochs = int(epochs)
    out = output_dir(out_dir, replace_shipped=replace_shipped)
    written = list(s.pair) if s.pair else [name]
    check_checkpoint_dir(out, [f"{n}.msgpack" for n in written])  # before the data and an hour of training
    splits, data_desc = load_mnist_splits(data_path)
    key = jax.random.key(seed)
    start = time.perf_counter()
    common = {
        "seed": seed,
        "epochs": epochs,
        "batch_size": s.batch_size,
        "optimizer": _optimizer_record(s),
        "prng": "jax.random.key(seed), split into init / shuffle / noise keys",
        "device": jax.default_backend(),
        "versions": _versions(),
        "command": f"xai-jax train {name}",
    }
    if s.kind in ("classifier", "evidential"):
        model, variables, record = _train_classifier(name, s, splits, epochs, key, progress)
        elapsed = time.perf_counter() - start
        test_acc = evaluate_accuracy(model, variables, *splits["test"])
        if progress:
            tqdm.write(f"{name}: test accuracy {test_acc:.4f} ({elapsed:.0f} s)")
        extra = {"validation_accuracy": record.pop("validation_accuracy"), "test_accuracy": test_acc}
        results = {name: (model, variables, extra)}
    else:

        def monitor(generator: nn.Module, g_vars: Any) -> dict[str, Any]:
            q = _generator_quality(generator, g_vars, jax.random.fold_in(key, 20_000), out, n=1000)
            return {k: q[k] for k in ("fraction_top_probability_ge_0.9", "min_class_fraction") if k in q}

        trained, record = _train_gan(s, splits, epochs, key, progress, monitor)
        elapsed = time.perf_counter() - start
        g_name, d_name = s.pair  # type: ignore[misc]
        gen, g_vars = trained[g_name]
        quality = _generator_quality(gen, g_vars, jax.random.fold_in(key, 10_000), out)
        if progress:
            tqdm.write(f"{g_name}: {quality}")
        results = {
            g_name: (gen, g_vars, {"sample_quality": quality}),
            d_name: (*trained[d_name], {"trained_with": g_name}),
        }
        results[g_name][2]["trained_with"] = d_name
    entries = {}
    backup_dir = new_backup_dir(out)  # one per run: a GAN pair's two old checkpoints stay together
    for n, (model, variables, extra) in results.items():
        zoo_entry = zoo.ZOO[n]
        file = f"{n}.msgpack"
        backup = backup_entry(out, n, backup_dir) if out.is_dir() else None
        if backup is not None and progress:
            tqdm.write(f"{n}: the previous checkpoint and manifest entry are kept in {backup}")
        digest = save_checkpoint(out / file, variables)
        entry = {
            "file": file,
            "class": type(model).__name__,
            "module": type(model).__module__,
            "kwargs": _constructor_kwargs(model),
            "kind": zoo_entry.kind,
            "description": zoo_entry.description,
            "input": (
                "images (B, 28, 28, 1) float32 in [0, 1]"
                if zoo_entry.kind != "generator"
                else f"codes (B, {LATENT_DIM}) float32, z ~ N(0, I)"
            ),
            "output": {
                "classifier": "logits (B, 10)",
                "generator": "images (B, 28, 28, 1) float32 in [0, 1]",
                "discriminator": "logit (B, 1), positive = real",
            }[zoo_entry.kind],
            "data": data_desc,
            **extra,
            "num_params": _num_params(variables["params"]),
            "variables": sorted(variables),
            "size_bytes": (out / file).stat().st_size,
            "sha256": digest,
            "training": {**common, **record, "time_s": round(elapsed, 1)},
        }
        if n == name or n not in entries:
            entries[n] = entry
        update_manifest(out, n, entry)
    return entries[name]
