"""A sequence task whose answer is decided by one known token: a ground truth for explanations.

Each sequence has ``length`` tokens.  The marker (token 1) occurs exactly once, at a position drawn
uniformly from ``0 .. length - 2``; every other token is a value drawn uniformly from ``2 .. vocab - 1``;
the label is the value right after the marker (minus 2).  The token that decides the label, the
*deciding token*, is known for every sequence, so an explanation of the predicted class can be scored
by the share of its relevance that falls on it, with no human judgement (the idea of synthetic
ground-truth benchmarks such as [arras2022]_).  A model must attend from the class token to the
marker's successor: the task needs attention, not a bag of tokens.

* :func:`marker_sequences`: a batch of the task from an explicit key;
* :func:`train_marker_transformer`: trains :class:`~xai_jax.models.transformers.TokenClassifier` on it;
* :func:`load_marker_transformer`: the shipped checkpoint (``checkpoints/marker_transformer.msgpack``,
  listed with its sha256, settings and held-out accuracy in ``checkpoints/manifest.json``);
* :func:`deciding_token_share`: the scores of a method's per-token relevance against the truth.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.errors import InputError, XaiJaxError
from .checkpoint import (
    backup_entry,
    check_checkpoint_dir,
    checkpoints_dir,
    load_checkpoint,
    save_checkpoint,
    update_manifest,
)
from .transformers import TokenClassifier

__all__ = [
    "MARKER",
    "PAD",
    "MarkerBatch",
    "deciding_token_share",
    "load_marker_transformer",
    "marker_model",
    "marker_sequences",
    "train_marker_transformer",
    "write_marker_checkpoint",
]

PAD, MARKER = 0, 1  # PAD never occurs in the task; it is the "no information" token for baselines
LENGTH, VOCAB = 12, 10  # 8 values -> 8 classes
NAME = "marker_transformer"
CHECKPOINT = f"{NAME}.msgpack"


class MarkerBatch(NamedTuple):
    tokens: jax.Array  # (B, length) int32
    labels: jax.Array  # (B,) int32, the deciding token's value - 2
    position: jax.Array  # (B,) int32, the deciding token's index (the marker is at position - 1)


def marker_sequences(key: jax.Array, n: int, *, length: int = LENGTH, vocab: int = VOCAB) -> MarkerBatch:
    """``n`` sequences of the marker task, drawn from ``key``."""
    if length < 2 or vocab < 3:
        raise InputError(f"the marker task needs length >= 2 and vocab >= 3; got length={length}, vocab={vocab}.")
    k_values, k_where = jax.random.split(key)
    tokens = jax.random.randint(k_values, (n, length), 2, vocab, dtype=jnp.int32)
    marker_at = jax.random.randint(k_where, (n,), 0, length - 1, dtype=jnp.int32)
    tokens = jnp.where(jnp.arange(length)[None, :] == marker_at[:, None], MARKER, tokens)
    position = marker_at + 1
    labels = jnp.take_along_axis(tokens, position[:, None], axis=1)[:, 0] - 2
    return MarkerBatch(tokens, labels, position)


def marker_model() -> TokenClassifier:
    """The architecture of the shipped model: 2 pre-LayerNorm blocks, dim 32, 2 heads, a class token."""
    return TokenClassifier(vocab=VOCAB, length=LENGTH, dim=32, depth=2, heads=2, mlp_dim=64, num_classes=VOCAB - 2)


def train_marker_transformer(
    key: jax.Array, *, steps: int = 4000, batch_size: int = 128, learning_rate: float = 2e-3
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train :func:`marker_model` on fresh batches of the task (a new batch every step, so nothing is
    memorised); Adam with a cosine decay.  Returns ``(variables, record)``; ``record`` holds the
    settings, the loss curve and the accuracy on 10,000 held-out sequences (drawn from another key)."""
    model = marker_model()
    k_init, k_data, k_test = jax.random.split(key, 3)
    variables = model.init(k_init, jnp.zeros((1, LENGTH), jnp.int32))
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(variables["params"])

    @jax.jit
    def step(params: Any, opt_state: Any, i: jax.Array) -> tuple[Any, Any, jax.Array]:
        batch = marker_sequences(jax.random.fold_in(k_data, i), batch_size)

        def loss_fn(p: Any) -> jax.Array:
            logits = model.apply({"params": p}, batch.tokens)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params, losses, started = variables["params"], [], time.perf_counter()
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jnp.asarray(i))
        if i % 250 == 0 or i == steps - 1:
            losses.append({"step": i, "loss": round(float(loss), 5)})
    variables = {"params": params}
    held_out = marker_sequences(k_test, 10_000)
    predicted = jnp.argmax(jax.jit(model.apply)(variables, held_out.tokens), axis=-1)
    record = {
        "steps": steps,
        "batch_size": batch_size,
        "optimizer": {"name": "adam", "learning_rate": learning_rate, "schedule": "cosine decay to 1% over the run"},
        "prng": "jax.random.key(seed) split into init / data / held-out keys; batch i from fold_in(data, i)",
        "history": losses,
        "held_out_examples": 10_000,
        "seconds": round(time.perf_counter() - started, 1),
    }
    record["held_out_accuracy"] = float(jnp.mean(predicted == held_out.labels))
    return variables, record


def load_marker_transformer(path: str | None = None) -> tuple[TokenClassifier, Any]:
    """``(model, variables)`` of the shipped marker transformer (sha256-checked against the manifest)."""
    model = marker_model()
    file = checkpoints_dir() / CHECKPOINT if path is None else path
    return model, load_checkpoint(file, model, example_input=jnp.zeros((1, LENGTH), jnp.int32))


def deciding_token_share(relevance: Any, position: Any) -> Mapping[str, np.ndarray]:
    """Per sequence: ``share``, the deciding token's share of the absolute relevance
    ``|R_p| / Σ_j |R_j|`` (1 = all on it; 1 / length for a uniform map), and ``top``, whether it
    holds the largest ``|R_j|``.  ``relevance`` is ``(B, length)``, one value per token."""
    r = np.abs(np.asarray(relevance, np.float64))
    p = np.asarray(position)
    if r.ndim != 2 or p.shape != (r.shape[0],):
        raise InputError(f"relevance must be (B, length) and position (B,); got {r.shape} and {p.shape}.")
    if not np.isfinite(r).all():
        raise InputError(f"relevance has {int((~np.isfinite(r)).sum())} NaN or infinite value(s); it cannot be scored.")
    if not np.issubdtype(p.dtype, np.integer) or p.min() < 0 or p.max() >= r.shape[1]:
        raise InputError(f"position must be token indices in 0..{r.shape[1] - 1}; got {p.min()}..{p.max()}.")
    on = r[np.arange(len(p)), p]
    total = r.sum(axis=1)
    share = np.divide(on, total, out=np.zeros_like(on), where=total > 0)
    return {"share": share, "top": r.argmax(axis=1) == p}


def write_marker_checkpoint(
    out_dir: str | os.PathLike | None = None, *, seed: int = 0, replace_shipped: bool = False
) -> Path:
    """Train the marker transformer from ``jax.random.key(seed)`` and write it, with its manifest entry
    (settings, held-out accuracy, sha256), into ``out_dir`` (default ``./xai_jax_checkpoints``).

    The output folder follows :func:`xai_jax.models.train.train`'s rules: it is checked before
    training; the shipped ``checkpoints/`` folder only with ``replace_shipped=True``; a checkpoint and
    manifest entry it replaces are first copied to ``backups/<UTC time>/`` beside them.
    """
    from .train import _num_params, _versions, output_dir

    out = output_dir(out_dir, replace_shipped=replace_shipped)
    check_checkpoint_dir(out, [CHECKPOINT])
    variables, record = train_marker_transformer(jax.random.key(seed))
    if out.is_dir():
        backup_entry(out, NAME)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT
    digest = save_checkpoint(path, variables)
    model = marker_model()
    entry = {
        "file": CHECKPOINT,
        "class": type(model).__name__,
        "module": type(model).__module__,
        "kwargs": {
            k: getattr(model, k) for k in ("vocab", "length", "dim", "depth", "heads", "mlp_dim", "num_classes")
        },
        "kind": "classifier",
        "description": "token classifier trained on the synthetic marker task (xai_jax.models.synthetic)",
        "input": f"token ids (B, {LENGTH}) int32",
        "output": f"logits (B, {VOCAB - 2})",
        "data": {
            "task": "marker: the label is the value after the one marker token",
            "length": LENGTH,
            "vocab": VOCAB,
            "train_examples": record["steps"] * record["batch_size"],
            "test_examples": record["held_out_examples"],
            "test_split": "fresh sequences from the held-out key (training draws from fold_in(data key, step))",
        },
        "test_accuracy": record["held_out_accuracy"],
        "num_params": _num_params(variables),
        "variables": sorted(variables),
        "size_bytes": path.stat().st_size,
        "sha256": digest,
        "training": {
            **record,
            "seed": seed,
            "versions": _versions(),
            "command": "python -m xai_jax.models.synthetic --replace-shipped",
        },
    }
    update_manifest(out, NAME, entry)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the marker transformer and write its checkpoint.")
    parser.add_argument("--out", default=None, help="output folder (default ./xai_jax_checkpoints)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--replace-shipped", action="store_true", help="write into the shipped checkpoints/ (the old one is backed up)"
    )
    args = parser.parse_args(argv)
    try:
        path = write_marker_checkpoint(args.out, seed=args.seed, replace_shipped=args.replace_shipped)
    except XaiJaxError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
