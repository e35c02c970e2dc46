"""Fuzzing the store reader: malformed stores made from one small valid one.

Every dataset removed, truncated and retyped, every group replaced, every
attribute (root and block) removed and set to values of the wrong type,
``/progress`` made inconsistent, gate values out of range, and the file cut
at every 5% of its bytes. Each goes through :func:`open_store` and
:func:`compute_statistics`, and (for the first refused and the first accepted
case of each kind, to stay fast: a store refused when it is opened is refused
by the CLI in that same call) the CLI's ``info`` and ``analyze``. The only
outcomes allowed are a result (with the documented warning for gates outside
[0, 1]) or a seviz error (exit 2 from the CLI): never a traceback, never an
input that was modified.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from _tiny_store import sha256, write_tiny_store

from seviz.analysis import compute_statistics
from seviz.cli import main
from seviz.errors import SevizError
from seviz.store import open_store

DATASETS = (
    "samples/label",
    "samples/class_name",
    "samples/path",
    "samples/topk_index",
    "samples/topk_prob",
    "blocks/SE_2_1",
    "blocks/SE_3_1",
    "skipped/path",
    "skipped/reason",
    "progress",
)
FLOATS = {"samples/topk_prob", "blocks/SE_2_1", "blocks/SE_3_1"}
MATRICES = {"samples/topk_index", "samples/topk_prob", "blocks/SE_2_1", "blocks/SE_3_1"}
GROUPS = ("samples", "blocks", "skipped")

# Wrong values for each type of attribute.
WRONG_FOR_TEXT = {"an integer": 7, "an array": np.arange(3)}
WRONG_FOR_INTEGER = {"text": "seven", "negative": -5, "a float": 2.5, "an array": np.arange(3)}
WRONG_FOR_JSON = {
    "not JSON": "not json {",
    "a JSON list": "[1, 2]",
    "an integer": 7,
    "an array": np.arange(3),
}
WRONG_FOR_FLAG = {"text": "yes", "an integer 5": 5}
ROOT_ATTRS = {
    "seviz_schema": WRONG_FOR_INTEGER,
    "complete": WRONG_FOR_FLAG,
    "dtype": {**WRONG_FOR_TEXT, "another dtype": "int8"},
    "model": WRONG_FOR_TEXT,
    "model_spec": WRONG_FOR_TEXT,
    "weights_source": WRONG_FOR_TEXT,
    "weights_sha256": WRONG_FOR_TEXT,
    "weights_file_sha256": WRONG_FOR_TEXT,
    "num_classes": WRONG_FOR_INTEGER,
    "preprocessing": WRONG_FOR_JSON,
    "classes": {
        **WRONG_FOR_JSON,
        "entries without a name": '[{"index": 0}]',
        "a bad index": '[{"index": -1, "name": "cat"}]',
    },
    "command": WRONG_FOR_TEXT,
    "created": WRONG_FOR_TEXT,
    "finished": WRONG_FOR_TEXT,
    "precision": WRONG_FOR_TEXT,
    "gate_error": {**WRONG_FOR_JSON, "a text max_abs": '{"max_abs": "big"}'},
    "run_config": WRONG_FOR_JSON,
    "seviz_version": WRONG_FOR_TEXT,
    "torch_version": WRONG_FOR_TEXT,
    "timm_version": WRONG_FOR_TEXT,
    "h5py_version": WRONG_FOR_TEXT,
}
BLOCK_ATTRS = {
    "module": WRONG_FOR_TEXT,
    "kind": WRONG_FOR_TEXT,
    "stage": WRONG_FOR_INTEGER,
    "block": WRONG_FOR_INTEGER,
    "channels": {**WRONG_FOR_INTEGER, "another width": 5},
    "params": WRONG_FOR_INTEGER,
    "flops": WRONG_FOR_INTEGER,
}

Mutation = Callable[[h5py.File], object]


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data)


def _retypings(name: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "as text": lambda v: np.full(v.shape, b"x", dtype="S4"),
        "with one more axis": lambda v: v[..., None],
    }
    if name in FLOATS:
        out["as integers"] = lambda v: v.astype(np.int32)
        out["as float64"] = lambda v: v.astype(np.float64)
    else:
        out["as floats"] = lambda v: np.zeros(v.shape)
    if name in MATRICES:
        out["as its first column"] = lambda v: v[:, 0]
    return out


def block(f: h5py.File) -> h5py.Dataset:
    return f["blocks/SE_3_1"]


def _set_attr(obj: Callable[[h5py.File], h5py.HLObject], key: str, value: object) -> Mutation:
    return lambda f: obj(f).attrs.__setitem__(key, value)


def _mutations() -> dict[str, tuple[str, Mutation]]:
    """Case name -> (kind, how to make it from the valid store)."""
    cases: dict[str, tuple[str, Mutation]] = {}
    for name in DATASETS:
        cases[f"{name} removed"] = ("dataset removed", lambda f, n=name: f.__delitem__(n))
        cases[f"{name} halved"] = (
            "dataset truncated",
            lambda f, n=name: _replace(f, n, f[n][: len(f[n]) // 2]),
        )
        for how, retype in _retypings(name).items():
            cases[f"{name} {how}"] = (
                "dataset retyped",
                lambda f, n=name, r=retype: _replace(f, n, r(f[n][()])),
            )
    for name in GROUPS:
        cases[f"/{name} removed"] = ("group", lambda f, n=name: f.__delitem__(n))
        cases[f"/{name} a dataset"] = (
            "group",
            lambda f, n=name: (f.__delitem__(n), f.create_dataset(n, data=[1])),
        )
    cases["a group inside /blocks"] = ("group", lambda f: f["blocks"].create_group("SE_9_9"))
    cases["/blocks empty"] = ("group", lambda f: [f["blocks"].__delitem__(n) for n in list(f["blocks"])])
    for key, wrong in ROOT_ATTRS.items():
        cases[f"root attribute {key} removed"] = ("root attribute", lambda f, k=key: f.attrs.__delitem__(k))
        for label, value in wrong.items():
            cases[f"root attribute {key} {label}"] = ("root attribute", _set_attr(lambda f: f, key, value))
    for key, wrong in BLOCK_ATTRS.items():
        cases[f"block attribute {key} removed"] = (
            "block attribute",
            lambda f, k=key: block(f).attrs.__delitem__(k),
        )
        for label, value in wrong.items():
            cases[f"block attribute {key} {label}"] = ("block attribute", _set_attr(block, key, value))
    progress = {"negative": [-3, 13], "beyond the rows": [100, 100], "fewer images than samples": [12, 5]}
    for label, value in {**progress, "zero": [0, 0]}.items():
        cases[f"progress {label}"] = (
            "progress",
            lambda f, v=value: f["progress"].__setitem__(slice(None), v),
        )
    values = {
        "gates 7.5 (warned)": lambda f: f["blocks/SE_2_1"].__setitem__(slice(None), 7.5),
        "gates -3 (warned)": lambda f: f["blocks/SE_2_1"].__setitem__(slice(None), -3.0),
        "gates NaN": lambda f: f["blocks/SE_2_1"].__setitem__(slice(None), np.nan),
        "label -1": lambda f: f["samples/label"].__setitem__(0, -1),
        "label of another class": lambda f: f["samples/label"].__setitem__(0, 1),
        "class name not recorded": lambda f: f["samples/class_name"].__setitem__(0, b"cow"),
        "top-5 probability NaN": lambda f: f["samples/topk_prob"].__setitem__(0, np.nan),
    }
    cases.update({name: ("values", mutate) for name, mutate in values.items()})
    return cases


MUTATIONS = _mutations()
CUTS = tuple(range(5, 100, 5))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_store(tmp_path_factory.mktemp("fuzz") / "tiny.h5")


@pytest.fixture(autouse=True)
def _keep_sigterm():
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _library(path: Path) -> tuple[bool, list[str]]:
    """(refused, problems) of ``open_store`` + ``compute_statistics``: a seviz error is a clean refusal."""
    try:
        with open_store(path) as store:
            compute_statistics(store, workers=1)
    except SevizError:
        return True, []
    except Exception as error:  # noqa: BLE001 - what the test looks for
        return True, [f"open_store/compute_statistics: {type(error).__name__}: {error}"]
    return False, []


def _cli(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    problems = []
    for command in ("info", "analyze"):
        try:
            code = main([command, str(path)])
        except Exception as error:  # noqa: BLE001 - the CLI let a traceback through
            problems.append(f"seviz {command}: {type(error).__name__}: {error}")
            continue
        err = capsys.readouterr().err
        if code not in (0, 2) or "Traceback" in err or (code == 2 and f"seviz {command}: error:" not in err):
            problems.append(f"seviz {command}: exit {code}: {err[-300:]}")
    return problems


def test_malformed_stores_are_refused_or_read_never_a_traceback(pristine, tmp_path, capsys):
    assert len(MUTATIONS) > 150
    failures: dict[str, list[str]] = {}
    seen: set[tuple[str, bool]] = set()
    outcomes = {True: 0, False: 0}
    for case, (kind, mutate) in MUTATIONS.items():
        path = tmp_path / "bad.h5"
        shutil.copy(pristine, path)
        with h5py.File(path, "a") as f:
            mutate(f)
        before = sha256(path)
        refused, problems = _library(path)
        outcomes[refused] += 1
        if (kind, refused) not in seen:
            seen.add((kind, refused))
            problems += _cli(path, capsys)
        if sha256(path) != before:
            problems.append("the input was modified")
        if problems:
            failures[case] = problems
    assert not failures, "\n".join(f"{case}: {p}" for case, problems in failures.items() for p in problems)
    assert outcomes[True] > 3 * outcomes[False]  # most are refused; the rest are valid stores after all


def test_a_store_cut_anywhere_is_refused(pristine, tmp_path, capsys):
    data = pristine.read_bytes()
    failures = {}
    for percent in CUTS:
        path = tmp_path / f"cut{percent}.h5"
        path.write_bytes(data[: len(data) * percent // 100])
        before = sha256(path)
        refused, problems = _library(path)
        if not refused:
            problems.append("read as if it were whole")
        if percent % 25 == 0:
            problems += _cli(path, capsys)
        if sha256(path) != before:
            problems.append("the input was modified")
        if problems:
            failures[percent] = problems
    assert not failures, failures


def test_the_pristine_store_reads(pristine, capsys):
    with open_store(pristine) as store:
        stats = compute_statistics(store, workers=1)
    assert len(store) == 12 and stats.block_names == ["SE_2_1", "SE_3_1"]
    assert main(["info", str(pristine)]) == 0 and "cat (6), dog (6)" in capsys.readouterr().out
