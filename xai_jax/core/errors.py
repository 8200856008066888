"""Exceptions raised by xai_jax.

Every error says what is wrong with the caller's input in words a user can act on.  They subclass
the built-in exception a Python user would expect (``ValueError``, ``KeyError``...) so generic
handlers keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XaiJaxError(Exception):
    """Base class of every error raised on purpose by xai_jax."""


class InputError(XaiJaxError, ValueError):
    """The input batch ``x`` is malformed: missing batch axis, wrong shape, NaN/inf values."""


class ModelModeError(InputError):
    """The model is not in the mode a method needs: an NNX model in training mode (BatchNorm on batch
    statistics, Dropout drawing masks), so that running it changes its own state."""


class TargetError(XaiJaxError, ValueError):
    """The ``target`` argument does not name a valid output (out of range, wrong shape or type)."""


class UnknownNameError(XaiJaxError, KeyError):
    """A name (method, model, layer...) is not known; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it as written.
        return str(self.args[0]) if self.args else ""


class LayerNotFoundError(UnknownNameError):
    """A layer name does not exist in the model; the message lists the closest names."""


class UnsupportedError(XaiJaxError, NotImplementedError):
    """The model contains an operation a method cannot handle faithfully."""


class CheckpointError(XaiJaxError, ValueError):
    """A checkpoint file is missing, corrupt, or belongs to another model."""


class OutputError(XaiJaxError, OSError):
    """An output location cannot be written without destroying files xai_jax did not write there
    (a foreign folder, a file where a folder is needed, the shipped checkpoints), or is not writable."""


class DataError(XaiJaxError, ValueError):
    """A data source is missing or malformed."""


class ResourceExhaustedError(XaiJaxError, MemoryError):
    """A computation ran out of device memory; the message says which option bounds it."""


def unknown_name_message(kind: str, name: str, known: Iterable[str], *, of: str = "") -> str:
    """Message for an unknown ``name`` among ``known``, naming the closest matches (``of``: whose
    names they are, e.g. ``"of method 'lrp'"``)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(repr(k) for k in known[:40]) + (" ..." if len(known) > 40 else "")
    whose = f" {of}" if of else ""
    return f"Unknown {kind}{whose} {name!r}.{hint} Known {kind}s{whose}: {listing or '(none)'}."
