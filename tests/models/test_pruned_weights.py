"""seviz/models/pruned_weights.py, the one reader of pruned safetensors: only SE gates seviz finds may be edited.

A pruned file may come from anyone. Its edits are checked before the model is
touched or anything allocated (issue 13, point 11): an edit of any other
module (``fc``), absurd ``channels`` and malformed ``edits`` are each a clear
:class:`PruningError`.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from seviz.errors import PruningError
from seviz.models import load_model
from seviz.models.demo_network import DEMO_MODEL_NAME, build_demo_model
from seviz.models.pruned_weights import apply_saved_edits, read_saved_edits
from seviz.pruning import BlockEdit, prune
from seviz.se import discover_se_gates

DEMO_INPUT = (3, 32, 32)


def _edit(**changes) -> dict:
    edit = {
        "name": "SE_5_3",
        "module_path": "layer4.2.se",
        "action": "identity",
        "replacement": "identity",
        "folded_into": None,
        "channels": 512,
        "channel_dim": 1,
        "gate_shape": [512, 1, 1],
    }
    return {**edit, **changes}


def _metadata(*edits, **top) -> dict:
    return {"format": 1, "model": DEMO_MODEL_NAME, "edits": list(edits), **top}


@pytest.fixture()
def pruned_file(tmp_path):
    """A real pruned file (SE_5_3 removed), saved as `seviz prune` saves it."""
    torch.manual_seed(0)
    model = build_demo_model()
    gates = discover_se_gates(model, DEMO_INPUT)
    pruned = prune(model, gates, [BlockEdit("SE_5_3")], DEMO_INPUT)
    return pruned.save(tmp_path / "pruned.safetensors")


def _forged(tmp_path, metadata) -> str:
    """A safetensors file with the demo's (unpruned) tensors and the given seviz_edits metadata."""
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in build_demo_model().state_dict().items()}
    path = tmp_path / "forged.safetensors"
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    save_file(state, str(path), metadata={"seviz_edits": text})
    return str(path)


def test_a_pruned_file_of_seviz_loads_back(pruned_file):
    loaded = load_model(DEMO_MODEL_NAME, weights=str(pruned_file))
    assert isinstance(loaded.model.layer4[2].se, torch.nn.Identity)
    assert [e.name for e in read_saved_edits(pruned_file)] == ["SE_5_3"]


def test_an_edit_of_a_module_that_is_not_an_se_gate_is_refused_by_name(tmp_path):
    # fc replaced by an identity would load and record 512 "logits" for a 10-class model.
    forged = _forged(tmp_path, _metadata(_edit(name="SE_5_3", module_path="fc")))
    with pytest.raises(PruningError, match=r"edit 'fc' \(Linear\), which is not an SE block of ResNet"):
        load_model(DEMO_MODEL_NAME, weights=forged)
    for path in ("layer4.2", "layer4.2.se.fc2", "layer4.2.bn3"):
        model = build_demo_model()
        with pytest.raises(PruningError, match=f"edit '{path}' .*not an SE block"):
            apply_saved_edits(model, _metadata(_edit(module_path=path)))


MALFORMED = {
    "channels -5": (
        _metadata(_edit(channels=-5)),
        r"channels is an integer -5; it must lie in \[1, 16777216\]",
    ),
    "channels 10**13 (a 40 TB allocation)": (
        _metadata(_edit(channels=10**13, gate_shape=[10**13, 1, 1])),
        r"channels is an integer 10000000000000; it must lie in",
    ),
    "channels as text": (_metadata(_edit(channels="512")), r"channels is text '512', not a whole number"),
    "channels of another block": (
        _metadata(_edit(channels=256, gate_shape=[256, 1, 1])),
        r"has 256 channels, but SE_5_3 has 512 in this model",
    ),
    "a gate shape that does not hold the channels": (
        _metadata(_edit(gate_shape=[512, 2, 1])),
        r"gate_shape \[512, 2, 1\] does not hold 512 channels",
    ),
    "edits that are text": (_metadata(edits="SE_5_3"), r"edits are text 'SE_5_3', not a list of edits"),
    "an edit that is a number": (_metadata(1), r"a saved edit is an integer 1, not an object"),
    "a boolean format": (
        _metadata(_edit(), format=True),
        r"edits format the boolean true is not a format number",
    ),
    "a newer format": (_metadata(_edit(), format=9), r"format 9 is newer than this seviz reads"),
    "an unknown field": (_metadata(_edit(extra=1)), r"unknown field 'extra'"),
    "a missing field": (
        _metadata({k: v for k, v in _edit().items() if k != "module_path"}),
        r"lacks module_path",
    ),
    "an unknown action": (_metadata(_edit(action="drop")), r"action 'drop' is not one of identity, constant"),
    "the same module twice": (_metadata(_edit(), _edit()), r"edits 'layer4.2.se' twice"),
    "another block's name": (
        _metadata(_edit(name="SE_2_1")),
        r"calls it SE_2_1, but it is SE_5_3 in this model",
    ),
    "a replacement that does not fit the block": (
        _metadata(_edit(replacement="ones_gate")),
        r"replaces it by 'ones_gate', but SE_5_3 \(timm.SEModule\) is replaced by identity or channel_scale",
    ),
    "a fold into a convolution": (
        _metadata(_edit(action="constant", folded_into="layer4.2.conv3")),
        r"folded into 'layer4.2.conv3', which is not a BatchNorm2d of 512 channels",
    ),
    "metadata that is not JSON": ("{not json", r"seviz_edits metadata is not JSON"),
    "metadata nested 100,000 deep": ('{"edits": ' + "[" * 100_000 + "]" * 100_000 + "}", r"nests too deeply"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_edits_are_refused_before_anything_is_built(case, tmp_path, monkeypatch):
    metadata, message = MALFORMED[case]
    model = build_demo_model()
    before = copy.deepcopy(model.state_dict())
    sizes = []
    zeros = torch.zeros
    monkeypatch.setattr(torch, "zeros", lambda *a, **k: sizes.append(a) or zeros(*a, **k))
    with pytest.raises(PruningError, match=message):
        apply_saved_edits(model, metadata)
    assert not [size for size in sizes if size == (512,) or size[0] > 512], "a stand-in was allocated"
    monkeypatch.undo()
    assert type(model.layer4[2].se).__name__ == "SEModule"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(PruningError, match=message):
        load_model(DEMO_MODEL_NAME, weights=_forged(tmp_path, metadata))
