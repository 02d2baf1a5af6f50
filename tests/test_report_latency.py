"""Latency measurement: run counts, thread restoration, device handling (no timing assertions)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunecli.devices import resolve_device
from prunecli.errors import PruneCliError
from prunecli.report.latency import measure_latency


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return self.fc(x)


def test_runs_warmup_and_batch_shape():
    model = Counting().train()
    result = measure_latency(model, (4,), batch_size=3, runs=5, warmup=2)
    assert len(model.calls) == 7 and set(model.calls) == {(3, 4)}
    assert result.runs == 5 and result.warmup == 2 and result.batch_size == 3
    assert result.min_ms <= result.median_ms <= result.max_ms
    assert model.training  # mode restored


def test_threads_restored():
    before = torch.get_num_threads()
    result = measure_latency(Counting(), (4,), runs=1, warmup=0, threads=2)
    assert result.threads == 2 and torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"warmup": -1}, {"batch_size": 0}])
def test_bad_settings_are_user_errors(kwargs):
    with pytest.raises(PruneCliError):
        measure_latency(Counting(), (4,), **kwargs)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(PruneCliError) as exc:
            resolve_device("cuda")
        assert "CUDA is not available" in exc.value.message
    with pytest.raises(PruneCliError):
        resolve_device("tpu:banana")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_moves_back():
    model = Counting()
    result = measure_latency(model, (4,), runs=3, warmup=1, device="cuda")
    assert result.device.startswith("cuda")
    assert next(model.parameters()).device.type == "cpu"
