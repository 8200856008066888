"""Checkpoint files: Flax msgpack variables, a manifest, and loading that refuses a wrong file.

A checkpoint is the model's full variables dict (``{"params": ..., "batch_stats": ...}``) written
with :func:`flax.serialization.to_bytes`.  A folder of checkpoints carries a ``manifest.json``::

    {"format": "xai_jax-checkpoints/1",
     "models": {"mnist_cnn": {"file": "mnist_cnn.msgpack", "class": "MnistCNN", "kwargs": {},
                              "sha256": "...", "test_accuracy": 0.99..., "num_params": ..., ...}}}

:func:`load_checkpoint` checks, in order, and raises :class:`~xai_jax.core.errors.CheckpointError`
naming the problem:

1. the file exists;
2. its sha256 matches the manifest beside it, when that manifest lists the file (or the digest the
   caller passes) -- otherwise the file is corrupt or was replaced;
3. the bytes parse as a Flax msgpack tree (a truncated file does not);
4. the tree has exactly the paths, shapes and dtypes that ``model.init`` gives (computed with
   ``jax.eval_shape``, nothing is run): a checkpoint of another model names the missing and the
   unexpected entries.

Any file works, in the manifest or not; step 2 is skipped for files no manifest lists (a
``manifest.json`` of another tool, without our ``format`` or ``models`` keys, is ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ..core.errors import CheckpointError

__all__ = [
    "CHECKPOINTS_ENV", "MANIFEST_FORMAT", "MANIFEST_NAME", "checkpoints_dir", "expected_structure",
    "file_sha256", "load_checkpoint", "manifest_entry_for", "read_manifest", "save_checkpoint",
    "update_manifest",
]

CHECKPOINTS_ENV = "XAI_JAX_CHECKPOINTS"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "xai_jax-checkpoints/1"
_LIST_LIMIT = 8


def checkpoints_dir() -> Path:
    """The folder of shipped checkpoints: ``$XAI_JAX_CHECKPOINTS`` if set, else the repo's ``checkpoints/``."""
    env = os.environ.get(CHECKPOINTS_ENV)
    if env:
        return Path(env).expanduser()
    import xai_jax

    return Path(xai_jax.__file__).resolve().parent.parent / "checkpoints"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------- manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a checkpoint folder (an empty one when the folder has none)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "models": {}}
    return _checked(_read_json(path), path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint manifest {path}: {e}") from e


def _checked(manifest: Any, path: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise CheckpointError(f"checkpoint manifest {path} is malformed: expected a 'models' mapping")
    return manifest


def update_manifest(directory: str | os.PathLike, name: str, entry: Mapping[str, Any]) -> Path:
    """Add or replace ``name``'s entry in ``directory``'s manifest (other entries are kept)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(directory)
    manifest["format"] = MANIFEST_FORMAT
    manifest["models"][name] = dict(entry)
    path = directory / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def manifest_entry_for(path: str | os.PathLike) -> tuple[str, dict[str, Any]] | None:
    """``(name, entry)`` of the manifest beside ``path`` that lists this file, or ``None``."""
    path = Path(path)
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    raw = _read_json(manifest_path)
    if not isinstance(raw, dict) or (raw.get("format") != MANIFEST_FORMAT and "models" not in raw):
        return None  # another tool's manifest.json: it says nothing about this file
    for name, entry in _checked(raw, manifest_path)["models"].items():
        if isinstance(entry, Mapping) and entry.get("file") == path.name:
            return name, dict(entry)
    return None


# ------------------------------------------------------------------------------------ save / load


def save_checkpoint(path: str | os.PathLike, variables: Mapping[str, Any]) -> str:
    """Write ``variables`` (the model's full variables dict) to ``path``; return the file's sha256.

    The file is written to a temporary name first and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(np.asarray, jax.device_get(dict(variables)))
    data = serialization.to_bytes(host)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def expected_structure(model: nn.Module, example_input: Any, **init_kwargs: Any) -> dict[str, Any]:
    """The variables tree ``model.init`` would create, as ``jax.ShapeDtypeStruct`` leaves (nothing runs)."""
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    return jax.eval_shape(lambda x: model.init(rngs, x, **init_kwargs), example_input)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    else:
        out[prefix] = tree
    return out


def _collapse(paths: list[str], other: Mapping[str, Any]) -> list[str]:
    """Name each path by its highest ancestor absent from ``other`` (``params/fc1``, not its leaves)."""
    out: list[str] = []
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if not any(k == prefix or k.startswith(prefix + "/") for k in other):
                break
        if prefix not in out:
            out.append(prefix)
    return out


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:_LIST_LIMIT])
    return shown + (f" (+{len(paths) - _LIST_LIMIT} more)" if len(paths) > _LIST_LIMIT else "")


def _check_structure(restored: Mapping[str, Any], expected: Any, path: Path, model_desc: str) -> None:
    got = _flatten(restored)
    want = _flatten(expected)
    missing = _collapse([k for k in want if k not in got], got)
    unexpected = _collapse([k for k in got if k not in want], want)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {_listing(unexpected)}")
        raise CheckpointError(f"checkpoint {path} holds a tree for a different model than {model_desc}: " + "; ".join(parts))
    problems = []
    for k, spec in want.items():
        leaf = got[k]
        shape = tuple(np.shape(leaf))
        if shape != tuple(spec.shape):
            problems.append(f"{k} has shape {shape}, the model expects {tuple(spec.shape)}")
        elif np.asarray(leaf).dtype != spec.dtype:
            problems.append(f"{k} has dtype {np.asarray(leaf).dtype}, the model expects {spec.dtype}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit {model_desc} (a different configuration of it?): " + "; ".join(problems[:_LIST_LIMIT])
        )


def _reorder(template: Any, tree: Any) -> Any:
    if isinstance(template, Mapping):
        return {k: _reorder(v, tree[k]) for k, v in template.items()}
    return tree


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    *,
    example_input: Any = None,
    sha256: str | None = None,
    template: Any = None,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, verified (see the module docstring).

    Args:
        path: the ``.msgpack`` file.
        model: the Linen module the variables belong to; the restored tree must have exactly the
            structure, shapes and dtypes of ``model.init``.  ``None`` skips that check (unless
            ``template`` is given).
        example_input: an input batch for ``model.init``; defaults to
            :func:`xai_jax.models.mnist.example_input` (right for every zoo model).
        sha256: expected hex digest.  By default the ``manifest.json`` beside the file supplies it
            when it lists the file; files no manifest lists are not hash-checked.
        template: a variables tree (arrays or ``jax.ShapeDtypeStruct``) to check against instead of
            ``model.init``.

    Returns:
        The variables dict (``params``, and ``batch_stats`` etc. if the model has them) as JAX
        arrays, ready for ``model.apply(variables, x)``.

    Raises:
        CheckpointError: missing file, sha256 mismatch, unparsable bytes, or a tree of another model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist" + ("" if path.parent.exists() else f" (no folder {path.parent})"))
    source = "the caller"
    if sha256 is None:
        listed = manifest_entry_for(path)
        if listed is not None and listed[1].get("sha256"):
            sha256 = listed[1]["sha256"]
            source = f"{path.parent / MANIFEST_NAME} (entry {listed[0]!r})"
    data = path.read_bytes()
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.lower():
            raise CheckpointError(
                f"checkpoint {path}: sha256 mismatch: file is corrupt or was replaced "
                f"(file {digest[:16]}..., expected {sha256[:16]}... from {source})"
            )
    try:
        restored = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise CheckpointError(
            f"checkpoint {path} cannot be parsed as a Flax msgpack file (truncated or not a checkpoint): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(restored, Mapping) or not restored:
        raise CheckpointError(f"checkpoint {path} does not hold a variables dict (got {type(restored).__name__})")
    if template is None and model is not None:
        if example_input is None:
            from .mnist import example_input as _example

            example_input = _example(model)
        template = expected_structure(model, example_input)
    if template is not None:
        desc = type(model).__name__ if model is not None else "the template"
        _check_structure(restored, template, path, desc)
        # Same key order as a fresh init, so tree structures compare equal.
        restored = _reorder(template, restored)
    return jax.tree.map(jnp.asarray, dict(restored))
