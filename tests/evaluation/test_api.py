"""The package as a user meets it: composition with jax.jit, results independent of chunking, presets
that name real options, the registry's uniform call, the runner's table and plots, the CLI, and a
batch sharded over a 4-device mesh giving the numbers of one device."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_jax as xj
from xai_jax import evaluation as xe

REPO = Path(__file__).resolve().parents[2]


def linear(variables, x):
    z = x.reshape(x.shape[0], -1) @ variables["w"]
    return jnp.stack([z, -z], axis=1)


V = {"w": np.linspace(-1, 1, 36, dtype=np.float32)}
X = np.random.default_rng(0).random((4, 6, 6, 1)).astype(np.float32)
A = np.random.default_rng(1).standard_normal(X.shape).astype(np.float32)


def test_metrics_compose_with_a_callers_jit_and_do_not_depend_on_the_chunk_size():
    kw = {"baseline": "zero", "score": "logit", "features_per_step": 4}
    eager = xe.auc(xe.pixel_flipping(linear, V, X, 0, A, batch_size=2, **kw))
    jitted = jax.jit(lambda x, a: xe.auc(xe.pixel_flipping(linear, V, x, 0, a, batch_size=10, **kw)))(X, A)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-6)
    key = jax.random.key(0)
    corr = [
        xe.faithfulness_correlation(linear, V, X, 0, A, key=key, runs=6, subset_size=5, batch_size=b) for b in (1, 6)
    ]
    np.testing.assert_allclose(np.asarray(corr[0]), np.asarray(corr[1]), rtol=1e-6)


def test_every_preset_names_options_its_metric_has():
    for library in ("quantus", "captum", "xai_jax"):
        for metric in xe.PRESETS.get(library) or xe.METRICS:
            options = xe.preset(library, metric)
            params = inspect.signature(xe.METRICS[metric].fn).parameters
            unknown = set(options) - set(params)
            assert not unknown, f"{library}/{metric}: {unknown}"
    assert set(xe.QUANTUS) <= set(xe.METRICS)
    assert xe.preset("captum", "max_sensitivity")["radius"] == 0.02
    assert xe.preset("quantus", "max_sensitivity")["radius"] == 0.2


def test_the_registry_calls_every_kind_of_metric_the_same_way():
    key = jax.random.key(0)
    masks = np.zeros((4, 6, 6), bool)
    masks[:, 1:3] = True
    for name in ("pixel_flipping", "max_sensitivity", "sparseness", "pointing_game"):
        info = xe.METRICS[name]
        options = (
            {"features_per_step": 9}
            if name == "pixel_flipping"
            else {"samples": 2}
            if name == "max_sensitivity"
            else {}
        )
        result = info(linear, V, X, 0, attributions=A, method=xj.gradient, masks=masks, key=key, **options)
        assert np.asarray(info.summary(result)).shape == (4,), name


def test_the_runner_writes_a_table_and_plots(tmp_path):
    methods = {"gradient": xj.gradient, "input_x_gradient": xj.input_x_gradient}
    report = xe.evaluate(
        linear,
        V,
        X,
        np.zeros(4, np.int32),
        methods=methods,
        metrics=["pixel_flipping", "mprt", "sparseness", "pointing_game"],
        options={"pixel_flipping": {"features_per_step": 9, "baseline": "zero"}},
        key=jax.random.key(0),
        batch_size=2,
        progress=False,
        out_dir=tmp_path,
    )
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + 2 * 3  # header + methods × metrics
    table = (tmp_path / "results.md").read_text()
    assert "| gradient |" in table and "pointing_game" in table and "skipped (no masks given)" in table
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "curves_pixel_flipping.png",
        "mprt_cascade.png",
        "mprt_maps.png",
    }
    assert report.scores[("gradient", "pixel_flipping")].shape == (4,)
    assert report.cascades["mprt"]["gradient"].scores.shape == (1, 4)  # one parameter layer, 4 images


@pytest.mark.slow
def test_the_cli_evaluates_the_shipped_cnn(tmp_path):
    from xai_jax import cli

    code = cli.main(
        [
            "evaluate",
            "--count",
            "4",
            "--methods",
            "gradient,saliency",
            "--metrics",
            "pixel_flipping,mprt,sparseness",
            "--set",
            "pixel_flipping.features_per_step=98",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3 and rows[1].startswith("gradient,pixel_flipping,AUC (MoRF)")
    assert (tmp_path / "plots" / "mprt_cascade.png").stat().st_size > 0


SHARDING_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import xai_jax as xj
    from xai_jax import evaluation as xe
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    assert jax.device_count() == 4, jax.devices()
    def linear(variables, x):
        z = jnp.tanh(x.reshape(x.shape[0], -1) @ variables["w"])
        return jnp.stack([z, -z], axis=1)
    v = {"w": jnp.linspace(-1.0, 1.0, 36)}
    x = np.random.default_rng(0).random((8, 6, 6, 1)).astype(np.float32)
    a = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    y = np.zeros(8, np.int32)
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    shard = lambda t: jax.device_put(t, NamedSharding(mesh, PartitionSpec("batch")))
    key = jax.random.key(0)
    one = [xe.pixel_flipping(linear, v, x, y, a, features_per_step=6).scores,
           xe.max_sensitivity(linear, v, x, y, xj.gradient, key=key, samples=3)]
    many = [xe.pixel_flipping(linear, v, shard(x), shard(y), shard(a), features_per_step=6).scores,
            xe.max_sensitivity(linear, v, shard(x), shard(y), xj.gradient, key=key, samples=3)]
    assert len(many[0].sharding.device_set) == 4 or len(many[1].sharding.device_set) == 4
    for u, w in zip(one, many):
        np.testing.assert_allclose(np.asarray(u), np.asarray(w), rtol=1e-6, atol=1e-7)
    report = xe.evaluate(linear, v, x, y, methods={"gradient": xj.gradient}, metrics=["faithfulness_correlation"],
                         options={"faithfulness_correlation": {"runs": 4, "subset_size": 6}}, key=key, batch_size=8,
                         progress=False, mesh=mesh)
    plain = xe.evaluate(linear, v, x, y, methods={"gradient": xj.gradient}, metrics=["faithfulness_correlation"],
                        options={"faithfulness_correlation": {"runs": 4, "subset_size": 6}}, key=key, batch_size=8,
                        progress=False)
    np.testing.assert_allclose(report.scores[("gradient", "faithfulness_correlation")],
                               plain.scores[("gradient", "faithfulness_correlation")], rtol=1e-6)
    print("SHARDED-OK")
""")


@pytest.mark.slow
def test_a_batch_sharded_over_four_devices_gives_the_numbers_of_one_device():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4 --xla_cpu_experimental_ynn_fusion_type=",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SHARDED-OK" in done.stdout


def _evaluate_into(out, metrics, **kw):
    return xe.evaluate(
        linear,
        V,
        X,
        np.zeros(4, np.int32),
        methods={"gradient": xj.gradient},
        metrics=metrics,
        options={"pixel_flipping": {"features_per_step": 9, "baseline": "zero"}} if "pixel_flipping" in metrics else {},
        key=jax.random.key(0),
        batch_size=4,
        progress=False,
        out_dir=out,
        **kw,
    )


def test_an_output_folder_holding_other_files_is_refused_before_any_work_and_an_earlier_evaluation_replaced(tmp_path):
    from xai_jax.core.errors import OutputError

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.txt"):
        _evaluate_into(tmp_path, ["sparseness"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    _evaluate_into(tmp_path, ["sparseness"], overwrite=True)
    assert notes.read_text() == "mine" and (tmp_path / "results.csv").exists()

    fresh = tmp_path / "evaluation"
    _evaluate_into(fresh, ["pixel_flipping", "sparseness"])
    assert (fresh / "plots" / "curves_pixel_flipping.png").exists()
    _evaluate_into(fresh, ["sparseness"])  # an earlier evaluation is replaced as a whole: no stale plot stays
    assert not (fresh / "plots").exists() and "pixel_flipping" not in (fresh / "results.csv").read_text()


def test_the_cli_refuses_bad_settings_with_the_closest_names_before_any_work(tmp_path, capsys):
    from xai_jax import cli

    out = tmp_path / "out"
    bad = {
        ("--set", "pixel_flipping.featres_per_step=3"): "features_per_step",
        ("--metrics", "pixel_fliping"): "pixel_flipping",
        ("--set", "road.noise=0.1", "--metrics", "sparseness"): "not among the metrics",
        ("--set", "road"): "METRIC.OPTION=VALUE",
        ("--methods", "gradiant"): "gradient",
    }
    for argv, expected in bad.items():
        assert cli.main(["evaluate", "--count", "2", "--quiet", "--out", str(out), *argv]) == 2, argv
        assert expected in capsys.readouterr().err, argv
    for argv in (["--count", "0"], ["--target", "abc"], ["--batch-size", "-1"]):
        assert cli.main(["evaluate", "--quiet", "--out", str(out), *argv]) == 2, argv
    assert not out.exists()
