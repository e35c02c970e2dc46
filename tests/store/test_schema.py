"""seviz/store/schema.py: the Provenance record, the one place that names a store's root attributes."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from _tiny_store import TINY_ATTRS, TINY_BLOCKS, write_tiny_store

from seviz.store import Provenance, RecordedClass, StoreError, StoreWriter, open_store, schema

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "seviz"


def test_provenance_round_trips_through_the_attributes_of_a_store(tmp_path):
    path = write_tiny_store(tmp_path / "tiny.h5")
    with open_store(path) as store:
        provenance = store.provenance
    assert provenance == Provenance.from_attrs(TINY_ATTRS | {"finished": "2024-01-01T00:01:00+00:00"})
    assert provenance.classes == (RecordedClass(0, "cat"), RecordedClass(1, "dog"))
    assert provenance.versions == {"seviz": "0.1.0", "torch": "2", "timm": "1", "h5py": "3"}
    assert provenance.preprocessing == {"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5]}
    assert Provenance.from_attrs(provenance.to_attrs()) == provenance
    with h5py.File(path, "r") as f:
        written = {k: f.attrs[k] for k in provenance.to_attrs()}
    assert written["classes"] == provenance.to_attrs()["classes"]
    assert set(provenance.to_attrs()) <= set(Provenance.attr_names())


def test_absent_attributes_take_defaults_and_others_are_ignored():
    provenance = Provenance.from_attrs({"model": "m", "complete": True, "skipped_count": 3})
    assert provenance.model == "m" and provenance.precision == "fp32" and provenance.classes == ()
    assert provenance.gate_error_max_abs == 0.0 and provenance.num_classes is None


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"model": 7}, r"root attribute 'model' is an integer 7, not text"),
        ({"model": np.arange(3)}, r"'model' is an array of shape \(3,\), not text"),
        ({"classes": "not json"}, r"'classes' is not JSON"),
        ({"classes": '{"index": 0}'}, r"'classes' holds an object .*, not a list"),
        ({"classes": '[{"index": 0}]'}, r"'classes'\[0\] lacks name"),
        (
            {"classes": '[{"index": true, "name": "cat"}]'},
            r"'classes'\[0\].index is the flag True, not an integer",
        ),
        (
            {"classes": '[{"index": 0, "name": "cat", "id": 5}]'},
            r"'classes'\[0\].id is an integer 5, not text or null",
        ),
        ({"gate_error": "[1]"}, r"'gate_error' holds a list \[1\], not an object"),
        ({"gate_error": '{"max_abs": "big"}'}, r"'gate_error': max_abs is 'big', not a number >= 0"),
        ({"num_classes": -1}, r"'num_classes' is -1; it must be at least 0"),
        ({"num_classes": "ten"}, r"'num_classes' is text 'ten', not an integer"),
        ({"preprocessing": b"\xff"}, r"'preprocessing' is not UTF-8 text"),
        ({"torch_version": 2}, r"'torch_version' is an integer 2, not text"),
    ],
)
def test_each_attribute_has_its_type(attrs, message):
    with pytest.raises(StoreError, match=message):
        Provenance.from_attrs(attrs)


def test_the_writer_takes_provenance_and_refuses_unknown_attributes_before_touching_a_file(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(StoreError, match=r"'modle' is not a provenance attribute"):
        StoreWriter(path, TINY_BLOCKS, {"modle": "typo"})
    with pytest.raises(StoreError, match=r"'classes' is not JSON"):
        StoreWriter(path, TINY_BLOCKS, {"classes": "not json"})
    assert not path.exists()
    with StoreWriter(path, TINY_BLOCKS, Provenance(model="m", classes=(RecordedClass(0, "cat"),))) as writer:
        writer.close(complete=True)
    with open_store(path) as store:
        assert store.provenance.model == "m" and store.classes == [{"index": 0, "name": "cat", "id": None}]


# Every root attribute of a store: its provenance and the writer's own state.
ROOT_ATTRS = (
    *Provenance.attr_names(),
    *(getattr(schema, name) for name in dir(schema) if name.endswith("_ATTR")),
)
_KEYS = "|".join(re.escape(k) for k in ROOT_ATTRS)
BY_NAME = re.compile(rf"""attrs(\.get\(|\[)\s*["']({_KEYS})["']|\b_?json_attr\(""")


def _code_outside_the_store() -> list[Path]:
    """The package (less seviz/store) and the code that uses it: the app script, scripts, benchmarks."""
    package = [p for p in PACKAGE.rglob("*.py") if not p.relative_to(PACKAGE).as_posix().startswith("store/")]
    return package + [p for folder in ("app", "scripts", "benchmarks") for p in (ROOT / folder).rglob("*.py")]


def test_no_module_outside_the_store_reads_root_attributes_by_name():
    # Outside seviz/store, a store's root attributes are read through its typed record
    # (`store.provenance`, `store.complete`, `store.dtype`, ...): never by name from `.attrs`,
    # and never through an untyped JSON reader (`json_attr(...)`, the store's private `_json_attr`).
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}: {m.group(0)}"
        for path in _code_outside_the_store()
        for m in BY_NAME.finditer(path.read_text())
    ]
    assert not offenders, offenders


def test_the_rule_sees_each_way_of_reading_an_attribute_by_name():
    for line in (
        'store.attrs["preprocessing"]',
        "f.attrs.get('skipped_count')",
        'store.json_attr("run_config", {})',
        '_json_attr(f.attrs, "gate_error", {})',
    ):
        assert BY_NAME.search(line), line
    assert not BY_NAME.search('f.attrs["meta"]')  # the analysis cache's own file, not a store
    assert {"complete", "dtype", "skipped_count", "world_size", "model", "run_config"} <= set(ROOT_ATTRS)


def test_the_app_reads_no_root_attribute_at_all():
    # The app shows provenance from the store's record: no `.attrs[...]` (by any key, named or
    # held in a variable, which the test above cannot see) and no `json_attr(...)`.
    pattern = re.compile(r"\.attrs\b|\bjson_attr\(")
    offenders = [
        f"{path.relative_to(PACKAGE).as_posix()}:{number}: {line.strip()}"
        for path in (PACKAGE / "app").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
