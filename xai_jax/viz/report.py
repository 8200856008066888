"""The HTML report: per sample the input, its label, the prediction with its probability, and each
method's heatmap; plus the method grid and the raw arrays for anyone who wants the numbers.

Layout of ``out_dir``::

    index.html              the table (one row per sample, one column per method)
    grid.png                ``method_grid`` of the first ``grid_rows`` samples
    maps/input_<i>.png      the inputs
    maps/<method>_<i>.png   each heatmap, at the map's own resolution (the page scales it up, pixelated)
    arrays/<method>.npy     the raw maps exactly as given, plus inputs/labels/predictions/probabilities.npy
    manifest.json           format marker, every file written, method name -> file stem and signedness, title, extra

Writing never destroys a file the report did not write.  ``out_dir`` may be missing, empty, or an
earlier report (recognised by ``manifest.json`` with ``"format": "xai_jax-report/1"``, which lists its
files): then the earlier report is replaced as a whole, none of its files stays behind.  Any other
content makes it an error (:class:`~xai_jax.core.errors.OutputError`), raised before a file is written;
``overwrite=True`` writes the report beside such files and keeps them, but still refuses when one of
the report's own names (``manifest.json``, ``index.html``, ``grid.png``, ``maps/``, ``arrays/``) holds
something it did not write.  The report is first written into a temporary sibling folder and moved
into place only when complete, so a failure part-way leaves the earlier content as it was.

Heatmap PNGs are written from ``to_rgba`` with ``matplotlib.image.imsave`` (no figure, no display, no
pyplot state), so their pixels are exactly the colours of the convention in ``heatmap.py``.  Method
names are free text ("input × gradient", "<grad> & co"): they are HTML-escaped on the page and
sanitised into file names, de-duplicated, and kept away from the reserved array names.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from matplotlib import image as mpl_image

from ..core.errors import InputError
from .grid import method_grid, prediction_title
from .heatmap import as_display_image, reduce_channels, to_rgba
from .output import Layout, check_folder, write_folder

RESERVED = ("inputs", "labels", "predictions", "probabilities")
REPORT_FORMAT = "xai_jax-report/1"
#: The names a report owns in its folder: with ``overwrite=True`` everything else there is kept.
REPORT_ENTRIES = ("manifest.json", "index.html", "grid.png", "maps", "arrays")


def safe_name(name: str) -> str:
    """A portable file stem for a method name: ASCII letters, digits, ``-`` and ``_`` only."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_name).strip("_")[:80] or "map"


def _file_stems(names: list[str]) -> dict[str, str]:
    """Distinct stems for ``names``: ``safe_name`` plus ``_2``, ``_3``... on collision (case-blind,
    for case-insensitive file systems) and never one of ``RESERVED``."""
    taken = {r.lower() for r in RESERVED}
    stems = {}
    for name in names:
        stem, k = safe_name(name), 2
        candidate = stem
        while candidate.lower() in taken:
            candidate, k = f"{stem}_{k}", k + 1
        taken.add(candidate.lower())
        stems[name] = candidate
    return stems


def _save_png(path: Path, rgb: np.ndarray) -> None:
    mpl_image.imsave(path, np.clip(rgb, 0.0, 1.0), format="png")


def _input_rgb(image: Any) -> np.ndarray:
    img = as_display_image(image)
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


# ----------------------------------------------------------------------------------- output folder


def _legacy_files(manifest: Mapping[str, Any]) -> set[str] | None:
    """The files of a report written before the format marker existed (manifest keys title, samples,
    extra, methods): they follow from the manifest, so an old default ``xai_jax_report/`` is replaced
    like a new one instead of blocking ``xai-jax explain``."""
    samples, methods = manifest.get("samples"), manifest.get("methods")
    if set(manifest) != {"title", "samples", "extra", "methods"}:
        return None
    if type(samples) is not int or not isinstance(methods, list):  # bool is an int, but no sample count
        return None
    files = {"manifest.json", "index.html", "grid.png", *(f"arrays/{r}.npy" for r in RESERVED)}
    files.update(f"maps/input_{i}.png" for i in range(samples))
    for method in methods:
        file = method.get("file") if isinstance(method, Mapping) else None
        if not isinstance(file, str) or not re.fullmatch(r"arrays/[A-Za-z0-9_-]+\.npy", file):
            return None
        stem = file[len("arrays/") : -len(".npy")]
        files.add(file)
        files.update(f"maps/{stem}_{i}.png" for i in range(samples))
    return files


LAYOUT = Layout(
    format=REPORT_FORMAT, entries=REPORT_ENTRIES, folders=("maps", "arrays"), what="report", legacy=_legacy_files
)


def check_report_dir(out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Raise :class:`~xai_jax.core.errors.OutputError` if :func:`write_report` would refuse ``out_dir``
    (see the module docstring).  Creates nothing: callers check before a long computation."""
    check_folder(out_dir, LAYOUT, overwrite=overwrite)


# ------------------------------------------------------------------------------------------ report


def write_report(
    out_dir: str | Path,
    *,
    images: Any,
    labels: Any,
    predictions: Any,
    probabilities: Any,
    maps: Mapping[str, Any],
    signed: Mapping[str, bool] | None = None,
    title: str = "xai_jax report",
    extra: Mapping[str, str] | None = None,
    grid_rows: int = 16,
    overwrite: bool = False,
) -> Path:
    """Write the report into ``out_dir`` (created if needed) and return the path of ``index.html``.

    ``out_dir`` must be new, empty or an earlier report, which is replaced as a whole; any other
    content raises :class:`~xai_jax.core.errors.OutputError` before anything is written, unless
    ``overwrite=True``, which writes beside it and keeps it (see the module docstring).

    Args:
      images: ``(B, H, W[, C])`` inputs.
      labels: ``(B,)`` true classes; ``None`` or entries below 0 are shown as unknown (``?``).
      predictions: ``(B,)`` predicted classes.
      probabilities: ``(B,)`` probability of each prediction, or ``(B, K)`` full probabilities (the
        predicted class's entry is shown; the array is saved as given).
      maps: method name -> ``(B, H', W'[, C])`` attribution maps.
      signed: method name -> signed (diverging colormap, default) or magnitude (sequential).
      title: page title.  extra: key -> value lines listed under the title (model, timings...).
      grid_rows: at most this many samples go into ``grid.png`` (the table has them all).
      overwrite: also write into a folder holding files that are not a report's (they are kept).
    """
    images = np.asarray(images)
    batch = len(images) if images.ndim >= 3 else -1
    if images.ndim not in (3, 4) or batch == 0:
        raise InputError(f"images must be a non-empty batch (B, H, W[, C]); got shape {images.shape}.")
    labels = np.full(batch, -1) if labels is None else np.asarray(labels)
    predictions, probabilities = np.asarray(predictions), np.asarray(probabilities)
    for what, value in (("labels", labels), ("predictions", predictions), ("probabilities", probabilities)):
        if value.ndim not in (1, 2) or len(value) != batch or (value.ndim == 2 and what != "probabilities"):
            raise InputError(f"{what} has shape {value.shape}; expected ({batch},) for {batch} images.")
    if probabilities.ndim == 2:
        if predictions.min() < 0 or predictions.max() >= probabilities.shape[1]:
            raise InputError(f"predictions outside 0..{probabilities.shape[1] - 1}, the columns of probabilities.")
        shown_prob = probabilities[np.arange(batch), predictions.astype(int)]
    else:
        shown_prob = probabilities
    arrays = {name: np.asarray(value) for name, value in maps.items()}
    for name, value in arrays.items():
        if value.ndim not in (3, 4) or len(value) != batch:
            raise InputError(f"map {name!r} has shape {value.shape}; expected ({batch}, H, W[, C]).")
    signed = {name: bool((signed or {}).get(name, True)) for name in arrays}
    stems = _file_stems(list(arrays))

    def write(folder: Path) -> dict[str, Any]:
        _write_files(
            folder,
            images=images,
            labels=labels,
            predictions=predictions,
            probabilities=probabilities,
            shown_prob=shown_prob,
            arrays=arrays,
            signed=signed,
            stems=stems,
            title=title,
            extra=extra,
            grid_rows=grid_rows,
        )
        return {
            "title": title,
            "samples": batch,
            "extra": {str(k): str(v) for k, v in (extra or {}).items()},
            "methods": [{"name": n, "file": f"arrays/{stems[n]}.npy", "signed": signed[n]} for n in arrays],
        }

    write_folder(out_dir, LAYOUT, write, overwrite=overwrite)
    return Path(out_dir) / "index.html"


def _write_files(
    out: Path,
    *,
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray,
    shown_prob: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    signed: Mapping[str, bool],
    stems: Mapping[str, str],
    title: str,
    extra: Mapping[str, str] | None,
    grid_rows: int,
) -> None:
    """Every file of the report, into the (new, empty) folder ``out``."""
    _save_arrays(out / "arrays", images, labels, predictions, probabilities, arrays, stems)
    titles = [prediction_title(label, p, q) for label, p, q in zip(labels, predictions, shown_prob)]
    shown = _save_grid(out / "grid.png", images, arrays, signed, titles, grid_rows)
    rows = _save_maps_and_rows(out, images, arrays, signed, stems, titles)
    (out / "index.html").write_text(_page(title, extra, arrays, signed, rows, shown, len(images)), encoding="utf-8")


def _save_arrays(
    folder: Path,
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    probabilities: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    stems: Mapping[str, str],
) -> None:
    """The raw numbers: inputs, labels, predictions, probabilities and every map as given."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in zip(RESERVED, (images, labels, predictions, probabilities)):
        np.save(folder / f"{name}.npy", value)
    for name, value in arrays.items():
        np.save(folder / f"{stems[name]}.npy", value)


def _save_grid(
    path: Path,
    images: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    signed: Mapping[str, bool],
    titles: list[str],
    grid_rows: int,
) -> int:
    """``method_grid`` of the first ``grid_rows`` samples; returns how many it shows."""
    import matplotlib.pyplot as plt

    shown = max(1, min(len(images), grid_rows))
    fig = method_grid(
        images[:shown], {n: v[:shown] for n, v in arrays.items()}, signed=signed, row_titles=titles[:shown], path=path
    )
    plt.close(fig)
    return shown


def _save_maps_and_rows(
    out: Path,
    images: np.ndarray,
    arrays: Mapping[str, np.ndarray],
    signed: Mapping[str, bool],
    stems: Mapping[str, str],
    titles: list[str],
) -> list[str]:
    """One PNG per input and per map, and the HTML table row of each sample."""
    (out / "maps").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(images)):
        _save_png(out / "maps" / f"input_{i}.png", _input_rgb(images[i]))
        cells = [f'<td><img src="maps/input_{i}.png" alt="input {i}"></td>', f"<td>{html.escape(titles[i])}</td>"]
        for name, value in arrays.items():
            a = reduce_channels(value[i], signed=signed[name])
            png = f"maps/{stems[name]}_{i}.png"
            _save_png(out / png, to_rgba(a, signed=signed[name])[..., :3])
            top = float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0))  # the true max|a|, 0 for an empty map
            scale = f"±{top:.3g}" if signed[name] else f"0…{top:.3g}"
            cells.append(
                f'<td><img src="{quote(png)}" alt="{html.escape(name)}, sample {i}">'
                f"<br><small>{html.escape(scale)}</small></td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _page(
    title: str,
    extra: Mapping[str, str] | None,
    arrays: Mapping[str, np.ndarray],
    signed: Mapping[str, bool],
    rows: list[str],
    shown: int,
    batch: int,
) -> str:
    """``index.html``: title, details, legend, the grid and the table of samples."""
    header = "".join(
        f"<th>{html.escape(name)}<br><small>{'signed' if signed[name] else 'magnitude'}</small></th>" for name in arrays
    )
    details = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in (extra or {}).items())
    more = f" (first {shown} of {batch} samples)" if shown < batch else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 3px 6px; text-align: center; font-size: 12px; border-bottom: 1px solid #ddd; }}
td img {{ width: 96px; image-rendering: pixelated; }}
</style>
</head><body>
<h1>{html.escape(title)}</h1>
<ul>{details}</ul>
<p>Signed maps (diverging colormap): red supports the explained class, blue speaks against it, white is
zero; limits are ±max|a| of each map (the number under it). Magnitude maps (sequential colormap): dark
is 0, bright is the map's maximum. Raw arrays are in <code>arrays/</code> (names in
<code>manifest.json</code>).</p>
<h2>Grid{html.escape(more)}</h2>
<p><img src="grid.png" style="max-width:100%" alt="grid: one row per sample, one column per method"></p>
<h2>Samples</h2>
<table>
<tr><th>input</th><th>label / prediction</th>{header}</tr>
{chr(10).join(rows)}
</table>
</body></html>
"""
