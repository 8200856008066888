"""The HTML report: files it references exist, arrays round-trip, text is escaped, names are safe."""

import json
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

import xai_jax as xj
from xai_jax.core.errors import OutputError
from xai_jax.viz import report as report_module


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    maps = {
        "<grad> & co": rng.normal(size=(3, 28, 28, 1)).astype(np.float32),
        "cam": rng.uniform(size=(3, 7, 7)).astype(np.float32),
        "input × gradient": np.zeros((3, 28, 28), np.float32),
        "labels": rng.normal(size=(3, 28, 28)),  # would overwrite labels.npy without care
        "a/b": rng.normal(size=(3, 28, 28)),
        "a b": rng.normal(size=(3, 28, 28)),  # same safe name as "a/b"
    }
    probabilities = rng.dirichlet(np.ones(10), size=3)
    predictions = probabilities.argmax(axis=1)
    index = xj.viz.write_report(
        tmp_path_factory.mktemp("report") / "r",
        images=images,
        labels=np.array([3, -1, 4]),
        predictions=predictions,
        probabilities=probabilities,
        maps=maps,
        signed={"cam": False},
        title='t <1> & "q"',
        extra={"model": "<m>", "note": "a&b"},
    )
    return index, images, maps, predictions, probabilities


def test_report_files_exist_and_are_referenced(report):
    index, *_ = report
    assert index.name == "index.html" and index.exists()
    page = index.read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]+)"', page)
    assert "grid.png" in sources and len(sources) == 1 + 3 * (1 + 6)
    for src in sources:
        assert (index.parent / src).is_file(), src
        assert plt.imread(index.parent / src).ndim == 3
    assert not [p for p in (index.parent / "maps").iterdir() if not re.fullmatch(r"[A-Za-z0-9_-]+\.png", p.name)]


def test_report_text_is_escaped(report):
    index, _, _, predictions, probabilities = report
    page = index.read_text(encoding="utf-8")
    assert "&lt;grad&gt; &amp; co" in page and "<grad>" not in page
    assert "&lt;m&gt;" in page and "a&amp;b" in page and "<title>t &lt;1&gt; &amp; &quot;q&quot;</title>" in page
    assert "input × gradient" in page
    p1 = 100 * probabilities[1, predictions[1]]
    assert f"label ? / pred {predictions[1]} ({p1:.1f}%)" in page
    assert f"label 3 / pred {predictions[0]}" in page


def test_report_arrays_round_trip(report):
    index, images, maps, predictions, probabilities = report
    arrays = index.parent / "arrays"
    manifest = json.loads((index.parent / "manifest.json").read_text(encoding="utf-8"))
    files = {m["name"]: m["file"] for m in manifest["methods"]}
    assert len(set(files.values())) == len(maps)
    assert files["labels"] != "arrays/labels.npy" and files["<grad> & co"] == "arrays/grad_co.npy"
    for name, value in maps.items():
        loaded = np.load(index.parent / files[name])
        assert loaded.dtype == value.dtype
        np.testing.assert_array_equal(loaded, value)
    np.testing.assert_array_equal(np.load(arrays / "inputs.npy"), images)
    np.testing.assert_array_equal(np.load(arrays / "labels.npy"), [3, -1, 4])
    np.testing.assert_array_equal(np.load(arrays / "predictions.npy"), predictions)
    np.testing.assert_array_equal(np.load(arrays / "probabilities.npy"), probabilities)
    assert {m["name"]: m["signed"] for m in manifest["methods"]}["cam"] is False


def test_report_heatmap_pixels_follow_the_convention(report):
    index, _, maps, *_ = report
    manifest = json.loads((index.parent / "manifest.json").read_text(encoding="utf-8"))
    stems = {m["name"]: m["file"][len("arrays/") : -len(".npy")] for m in manifest["methods"]}
    zero = plt.imread(index.parent / "maps" / f"{stems['input × gradient']}_0.png")
    np.testing.assert_allclose(
        zero[..., :3], np.broadcast_to(matplotlib.colormaps["bwr"](0.5)[:3], (28, 28, 3)), atol=1 / 255
    )
    cam = plt.imread(index.parent / "maps" / f"{stems['cam']}_2.png")
    np.testing.assert_allclose(cam[..., :3], xj.viz.to_rgba(maps["cam"][2], signed=False)[..., :3], atol=1 / 255)


def test_safe_names():
    assert xj.viz.safe_name("<grad> & co") == "grad_co"
    assert xj.viz.safe_name("../../etc/passwd") == "etc_passwd"
    assert xj.viz.safe_name("input × gradient") == "input_gradient"
    assert xj.viz.safe_name("???") == "map"


def test_report_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(xj.InputError, match="predictions"):
        xj.viz.write_report(
            tmp_path,
            images=np.zeros((2, 8, 8)),
            labels=None,
            predictions=np.zeros(3, int),
            probabilities=np.ones(2),
            maps={},
        )
    with pytest.raises(xj.InputError, match="map 'a'"):
        xj.viz.write_report(
            tmp_path,
            images=np.zeros((2, 8, 8)),
            labels=None,
            predictions=np.zeros(2, int),
            probabilities=np.ones(2),
            maps={"a": np.zeros((1, 8, 8))},
        )


# ------------------------------------------------------------------------------- output folder


def _small_report(out, maps=("a",), count=2, **kwargs):
    rng = np.random.default_rng(1)
    return xj.viz.write_report(
        out,
        images=rng.uniform(size=(count, 8, 8)),
        labels=None,
        predictions=np.zeros(count, int),
        probabilities=np.ones(count),
        maps={m: rng.normal(size=(count, 8, 8)) for m in maps},
        **kwargs,
    )


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_refuses_a_folder_that_is_not_a_report(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "manifest.json").write_text('{"models": {}}')  # another tool's file of the same name
    (out / "data.csv").write_text("1,2")
    before = _files(out)
    with pytest.raises(OutputError, match="not an xai_jax report.*data.csv"):
        _small_report(out)
    with pytest.raises(OutputError, match="manifest.json.*never deleted"):
        _small_report(out, overwrite=True)
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folder left beside it
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        _small_report(file)
    with pytest.raises(OutputError, match="is a file"):
        _small_report(file / "sub")
    assert isinstance(OutputError("x"), xj.XaiJaxError)


def test_report_replaces_an_earlier_report_as_a_whole(tmp_path):
    out = tmp_path / "r"
    _small_report(out, maps=("a", "b"), count=3)
    _small_report(out, maps=("c",), count=1)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(_files(out)) == set(manifest["files"])  # none of the first report's files stayed
    assert {m["name"] for m in manifest["methods"]} == {"c"} and not (out / "maps" / "input_2.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_report_overwrite_keeps_files_it_did_not_write(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _small_report(out, maps=("a", "b"), overwrite=True)
    with pytest.raises(OutputError, match="notes.txt"):
        _small_report(out, maps=("c",))
    _small_report(out, maps=("c",), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "arrays" / "a.npy").exists() and (out / "arrays" / "c.npy").exists()
    (out / "maps" / "mine.png").write_bytes(b"png")  # inside the report's own folder: never deleted
    with pytest.raises(OutputError, match="maps/mine.png"):
        _small_report(out, overwrite=True)


def test_report_failure_keeps_the_earlier_report(tmp_path, monkeypatch):
    out = tmp_path / "r"
    _small_report(out)
    before = _files(out)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "method_grid", broken)
    with pytest.raises(OutputError, match="No space left"):
        _small_report(out, maps=("b",))
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_report_of_an_older_version_is_replaced(tmp_path):
    """Reports written before the format marker (no "format"/"files" keys) are recognised from their
    manifest, so the default folder of an earlier install does not block `xai-jax explain`."""
    out = tmp_path / "r"
    _small_report(out, maps=("a", "b"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    del manifest["format"], manifest["files"]
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    _small_report(out, maps=("c",))
    assert not (out / "arrays" / "a.npy").exists() and (out / "arrays" / "c.npy").exists()


def test_tampered_manifest_cannot_reach_other_files(tmp_path):
    out = tmp_path / "r"
    _small_report(out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] += ["../victim.txt", "notes.txt"]
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "victim.txt").write_text("keep")
    (out / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="notes.txt"):
        _small_report(out)
    _small_report(out, overwrite=True)
    assert (tmp_path / "victim.txt").read_text() == "keep" and (out / "notes.txt").read_text() == "keep"
