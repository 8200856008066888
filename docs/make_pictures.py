"""Render the pictures of the documentation site (committed under docs/images/).

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python docs/make_pictures.py
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import xai_jax as xj

OUT = Path(__file__).resolve().parent / "images"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    model, variables = xj.models.load("mnist_cnn")
    images, labels = xj.data.mnist("sample")
    x = images[:6]
    maps, signed = {}, {}
    for name, method in xj.METHODS.items():
        options = dict(method.report_options)
        for option, kind in method.needs.items():
            options[option] = "conv4+relu" if kind == "layer" else jax.random.key(0)
        try:
            result = method(model, variables, x, labels[:6], **options)
        except (xj.InputError, xj.UnsupportedError):
            continue
        result = result[0] if isinstance(result, tuple) else result
        if method.resolution == "layer":
            result = xj.upsample(result, x.shape)
        maps[name], signed[name] = np.asarray(result), method.signed
    xj.viz.method_grid(
        x, maps, signed=signed, row_titles=[f"label {int(y)}" for y in labels[:6]], path=OUT / "method_grid.png", dpi=70
    )
    print(f"wrote {OUT / 'method_grid.png'} ({len(maps)} methods)")


if __name__ == "__main__":
    main()
