"""Per-call overhead of every registered method: an eager call vs the same call inside the caller's ``jax.jit``.

Run:  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/bench_overhead.py [--model NAME]

An eager call of ``xj.<method>`` checks its inputs and options (shapes, targets, NaN, layers, the
composite against the model) before it runs the compiled program; under a caller's ``jax.jit`` those
checks ran once, at tracing.  The difference of the two medians is what the checks cost per call:
the ms a user pays for calling a method in a Python loop instead of jitting it.  Batch 2 of the
shipped model, the options ``xai-jax explain`` uses (methods with feature masks get the mask of
their default features built once, outside, since a mask is built from a concrete batch; XRAI's
segmentation likewise needs a concrete image and is timed eagerly only).  A check that re-traces
the model shows up as tens of ms here.
"""

from __future__ import annotations

import argparse

from common import table, timeit  # also puts the repo on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: every registered method)")
    args = parser.parse_args()

    import jax
    import numpy as np

    import xai_jax as xj
    from xai_jax.cli import _default_layer, _method_options

    model, variables = xj.models.load(args.model)
    x = jax.numpy.asarray(xj.data.mnist("sample")[0][: args.batch], np.float32)
    layer = _default_layer(model, variables, x)
    names = args.methods.split(",") if args.methods else sorted(xj.METHODS)
    rows = []
    for name in names:
        info = xj.METHODS[name]
        method = getattr(xj, name)
        try:
            options = _method_options(info, layer, 0)
            if "features" in info.options:
                options["features"] = xj.perturbation.feature_mask(x, options.get("features", "auto"))
            eager_ms = timeit(lambda: method(model, variables, x, **options), repeats=args.repeats)[1]
        except Exception as err:  # a method that does not apply to this model: say so, go on
            rows.append((name, "—", "—", f"not run: {type(err).__name__}: {str(err)[:60]}"))
            continue
        try:
            jitted_fn = jax.jit(lambda v, x: method(model, v, x, **options))
            jitted_ms = timeit(lambda: jitted_fn(variables, x), repeats=args.repeats)[1]
        except Exception as err:
            rows.append((name, f"{eager_ms:.2f}", "—", f"not jittable: {type(err).__name__}"))
            continue
        rows.append((name, f"{eager_ms:.2f}", f"{jitted_ms:.2f}", f"{eager_ms - jitted_ms:+.2f}"))
        print(table(rows[-1:], HEADER).splitlines()[-1], flush=True)
    print(f"\n{args.model}, batch {args.batch}, jax {jax.__version__}, medians of {args.repeats}\n")
    print(table(rows, HEADER))


HEADER = ("method", "eager ms", "under jax.jit ms", "overhead ms")

if __name__ == "__main__":
    main()
