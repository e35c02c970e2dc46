"""Tests of the seviz app (``seviz/app``) with Streamlit's AppTest, and of ``seviz/app/launcher.py``.

Every page runs on a small store written here with planted behaviour:

* ``SE_1_1`` and ``SE_2_3``: input-dependent, class-agnostic (uniform random);
  ``SE_1_1`` is not one of the paper's blocks, so Distributions leaves it out by default;
* ``SE_3_4``: constant (one fixed per-channel vector for every image);
* ``SE_4_6``: class-specific (a per-class vector plus small noise);
* ``SE_5_2``: identity (every gate in [0.998, 1]).

The assertions are about content: block and class names, the numbers drawn
(equal to :mod:`seviz.analysis.compute`), the verdicts, the downloaded recommendation
(equal to :func:`seviz.pruning.recommend`'s JSON for the same thresholds), what an
evaluation measured (a report fixture; a real evaluation of a tiny store run by the
page's button, equal to the CLI's), and the channel explorer's ranked images.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from _app_store import BLOCKS, CLASSES, CONSTANT, IDENTITY, PAPER_PRESENT, write_app_store, write_evaluation
from _tiny_store import TINY_ATTRS, write_tiny_store

from seviz.analysis import ALL_CLASSES, compute_statistics
from seviz.app.launcher import (
    AppPathError,
    app_arguments,
    app_command,
    app_script,
    find_stores,
    parse_app_arguments,
    resolve_store,
)
from seviz.app.views.pruning import inline_code
from seviz.plots import select_channels
from seviz.pruning import Thresholds, recommend, recommend_command
from seviz.store import Store, open_store

APP = app_script()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with a store (with attributions), a second model's store, an incomplete one and bad files."""
    folder = tmp_path_factory.mktemp("stores")
    write_app_store(folder / "a.h5", attributions=True)
    write_app_store(folder / "b.h5", seed=1, blocks=BLOCKS[:-1], model="pruned_senet")
    write_app_store(folder / "partial" / "half.h5", complete=False)
    (folder / "not_hdf5.h5").write_bytes(b"this is not an HDF5 file\n")
    with h5py.File(folder / "other.h5", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    return folder


def _app(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    *stores: str,
    page: str = "Overview",
    store: str | None = None,
):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [str(APP), "--root", str(root), *(str(root / s) for s in stores)])
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["page"] = page
    at.run()
    if store is not None:
        at.sidebar.selectbox(key="store").set_value(root / store).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at) -> list:
    return [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]


def _chart_data(chart, column: str = "class"):
    """The long-format rows a Vega-Lite chart draws (its datasets that have ``column``), as a DataFrame."""
    import pandas as pd
    import pyarrow as pa

    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]
    return pd.concat([f for f in frames if column in f.columns], ignore_index=True)


def _named_data(chart, name: str):
    """The rows of a chart's dataset called ``name``, as a DataFrame."""
    import pyarrow as pa

    (found,) = [d for d in chart.proto.datasets if d.name == name]
    return pa.ipc.open_stream(found.data.data).read_all().to_pandas()


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


def _markdown(at) -> str:
    return "\n".join(str(m.value) for m in at.markdown) + "\n".join(str(c.value) for c in at.caption)


@pytest.fixture(scope="module")
def stats_a(root: Path):
    return compute_statistics(root / "a.h5")


# ---------------------------------------------------------------- launcher


def test_launcher_command_serves_app_on_loopback(root: Path) -> None:
    command = app_command([str(root / "a.h5")], root=str(root), port=8599)
    assert command[1:4] == ["-m", "seviz.app.serve", "run"]
    assert Path(command[4]) == app_script() == APP.resolve()
    assert "--server.address=127.0.0.1" in command and "--server.port=8599" in command
    assert "--server.headless=true" in command
    after = command[command.index("--") + 1 :]
    assert after == ["--root", str(root.resolve()), str((root / "a.h5").resolve())]
    config = parse_app_arguments(after)
    assert config.root == root.resolve() and config.stores == ((root / "a.h5").resolve(),)


def test_launcher_refuses_stores_outside_root(root: Path, tmp_path: Path) -> None:
    outside = write_app_store(tmp_path / "outside.h5", n=30)
    with pytest.raises(AppPathError, match="outside the app's root"):
        app_arguments([str(outside)], root)
    with pytest.raises(AppPathError, match="outside the app's root"):
        app_arguments([str(root / ".." / outside.parent.name / "outside.h5")], root)
    with pytest.raises(AppPathError, match="does not exist"):
        resolve_store(root / "missing.h5", root)
    with pytest.raises(AppPathError, match="not a folder"):
        app_arguments([], root / "a.h5")
    with pytest.raises(ValueError, match="not a TCP port"):
        app_command([], root, port=0)
    # The app itself refuses too (someone may run `streamlit run app/seviz_app.py -- ...` by hand).
    with pytest.raises(AppPathError, match="outside"):
        parse_app_arguments(["--root", str(root), str(outside)])


def test_launcher_refuses_a_symlink_leaving_the_root(root: Path, tmp_path: Path) -> None:
    outside = write_app_store(tmp_path / "secret.h5", n=30)
    link = root / "link.h5"
    link.symlink_to(outside)
    try:
        with pytest.raises(AppPathError, match="outside"):
            resolve_store(link, root)
        # Nor is it offered in the app's list of stores.
        assert root.resolve() / "link.h5" not in find_stores(root)
    finally:
        link.unlink()


def test_find_stores_lists_h5_files_under_root(root: Path) -> None:
    (root / ".hidden").mkdir(exist_ok=True)
    (root / ".hidden" / "skip.h5").write_bytes(b"")
    names = [str(p.relative_to(root.resolve())) for p in find_stores(root)]
    assert names == ["a.h5", "b.h5", "not_hdf5.h5", "other.h5", "partial/half.h5"]


def test_launcher_import_does_not_load_streamlit() -> None:
    code = "import sys, seviz.app.launcher; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- overview and errors


def test_overview_shows_provenance_classes_blocks_and_skips(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "a.h5")
    assert at.title[0].value == "Overview"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Samples": "240",
        "Classes": "3",
        "SE blocks": "5",
        "Skipped files": "1",
        "Complete": "yes",
    }
    provenance, classes, blocks, skipped = (d.value for d in at.dataframe)
    # The store has no command, finish time or versions: empty values are left out.
    assert dict(zip(provenance["field"], provenance["value"], strict=True)) == {
        "model": "planted_senet",
        "model_spec": "tests/test_app.py",
        "weights_source": "random",
        "weights_sha256": "ab" * 32,
        "precision": "fp32",
        "dtype": "float32",
        "created": "2024-01-01T00:00:00+00:00",
    }
    assert list(classes["class"]) == list(CLASSES)
    assert list(classes["samples"]) == [80, 80, 80]
    assert list(classes["id"]) == ["n00000000", "n00000001", "n00000002"]
    assert list(blocks["block"]) == [b.name for b in BLOCKS]
    assert list(blocks["channels"]) == [b.channels for b in BLOCKS]
    assert list(skipped["path"]) == ["broken.jpg"]
    assert at.json[0].value and json.loads(at.json[0].value)["crop"] == 224
    assert not at.warning and not at.error


def test_overview_shows_every_provenance_field_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_store(tmp_path / "tiny.h5")
    at = _app(tmp_path, monkeypatch, "tiny.h5")
    provenance = at.dataframe[0].value
    assert list(zip(provenance["field"], provenance["value"], strict=True)) == [
        ("model", "tiny_senet"),
        ("model_spec", "tiny_senet"),
        ("weights_source", "random"),
        ("weights_sha256", "ab" * 32),
        ("precision", "fp32"),
        ("dtype", "float16"),
        ("created", "2024-01-01T00:00:00+00:00"),
        ("finished", "2024-01-01T00:01:00+00:00"),
        ("command", "seviz record --model tiny_senet"),
        ("seviz_version", "0.1.0"),
        ("torch_version", "2"),
        ("timm_version", "1"),
        ("h5py_version", "3"),
    ]
    preprocessing, gate_error = (json.loads(j.value) for j in at.json)
    assert preprocessing == TINY_ATTRS["preprocessing"] and gate_error == TINY_ATTRS["gate_error"]


def test_incomplete_store_is_shown_with_a_warning(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "partial/half.h5")
    assert "incomplete" in at.warning[0].value and "120 committed samples" in at.warning[0].value
    assert {m.label: m.value for m in at.metric}["Complete"] == "no"
    at.sidebar.radio(key="page").set_value("Distributions").run()
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader] == PAPER_PRESENT


@pytest.mark.parametrize(
    ("name", "message"),
    [("not_hdf5.h5", "is not a readable HDF5 file"), ("other.h5", "is not a seviz store")],
)
@pytest.mark.parametrize("page", ["Overview", "Distributions", "Depth view", "Pruning", "Attribution"])
def test_a_file_that_is_not_a_store_shows_an_error_not_a_traceback(
    root: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str, page: str
) -> None:
    at = _app(root, monkeypatch, name, page=page)
    assert len(at.error) == 1
    assert message in at.error[0].value and name in at.error[0].value
    assert not at.exception


def test_app_refuses_a_store_outside_its_root(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    outside = write_app_store(tmp_path / "outside.h5", n=30)
    monkeypatch.setattr(sys, "argv", [str(APP), "--root", str(root), str(outside)])
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "outside the app's root" in at.error[0].value


def test_store_selector_offers_named_stores_first_then_the_root(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "b.h5")
    selector = at.sidebar.selectbox(key="store")
    assert [str(Path(o)) for o in selector.options][:2] == ["b.h5", "a.h5"]
    assert selector.value == (root / "b.h5").resolve()
    selector.set_value((root / "a.h5").resolve()).run()
    assert {m.label: m.value for m in at.metric}["SE blocks"] == "5"


# ---------------------------------------------------------------- distributions


def _expected_colours(classes: int) -> list[str]:
    from seviz.app.views._charts import class_colours

    return class_colours([ALL_CLASSES, *(f"c{i}" for i in range(classes))])["range"]


def test_adding_a_class_changes_only_the_data_of_figure6(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_classes").set_value(list(CLASSES)[:1]).run()
    before = [c.proto.spec for c in _charts(at)]
    at.multiselect(key="dist_classes").set_value(list(CLASSES)).run()
    # The browser updates the drawn charts in place (only their datasets changed) ...
    assert [c.proto.spec for c in _charts(at)] == before
    # ... and the new class is drawn, with its own colour.
    data = _chart_data(_charts(at)[0])
    assert list(dict.fromkeys(data["class"])) == [*CLASSES, ALL_CLASSES]


def test_distributions_default_to_the_paper_blocks_and_draw_figure6(
    root: Path, monkeypatch: pytest.MonkeyPatch, stats_a
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    assert at.multiselect(key="dist_blocks").value == PAPER_PRESENT  # SE_1_1 is not one of the paper's
    assert at.multiselect(key="dist_classes").value == list(CLASSES)
    assert [s.value for s in at.subheader] == PAPER_PRESENT
    charts = _charts(at)
    assert len(charts) == len(PAPER_PRESENT)
    for name, chart in zip(PAPER_PRESENT, charts, strict=True):
        spec = _spec(chart)
        assert spec["title"] == f"{name}: mean excitation per class"
        # Hovering shows the channel and each class's value there: the hover table's columns.
        assert spec["layer"][1]["mark"]["tooltip"] == {"content": "data"}
        hover = _named_data(chart, "channels")  # one row per channel, one value column per class
        drawn = [*CLASSES, ALL_CLASSES]
        assert list(hover.columns) == ["position", "channel", *(f"{c}: mean excitation" for c in drawn)]
        data = _chart_data(chart)
        assert list(dict.fromkeys(data["class"])) == drawn
        block = stats_a.block(name)
        for cls in drawn:
            np.testing.assert_allclose(
                hover[f"{cls}: mean excitation"], block.class_stats(cls).mean, atol=5e-5
            )
        # The legend's order and colours: "all classes" first in near-black, then the classes as chosen.
        colour = spec["layer"][0]["encoding"]["color"]
        order = data.groupby("class")["order"].min().sort_values().index.tolist()
        assert order == [ALL_CLASSES, *CLASSES]
        assert colour["scale"]["range"][: len(order)] == _expected_colours(len(CLASSES))
        for cls in [*CLASSES, ALL_CLASSES]:
            rows = data[data["class"] == cls]
            assert list(rows["channel"]) == list(range(block.channels))
            np.testing.assert_allclose(rows["mean"], block.class_stats(cls).mean)


def test_distributions_classes_channels_and_sorting(
    root: Path, monkeypatch: pytest.MonkeyPatch, stats_a
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_blocks").set_value(["SE_4_6"])
    at.multiselect(key="dist_classes").set_value(["pug", "goldfish"])
    at.checkbox(key="dist_all").uncheck()
    at.selectbox(key="dist_subset").set_value("indices").run()
    at.text_input(key="dist_channels").input("0-3, 10").run()
    unsorted = _charts(at)[0].proto.spec
    at.selectbox(key="dist_sort").set_value("mean over all classes")
    at.run()
    (chart,) = _charts(at)
    data = _chart_data(chart)
    assert list(dict.fromkeys(data["class"])) == ["pug", "goldfish"]
    mean_all = stats_a.block("SE_4_6").all.mean
    expected = sorted([0, 1, 2, 3, 10], key=lambda c: -mean_all[c])
    assert list(data[data["class"] == "pug"]["channel"]) == expected
    assert "sorted by mean over all classes, descending" in _markdown(at)
    # A sort changes the data only: the browser updates the drawn chart instead of building it anew.
    assert chart.proto.spec == unsorted

    at.radio(key="dist_view").set_value("Figure 7: mean ± std").run()
    at.selectbox(key="dist_f7_class").set_value("pug").run()
    (chart,) = _charts(at)
    data = _chart_data(chart)
    std = stats_a.block("SE_4_6").class_stats("pug").std
    pug = data[data["class"] == "pug"]
    np.testing.assert_allclose(pug["high"] - pug["mean"], std[pug["channel"]])
    pug_count = stats_a.block("SE_4_6").class_stats("pug").count
    assert f"Figure 7 of pug ({pug_count:,} images)" in _markdown(at)
    # Another class changes the data only: the browser updates the drawn chart.
    at.selectbox(key="dist_f7_class").set_value("goldfish").run()
    (other,) = _charts(at)
    assert other.proto.spec == chart.proto.spec
    drawn = _chart_data(other)
    assert set(drawn["class"]) == {"goldfish"}
    goldfish_mean = stats_a.block("SE_4_6").class_stats("goldfish").mean
    np.testing.assert_allclose(drawn["mean"], goldfish_mean[drawn["channel"]])
    # "all classes" is drawn dark, any class in the palette's first colour (from the data).
    block, order = stats_a.block("SE_4_6"), np.arange(4)
    from seviz.app.views import _charts as charts_module

    colours = {
        name: set(charts_module.figure7(block, name, order)["datasets"]["channels"]["colour"])
        for name in ("pug", ALL_CLASSES)
    }
    assert colours == {"pug": {"#4c78a8"}, ALL_CLASSES: {"#222222"}}

    at.radio(key="dist_view").set_value("Histograms").run()
    data = _chart_data(_charts(at)[0], "count")
    hist = stats_a.block("SE_4_6").class_stats("goldfish").histogram[[0, 1, 2, 3, 10]].sum(axis=0)
    edges = stats_a.block("SE_4_6").class_stats("goldfish").bin_edges
    goldfish = data[data["class"] == "goldfish"]
    # The bins drawn run from one empty bin below the first that holds a gate to one above the last.
    first = int(np.argmin(np.abs(edges - goldfish["low"].iloc[0])))
    drawn = slice(first, first + len(goldfish))
    np.testing.assert_allclose(goldfish["count"], hist[drawn])
    assert hist.sum() == hist[drawn].sum() and 0 < len(goldfish) < len(hist)
    assert np.isclose(data[data["class"] == "pug"]["share"].sum(), 1.0)
    # The step outline spans every bin drawn edge to edge: each bin's share from its low edge,
    # the last bin closed at its high edge (not cut at its centre).
    outline = _named_data(_charts(at)[0], "outline")
    outline = outline[outline["class"] == "goldfish"]
    np.testing.assert_allclose(sorted(outline["low"]), edges[first : drawn.stop + 1])
    np.testing.assert_allclose(
        outline.sort_values("low")["share"], [*goldfish["share"], goldfish["share"].iloc[-1]]
    )

    at.radio(key="dist_view").set_value("Violins").run()
    assert len(_charts(at)) == 1 and not at.exception

    at.text_input(key="dist_channels").input("ten").run()
    assert "channels 'ten'" in at.error[0].value


def test_adding_a_class_changes_only_the_data_of_the_histograms(
    root: Path, monkeypatch: pytest.MonkeyPatch, stats_a
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_blocks").set_value(["SE_4_6", "SE_5_2"])
    at.radio(key="dist_view").set_value("Histograms")
    at.multiselect(key="dist_classes").set_value(list(CLASSES)[:1]).run()
    before = [c.proto.spec for c in _charts(at)]
    at.multiselect(key="dist_classes").set_value(list(CLASSES)).run()
    assert [c.proto.spec for c in _charts(at)] == before  # the browser updates the drawn charts in place
    data = _chart_data(_charts(at)[1], "count")
    assert list(dict.fromkeys(data["class"])) == [*CLASSES, ALL_CLASSES]
    # "all classes" comes first in the colour scale (near-black), the classes after it in the order chosen.
    assert data.groupby("class")["order"].first().to_dict() == {
        ALL_CLASSES: -1,
        **{name: i for i, name in enumerate(CLASSES)},
    }
    # SE_5_2's gates sit in its top bin: the chart holds that bin and the empty one below it,
    # so the x range Vega fits to the data is those two bins.
    edges = stats_a.block("SE_5_2").all.bin_edges
    np.testing.assert_allclose(sorted(set(data["low"])), edges[-3:-1])
    # The y range reaches above the full top bin (the data's headroom), so its line is not on the frame.
    assert data["share"].max() == pytest.approx(1.0) and (data["headroom"] > 1.05).all()


def test_adding_a_class_changes_only_the_data_of_the_violins(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_blocks").set_value(["SE_4_6"])
    at.radio(key="dist_view").set_value("Violins")
    at.multiselect(key="dist_classes").set_value(list(CLASSES)[:1]).run()
    (before,) = [c.proto.spec for c in _charts(at)]
    at.multiselect(key="dist_classes").set_value(list(CLASSES)).run()
    (chart,) = _charts(at)
    assert chart.proto.spec == before
    # The axis names slot i by row i of the slots data; the violins sit on those slots.
    slots = _named_data(chart, "slots")
    assert list(slots["class"]) == [*CLASSES, ALL_CLASSES] and list(slots["slot"]) == [0, 1, 2, 3]
    bins = _named_data(chart, "bins")
    centres = (bins["left"] + bins["right"]) / 2
    slot_of = dict(zip(slots["class"], slots["slot"], strict=True))
    np.testing.assert_allclose(centres, bins["class"].map(slot_of))


def test_histograms_say_when_a_block_fills_one_or_two_bins(
    root: Path, monkeypatch: pytest.MonkeyPatch, stats_a
) -> None:
    # SE_5_2 is planted near one (every gate in the top bin); SE_4_6 spreads over [0, 1].
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_blocks").set_value(["SE_4_6", "SE_5_2"])
    at.radio(key="dist_view").set_value("Histograms").run()
    notes = [c.value for c in at.caption if "too coarse" in c.value]
    edges = stats_a.block("SE_5_2").all.bin_edges
    assert notes == [
        f"Every gate drawn lies in [{edges[-2]:.2f}, 1.00]: 1 histogram bin of width "
        f"{edges[1] - edges[0]:g}, too coarse for their shape. Figure 6 and 7 show their means "
        "and spread; the channel explorer shows one channel's quantiles per class."
    ]
    at.radio(key="dist_view").set_value("Violins").run()
    assert sum("too coarse" in c.value for c in at.caption) == 1
    at.radio(key="dist_view").set_value("Figure 6: mean per class").run()
    assert not any("too coarse" in c.value for c in at.caption)


def test_distributions_paper_style_channel_subsets(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Distributions")
    at.multiselect(key="dist_blocks").set_value(["SE_4_6"])
    at.selectbox(key="dist_subset").set_value("random N").run()
    at.number_input(key="dist_count").set_value(5).run()
    data = _chart_data(_charts(at)[0])
    expected = select_channels(24, 5, how="random")  # what `seviz plot --channels 5 --random-channels` draws
    assert list(data[data["class"] == ALL_CLASSES]["channel"]) == expected.tolist()
    at.selectbox(key="dist_subset").set_value("first N").run()
    data = _chart_data(_charts(at)[0])
    assert list(data[data["class"] == ALL_CLASSES]["channel"]) == [0, 1, 2, 3, 4]
    assert "24 channels (5 shown, channel order) · 3 classes and all" in _markdown(at)


def test_a_control_change_does_not_read_the_samples_again(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh copy of the store, so its statistics are not cached by an earlier test.
    path = write_app_store(root / "fresh.h5", seed=5)
    reads = []
    original = Store.iter_chunks

    def counting(self, name, rows=8192):
        reads.append(name)
        yield from original(self, name, rows)

    monkeypatch.setattr(Store, "iter_chunks", counting)
    try:
        at = _app(root, monkeypatch, "fresh.h5", page="Distributions")
        first = len(reads)
        assert first == len(BLOCKS)  # one pass per block
        at.multiselect(key="dist_classes").set_value(["airliner"]).run()
        at.selectbox(key="dist_sort").set_value("input dependence").run()
        at.radio(key="dist_view").set_value("Histograms").run()
        at.sidebar.radio(key="page").set_value("Depth view").run()
        assert [s.value for s in at.subheader] == [] and len(at.dataframe) == 1
        assert len(reads) == first
    finally:
        path.unlink()


# ---------------------------------------------------------------- depth view


def test_depth_view_orders_blocks_by_depth_with_specificity_and_identity(
    root: Path, monkeypatch: pytest.MonkeyPatch, stats_a
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Depth view")
    table = at.dataframe[0].value
    assert list(table["block"]) == [b.name for b in BLOCKS]
    for name in table["block"]:
        row = table[table["block"] == name].iloc[0]
        block = stats_a.block(name)
        assert row["between-class share"] == pytest.approx(block.specificity.between_share)
        assert row["centroid accuracy"] == pytest.approx(block.specificity.accuracy)
        assert row["mean |1 - s|"] == pytest.approx(block.behaviour.mean_abs_deviation)
    by_block = table.set_index("block")
    assert by_block["between-class share"].idxmax() == "SE_4_6"  # the class-specific block
    assert by_block["mean |1 - s|"].idxmin() == IDENTITY
    assert by_block.loc[IDENTITY, "share >= 0.95"] == pytest.approx(1.0)
    titles = [_spec(c)["title"] for c in _charts(at)]
    assert titles == ["Class specificity per block", "Closeness to identity per block"]
    assert list(dict.fromkeys(_chart_data(_charts(at)[0], "block")["block"])) == [b.name for b in BLOCKS]


# ---------------------------------------------------------------- pruning


@pytest.fixture
def keep_downloads(monkeypatch: pytest.MonkeyPatch) -> list:
    """The in-memory media storage of AppTest runs, kept so downloads can be read after the run."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    kept: list = []

    class Kept(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Kept)
    return kept


def _download(at, kept: list, key: str) -> str:
    (button,) = [b for b in at.download_button if b.proto.id.endswith(key)]
    content = kept[-1].get_file(button.proto.url.rsplit("/", 1)[1]).content
    return content.decode("utf-8") if isinstance(content, bytes) else content


def test_pruning_flags_the_planted_blocks_and_downloads_what_seviz_recommend_writes(
    root: Path, monkeypatch: pytest.MonkeyPatch, keep_downloads: list
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    table = at.table[0].value.set_index("block")
    assert table.loc[IDENTITY, "verdict"] == "identity"
    assert table.loc[CONSTANT, "verdict"] == "constant"
    assert set(table.drop([IDENTITY, CONSTANT])["verdict"]) == {"keep"}
    assert table.loc[IDENTITY, "mean |1 - s|"] < 0.002
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["identity"], metrics["constant"], metrics["keep"]) == ("1", "1", "3")
    assert metrics["SE params removable"] == "1,120"  # SE_3_4 (300) + SE_5_2 (820)

    expected = recommend(root / "a.h5", Thresholds())
    assert _download(at, keep_downloads, "download_json") == expected.to_json()
    assert _download(at, keep_downloads, "download_md") == expected.to_markdown()


def _shown_command(at) -> list[str]:
    (line,) = [str(m.value) for m in at.markdown if "from the command line" in str(m.value)]
    span = line.split(": ", 1)[1]
    fence = len(span) - len(span.lstrip("`"))
    return shlex.split(span[fence:-fence].strip())


def test_pruning_shows_the_command_for_the_current_thresholds(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    assert _shown_command(at) == recommend_command("a.h5", Thresholds())
    at.number_input(key="th_deviation").set_value(0.0005).run()
    assert _shown_command(at) == recommend_command("a.h5", Thresholds(identity_max_deviation=0.0005))
    # Plain Markdown, not st.code (whose highlighter costs the browser ~0.75 s a page load).
    assert not at.code


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seviz recommend a.h5", "`seviz recommend a.h5`"),
        ("a `b` c", "``a `b` c``"),
        ("x``y", "```x``y```"),
        ("`edge`", "`` `edge` ``"),
    ],
)
def test_inline_code_fences_the_text_by_more_backticks_than_it_holds(text: str, expected: str) -> None:
    assert inline_code(text) == expected


def test_pruning_thresholds_update_the_verdicts_live(
    root: Path, monkeypatch: pytest.MonkeyPatch, keep_downloads: list
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    # Demand gates closer to 1 than the planted identity block's (mean |1 - s| ~0.001): it is no
    # longer identity, but its gates barely vary, so it becomes constant.
    at.number_input(key="th_deviation").set_value(0.0005).run()
    table = at.table[0].value.set_index("block")
    assert table.loc[IDENTITY, "verdict"] == "constant"
    thresholds = Thresholds(identity_max_deviation=0.0005)
    assert (
        json.loads(_download(at, keep_downloads, "download_json"))["thresholds"]["identity_max_deviation"]
        == 0.0005
    )
    assert _download(at, keep_downloads, "download_json") == recommend(root / "a.h5", thresholds).to_json()
    # A looser constant threshold turns the class-specific block into a constant one.
    at.number_input(key="th_dependence").set_value(1.0).run()
    assert at.table[0].value.set_index("block").loc["SE_4_6", "verdict"] == "constant"
    # near_one changes the statistics; the download still equals seviz recommend's.
    at.number_input(key="th_deviation").set_value(0.02)
    at.number_input(key="th_dependence").set_value(0.001)
    at.number_input(key="th_near_one").set_value(0.999).run()
    thresholds = Thresholds(near_one=0.999)
    assert _download(at, keep_downloads, "download_json") == recommend(root / "a.h5", thresholds).to_json()
    # Half its gates are < 0.999, so it is no longer identity; they barely vary, so it is constant.
    assert at.table[0].value.set_index("block").loc[IDENTITY, "verdict"] == "constant"


# ---------------------------------------------------------------- attribution


def test_attribution_ranks_channels_from_the_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Attribution")
    assert at.selectbox(key="attr_block").value == IDENTITY  # deepest block first
    at.selectbox(key="attr_block").set_value("SE_4_6")
    at.multiselect(key="attr_classes").set_value(["airliner"])
    at.number_input(key="attr_k").set_value(5).run()
    table = at.dataframe[0].value
    with open_store(root / "a.h5") as store:
        top = store.attributions()["SE_4_6"].top_channels("airliner", 5)
    assert list(table["channel"]) == [c for c, _ in top]
    np.testing.assert_allclose(table["attribution"], [v for _, v in top], rtol=1e-6)
    assert "planted" in _markdown(at)


def test_attribution_says_when_none_are_recorded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "b.h5", page="Attribution")
    assert "No attributions are recorded in b.h5" in at.info[0].value
    assert "seviz attribute" in at.info[0].value


# ---------------------------------------------------------------- compare


def test_compare_two_stores_side_by_side(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(root, monkeypatch, "a.h5", "b.h5", page="Compare")
    at.selectbox(key="compare_other").set_value((root / "b.h5").resolve()).run()
    summary_a, _, summary_b, _, merged = (d.value for d in at.dataframe)
    assert dict(zip(summary_a["field"], summary_a["value"], strict=True))["model"] == "planted_senet"
    assert dict(zip(summary_b["field"], summary_b["value"], strict=True))["model"] == "pruned_senet"
    # The blocks as a count in the table and as a list in a caption that wraps (a cell cuts it off).
    assert dict(zip(summary_b["field"], summary_b["value"], strict=True))["SE blocks"] == str(len(BLOCKS) - 1)
    assert f"SE blocks: {', '.join(b.name for b in BLOCKS[:-1])}" in [c.value for c in at.caption]
    # Every number of the per-store and merged tables with 4 decimals (not 0.0143 beside 0 and 1).
    for frame in (at.dataframe[1], at.dataframe[3], at.dataframe[4]):
        columns = json.loads(frame.proto.columns)
        formats = {name: c["type_config"]["format"] for name, c in columns.items() if "type_config" in c}
        numbers = [name for name in frame.value.columns if frame.value[name].dtype.kind == "f"]
        assert numbers and formats == dict.fromkeys(numbers, "%.4f")
    assert "Only in a.h5: SE_5_2" in _markdown(at)
    merged = merged.set_index("block")
    assert list(merged.index) == [b.name for b in BLOCKS]
    assert merged.loc[IDENTITY, "verdict (a.h5)"] == "identity"
    assert merged.loc[CONSTANT, "verdict (b.h5)"] == "constant"
    assert merged[["verdict (b.h5)"]].loc[IDENTITY].isna().all()
    (chart,) = _charts(at)
    assert set(_chart_data(chart, "store")["store"]) == {"a.h5", "b.h5"}
    assert _spec(chart)["title"] == "SE_4_6: mean excitation over all classes"  # deepest common block


def test_compare_shows_an_error_for_a_broken_second_store(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Compare")
    at.selectbox(key="compare_other").set_value((root / "not_hdf5.h5").resolve()).run()
    assert not at.exception
    assert "not_hdf5.h5" in at.error[0].value


def test_the_shown_command_writes_the_downloaded_files(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_downloads: list
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    at.number_input(key="th_deviation").set_value(0.0005)
    at.number_input(key="th_near_one").set_value(0.999)
    at.number_input(key="th_dependence").set_value(0.25).run()
    words = _shown_command(at)
    assert words[:3] == ["seviz", "recommend", "a.h5"] and "--identity-max-deviation" in words
    assert words[words.index("--near-one") + 1] == "0.999"
    out = tmp_path / "rec.json"
    subprocess.run(
        [sys.executable, "-m", "seviz", *words[1:], "--out", str(out)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    assert out.read_text(encoding="utf-8") == _download(at, keep_downloads, "download_json")
    assert out.with_suffix(".md").read_text(encoding="utf-8") == _download(at, keep_downloads, "download_md")
    assert json.loads(out.read_text())["thresholds"]["constant_max_dependence"] == 0.25
    assert json.loads(out.read_text())["thresholds"]["near_one"] == 0.999


def test_markdown_download_is_readable_text(
    root: Path, monkeypatch: pytest.MonkeyPatch, keep_downloads
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    text = _download(at, keep_downloads, "download_md")
    assert text.startswith("# SE block recommendation: planted_senet")
    assert f"| {IDENTITY} | `layer4.1.se` | **identity** |" in text


# ---------------------------------------------------------------- verification


@pytest.fixture
def evaluated_root(tmp_path: Path) -> Path:
    """A store whose default verdicts edit SE_3_4 and SE_5_2, with a report of those edits beside it."""
    write_app_store(tmp_path / "a.h5")
    write_evaluation(tmp_path / "evaluation.json")
    other = json.loads((tmp_path / "evaluation.json").read_text())
    other["edits"] = other["edits"][1:]  # only SE_5_2 removed: another experiment
    other["per_block"] = None
    (tmp_path / "stage5.json").write_text(json.dumps(other))
    (tmp_path / "notes.json").write_text('{"not": "an evaluation"}')
    return tmp_path


def test_pruning_shows_what_the_evaluation_of_these_edits_measured(
    evaluated_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(evaluated_root, monkeypatch, "a.h5", page="Pruning")
    # The edits of the current verdicts, and the report that measured exactly them chosen first.
    edits = next(t.value for t in at.table if "edit" in t.value.columns)
    assert dict(zip(edits["block"], edits["verdict"], strict=True)) == {
        CONSTANT: "constant",
        IDENTITY: "identity",
    }
    assert at.selectbox(key="eval_file").options == [
        "evaluation.json (these edits)",
        "stage5.json (other edits)",
    ]
    assert "exactly the edits of these verdicts" in at.success[0].value
    metrics = {m.label: (m.value, m.proto.delta) for m in at.metric}
    assert metrics["top-1 (edited)"] == ("79.00%", "-1.00 pt vs 80.00%")
    assert metrics["top-5 (edited)"][0] == "95.00%"
    assert metrics["top-1 agreement"][0] == "97.00%" and metrics["mean KL"][0] == "0.0123"  # nats
    assert metrics["params"] == ("8,880", "-11.20% vs 10,000")
    assert metrics["MFLOPs / image"] == ("1.99", "-0.30% vs 2.00")
    # Per-block deltas, in points, beside each block's current verdict.
    (chart,) = _charts(at)
    deltas = _chart_data(chart, "delta").set_index("block")
    assert deltas.loc["SE_4_6", "delta"] == pytest.approx(-12.0)
    assert deltas.loc[IDENTITY, "verdict"] == "identity" and deltas.loc["SE_4_6", "verdict"] == "keep"
    # Another report says it measured other edits.
    at.selectbox(key="eval_file").set_value("stage5.json").run()
    assert "other edits than these verdicts make (2 blocks): SE_5_2 (identity)" in at.warning[0].value
    assert not _charts(at)
    # With looser thresholds the verdicts edit more blocks, so no report matches any more.
    at.number_input(key="th_dependence").set_value(1.0).run()
    assert at.selectbox(key="eval_file").options == [
        "evaluation.json (other edits)",
        "stage5.json (other edits)",
    ]
    assert not at.exception


def test_pruning_without_an_evaluation_says_how_to_make_one(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(root, monkeypatch, "a.h5", page="Pruning")
    assert any("No evaluation beside a.h5 yet" in i.value and "seviz evaluate" in i.value for i in at.info)


@pytest.fixture(scope="module")
def tiny_recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store of the shipped demo model on two sample images of two classes, and their folder."""
    from seviz.models.demo_network import sample_dir
    from seviz.recording import record

    folder = tmp_path_factory.mktemp("tiny")
    images = folder / "images"
    for name in ("cat", "dog"):
        (images / name).mkdir(parents=True)
        for source in sorted((sample_dir() / name).glob("*.jpg"))[:2]:
            (images / name / source.name).write_bytes(source.read_bytes())
    store = folder / "stores" / "tiny.h5"
    store.parent.mkdir()
    record("se_resnet50_cifar10", images, store, batch_size=4, workers=0, progress=False)
    return store, images


def test_the_evaluate_button_runs_the_librarys_evaluation_in_the_background(
    tiny_recorded: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import time

    from seviz.cli import main as cli
    from seviz.pruning import read_evaluation

    store, images = tiny_recorded
    at = _app(store.parent, monkeypatch, "tiny.h5", page="Pruning")
    # The image folder defaults to the one the store's images came from.
    assert Path(at.text_input(key="eval_data").value) == images.resolve()
    at.number_input(key="eval_per_class").set_value(1)
    at.button(key="eval_start").click().run()
    assert not at.exception
    deadline = time.monotonic() + 300
    while not any("Wrote" in s.value for s in at.success) and time.monotonic() < deadline:
        assert not at.error, at.error[0].value
        time.sleep(0.5)
        at.run()
    assert any("Wrote" in s.value for s in at.success), "the evaluation did not finish"
    (written,) = store.parent.glob("tiny.evaluation-*.json")
    report = read_evaluation(written)
    rec = recommend(store)
    assert report.edited_blocks == {b.name: b.verdict for b in rec.blocks if b.verdict != "keep"}
    assert report.images == 2 and report.per_block is not None and len(report.per_block) == 16
    # The page now shows that report, as measured for exactly these edits.
    assert at.selectbox(key="eval_file").value == written.name
    assert any("exactly the edits of these verdicts" in s.value for s in at.success)
    # The same JSON as `seviz evaluate --json` on the same edits and images (latency aside).
    (tmp_path / "rec.json").write_text(rec.to_json())
    out = tmp_path / "cli.json"
    argv = ["evaluate", "--model", "se_resnet50_cifar10", "--weights", "pretrained", "--recommendation"]
    argv += [str(tmp_path / "rec.json"), "--data", str(images), "--images-per-class", "1", "--per-block"]
    assert cli([*argv, "--json", str(out), "--no-progress"]) == 0
    ours, theirs = json.loads(written.read_text()), json.loads(out.read_text())
    assert ours["preprocessing"]["config"] == theirs["preprocessing"]["config"]
    assert ours["preprocessing"]["config"]["input_size"] == [3, 32, 32]
    for data in (ours, theirs):
        del data["latency"]
        data["original"].pop("latency_ms")
        data["edited"].pop("latency_ms")
        # Both use the store's preprocessing; only the words naming where it came from differ.
        assert set(data.pop("preprocessing")["source"].values()) == {
            f"store:{store}" if data is ours else f"store:tiny.h5 (via {tmp_path / 'rec.json'})"
        }
    assert ours == theirs


# ---------------------------------------------------------------- channel explorer

PLANTED_HIGH, PLANTED_LOW, PLANTED_CHANNEL = 57, 123, 5


@pytest.fixture(scope="module")
def explorer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explorer")
    write_app_store(
        folder / "a.h5", images=True, planted=("SE_2_3", PLANTED_CHANNEL, PLANTED_HIGH, PLANTED_LOW)
    )
    (folder / f"img{PLANTED_LOW}.png").unlink()  # the lowest one's file is gone
    return folder


def test_channel_explorer_shows_the_planted_top_and_bottom_images(
    explorer_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(explorer_root, monkeypatch, "a.h5", page="Channel explorer")
    assert at.selectbox(key="chan_block").value == IDENTITY  # the deepest paper block
    at.selectbox(key="chan_block").set_value("SE_2_3").run()
    at.number_input(key="chan_channel_SE_2_3").set_value(PLANTED_CHANNEL).run()
    table = at.dataframe[0].value
    # Gates shown with 4 decimals, as in the captions (near-1 gates of 0.998 do not read "1").
    assert json.loads(at.dataframe[0].proto.columns)["gate"]["type_config"]["format"] == "%.4f"
    with open_store(explorer_root / "a.h5") as store:
        classes, gates = store.class_names, store.gates("SE_2_3")[:, PLANTED_CHANNEL]
    top = table[table["side"] == "highest"].iloc[0]
    bottom = table[table["side"] == "lowest"].iloc[0]
    assert (top["sample"], top["gate"], top["class"]) == (PLANTED_HIGH, 1.0, classes[PLANTED_HIGH])
    assert (bottom["sample"], bottom["gate"]) == (PLANTED_LOW, 0.0)
    highest = table[table["side"] == "highest"]
    assert list(highest["sample"]) == list(np.argsort(-gates, kind="stable")[:8])
    # Thumbnails from the stored paths; the one whose file is gone is shown as missing.
    assert top["found"] and not bottom["found"] and top["path"] == f"img{PLANTED_HIGH}.png"
    shown = [caption for image in at.get("image") for caption in image.captions]
    assert len(shown) == 15  # 8 highest, 8 lowest, one of them missing
    assert shown[0] == f"{classes[PLANTED_HIGH]} · 1.0000 · #{PLANTED_HIGH}"
    captions = [c.value for c in at.caption]
    assert any(f"#{PLANTED_LOW}" in c and f"missing: img{PLANTED_LOW}.png" in c for c in captions)
    assert "1 of the images are not where the store says" in at.warning[0].value


def test_channel_explorer_per_class_distribution(
    explorer_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(explorer_root, monkeypatch, "a.h5", page="Channel explorer")
    at.selectbox(key="chan_block").set_value("SE_4_6").run()
    at.number_input(key="chan_channel_SE_4_6").set_value(3).run()
    block = compute_statistics(explorer_root / "a.h5").block("SE_4_6")
    means = {name: block.class_stats(name).mean[3] for name in CLASSES}
    # The classes that excite the channel most come first, then all classes, as boxes of its quantiles.
    (chart,) = _charts(at)
    data = _chart_data(chart)
    assert list(data["class"]) == [*sorted(CLASSES, key=lambda c: -means[c]), ALL_CLASSES]
    rows = data.set_index("class")
    for name in CLASSES:
        np.testing.assert_allclose(rows.loc[name, "mean"], means[name])
        np.testing.assert_allclose(
            rows.loc[name, ["q05", "q25", "q50", "q75", "q95"]].to_numpy(dtype=float),
            block.class_stats(name).quantiles[:, 3],
            atol=1e-6,
        )
    at.multiselect(key="chan_classes_SE_4_6_3").set_value(["pug"]).run()
    assert list(_chart_data(_charts(at)[0])["class"]) == ["pug", ALL_CLASSES]


def test_the_image_folder_is_guessed_from_runs_of_paths_not_every_path() -> None:
    from seviz.app.views._data import guess_image_folder

    class Paths:
        """5,000 samples recorded class by class from /data/<class>/ (what the guess reads is kept)."""

        class_names = np.repeat(["cat", "dog", "ship"], [2000, 2000, 1000])

        def __init__(self) -> None:
            self.asked: list[slice] = []

        def __len__(self) -> int:
            return len(self.class_names)

        def paths_at(self, rows: slice) -> np.ndarray:
            self.asked.append(rows)
            index = np.arange(len(self))[rows]
            return np.asarray([f"/data/{self.class_names[i]}/{i:05d}.jpg" for i in index])

    store = Paths()
    assert guess_image_folder(store) == "/data"  # type: ignore[arg-type]
    # Contiguous runs only (a strided read decompresses every chunk of the path column), 512 rows in all.
    assert all(r.step in (None, 1) for r in store.asked)
    assert sum(r.stop - r.start for r in store.asked) <= 512 and len(store.asked) == 16
