"""Tests of seviz.pruning.verify's report reader and progress callback, and of the recommend command line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from seviz.cli import build_parser
from seviz.pruning import (
    EvaluationError,
    EvaluationReport,
    Thresholds,
    compare_models,
    find_evaluations,
    read_evaluation,
    recommend_command,
    threshold_flag,
)


def _batches(count: int):
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        yield torch.randn(4, 3, generator=generator), torch.tensor([0, 1, 2, 0])


def _report() -> EvaluationReport:
    torch.manual_seed(0)
    original = nn.Linear(3, 3)
    edited = nn.Linear(3, 3)
    return compare_models(original, edited, _batches(3), input_size=(3,), latency_repeats=0)


def test_compare_models_reports_progress_batch_by_batch():
    torch.manual_seed(0)
    seen = []
    compare_models(
        nn.Linear(3, 3),
        nn.Linear(3, 3),
        _batches(3),
        input_size=(3,),
        latency_repeats=0,
        total_batches=3,
        on_batch=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_an_evaluation_report_reads_back_as_written(tmp_path):
    report = _report()
    path = report.write_json(tmp_path / "evaluation.json")
    again = read_evaluation(path)
    assert again.to_dict() == report.to_dict()
    assert again.to_json() == report.to_json()


def test_evaluations_are_found_among_other_json_files(tmp_path):
    _report().write_json(tmp_path / "evaluation.json")
    _report().write_json(tmp_path / "stage5.json")
    (tmp_path / "rec.json").write_text(json.dumps({"seviz_recommendation": 1}))
    (tmp_path / "broken.json").write_text("{")
    assert [p.name for p in find_evaluations(tmp_path)] == ["evaluation.json", "stage5.json"]


def test_reading_something_else_is_a_clear_error(tmp_path):
    (tmp_path / "rec.json").write_text(json.dumps({"seviz_recommendation": 1}))
    with pytest.raises(EvaluationError, match="not a seviz evaluation.*seviz evaluate"):
        read_evaluation(tmp_path / "rec.json")
    data = _report().to_dict()
    data["seviz_evaluation"] = 99
    with pytest.raises(EvaluationError, match="format 99"):
        EvaluationReport.from_dict(data)
    del data["original"]
    data["seviz_evaluation"] = 1
    with pytest.raises(EvaluationError, match="not a complete seviz evaluation"):
        EvaluationReport.from_dict(data)
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(EvaluationError, match="not JSON"):
        read_evaluation(tmp_path / "x.json")


def test_the_recommend_command_is_what_the_cli_parses_back():
    thresholds = Thresholds(identity_max_deviation=0.0005, near_one=0.999, constant_max_dependence=0.25)
    words = recommend_command("a.h5", thresholds)
    assert words[:3] == ["seviz", "recommend", "a.h5"] and "--identity-min-near-one" not in words
    args = build_parser().parse_args(words[1:])
    parsed = {f: getattr(args, f) for f in ("identity_max_deviation", "identity_min_near_one", "near_one")}
    assert parsed == {"identity_max_deviation": 0.0005, "identity_min_near_one": None, "near_one": 0.999}
    assert recommend_command("a.h5") == ["seviz", "recommend", "a.h5"]
    # Every threshold has its option in `seviz recommend`.
    options = {
        a.option_strings[0]
        for a in build_parser()._subparsers._group_actions[0].choices["recommend"]._actions
        if a.option_strings
    }
    assert {threshold_flag(f) for f in Thresholds.__dataclass_fields__} <= options
