"""The end of `prunecli run` converts compact.pt to int8 when the run carries a quantization plan.

No quantizer is needed here: the payload the run writes its compact file from gets a min/max plan
of the final model (what a quantizer's policy leaves in ``extras["quantization"]``).
"""

from __future__ import annotations

import json

import pytest
import torch
from support.distributed import digits_args
from support.runs import RUN_SCHEDULE

from prunecli.checkpoint import load_checkpoint, load_model
from prunecli.quantization.int8 import Int8Model
from prunecli.quantization.minmax import minmax_plan
from prunecli.quantization.stored import store_plan
from prunecli.training import app, run_training
from prunecli.training.config import merge_config


@pytest.fixture
def planned_run(monkeypatch):
    original = app._Run.payload

    def payload(self, epoch, *, model=None, full=True):
        data = original(self, epoch, model=model, full=full)
        if not full:  # the payload compact.pt is made from
            net = (model or self.model).eval()
            batch = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
            store_plan(data, minmax_plan(net, [batch], batch[:1]))
        return data

    monkeypatch.setattr(app._Run, "payload", payload)


def _run(tmp_path, **settings):
    schedule = tmp_path / "tiny.yaml"
    schedule.write_text(RUN_SCHEDULE)
    config = merge_config(
        {"schedule": str(schedule), **digits_args(batch_size=16, epochs=4), **settings,
         "out_dir": str(tmp_path / "run")}
    )  # fmt: skip
    return run_training(config)


@pytest.mark.slow
def test_compact_checkpoint_of_a_planned_run_is_int8(tmp_path, planned_run):
    result = _run(tmp_path)
    compact = tmp_path / "run" / "compact.pt"
    stored = load_checkpoint(compact)
    assert "int8" in stored["extras"] and "quantization" not in stored["extras"]
    # thinned at epoch 3: the int8 model has the thinned widths and its per-channel ranges match them
    model = load_model(compact)
    assert isinstance(model, Int8Model)
    conv = model.graph_module.get_submodule("layer1.0.conv1")
    assert conv.weight().q_per_channel_scales().numel() == conv.out_channels < 8
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["quantization"]["stored_int8"] and report["quantization"]["int8_layers"] == 9
    assert result.compressed["file_bytes"] == compact.stat().st_size


def test_int8_false_keeps_compact_float(tmp_path, planned_run):
    _run(tmp_path, int8=False)
    stored = load_checkpoint(tmp_path / "run" / "compact.pt")
    assert "int8" not in stored["extras"] and "quantization" in stored["extras"]
    assert not isinstance(load_model(tmp_path / "run" / "compact.pt"), Int8Model)
