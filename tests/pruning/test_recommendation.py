"""Tests of seviz.pruning.recommendation: verdicts on planted blocks, the JSON / Markdown files, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _planted import (
    AGNOSTIC,
    BLOCKS,
    CONSTANT,
    IDENTITY,
    MODEL,
    SPECIFIC,
    planted_gates,
    write_planted_store,
)

from seviz.analysis import StatsSettings, compute_statistics
from seviz.pruning import RecommendationError, Thresholds, load_recommendation, recommend

EXPECTED = {AGNOSTIC: "keep", CONSTANT: "constant", SPECIFIC: "keep", IDENTITY: "identity"}


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    return write_planted_store(tmp_path_factory.mktemp("planted") / "planted.h5")


@pytest.fixture(scope="module")
def planted_stats(planted_store):
    return compute_statistics(planted_store)


@pytest.fixture(scope="module")
def rec(planted_store):
    return recommend(planted_store)


def test_each_planted_block_gets_the_right_verdict(rec):
    assert {b.name: b.verdict for b in rec.blocks} == EXPECTED
    assert [b.name for b in rec.blocks] == list(BLOCKS)  # depth order


def test_verdicts_carry_the_deciding_scores(rec):
    identity = rec.block(IDENTITY)
    assert identity.scores["mean_abs_deviation"] <= 0.02 and identity.scores["fraction_near_one"] >= 0.95
    assert "mean |1 - s|" in identity.reason and identity.constant_vector is None
    constant = rec.block(CONSTANT)
    assert constant.scores["input_dependence"] <= 1e-3
    assert "input dependence" in constant.reason
    keep = rec.block(AGNOSTIC)
    assert keep.scores["input_dependence"] > 1e-3 and keep.scores["mean_abs_deviation"] > 0.02
    assert abs(keep.scores["centroid_accuracy"] - keep.scores["chance"]) < 0.1
    assert rec.block(SPECIFIC).scores["centroid_accuracy"] > 0.95
    for b in rec.blocks:
        assert b.params == BLOCKS[b.name].params and b.flops == BLOCKS[b.name].flops
        assert b.module == BLOCKS[b.name].module


def test_constant_vector_is_the_planted_per_channel_gate(rec):
    _, gates = planted_gates(400)
    planted = gates[CONSTANT][0]
    vector = np.asarray(rec.block(CONSTANT).constant_vector)
    assert vector.shape == planted.shape
    np.testing.assert_allclose(vector, planted, atol=5e-4)  # float16 storage


def test_thresholds_decide(planted_store, planted_stats):
    lenient = recommend(planted_stats, Thresholds(constant_max_dependence=0.3))
    assert lenient.block(AGNOSTIC).verdict == "constant" and lenient.block(SPECIFIC).verdict == "constant"
    strict = recommend(planted_stats, Thresholds(identity_max_deviation=0.001))
    assert strict.block(IDENTITY).verdict == "constant"  # still input-independent
    with pytest.raises(RecommendationError, match="identity_max_deviation=-1"):
        Thresholds(identity_max_deviation=-1)
    other = compute_statistics(planted_store, blocks=[IDENTITY], settings=StatsSettings(near_one=0.9))
    with pytest.raises(RecommendationError, match="near_one"):
        recommend(other)


def test_json_schema_and_totals(rec):
    data = json.loads(rec.to_json())
    assert data["seviz_recommendation"] == 1
    assert data["model"] == MODEL
    assert data["store"]["file"] == "planted.h5" and data["store"]["created"] == "2024-01-01T00:00:00+00:00"
    assert data["store"]["samples"] == 400 and data["store"]["complete"] is True
    assert data["thresholds"] == {
        "identity_max_deviation": 0.02,
        "identity_min_near_one": 0.95,
        "near_one": 0.95,
        "constant_max_dependence": 0.001,
    }
    for block in data["blocks"]:
        assert {"name", "module", "verdict", "scores", "params", "flops", "constant_vector", "reason"} <= set(
            block
        )
    totals = data["totals"]
    removable = BLOCKS[CONSTANT].params + BLOCKS[IDENTITY].params
    assert totals["se_params"] == sum(b.params for b in BLOCKS.values())
    assert totals["removable_params"] == removable
    assert totals["removable_flops"] == BLOCKS[CONSTANT].flops + BLOCKS[IDENTITY].flops
    assert (totals["identity"], totals["constant"], totals["keep"], totals["blocks"]) == (1, 1, 2, 4)


def test_json_is_deterministic_in_store_and_thresholds(planted_store, planted_stats, rec, tmp_path):
    again = recommend(planted_store)
    from_stats = recommend(planted_stats)  # what the app does with statistics it already has
    assert rec.to_json() == again.to_json() == from_stats.to_json()
    first, md = rec.write(tmp_path / "rec.json")
    assert md == tmp_path / "rec.md"
    before = first.read_bytes()
    again.write(first, overwrite=True)
    assert first.read_bytes() == before == rec.to_json().encode()
    assert recommend(planted_store, Thresholds(constant_max_dependence=0.3)).to_json() != rec.to_json()


def test_write_refuses_to_overwrite(rec, tmp_path):
    rec.write(tmp_path / "rec.json")
    with pytest.raises(FileExistsError, match="overwrite"):
        rec.write(tmp_path / "rec.json")


def test_markdown_is_a_table_of_the_same_verdicts(rec):
    md = rec.to_markdown()
    assert md.startswith(f"# SE block recommendation: {MODEL}")
    rows = [line for line in md.splitlines() if line.startswith("| SE_")]
    assert len(rows) == len(BLOCKS)
    for row, (name, verdict) in zip(rows, EXPECTED.items(), strict=True):
        assert row.startswith(f"| {name} |") and f"**{verdict}**" in row
    assert "**Totals**: 1 identity, 1 constant, 2 keep" in md


def test_load_round_trip(rec, tmp_path):
    path, _ = rec.write(tmp_path / "rec.json")
    loaded = load_recommendation(path, model=MODEL)
    assert loaded.to_json() == rec.to_json()
    assert loaded.block(CONSTANT).constant_vector == rec.block(CONSTANT).constant_vector


def test_load_rejects_what_is_not_a_recommendation(rec, tmp_path):
    path, _ = rec.write(tmp_path / "rec.json")
    with pytest.raises(RecommendationError, match=r"for model 'planted_senet', not 'resnet50'"):
        load_recommendation(path, model="resnet50")
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(RecommendationError, match="is not a JSON file"):
        load_recommendation(bad)
    bad.write_text(json.dumps({"blocks": []}))
    with pytest.raises(RecommendationError, match="not a seviz recommendation"):
        load_recommendation(bad)
    data = json.loads(rec.to_json())
    bad.write_text(json.dumps({**data, "seviz_recommendation": 99}))
    with pytest.raises(RecommendationError, match="upgrade seviz"):
        load_recommendation(bad)
    broken = json.loads(rec.to_json())
    broken["blocks"][0]["verdict"] = "maybe"
    bad.write_text(json.dumps(broken))
    with pytest.raises(RecommendationError, match="verdict 'maybe'"):
        load_recommendation(bad)
    broken = json.loads(rec.to_json())
    broken["blocks"][1]["constant_vector"] = [0.5]
    bad.write_text(json.dumps(broken))
    with pytest.raises(
        RecommendationError, match=r"constant_vector has 1 gate values for a block of 24 channels"
    ):
        load_recommendation(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recommendation(tmp_path / "missing.json")


def test_incomplete_store_is_marked(tmp_path):
    path = write_planted_store(tmp_path / "partial.h5", n=200, complete=False)
    rec = recommend(path)
    assert json.loads(rec.to_json())["store"]["complete"] is False
    assert "incomplete recording" in rec.to_markdown()
    assert {b.name: b.verdict for b in rec.blocks} == EXPECTED


# ---------------------------------------------------------------- rec.json against its schema (issue 13, point 10)


def _broken(rec, edit) -> dict:
    data = json.loads(rec.to_json())
    edit(data)
    return data


def _constant(data) -> dict:
    return next(b for b in data["blocks"] if b["verdict"] == "constant")


SCHEMA_CASES = {
    "a gate of 1e39 (finite in float64, +inf in float32)": (
        lambda d: _constant(d).update(constant_vector=[1e39] * len(_constant(d)["constant_vector"])),
        r"blocks\[1\] \(SE_3_4\)\.constant_vector\[0\] is 1e\+39, beyond float32's range",
    ),
    "a gate of -1000": (
        lambda d: _constant(d)["constant_vector"].__setitem__(3, -1000),
        r"constant_vector\[3\] is -1000; it must be at least 0",
    ),
    "gates of 0 on every channel": (
        lambda d: _constant(d).update(constant_vector=[0] * len(_constant(d)["constant_vector"])),
        r"constant_vector is 0 on every channel",
    ),
    "a gate of true": (
        lambda d: _constant(d)["constant_vector"].__setitem__(0, True),
        r"constant_vector\[0\] is the boolean true, not a number",
    ),
    "a list as a block name": (
        lambda d: d["blocks"][0].update(name=["SE_2_3"]),
        r"blocks\[0\]\.name is a list \['SE_2_3'\], not text",
    ),
    "a model that is not text": (lambda d: d.update(model=5), r"model is an integer 5, not text"),
    "a vector of another length than the block": (
        lambda d: _constant(d).update(constant_vector=[0.5] * 3),
        r"constant_vector has 3 gate values for a block of 24 channels",
    ),
    "a misspelt field": (
        lambda d: _constant(d).update(constant_vectr=[0.5]),
        r"has a field 'constant_vectr' that rec.json does not have",
    ),
    "a block given twice": (lambda d: d["blocks"].append(d["blocks"][0]), r"blocks name 'SE_2_3' twice"),
    "a boolean threshold": (
        lambda d: d["thresholds"].update(near_one=True),
        r"thresholds\.near_one is the boolean true, not a number",
    ),
    "a nested list in the statistics": (
        lambda d: d["statistics"].update(folds=[[[5]]]),
        r"statistics\.folds\[0\] is a list \[\[5\]\]",
    ),
    "a store identity of the wrong type": (
        lambda d: d["store"].update(weights_sha256=["ab"]),
        r"store\.weights_sha256 is a list \['ab'\], not text",
    ),
    "negative parameters": (
        lambda d: d["blocks"][0].update(params=-1),
        r"blocks\[0\] \(SE_2_3\)\.params is an integer -1",
    ),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_a_recommendation_that_does_not_fit_the_schema_names_the_field(case, rec, tmp_path):
    edit, message = SCHEMA_CASES[case]
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(_broken(rec, edit)))
    with pytest.raises(RecommendationError, match=message):
        load_recommendation(path)
    with pytest.raises(RecommendationError, match=message):
        load_recommendation(_broken(rec, edit))  # parsed content: the same reader, the same rules


def test_json_a_parser_accepts_but_a_recommendation_cannot_hold_is_refused(rec, tmp_path):
    path = tmp_path / "rec.json"
    text = rec.to_json()
    path.write_text(text.replace('"params": 136', '"params": 1' + "0" * 400))  # 10**400
    with pytest.raises(RecommendationError, match=r"params is an integer of 401 digits; it must lie in"):
        load_recommendation(path)
    path.write_text(text.replace('"near_one": 0.95', '"near_one": NaN', 1))
    with pytest.raises(RecommendationError, match=r"not a JSON file \(NaN is not a number JSON allows\)"):
        load_recommendation(path)
    path.write_text(
        '{"seviz_recommendation": 1, "model": "m", "blocks": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(RecommendationError, match="nests too deeply"):
        load_recommendation(path)
    path.write_text(json.dumps({**json.loads(text), "seviz_recommendation": True}))
    with pytest.raises(RecommendationError, match="recommendation version True"):
        load_recommendation(path)


def test_a_hand_written_recommendation_needs_only_its_verdicts():
    loaded = load_recommendation(
        {"seviz_recommendation": 1, "model": "m", "blocks": [{"name": "SE_5_2", "verdict": "identity"}]}
    )
    assert loaded.block("SE_5_2").verdict == "identity" and loaded.thresholds == Thresholds()
    assert load_recommendation(loaded) is loaded


def test_there_is_one_reader_of_rec_json():
    import importlib.util

    import seviz.pruning
    import seviz.pruning.apply

    assert importlib.util.find_spec("seviz.pruning._from_recommendation") is None
    assert seviz.pruning.load_recommendation is seviz.pruning.apply.load_recommendation
