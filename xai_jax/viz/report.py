"""The HTML report: per sample, the input, its label, the prediction with its probability, and each
method's heatmap; plus the grid PNG and the raw arrays (``.npy``) for anyone who wants the numbers."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .grid import method_grid, show_input
from .heatmap import magnitude_heatmap, signed_heatmap


def safe_name(name: str) -> str:
    """A file name for a method name (keeps letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "map"


def _panel(path: Path, draw: Any) -> None:
    fig, ax = plt.subplots(figsize=(1.6, 1.6))
    draw(ax)
    fig.savefig(path, dpi=80, bbox_inches="tight", pad_inches=0.02)
    plt.close(fig)


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
) -> Path:
    """Write ``out_dir/index.html``, ``grid.png``, ``maps/*.png`` and ``arrays/*.npy``; return the
    path of ``index.html``.  ``labels`` of -1 are shown as unknown."""
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "arrays").mkdir(parents=True, exist_ok=True)
    images = np.asarray(images)
    labels, predictions, probabilities = (np.asarray(a) for a in (labels, predictions, probabilities))
    signed = dict(signed or {})
    files = {name: safe_name(name) for name in maps}
    if len(set(files.values())) != len(files):
        files = {name: f"{i:02d}_{safe}" for i, (name, safe) in enumerate(files.items())}
    for name, value in [("inputs", images), ("labels", labels), ("predictions", predictions), ("probabilities", probabilities)]:
        np.save(out / "arrays" / f"{name}.npy", value)
    for name, value in maps.items():
        np.save(out / "arrays" / f"{files[name]}.npy", np.asarray(value))
    titles = [f"label {int(l) if l >= 0 else '?'} / pred {int(p)} ({100 * float(q):.1f}%)" for l, p, q in zip(labels, predictions, probabilities)]
    fig = method_grid(images, maps, signed=signed, row_titles=titles, path=out / "grid.png")
    plt.close(fig)

    header = "".join(f"<th>{html.escape(name)}</th>" for name in maps)
    rows = []
    for i in range(len(images)):
        _panel(out / "maps" / f"input_{i}.png", lambda ax, i=i: show_input(images[i], ax))
        cells = [f'<td><img src="maps/input_{i}.png" alt="input {i}"></td>', f"<td>{html.escape(titles[i])}</td>"]
        for name, value in maps.items():
            draw = signed_heatmap if signed.get(name, True) else magnitude_heatmap
            png = f"maps/{files[name]}_{i}.png"
            _panel(out / png, lambda ax, v=np.asarray(value)[i], d=draw: d(v, ax))
            cells.append(f'<td><img src="{png}" alt="{html.escape(name)} {i}"></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    details = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in (extra or {}).items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 6px;text-align:center;font-size:12px}} img{{width:96px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Signed maps: red supports the explained class, blue speaks against it (limits ±max|a| per map).
Magnitude maps: dark to bright. Raw arrays are in <code>arrays/</code>.</p>
<ul>{details}</ul>
<p><img src="grid.png" style="width:auto;max-width:100%" alt="grid of every method"></p>
<table><tr><th>input</th><th>label / prediction</th>{header}</tr>
{''.join(rows)}
</table></body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
