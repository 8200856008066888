"""Checkpoint files: Flax msgpack variables, a manifest, and loading that refuses a wrong file.

A checkpoint is the model's full variables dict (``{"params": ..., "batch_stats": ...}``) written
with :func:`flax.serialization.to_bytes`.  A folder of checkpoints carries a ``manifest.json``::

    {"format": "xai_jax-checkpoints/1",
     "models": {"mnist_cnn": {"file": "mnist_cnn.msgpack", "class": "MnistCNN", "kwargs": {},
                              "sha256": "...", "test_accuracy": 0.99..., "num_params": ..., ...}}}

:func:`load_checkpoint` checks, in order, and raises :class:`~xai_jax.core.errors.CheckpointError`
naming the problem:

1. the file exists (a directory is named as one, with the ``.msgpack`` files in it);
2. its sha256 matches the manifest beside it, when that manifest lists the file (or the digest the
   caller passes) -- otherwise the file is corrupt or was replaced;
3. the bytes parse as a Flax msgpack tree (a truncated file does not);
4. the tree has exactly the paths, shapes and dtypes that ``model.init`` gives (computed with
   ``jax.eval_shape``, nothing is run): a checkpoint of another model names the missing and the
   unexpected entries.

Any file works, in the manifest or not; step 2 is skipped for files no manifest lists (a
``manifest.json`` of another tool, without our ``format`` or ``models`` keys, is ignored).  Constructor
``kwargs`` in a manifest entry that the model class does not take are a ``CheckpointError`` naming them.

Writing: checkpoint files and manifests are each replaced in one atomic rename of a uniquely named,
fsynced temporary file, so a crash leaves the old file or the new one.  :func:`check_checkpoint_dir`
checks an output folder before any work; :func:`backup_entry` keeps a checkpoint and its manifest
entry in ``backups/<UTC time>/`` (itself a checkpoint folder) before training replaces them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ..core.errors import CheckpointError, OutputError

__all__ = [
    "BACKUPS_DIR",
    "CHECKPOINTS_ENV",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "backup_entry",
    "check_checkpoint_dir",
    "checkpoints_dir",
    "construct",
    "expected_structure",
    "file_sha256",
    "load_checkpoint",
    "manifest_entry_for",
    "new_backup_dir",
    "read_manifest",
    "require_file",
    "save_checkpoint",
    "update_manifest",
]

CHECKPOINTS_ENV = "XAI_JAX_CHECKPOINTS"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "xai_jax-checkpoints/1"
BACKUPS_DIR = "backups"
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
    _atomic_write(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one rename: a reader, or a crash, sees the old file or the new
    one, never half of one.  The temporary name is unique, so two writers never share it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like a plain open()
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------- output folders


def check_checkpoint_dir(directory: str | os.PathLike, files: Iterable[str] = ()) -> None:
    """Raise :class:`~xai_jax.core.errors.OutputError` unless checkpoint ``files`` and their manifest
    entries can be written into ``directory``: it is (or can be created as) a writable folder, any
    ``manifest.json`` in it is ours and readable, and no ``files`` name is taken by a folder.
    Creates nothing: training calls it before the first step, not after an hour."""
    directory = Path(directory)
    if os.path.lexists(directory):
        if not directory.is_dir():
            raise OutputError(
                f"{directory} is a file, not a folder: give a folder for the checkpoints (it is created if missing)."
            )
        writable = directory
    else:
        writable = directory.parent
        while not os.path.lexists(writable):
            writable = writable.parent
        if not writable.is_dir():
            raise OutputError(f"cannot create the checkpoint folder {directory}: {writable} is a file, not a folder.")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write checkpoints to {directory}: {writable} is not writable; choose another folder."
        )
    manifest = directory / MANIFEST_NAME
    if os.path.lexists(manifest):
        try:
            read_manifest(directory)
        except CheckpointError as err:
            raise OutputError(
                f"{manifest} is not a readable xai_jax checkpoint manifest, and writing "
                f"checkpoints there would replace it ({err}); choose another folder."
            ) from err
    for file in files:
        if (directory / file).is_dir():
            raise OutputError(f"{directory / file} is a folder; a checkpoint cannot be written there.")


def new_backup_dir(directory: str | os.PathLike) -> Path:
    """A not yet existing ``directory/backups/<UTC time>[-k]/`` (created by :func:`backup_entry` when it
    has something to keep)."""
    base = Path(directory) / BACKUPS_DIR / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, k = base, 2
    while os.path.lexists(candidate):
        candidate, k = base.with_name(f"{base.name}-{k}"), k + 1
    return candidate


def backup_entry(directory: str | os.PathLike, name: str, backup: str | os.PathLike | None = None) -> Path | None:
    """Copy ``name``'s checkpoint in ``directory`` and its manifest entry into ``backup`` (default:
    :func:`new_backup_dir`), itself a checkpoint folder: the old file loads from there, hash verified.
    Returns ``backup``, or ``None`` when there is nothing to keep.  Call it before replacing the checkpoint."""
    directory = Path(directory)
    entry = read_manifest(directory)["models"].get(name)
    files = {f"{name}.msgpack"}
    if isinstance(entry, Mapping) and isinstance(entry.get("file"), str):
        files.add(Path(entry["file"]).name)
    existing = sorted(f for f in files if (directory / f).is_file())
    if entry is None and not existing:
        return None
    backup = Path(backup) if backup is not None else new_backup_dir(directory)
    backup.mkdir(parents=True, exist_ok=True)
    for file in existing:
        shutil.copy2(directory / file, backup / file)
    if entry is not None:
        update_manifest(backup, name, entry)
    return backup


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
    _atomic_write(path, data)
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
        raise CheckpointError(
            f"checkpoint {path} holds a tree for a different model than {model_desc}: " + "; ".join(parts)
        )
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
            f"checkpoint {path} does not fit {model_desc} (a different configuration of it?): "
            + "; ".join(problems[:_LIST_LIMIT])
        )


def _reorder(template: Any, tree: Any) -> Any:
    if isinstance(template, Mapping):
        return {k: _reorder(v, tree[k]) for k, v in template.items()}
    return tree


def require_file(path: Path) -> None:
    """:class:`CheckpointError` unless ``path`` is a file, saying what it is instead."""
    if path.is_file():
        return
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.msgpack"))[:_LIST_LIMIT]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise CheckpointError(f"checkpoint path {path} is a directory; give the .msgpack file inside it{hint}")
    missing_folder = "" if path.parent.exists() else f" (no folder {path.parent})"
    raise CheckpointError(f"checkpoint file {path} does not exist{missing_folder}")


def construct(cls: type[nn.Module], kwargs: Any, where: str) -> nn.Module:
    """``cls(**kwargs)`` for constructor kwargs read from a manifest, or a :class:`CheckpointError`
    naming the keys ``cls`` does not take (a manifest written for another version of the model)."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{where}: 'kwargs' must be a mapping of argument names, got {kwargs!r}")
    fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{where}: kwargs {', '.join(map(repr, unknown))} are not arguments of {cls.__name__} "
            f"(it takes {', '.join(fields) or 'none'}); the manifest was written for another "
            "version of the model: fix or remove the entry"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: {cls.__name__}(**{dict(kwargs)!r}) failed: {err}") from err


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
    require_file(path)
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
            f"checkpoint {path} cannot be parsed as a Flax msgpack file (truncated or not a checkpoint): "
            f"{type(e).__name__}: {e}"
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
